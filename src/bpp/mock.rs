//! `ondc-rating mock-seller`: this adapter's seller side (the same BPP code, started through
//! [`Application`]) with a permissive configuration, for testing a buyer app the way ONDC's mock
//! seller is used: it accepts a rating for any order, ACKs it, and answers with an `/on_rating`
//! carrying a feedback form URL. It signs with a key generated at start (or given) and prints its
//! subscriber id, unique key id and public key, so the buyer app can add it as a peer; the buyers
//! it trusts are given with `--peer` and/or found in a registry (`--registry`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::clock::SystemClock;
use crate::config::{
    LogFormat, OnRatingMode, PeerSettings, SellerSettings, Settings, StoreBackend, StoreSettings,
};
use crate::crypto::SigningKeyPair;
use crate::http::Application;

/// The mock seller's command line.
#[derive(Debug, Clone, clap::Args)]
pub struct MockSellerArgs {
    /// Address to listen on (port 0: any free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub bind: String,
    /// The seller's subscriber id.
    #[arg(long, default_value = "mock-seller.localhost")]
    pub subscriber_id: String,
    /// The unique key id of its signing key.
    #[arg(long, default_value = "mock-1")]
    pub unique_key_id: String,
    /// Base URI buyers send /rating to (default: http://ADDR/bpp for the bound address).
    #[arg(long)]
    pub bpp_uri: Option<String>,
    /// Feedback form URL sent in /on_rating; {order_id}, {transaction_id} and {message_id} are
    /// filled in (default: https://SUBSCRIBER_ID/feedback/{order_id}).
    #[arg(long)]
    pub form_url: Option<String>,
    /// A buyer whose signatures are trusted: subscriber id, unique key id and base64 Ed25519
    /// public key (repeatable).
    #[arg(long = "peer", value_name = "SUB|UKID|PUBKEY", value_parser = parse_peer)]
    pub peers: Vec<PeerSettings>,
    /// Registry base URL where buyers' keys are looked up (signed /v2.0/lookup).
    #[arg(long)]
    pub registry: Option<String>,
    /// Ed25519 private key, base64 (default: a new key for this run).
    #[arg(long)]
    pub private_key: Option<String>,
    /// redb store file (default: a temporary one, removed at exit).
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Mark the feedback form required (`feedback_form.required: true`): the user must fill it.
    #[arg(long)]
    pub form_required: bool,
    /// Also take decimal rating values within 1..5.
    #[arg(long)]
    pub allow_decimal_values: bool,
    /// The rating categories it takes, comma-separated (default all five): a rating of another
    /// is refused in the /on_rating with error 50003, as by a seller that does not take it.
    #[arg(long, value_delimiter = ',', value_name = "CATEGORY,...")]
    pub accept_categories: Vec<String>,
    /// Who answers a rating that passes the checks: `auto`, at once; or `platform`, by hand:
    /// each is held (the buyer's request sees no callback) until answered within its ttl at
    /// POST /internal/seller/ratings/{bap_id}/{message_id}/on_rating, with a form or a refusal
    /// (30015, 30018, 50003).
    #[arg(long, value_name = "auto|platform", default_value = "auto")]
    pub on_rating: OnRatingMode,
    /// Bearer token for GET /internal/seller/ratings/... (default: a new one, printed).
    #[arg(long)]
    pub internal_token: Option<String>,
    /// Log line format: text or json.
    #[arg(long, env = "ONDC_RATING__SERVER__LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
}

/// Reads `SUB|UKID|PUBKEY`.
pub fn parse_peer(s: &str) -> Result<PeerSettings, String> {
    let mut parts = s.splitn(3, '|');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(sub), Some(ukid), Some(key))
            if !sub.trim().is_empty() && !ukid.trim().is_empty() && !key.trim().is_empty() =>
        {
            crate::crypto::verifying_key_from_base64(key.trim()).map_err(|e| e.to_string())?;
            Ok(PeerSettings {
                subscriber_id: sub.trim().to_owned(),
                unique_key_id: ukid.trim().to_owned(),
                signing_public_key: key.trim().to_owned(),
            })
        }
        _ => Err("expected SUBSCRIBER_ID|UNIQUE_KEY_ID|PUBLIC_KEY".into()),
    }
}

/// The mock seller's settings: the seller role only, every category and order accepted, buyers
/// at any uri answered, the outbound /on_rating checked against the strict schema before it is
/// sent.
pub fn settings(
    args: &MockSellerArgs,
    addr: SocketAddr,
    keys: &SigningKeyPair,
    store: StoreSettings,
    internal_token: &str,
) -> Settings {
    let mut s = Settings::participant(
        &args.subscriber_id,
        &args.unique_key_id,
        keys,
        addr.to_string(),
        store,
    );
    s.server.log_level = "info".into();
    s.server.log_format = args.log_format;
    s.server.validate_outbound = true;
    s.seller = SellerSettings {
        enabled: true,
        bpp_uri: args
            .bpp_uri
            .clone()
            .unwrap_or_else(|| format!("http://{addr}/bpp")),
        feedback_form_url: args
            .form_url
            .clone()
            .unwrap_or_else(|| format!("https://{}/feedback/{{order_id}}", args.subscriber_id)),
        feedback_form_required: args.form_required,
        allow_decimal_values: args.allow_decimal_values,
        accepted_categories: if args.accept_categories.is_empty() {
            SellerSettings::default().accepted_categories
        } else {
            args.accept_categories.clone()
        },
        on_rating: args.on_rating,
        // A buyer app under test calls from wherever it runs (a LAN address, a container name).
        allow_uris_off_domain: true,
        internal_token: internal_token.to_owned(),
        ..SellerSettings::default()
    };
    s.peers = args.peers.clone();
    if let Some(url) = &args.registry {
        s.registry.url = url.clone();
    }
    s
}

/// Starts the mock seller, prints how to trust it to `out`, and serves until stopped.
pub async fn run(args: MockSellerArgs, out: &mut impl Write) -> Result<(), String> {
    let listener = crate::http::bind_listener(&args.bind, crate::config::DEFAULT_BACKLOG)
        .map_err(|e| format!("cannot listen on {}: {e}", args.bind))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let keys = match &args.private_key {
        Some(k) => SigningKeyPair::from_base64(k).map_err(|e| format!("--private-key: {e}"))?,
        None => SigningKeyPair::generate().map_err(|e| e.to_string())?,
    };
    let (path, scratch) = match &args.store {
        Some(path) => (path.clone(), None),
        None => {
            let dir = std::env::temp_dir().join(format!(
                "ondc-rating-mock-seller-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ));
            (dir.join("mock-seller.redb"), Some(dir))
        }
    };
    let store = StoreSettings {
        backend: StoreBackend::Embedded,
        path,
        ..StoreSettings::default()
    };
    let token = args
        .internal_token
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let settings = settings(&args, addr, &keys, store, &token);
    settings.validate().map_err(|e| e.to_string())?;
    let bpp_uri = settings.seller.bpp_uri.clone();
    let app = Application::with_listener(settings, listener, Arc::new(SystemClock))
        .await
        .map_err(|e| e.to_string())?;
    let base = format!("http://{addr}");
    let printed = writeln!(
        out,
        "# ondc-rating mock seller (BPP): ACKs every /rating and answers with /on_rating.\n\
         # Add it to the buyer side's configuration:\n\
         [[peers]]\n\
         subscriber_id = \"{}\"\n\
         unique_key_id = \"{}\"\n\
         signing_public_key = \"{}\"\n\
         # Orders it sells: bppId {:?}, bppUri {:?}\n\
         # bpp_uri: {bpp_uri}\n\
         # Received ratings: GET {base}/internal/seller/ratings/{{bap_id}}/{{message_id}} \
         with Authorization: Bearer {token}",
        args.subscriber_id,
        args.unique_key_id,
        keys.public_key_base64(),
        args.subscriber_id,
        bpp_uri,
    )
    .and_then(|()| match args.on_rating {
        OnRatingMode::Auto => Ok(()),
        OnRatingMode::Platform => writeln!(
            out,
            "# Ratings that pass the checks are held for your answer within their ttl:\n\
             # GET {base}/internal/seller/ratings?onRating=awaiting lists them, and\n\
             # POST {base}/internal/seller/ratings/{{bap_id}}/{{message_id}}/on_rating answers one \
             ({{}}, {{\"feedback_form_url\":...}} or {{\"error\":{{\"code\":\"30018\",...}}}})"
        ),
    })
    .and_then(|()| writeln!(out, "# listening on {addr}"))
    .and_then(|()| out.flush());
    if let Err(e) = printed {
        tracing::warn!(error = %e, "could not print the mock seller's details");
    }
    if args.peers.is_empty() && args.registry.is_none() {
        tracing::warn!(
            "no --peer and no --registry: every /rating will be refused as unsigned by a known buyer"
        );
    }
    let result = app.run_until_stopped().await.map_err(|e| e.to_string());
    if let Some(dir) = scratch {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse() {
        let k = SigningKeyPair::generate().unwrap().public_key_base64();
        let p = parse_peer(&format!("buyer.test|k1|{k}")).unwrap();
        assert_eq!(
            (p.subscriber_id.as_str(), p.unique_key_id.as_str()),
            ("buyer.test", "k1")
        );
        assert!(parse_peer("buyer.test|k1").is_err());
        assert!(parse_peer("buyer.test|k1|not-a-key").is_err());
        assert!(parse_peer(&format!("|k1|{k}")).is_err());
    }

    #[test]
    fn the_settings_are_a_valid_permissive_seller() {
        let args = MockSellerArgs {
            bind: "127.0.0.1:0".into(),
            subscriber_id: "mock-seller.localhost".into(),
            unique_key_id: "mock-1".into(),
            bpp_uri: None,
            form_url: None,
            peers: vec![],
            registry: None,
            private_key: None,
            store: None,
            form_required: false,
            allow_decimal_values: false,
            accept_categories: vec![],
            on_rating: OnRatingMode::Auto,
            internal_token: None,
            log_format: LogFormat::Text,
        };
        let keys = SigningKeyPair::generate().unwrap();
        let s = settings(
            &args,
            "127.0.0.1:9999".parse().unwrap(),
            &keys,
            StoreSettings::default(),
            "0123456789abcdef",
        );
        s.validate().unwrap();
        assert!(s.seller.enabled && !s.buyer.enabled);
        assert_eq!(s.seller.bpp_uri, "http://127.0.0.1:9999/bpp");
        assert_eq!(
            s.seller.feedback_form_url,
            "https://mock-seller.localhost/feedback/{order_id}"
        );
        assert!(s.seller.webhook_url.is_empty());
        assert_eq!(s.seller.accepted().len(), 5);
    }
}

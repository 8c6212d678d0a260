//! The registry side of onboarding: our registry takes `/subscribe` from the real
//! `ondc-rating subscribe`, checks the adapter's site verification page and its `/on_subscribe`
//! answer over loopback HTTP, and publishes the key; adapters that trust nothing but the registry
//! then verify each other through signed lookups.

use std::io::BufRead;
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::both_stores;
use crate::helpers::*;
use ondc_rating::clock::SystemClock;
use ondc_rating::config::Settings;
use ondc_rating::crypto::{EncryptionKeyPair, SigningKeyPair};
use ondc_rating::registry::server::{RegistryHandle, RegistryOptions, serve_with};

const BIN: &str = env!("CARGO_BIN_EXE_ondc-rating");

/// Serves our registry on `listener` (bound before the adapters start, so that they can be given
/// its URL) with `/subscribe` enabled and the adapters' bases as site overrides.
fn start_registry(
    listener: TcpListener,
    keys: &EncryptionKeyPair,
    sites: &[(&str, &str)],
    timeout: Duration,
) -> RegistryHandle {
    let options = RegistryOptions {
        encryption_keys: Some(keys.clone()),
        site_bases: sites
            .iter()
            .map(|(id, base)| ((*id).to_owned(), (*base).to_owned()))
            .collect(),
        timeout,
    };
    let (server, handle) = serve_with(vec![], listener, Arc::new(SystemClock), options).unwrap();
    tokio::spawn(server);
    handle
}

/// An adapter's `[onboarding]` for our registry: a fresh encryption key, `request_id` (empty: no
/// site verification page), the registry public key it trusts; and `registry.url`.
fn onboard(s: &mut Settings, registry_url: &str, request_id: &str, registry_public: &str) {
    s.registry.url = registry_url.to_owned();
    s.onboarding.request_id = request_id.to_owned();
    s.onboarding.encryption_private_key = EncryptionKeyPair::generate()
        .unwrap()
        .private_key_pkcs8_base64();
    s.onboarding.registry_encryption_public_key = registry_public.to_owned();
    s.onboarding.city_codes = vec!["std:080".into()];
}

/// Runs `ondc-rating subscribe --config FILE --env URL` with the adapter's settings written out as
/// its configuration file.
async fn run_subscribe(settings: &Settings, registry_url: &str, extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("adapter.toml");
    std::fs::write(&config, toml::to_string(settings).unwrap()).unwrap();
    let mut args: Vec<String> = vec![
        "subscribe".into(),
        "--config".into(),
        config.to_str().unwrap().into(),
        "--env".into(),
        registry_url.into(),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    tokio::task::spawn_blocking(move || {
        let out = Command::new(BIN).args(&args).output().unwrap();
        drop(dir);
        out
    })
    .await
    .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// What the registry answers to an unsigned lookup for (subscriber_id, ukId).
async fn lookup(registry_url: &str, subscriber_id: &str, ukid: &str) -> Vec<Value> {
    let body = json!({"subscriber_id": subscriber_id, "ukId": ukid}).to_string();
    let (status, found) = post_with_header(
        &reqwest::Client::new(),
        &format!("{registry_url}/lookup"),
        None,
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, 200, "{found}");
    found.as_array().expect("an array of records").clone()
}

fn encryption_public(settings: &Settings) -> String {
    EncryptionKeyPair::from_pkcs8_base64(&settings.onboarding.encryption_private_key)
        .unwrap()
        .public_key_der_base64()
}

async fn adapters_subscribe_through_the_registry_then_trust_each_other_through_it(
    backend: Backend,
) {
    let store = StoreFixture::new(backend);
    let keys = EncryptionKeyPair::generate().unwrap();
    let public = keys.public_key_der_base64();
    let (listener, port) = bind();
    let url = format!("http://127.0.0.1:{port}");
    // Neither adapter has static peers: all they know of the network is the registry.
    let seller = Seller::start(&store, "seller", vec![], |s| {
        onboard(s, &url, "req-seller", &public)
    })
    .await;
    let buyer = Buyer::start(&store, "buyer", vec![], |s| {
        onboard(s, &url, "req-buyer", &public)
    })
    .await;
    let registry = start_registry(
        listener,
        &keys,
        &[
            ("seller.test", &seller.app.base),
            ("buyer.test", &buyer.app.base),
        ],
        Duration::from_secs(5),
    );
    assert!(lookup(&url, "seller.test", "k1").await.is_empty());

    for settings in [&seller.app.settings, &buyer.app.settings] {
        let out = run_subscribe(settings, &url, &[]).await;
        let out_text = text(&out);
        assert_eq!(out.status.code(), Some(0), "{out_text}");
        assert!(out_text.contains("/subscribe -> 200"), "{out_text}");
        assert!(out_text.contains(r#""status":"ACK""#), "{out_text}");
    }
    assert_eq!(registry.stats.subscribed.load(Ordering::SeqCst), 2);
    assert_eq!(registry.stats.subscribe_refused.load(Ordering::SeqCst), 0);

    // The registry answers for both at once, with the keys they subscribed.
    for (id, keys, settings, kind, url_) in [
        (
            "seller.test",
            &seller.identity.keys,
            &seller.app.settings,
            "BPP",
            &seller.app.settings.seller.bpp_uri,
        ),
        (
            "buyer.test",
            &buyer.identity.keys,
            &buyer.app.settings,
            "BAP",
            &buyer.app.settings.buyer.bap_uri,
        ),
    ] {
        let found = lookup(&url, id, "k1").await;
        assert_eq!(found.len(), 1, "{found:?}");
        let r = &found[0];
        assert_eq!(r["signing_public_key"], keys.public_key_base64(), "{r}");
        assert_eq!(r["encr_public_key"], encryption_public(settings), "{r}");
        assert_eq!(r["status"], "SUBSCRIBED", "{r}");
        assert_eq!(r["type"], kind, "{r}");
        assert_eq!(r["subscriber_url"], url_.as_str(), "{r}");
        assert_eq!(r["domain"], "ONDC:RET11", "{r}");
        assert_eq!(r["city"], "std:080", "{r}");
    }

    // End to end: the seller verifies the buyer's /rating, and the buyer the seller's
    // /on_rating, with keys found through signed lookups of the subscribed records.
    let order = order(
        "alice",
        &seller.identity.id,
        &seller.app.settings.seller.bpp_uri,
    );
    let (status, body) = buyer.put_order("O-1", &order).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = buyer.rate("alice", &full_rating("O-1")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "ACK", "{body}");
    let message_id = body["data"]["dto"]["context"]["message_id"]
        .as_str()
        .unwrap();
    let (status, received) = seller.received("buyer.test", message_id).await;
    assert_eq!(status, 200, "{received}");
    assert!(
        registry.stats.lookups.load(Ordering::SeqCst) >= 2,
        "each side looked the other up"
    );
    assert_eq!(
        registry.stats.refused.load(Ordering::SeqCst),
        0,
        "both signed their lookups with the subscribed keys"
    );
}
both_stores!(adapters_subscribe_through_the_registry_then_trust_each_other_through_it);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_site_verification_page_is_refused_and_nothing_is_published() {
    let store = StoreFixture::new(Backend::Embedded);
    let keys = EncryptionKeyPair::generate().unwrap();
    let public = keys.public_key_der_base64();
    let (listener, port) = bind();
    let url = format!("http://127.0.0.1:{port}");
    let seller = Seller::start(&store, "seller", vec![], |s| {
        onboard(s, &url, "req-page", &public)
    })
    .await;
    // Serves /on_subscribe but no site verification page.
    let bare = Seller::start_as(
        Identity::new("bare.test"),
        &store,
        "bare",
        vec![],
        Arc::new(SystemClock),
        |s| onboard(s, &url, "", &public),
    )
    .await;
    let registry = start_registry(
        listener,
        &keys,
        &[
            ("seller.test", &seller.app.base),
            ("bare.test", &bare.app.base),
        ],
        Duration::from_secs(5),
    );

    // The page signs req-page; the request says req-other.
    let out = run_subscribe(&seller.app.settings, &url, &["--request-id", "req-other"]).await;
    let out_text = text(&out);
    assert_eq!(out.status.code(), Some(1), "{out_text}");
    assert!(out_text.contains("/subscribe -> 403"), "{out_text}");
    assert!(out_text.contains(r#""status":"NACK""#), "{out_text}");
    assert!(out_text.contains("site verification failed"), "{out_text}");
    assert!(out_text.contains("req-other"), "{out_text}");

    let out = run_subscribe(&bare.app.settings, &url, &["--request-id", "req-bare"]).await;
    let out_text = text(&out);
    assert_eq!(out.status.code(), Some(1), "{out_text}");
    assert!(out_text.contains("site verification failed"), "{out_text}");
    assert!(out_text.contains("404"), "{out_text}");

    assert!(lookup(&url, "seller.test", "k1").await.is_empty());
    assert!(lookup(&url, "bare.test", "k1").await.is_empty());
    assert_eq!(registry.stats.subscribed.load(Ordering::SeqCst), 0);
    assert_eq!(registry.stats.subscribe_refused.load(Ordering::SeqCst), 2);

    // The same adapter with the request_id its page signs is accepted.
    let out = run_subscribe(&seller.app.settings, &url, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(lookup(&url, "seller.test", "k1").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_challenge_answer_is_refused_and_nothing_is_published() {
    let store = StoreFixture::new(Backend::Embedded);
    let keys = EncryptionKeyPair::generate().unwrap();
    // The adapter trusts another registry key, so it cannot open this registry's challenge.
    let elsewhere = EncryptionKeyPair::generate()
        .unwrap()
        .public_key_der_base64();
    let (listener, port) = bind();
    let url = format!("http://127.0.0.1:{port}");
    let seller = Seller::start(&store, "seller", vec![], |s| {
        onboard(s, &url, "req-seller", &elsewhere)
    })
    .await;
    let registry = start_registry(
        listener,
        &keys,
        &[("seller.test", &seller.app.base)],
        Duration::from_secs(5),
    );

    let out = run_subscribe(&seller.app.settings, &url, &[]).await;
    let out_text = text(&out);
    assert_eq!(out.status.code(), Some(1), "{out_text}");
    assert!(out_text.contains("/subscribe -> 403"), "{out_text}");
    assert!(out_text.contains(r#""status":"NACK""#), "{out_text}");
    assert!(out_text.contains("challenge failed"), "{out_text}");
    assert!(!out_text.contains("site verification failed"), "{out_text}");
    assert!(lookup(&url, "seller.test", "k1").await.is_empty());
    assert_eq!(registry.stats.subscribed.load(Ordering::SeqCst), 0);
    assert_eq!(registry.stats.subscribe_refused.load(Ordering::SeqCst), 1);
}

/// A well-formed `/subscribe` body for `subscriber_id` with fresh keys.
fn payload(subscriber_id: &str) -> Value {
    json!({
        "context": {"operation": {"ops_no": 2}},
        "message": {
            "request_id": "req-1",
            "timestamp": ondc_rating::clock::ondc_timestamp(chrono::Utc::now()),
            "entity": {
                "subscriber_id": subscriber_id, "unique_key_id": "k1", "callback_url": "/",
                "key_pair": {
                    "signing_public_key": SigningKeyPair::generate().unwrap().public_key_base64(),
                    "encryption_public_key":
                        EncryptionKeyPair::generate().unwrap().public_key_der_base64(),
                    "valid_from": "2024-01-01T00:00:00.000Z",
                    "valid_until": "2099-01-01T00:00:00.000Z"
                }
            },
            "network_participant": [{"subscriber_url": "/bpp", "domain": "ONDC:RET11",
                "type": "sellerApp", "msn": false, "city_code": ["std:080"]}]
        }
    })
}

async fn post_subscribe(registry_url: &str, body: &str) -> (u16, Value) {
    post_with_header(
        &reqwest::Client::new(),
        &format!("{registry_url}/subscribe"),
        None,
        body.as_bytes(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_unreachable_and_silent_sites_get_a_prompt_nack() {
    let keys = EncryptionKeyPair::generate().unwrap();
    // Accepts connections (the kernel's backlog) and never answers.
    let (silent, silent_port) = bind();
    let (listener, port) = bind();
    let url = format!("http://127.0.0.1:{port}");
    let silent_base = format!("http://127.0.0.1:{silent_port}");
    let gone_base = format!("http://127.0.0.1:{}", dead_port());
    let registry = start_registry(
        listener,
        &keys,
        &[("silent.test", &silent_base), ("gone.test", &gone_base)],
        Duration::from_millis(800),
    );

    for (id, reason) in [("silent.test", "timed out"), ("gone.test", "cannot fetch")] {
        let started = Instant::now();
        let (status, body) = post_subscribe(&url, &payload(id).to_string()).await;
        assert!(started.elapsed() < Duration::from_secs(5), "bounded");
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["message"]["ack"]["status"], "NACK");
        assert_eq!(body["error"]["code"], "site_verification_failed", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(reason), "{message}");
    }
    drop(silent);

    // Malformed: 400 naming the field.
    let (status, body) = post_subscribe(&url, "{not json").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["message"]["ack"]["status"], "NACK");
    assert_eq!(body["error"]["path"], "body");
    let mut p = payload("np.test");
    p["message"]["entity"]["key_pair"]["signing_public_key"] = "short".into();
    let (status, body) = post_subscribe(&url, &p.to_string()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["path"],
        "message.entity.key_pair.signing_public_key"
    );
    // Without an override the subscriber id must be a host name to fetch https://{id} from.
    let (status, body) = post_subscribe(&url, &payload("evil.test/steal?x=").to_string()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["path"], "message.entity.subscriber_id");
    assert_eq!(registry.stats.subscribe_refused.load(Ordering::SeqCst), 5);
    assert!(registry.records.read().unwrap().is_empty());

    // A registry started without an encryption key does not take /subscribe.
    let (listener, port) = bind();
    let (server, _) = serve_with(
        vec![],
        listener,
        Arc::new(SystemClock),
        RegistryOptions::default(),
    )
    .unwrap();
    tokio::spawn(server);
    let (status, body) = post_subscribe(
        &format!("http://127.0.0.1:{port}"),
        &payload("np.test").to_string(),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_enabled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_command_takes_subscribe_with_its_key_and_site_bases() {
    let store = StoreFixture::new(Backend::Embedded);
    let keys = EncryptionKeyPair::generate().unwrap();
    let public = keys.public_key_der_base64();
    let (l, port) = bind();
    drop(l);
    let url = format!("http://127.0.0.1:{port}");
    let seller = Seller::start(&store, "seller", vec![], |s| {
        onboard(s, &url, "req-seller", &public)
    })
    .await;

    let mut child = Command::new(BIN)
        .args([
            "registry",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--encryption-private-key",
            &keys.private_key_pkcs8_base64(),
            "--site-base",
            &format!("seller.test={}/", seller.app.base),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // It prints the line to paste into adapters' [onboarding].
    let stdout = child.stdout.take().unwrap();
    let printed = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with("registry_encryption_public_key"))
    })
    .await
    .unwrap();
    assert_eq!(
        printed,
        Some(format!("registry_encryption_public_key = \"{public}\""))
    );
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..100 {
        if http.get(format!("{url}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let result = if up {
        let out = run_subscribe(&seller.app.settings, &url, &[]).await;
        Some((out, lookup(&url, "seller.test", "k1").await))
    } else {
        None
    };
    let _ = child.kill();
    let _ = child.wait();
    let (out, found) = result.expect("registry came up");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        found[0]["signing_public_key"],
        seller.identity.keys.public_key_base64()
    );

    // Flags are checked before anything is served.
    for args in [
        vec!["registry", "--bind", "127.0.0.1:0"],
        vec![
            "registry",
            "--bind",
            "127.0.0.1:0",
            "--encryption-private-key",
            "not-a-key",
        ],
        vec![
            "registry",
            "--bind",
            "127.0.0.1:0",
            "--encryption-private-key",
            &keys.private_key_pkcs8_base64(),
            "--site-base",
            "seller.test",
        ],
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
    }
}

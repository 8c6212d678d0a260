//! `ondc-rating demo`: a buyer-side and a seller-side adapter on loopback, each with its own
//! embedded store and freshly generated keys, rating one completed order over real HTTP.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::bap::auth::mint_hs256;
use crate::clock::{Clock, SystemClock};
use crate::config::{
    BuyerSettings, PeerSettings, SellerSettings, Settings, StoreBackend, StoreSettings,
};
use crate::crypto::{SigningKeyPair, b64_encode};
use crate::http::Application;

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Setting up (keys, files, listeners) failed.
    #[error("setup: {0}")]
    Setup(String),
    /// An HTTP call failed.
    #[error("request: {0}")]
    Http(#[from] reqwest::Error),
    /// The exchange did not go as it should.
    #[error("unexpected: {0}")]
    Unexpected(String),
}

fn setup<E: std::fmt::Display>(e: E) -> DemoError {
    DemoError::Setup(e.to_string())
}

fn random_token() -> Result<String, DemoError> {
    let mut b = [0u8; 24];
    getrandom::fill(&mut b).map_err(setup)?;
    Ok(b64_encode(b))
}

struct Side {
    settings: Settings,
    listener: TcpListener,
    keys: SigningKeyPair,
}

fn side(subscriber_id: &str, dir: &Path, name: &str) -> Result<Side, DemoError> {
    let listener =
        crate::http::bind_listener("127.0.0.1:0", crate::config::DEFAULT_BACKLOG).map_err(setup)?;
    let port = listener.local_addr().map_err(setup)?.port();
    let keys = SigningKeyPair::generate().map_err(setup)?;
    let settings = Settings::participant(
        subscriber_id,
        "demo-key-1",
        &keys,
        format!("127.0.0.1:{port}"),
        StoreSettings {
            backend: StoreBackend::Embedded,
            path: dir.join(format!("{name}.redb")),
            ..StoreSettings::default()
        },
    );
    Ok(Side {
        settings,
        listener,
        keys,
    })
}

fn peer_of(s: &Side) -> PeerSettings {
    s.settings.as_peer(&s.keys)
}

/// Runs the walkthrough, writing what happens to `out`. State lives under `dir`.
pub async fn run(out: &mut impl Write, dir: &Path) -> Result<(), DemoError> {
    std::fs::create_dir_all(dir).map_err(setup)?;
    let mut seller = side("seller.localhost", dir, "seller")?;
    let mut buyer = side("buyer.localhost", dir, "buyer")?;
    let seller_base = format!("http://{}", seller.settings.server.bind);
    let buyer_base = format!("http://{}", buyer.settings.server.bind);
    seller.settings.seller = SellerSettings {
        enabled: true,
        bpp_uri: format!("{seller_base}/bpp"),
        feedback_form_url: format!("{seller_base}/feedback/{{order_id}}"),
        internal_token: random_token()?,
        ..SellerSettings::default()
    };
    let jwt_secret = random_token()?;
    let internal = random_token()?;
    buyer.settings.buyer = BuyerSettings {
        enabled: true,
        bap_uri: format!("{buyer_base}/bap"),
        jwt_hs256_secret: jwt_secret.clone(),
        internal_token: internal.clone(),
        ..BuyerSettings::default()
    };
    seller.settings.peers = vec![peer_of(&buyer)];
    buyer.settings.peers = vec![peer_of(&seller)];
    seller.settings.validate().map_err(setup)?;
    buyer.settings.validate().map_err(setup)?;

    let clock = Arc::new(SystemClock);
    let seller_app = Application::with_listener(seller.settings, seller.listener, clock.clone())
        .await
        .map_err(setup)?;
    let buyer_app = Application::with_listener(buyer.settings, buyer.listener, clock.clone())
        .await
        .map_err(setup)?;
    let handles = [seller_app.handle(), buyer_app.handle()];
    tokio::spawn(seller_app.run_until_stopped());
    tokio::spawn(buyer_app.run_until_stopped());
    writeln!(
        out,
        "seller side (BPP) on {seller_base}, buyer side (BAP) on {buyer_base}"
    )
    .ok();

    let result = walkthrough(
        out,
        &buyer_base,
        &seller_base,
        &internal,
        &jwt_secret,
        clock.as_ref(),
    )
    .await;
    for h in handles {
        h.stop(true).await;
    }
    result
}

async fn walkthrough(
    out: &mut impl Write,
    buyer_base: &str,
    seller_base: &str,
    internal: &str,
    jwt_secret: &str,
    clock: &dyn Clock,
) -> Result<(), DemoError> {
    let http = reqwest::Client::new();
    let order_id = "order-demo-1";
    let order = json!({
        "userId": "user-1",
        "state": "Completed",
        "domain": "ONDC:RET11",
        "city": "std:080",
        "transactionId": uuid::Uuid::new_v4().to_string(),
        "bppId": "seller.localhost",
        "bppUri": format!("{seller_base}/bpp"),
        "providerId": "provider-1",
        "itemIds": ["item-1", "item-2"],
        "fulfillmentIds": ["fulfillment-1"],
        "agentId": "agent-1"
    });
    let r = http
        .put(format!("{buyer_base}/internal/orders/{order_id}"))
        .bearer_auth(internal)
        .json(&order)
        .send()
        .await?;
    if !r.status().is_success() {
        return Err(DemoError::Unexpected(format!(
            "registering the order: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        )));
    }
    writeln!(out, "registered completed order {order_id} for user-1").ok();

    let token = mint_hs256(jwt_secret, "user-1", clock.unix(), 600);
    let rating = json!({
        "orderId": order_id,
        "orderRating": 5,
        "providerRating": 4,
        "agentRating": 5,
        "fulfilmentRating": 4,
        "itemRatings": [{"itemId": "item-1", "rating": 5}, {"itemId": "item-2", "rating": 3}]
    });
    let submit = || {
        http.post(format!("{buyer_base}/ret11/rating"))
            .bearer_auth(&token)
            .json(&rating)
            .send()
    };
    let first = submit().await?;
    let status = first.status();
    let envelope: Value = first.json().await?;
    writeln!(out, "\nPOST /ret11/rating -> {status}").ok();
    writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(&envelope).unwrap_or_default()
    )
    .ok();
    if status != reqwest::StatusCode::OK || envelope["data"]["status"] != "ACK" {
        return Err(DemoError::Unexpected(format!(
            "first submission answered {status}"
        )));
    }

    let second = submit().await?;
    let status = second.status();
    let body: Value = second.json().await?;
    writeln!(out, "\nPOST /ret11/rating again -> {status}").ok();
    writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(&body).unwrap_or_default()
    )
    .ok();
    if status != reqwest::StatusCode::CONFLICT {
        return Err(DemoError::Unexpected(format!(
            "second submission answered {status}, expected 409"
        )));
    }

    let stored: Value = http
        .get(format!("{buyer_base}/ret11/orders/{order_id}/rating"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    writeln!(
        out,
        "\nGET /ret11/orders/{order_id}/rating -> status {}, feedback form {}",
        stored["data"]["status"], stored["data"]["feedbackForm"]["url"]
    )
    .ok();
    Ok(())
}

/// A fresh directory for a demo run under the system temp dir.
pub fn scratch_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    std::env::temp_dir().join(format!("ondc-rating-demo-{}-{nanos}", std::process::id()))
}

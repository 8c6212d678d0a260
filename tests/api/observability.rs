//! Observability: `/metrics` after real exchanges (requests by route template, NACKs by code,
//! the callback wait, retries, registry cache levels), `/readyz` with its dependencies, and the
//! binary's JSON log lines carrying each request's ids.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::helpers::*;
use ondc_rating::clock::SystemClock;
use ondc_rating::registry::SubscriberRecord;
use ondc_rating::registry::server::{RegistryHandle, serve};

fn requests(text: &str, route: &str, status: u16) -> f64 {
    sample(
        text,
        &format!("ondc_rating_http_requests_total{{route=\"{route}\",status=\"{status}\"}}"),
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rating_exchange_is_counted_on_both_sides() {
    let pair = Pair::start(Backend::Embedded).await;
    pair.order("O-1", "alice").await;
    let (status, body) = pair.buyer.rate("alice", &full_rating("O-1")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(pair.buyer.rating_of("alice", "O-1").await.0, 200);

    let buyer = metrics(&pair.buyer.app.base).await;
    assert_eq!(requests(&buyer, "/ret11/rating", 200), 1.0, "{buyer}");
    assert_eq!(requests(&buyer, "/bap/on_rating", 200), 1.0, "{buyer}");
    // Route templates, never raw paths.
    assert_eq!(
        requests(&buyer, "/ret11/orders/{order_id}/rating", 200),
        1.0,
        "{buyer}"
    );
    assert_eq!(requests(&buyer, "/internal/orders/{order_id}", 200), 1.0);
    assert!(!buyer.contains("O-1"), "{buyer}");
    let wait = |outcome: &str, part: &str| {
        sample(
            &buyer,
            &format!("ondc_rating_callback_wait_seconds_{part}{{outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(wait("callback", "count"), Some(1.0), "{buyer}");
    assert_eq!(wait("timeout", "count"), Some(0.0), "{buyer}");
    let waited = wait("callback", "sum").unwrap();
    assert!(waited > 0.0 && waited < 5.0, "{waited}");
    assert_eq!(
        sample(
            &buyer,
            "ondc_rating_callback_wait_seconds_bucket{outcome=\"callback\",le=\"+Inf\"}"
        ),
        Some(1.0)
    );
    assert_eq!(sample(&buyer, "ondc_rating_store_errors_total"), Some(0.0));
    // The callback reached the process whose request waits on it: matched there, no store read.
    assert_eq!(
        sample(
            &buyer,
            "ondc_rating_callbacks_matched_total{against=\"waiting_request\"}"
        ),
        Some(1.0),
        "{buyer}"
    );
    assert_eq!(
        sample(
            &buyer,
            "ondc_rating_callbacks_matched_total{against=\"store\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &buyer,
            "ondc_rating_outbound_retries_total{target=\"rating\"}"
        ),
        Some(0.0)
    );
    assert!(!buyer.contains("ondc_rating_nacks_total{"), "{buyer}");

    let seller = metrics(&pair.seller.app.base).await;
    assert_eq!(requests(&seller, "/bpp/rating", 200), 1.0, "{seller}");
    assert_eq!(
        sample(
            &seller,
            "ondc_rating_outbound_retries_total{target=\"on_rating\"}"
        ),
        Some(0.0)
    );

    // An unknown path is counted under one label, whatever the path.
    let r = reqwest::get(format!("{}/no/such/O-2", pair.buyer.app.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let buyer = metrics(&pair.buyer.app.base).await;
    assert_eq!(requests(&buyer, "unmatched", 404), 1.0, "{buyer}");
    assert_eq!(requests(&buyer, "/metrics", 200), 1.0, "{buyer}");
}

/// A buyer request waiting for its /on_rating counts in the waiting-requests gauge until its
/// wait ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_requests_are_counted_while_they_wait() {
    let store = StoreFixture::new(Backend::Embedded);
    let seller = ScriptedSeller::start(Script::AckSilently).await;
    let buyer = Arc::new(
        Buyer::start(&store, "buyer", vec![seller.identity.peer()], |s| {
            s.buyer.callback_wait_ms = 2_000;
        })
        .await,
    );
    let o = order("alice", &seller.identity.id, &seller.bpp_uri());
    assert_eq!(buyer.put_order("O-1", &o).await.0, 200);
    let waiting = |text: &str| sample(text, "ondc_rating_waiting_requests");
    assert_eq!(waiting(&metrics(&buyer.app.base).await), Some(0.0));
    let rating = {
        let buyer = buyer.clone();
        tokio::spawn(async move { buyer.rate("alice", &full_rating("O-1")).await })
    };
    seller.recorder.wait_for(1).await;
    let mut seen = None;
    for _ in 0..50 {
        seen = waiting(&metrics(&buyer.app.base).await);
        if seen == Some(1.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(seen, Some(1.0));
    let (status, _) = rating.await.unwrap();
    assert_eq!(status, 202, "the wait ended without a callback");
    assert_eq!(waiting(&metrics(&buyer.app.base).await), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_is_counted_by_its_code() {
    let store = StoreFixture::new(Backend::Embedded);
    let bap = Identity::new("buyer.test");
    let seller = Seller::start(&store, "s", vec![bap.peer()], |_| {}).await;
    // Same subscriber and key id, another key: the signature does not verify.
    let forger = Identity {
        keys: ondc_rating::crypto::SigningKeyPair::generate().unwrap(),
        ..bap.clone()
    };
    let body = rating_body_at(
        &bap,
        "http://127.0.0.1:9/bap",
        &seller.identity.id,
        &format!("{}/bpp", seller.app.base),
        &uuid::Uuid::new_v4().to_string(),
        chrono::Utc::now(),
    );
    let (status, answer) = post_signed(&seller.http, &seller.rating_url(), &forger, &body).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["error"]["code"], "30016");

    let text = metrics(&seller.app.base).await;
    assert_eq!(
        sample(&text, "ondc_rating_nacks_total{code=\"30016\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(requests(&text, "/bpp/rating", 401), 1.0, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_retries_are_counted() {
    let store = StoreFixture::new(Backend::Embedded);
    let bap = Identity::new("buyer.test");
    let platform = Recorder::start("/hook", Script::FailFirst(1, 503)).await;
    let buyer = ScriptedBuyer::start().await;
    let url = format!("{}/hook", platform.base);
    let seller = Seller::start(&store, "s", vec![bap.peer()], move |s| {
        s.seller.webhook_url = url;
        s.seller.webhook_secret = "observability-webhook-secret".into();
    })
    .await;
    let message_id = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        seller.rated_by(&bap, &buyer.bap_uri(), &message_id).await.0,
        200
    );
    platform.wait_for(2).await;
    buyer.wait_for(1).await;
    let text = metrics(&seller.app.base).await;
    let retries = |target: &str| {
        sample(
            &text,
            &format!("ondc_rating_outbound_retries_total{{target=\"{target}\"}}"),
        )
    };
    assert_eq!(retries("webhook"), Some(1.0), "{text}");
    assert_eq!(retries("on_rating"), Some(0.0), "{text}");
}

fn record(id: &Identity) -> SubscriberRecord {
    SubscriberRecord::from_value(&json!({
        "subscriber_id": id.id, "ukId": id.ukid, "signing_public_key": id.keys.public_key_base64(),
        "valid_from": "2020-01-01T00:00:00.000Z", "valid_until": "2099-01-01T00:00:00.000Z",
        "status": "SUBSCRIBED", "type": "BAP", "domain": "ONDC:RET11", "country": "IND"
    }))
    .unwrap()
}

async fn start_registry(records: Vec<SubscriberRecord>) -> (String, RegistryHandle) {
    let (listener, port) = bind();
    let (server, handle) = serve(records, listener, Arc::new(SystemClock)).unwrap();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}"), handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_lookups_are_counted_by_cache_level() {
    let store = StoreFixture::new(Backend::Embedded);
    let bap = Identity::new("buyer.test");
    let me = Identity::new("seller.test");
    // The seller's own record is there too, so that its signed lookups are accepted.
    let (url, _registry) = start_registry(vec![record(&bap), record(&me)]).await;
    let seller = Seller::start_as(me, &store, "s", vec![], Arc::new(SystemClock), move |s| {
        s.registry.url = url
    })
    .await;
    let send = || async {
        let body = rating_body_at(
            &bap,
            "http://127.0.0.1:9/bap",
            &seller.identity.id,
            &format!("{}/bpp", seller.app.base),
            &uuid::Uuid::new_v4().to_string(),
            chrono::Utc::now(),
        );
        post_signed(&seller.http, &seller.rating_url(), &bap, &body)
            .await
            .0
    };
    let cache = |text: &str, result: &str| {
        sample(
            text,
            &format!("ondc_rating_registry_cache_total{{result=\"{result}\"}}"),
        )
    };

    assert_eq!(send().await, 200);
    let text = metrics(&seller.app.base).await;
    assert_eq!(cache(&text, "lookup"), Some(1.0), "{text}");
    assert_eq!(cache(&text, "hit_memory"), Some(0.0), "{text}");
    assert_eq!(cache(&text, "miss"), Some(0.0), "{text}");

    assert_eq!(send().await, 200);
    let text = metrics(&seller.app.base).await;
    assert_eq!(cache(&text, "lookup"), Some(1.0), "{text}");
    assert_eq!(cache(&text, "hit_memory"), Some(1.0), "{text}");
    assert_eq!(cache(&text, "hit_store"), Some(0.0), "{text}");
}

async fn get_json(url: &str) -> (u16, Value) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_names_the_dependency_that_is_down() {
    let store = StoreFixture::new(Backend::Embedded);
    let plain = Buyer::start(&store, "plain", vec![], |_| {}).await;
    assert_eq!(
        get_json(&format!("{}/readyz", plain.app.base)).await,
        (200, json!({"status": "ready"}))
    );

    // A registry that answers (with any status) counts as up.
    let (url, _registry) = start_registry(vec![]).await;
    let with_registry = Buyer::start(&store, "up", vec![], move |s| s.registry.url = url).await;
    assert_eq!(
        get_json(&format!("{}/readyz", with_registry.app.base))
            .await
            .0,
        200
    );

    let dead = format!("http://127.0.0.1:{}", dead_port());
    let cut_off = Buyer::start(&store, "down", vec![], move |s| s.registry.url = dead).await;
    let (status, body) = get_json(&format!("{}/readyz", cut_off.app.base)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "registry_unavailable", "{body}");
    if let Err(v) = schemas().error.check(&body) {
        panic!("{v}: {body}");
    }
    // Liveness does not depend on anything.
    assert_eq!(
        get_json(&format!("{}/healthz", cut_off.app.base)).await,
        (200, json!({"status": "ok"}))
    );
}

const BIN: &str = env!("CARGO_BIN_EXE_ondc-rating");

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn repo_file(rel: &str) -> String {
    format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_ids() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("stderr.log");
    let port = dead_port();
    let base = format!("http://127.0.0.1:{port}");
    // The server's own identity, whose key the test holds too: it signs a callback below.
    let me = Identity {
        id: "ondc-rating.localhost".into(),
        ukid: "dev-1".into(),
        keys: ondc_rating::crypto::SigningKeyPair::generate().unwrap(),
    };
    let server = Server(
        Command::new(BIN)
            .args(["serve", "--config", &repo_file("config/default.toml")])
            .env("ONDC_RATING__SERVER__LOG_FORMAT", "json")
            .env("ONDC_RATING__SERVER__BIND", format!("127.0.0.1:{port}"))
            .env("ONDC_RATING__STORE__PATH", dir.path().join("s.redb"))
            .env("ONDC_RATING__STORE__BACKEND", "embedded")
            .env("ONDC_RATING__BUYER__BAP_URI", format!("{base}/bap"))
            .env("ONDC_RATING__SELLER__BPP_URI", format!("{base}/bpp"))
            .env(
                "ONDC_RATING__IDENTITY__SIGNING_PRIVATE_KEY",
                me.keys.private_key_base64(),
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    wait_until_up(&base).await;
    let token = String::from_utf8(
        Command::new(BIN)
            .args([
                "token",
                "--user",
                "u1",
                "--config",
                &repo_file("config/default.toml"),
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let order = json!({"userId": "u1", "state": "Completed", "domain": "ONDC:RET10", "city": "std:011",
        "transactionId": "t-json-logs", "bppId": "ondc-rating.localhost", "bppUri": format!("{base}/bpp"),
        "itemIds": ["I1"], "fulfillmentIds": ["F1"]});
    let r = http
        .put(format!("{base}/internal/orders/O-logs"))
        .bearer_auth("dev-only-internal-token")
        .json(&order)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{base}/ret11/rating"))
        .bearer_auth(token.trim())
        .json(&json!({"orderId": "O-logs", "orderRating": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let message_id = body["data"]["dto"]["context"]["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A signed callback for that rating naming another bpp_uri: refused, and the log says why.
    let mut ctx = body["data"]["dto"]["context"].clone();
    ctx["bpp_uri"] = json!("http://127.0.0.1:1/elsewhere");
    ctx["timestamp"] = json!(ondc_rating::clock::ondc_timestamp(chrono::Utc::now()));
    let callback =
        serde_json::to_vec(&json!({"context": ctx, "message": {"rating_ack": true}})).unwrap();
    let (status, nack) = post_with_header(
        &http,
        &format!("{base}/bap/on_rating"),
        Some(&me.sign(&callback)),
        &callback,
    )
    .await;
    assert_eq!(
        (status, nack["error"]["path"].as_str()),
        (400, Some("context.bpp_uri")),
        "{nack}"
    );
    drop(server);

    let text = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
            assert!(v.is_object(), "{l}");
            v
        })
        .collect();
    assert!(lines.iter().any(|l| l["message"] == "listening"), "{text}");
    // The span object of the first line logged with `message`.
    let span_of = |message: &str| -> Value {
        let line = lines
            .iter()
            .find(|l| l["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} line in\n{text}"));
        assert!(line["span"].is_object(), "logged outside a span: {line}");
        line["span"].clone()
    };
    // The seller side handling /rating, and the buyer side sending it.
    for (message, span, action) in [
        ("rating received", "rating", "rating"),
        ("claimed; sending /rating", "rate_order", "rating"),
        ("on_rating stored", "on_rating", "on_rating"),
    ] {
        let s = span_of(message);
        assert_eq!(s["name"], span, "{s}");
        assert_eq!(s["action"], action, "{s}");
        assert_eq!(s["transaction_id"], "t-json-logs", "{s}");
        assert_eq!(s["message_id"], message_id.as_str(), "{s}");
        assert_eq!(s["bap_id"], "ondc-rating.localhost", "{s}");
        assert_eq!(s["bpp_id"], "ondc-rating.localhost", "{s}");
    }
    let refused = lines
        .iter()
        .find(|l| l["message"] == "NACK")
        .unwrap_or_else(|| panic!("no NACK line in\n{text}"));
    assert_eq!(refused["level"], "INFO", "{refused}");
    assert_eq!(
        (&refused["code"], &refused["path"]),
        (&json!("20006"), &json!("context.bpp_uri")),
        "{refused}"
    );
    assert!(
        refused["reason"]
            .as_str()
            .is_some_and(|r| r.contains(&format!("{base}/bpp"))),
        "the reason names the /rating's bpp_uri: {refused}"
    );
    assert_eq!(refused["span"]["name"], "on_rating", "{refused}");
    assert_eq!(
        refused["span"]["message_id"],
        message_id.as_str(),
        "{refused}"
    );
}

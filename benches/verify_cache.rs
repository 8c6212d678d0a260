//! Inbound /rating verification cost with the key cache warm versus cold.
//!
//! A seller-side adapter (embedded store) and a registry of our own run on loopback; a client
//! sends signed /rating requests over real HTTP, one at a time, and the median and p95 latency of
//! each phase are printed. Each request names another seller in `context.bpp_id`, so it is
//! refused (NACK 30000) right after its signature is accepted: the figures are the signature
//! path (key lookup, digest, Ed25519 verify, one JSON parse), not the store's writes.
//!
//! - static: the sender's key is in `[[peers]]` (no registry involved);
//! - warm:   the key comes from the registry and is already cached in process memory;
//! - cold:   every request comes from a sender not seen before, so each one makes a signed
//!   registry lookup before its signature can be checked.
//!
//! Run: `cargo bench --bench verify_cache` (N requests per phase: `VERIFY_BENCH_N`, default 300).

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use ondc_rating::clock::{SystemClock, ondc_timestamp};
use ondc_rating::config::{SellerSettings, Settings, StoreBackend, StoreSettings};
use ondc_rating::crypto::{SigningKeyPair, sign_body};
use ondc_rating::http::Application;
use ondc_rating::registry::SubscriberRecord;

struct Sender {
    id: String,
    keys: SigningKeyPair,
}

impl Sender {
    fn new(id: String) -> Self {
        Self {
            id,
            keys: SigningKeyPair::generate().unwrap(),
        }
    }

    fn record(&self) -> SubscriberRecord {
        SubscriberRecord::from_value(&json!({"subscriber_id": self.id, "ukId": "k1",
            "signing_public_key": self.keys.public_key_base64(), "status": "SUBSCRIBED"}))
        .unwrap()
    }
}

fn bind() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let p = l.local_addr().unwrap().port();
    (l, p)
}

/// A buyer side that ACKs every /on_rating (none is sent: every request is refused after its
/// signature check; it is here so a change to that does not turn into background retries).
fn ack_server() -> String {
    let (l, port) = bind();
    let server = actix_web::HttpServer::new(|| {
        actix_web::App::new().route(
            "/bap/on_rating",
            actix_web::web::post().to(|| async {
                actix_web::HttpResponse::Ok()
                    .content_type("application/json")
                    .body(r#"{"message":{"ack":{"status":"ACK"}}}"#)
            }),
        )
    })
    .workers(1)
    .listen(l)
    .unwrap()
    .run();
    tokio::spawn(server);
    format!("http://127.0.0.1:{port}/bap")
}

async fn phase(
    http: &reqwest::Client,
    url: &str,
    bap_uri: &str,
    seller_base: &str,
    senders: &[&Sender],
    label: &str,
) -> Duration {
    let mut times = Vec::with_capacity(senders.len());
    for (i, s) in senders.iter().enumerate() {
        let body = serde_json::to_vec(&json!({
            "context": {"domain": "ONDC:RET11", "country": "IND", "city": "std:080",
                "action": "rating", "core_version": "1.2.0", "bap_id": s.id,
                "bap_uri": bap_uri, "bpp_id": "elsewhere.bench",
                "bpp_uri": format!("{seller_base}/bpp"), "transaction_id": "t",
                "message_id": format!("{label}-{i}"),
                "timestamp": ondc_timestamp(chrono::Utc::now()), "ttl": "PT30S"},
            "message": {"ratings": [{"rating_category": "Order", "id": "O", "value": "5"}]}
        }))
        .unwrap();
        let t = chrono::Utc::now().timestamp();
        let header = sign_body(&body, &s.keys, &s.id, "k1", t, t + 60);
        let started = Instant::now();
        let r = http
            .post(url)
            .header("authorization", header)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let elapsed = started.elapsed();
        // 400 with 30000 (wrong bpp_id) is answered right after the signature passed (a bad
        // signature would be 401), so the phase measures lookup + verification, not the store.
        let status = r.status();
        let answer: serde_json::Value = r.json().await.unwrap();
        assert!(
            status == 400 && answer["error"]["code"] == "30000",
            "{label}: {status} {answer}"
        );
        times.push(elapsed);
    }
    times.sort();
    let median = times[times.len() / 2];
    let p95 = times[times.len() * 95 / 100];
    println!(
        "{label:>6}: n={} median {:>7.1} us  p95 {:>7.1} us",
        times.len(),
        median.as_secs_f64() * 1e6,
        p95.as_secs_f64() * 1e6
    );
    median
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; test runners that list or run every target (cargo test
    // --all-targets, nextest's --list) do not, and must not run a benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n: usize = std::env::var("VERIFY_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let dir = std::env::temp_dir().join(format!("ondc-rating-bench-{}", std::process::id()));
    let static_sender = Sender::new("static.bench".into());
    let warm_sender = Sender::new("warm.bench".into());
    let cold: Vec<Sender> = (0..n)
        .map(|i| Sender::new(format!("cold{i}.bench")))
        .collect();
    let seller_keys = SigningKeyPair::generate().unwrap();

    let mut records: Vec<SubscriberRecord> = cold.iter().map(Sender::record).collect();
    records.push(warm_sender.record());
    records.push(
        SubscriberRecord::from_value(&json!({"subscriber_id": "seller.bench", "ukId": "k1",
            "signing_public_key": seller_keys.public_key_base64()}))
        .unwrap(),
    );
    let (rl, rport) = bind();
    let (registry, _) =
        ondc_rating::registry::server::serve(records, rl, Arc::new(SystemClock)).unwrap();
    tokio::spawn(registry);

    let (listener, port) = bind();
    let base = format!("http://127.0.0.1:{port}");
    let mut settings = Settings::participant(
        "seller.bench",
        "k1",
        &seller_keys,
        format!("127.0.0.1:{port}"),
        StoreSettings {
            backend: StoreBackend::Embedded,
            path: dir.join("seller.redb"),
            ..StoreSettings::default()
        },
    );
    settings.seller = SellerSettings {
        enabled: true,
        bpp_uri: format!("{base}/bpp"),
        ..SellerSettings::default()
    };
    settings.peers = vec![settings.as_peer(&static_sender.keys)];
    settings.peers[0].subscriber_id = "static.bench".into();
    settings.registry.url = format!("http://127.0.0.1:{rport}");
    let app = Application::with_listener(settings, listener, Arc::new(SystemClock))
        .await
        .unwrap();
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());

    let http = reqwest::Client::new();
    let url = format!("{base}/bpp/rating");
    let bap_uri = ack_server();
    // Warm-up: connections, the warm sender's key, the first redb writes.
    phase(&http, &url, &bap_uri, &base, &[&warm_sender; 20], "warmup").await;
    let statics = phase(
        &http,
        &url,
        &bap_uri,
        &base,
        &vec![&static_sender; n],
        "static",
    )
    .await;
    let warm = phase(&http, &url, &bap_uri, &base, &vec![&warm_sender; n], "warm").await;
    let cold_refs: Vec<&Sender> = cold.iter().collect();
    let coldm = phase(&http, &url, &bap_uri, &base, &cold_refs, "cold").await;
    println!(
        "median ratios: cold/warm {:.2}, warm/static {:.2}",
        coldm.as_secs_f64() / warm.as_secs_f64(),
        warm.as_secs_f64() / statics.as_secs_f64()
    );
    handle.stop(true).await;
    let _ = std::fs::remove_dir_all(&dir);
}

//! SIGTERM: the server stops accepting, lets a waiting buyer request finish, then exits cleanly.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_waiting_request_finish_then_exits_zero() {
    sigterm_lets_a_waiting_request_finish_then_exits_zero_on(&[("STORE__BACKEND", "embedded")])
        .await;
}

/// With Redis the HTTP workers hold connections of their own (the waiting request's claim and
/// status writes went out on one); the stop closes them with the workers, without a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_sigterm_lets_a_waiting_request_finish_then_exits_zero() {
    let prefix = format!("test:{}:", uuid::Uuid::new_v4());
    sigterm_lets_a_waiting_request_finish_then_exits_zero_on(&[
        ("STORE__BACKEND", "redis"),
        ("STORE__REDIS_URL", &redis_url()),
        ("STORE__KEY_PREFIX", &prefix),
    ])
    .await;
}

/// `store`: the store's settings, as `ONDC_RATING__` variables without that prefix.
async fn sigterm_lets_a_waiting_request_finish_then_exits_zero_on(store: &[(&str, &str)]) {
    let seller = ScriptedSeller::start(Script::AckSilently).await;
    let dir = tempfile::tempdir().unwrap();
    let (l, port) = bind();
    drop(l);
    let base = format!("http://127.0.0.1:{port}");
    let config = format!("{}/config/default.toml", env!("CARGO_MANIFEST_DIR"));
    let log = dir.path().join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ondc-rating"));
    child
        .args(["serve", "--config", &config])
        .env("ONDC_RATING__SERVER__BIND", format!("127.0.0.1:{port}"))
        .env("ONDC_RATING__STORE__PATH", dir.path().join("s.redb"))
        .env("ONDC_RATING__BUYER__BAP_URI", format!("{base}/bap"))
        .env("ONDC_RATING__SELLER__BPP_URI", format!("{base}/bpp"))
        .env("ONDC_RATING__BUYER__CALLBACK_WAIT_MS", "2000")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    for (key, value) in store {
        child.env(format!("ONDC_RATING__{key}"), value);
    }
    let mut child = child.spawn().unwrap();
    let http = reqwest::Client::new();
    wait_until_up(&base).await;
    let order = json!({"userId": "u1", "state": "Completed", "domain": "ONDC:RET11", "city": "std:080",
        "transactionId": "t-1", "bppId": seller.identity.id, "bppUri": seller.bpp_uri()});
    let r = http
        .put(format!("{base}/internal/orders/O-1"))
        .bearer_auth("dev-only-internal-token")
        .json(&order)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token =
        ondc_rating::bap::auth::mint_hs256("dev-only-hs256-secret-change-me", "u1", now(), 600);
    let waiting = {
        let (http, base) = (http.clone(), base.clone());
        tokio::spawn(async move {
            http.post(format!("{base}/ret11/rating"))
                .bearer_auth(token)
                .json(&json!({"orderId": "O-1", "orderRating": 5}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    seller.recorder.wait_for(1).await;
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    // The waiting request still gets its answer (202: no callback within its 2 s wait).
    let answer = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer.unwrap(), 202);
    // And the process exits cleanly once nothing is in flight.
    let mut exited = None;
    for _ in 0..100 {
        if let Some(s) = child.try_wait().unwrap() {
            exited = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exited = exited.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("server still running after SIGTERM and the last request");
    });
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(exited.success(), "{exited:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // New connections are refused now.
    assert!(http.get(format!("{base}/healthz")).send().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_waits_for_an_owed_on_rating_to_be_delivered() {
    // The buyer side fails three times before it ACKs, so the /on_rating is still being retried
    // (its backoff 0.2, 0.4, 0.8 s) when the seller is told to stop. With no connection open, the
    // HTTP worker that took the /rating stops at once, and the delivery goes on without it.
    let buyer_side = ScriptedBuyer::with(Script::FailFirst(3, 503)).await;
    let bap = Identity::new("buyer.test");
    let dir = tempfile::tempdir().unwrap();
    let (l, port) = bind();
    drop(l);
    let base = format!("http://127.0.0.1:{port}");
    let default = std::fs::read_to_string(format!(
        "{}/config/default.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let config = dir.path().join("seller.toml");
    let log = dir.path().join("stderr.log");
    let p = bap.peer();
    std::fs::write(
        &config,
        format!(
            "{default}\n[[peers]]\nsubscriber_id = \"{}\"\nunique_key_id = \"{}\"\nsigning_public_key = \"{}\"\n",
            p.subscriber_id, p.unique_key_id, p.signing_public_key
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ondc-rating"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("ONDC_RATING__SERVER__BIND", format!("127.0.0.1:{port}"))
        .env("ONDC_RATING__STORE__PATH", dir.path().join("s.redb"))
        .env("ONDC_RATING__STORE__BACKEND", "embedded")
        .env("ONDC_RATING__BUYER__ENABLED", "false")
        .env("ONDC_RATING__IDENTITY__SUBSCRIBER_ID", "seller.test")
        .env("ONDC_RATING__SELLER__BPP_URI", format!("{base}/bpp"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    wait_until_up(&base).await;
    let body = rating_body_at(
        &bap,
        &buyer_side.bap_uri(),
        "seller.test",
        &format!("{base}/bpp"),
        "m-1",
        chrono::Utc::now(),
    );
    let (status, _) = post_signed(&http, &format!("{base}/bpp/rating"), &bap, &body).await;
    assert_eq!(status, 200);
    drop(http);
    buyer_side.wait_for(1).await;
    assert!(
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );

    let got = buyer_side.wait_for(4).await;
    assert_eq!(
        got.len(),
        4,
        "the owed /on_rating was retried to success during shutdown"
    );
    let mut exited = None;
    for _ in 0..200 {
        if let Some(s) = child.try_wait().unwrap() {
            exited = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exited = exited.unwrap_or_else(|| {
        let _ = child.kill();
        panic!("seller still running after its last delivery");
    });
    assert!(exited.success(), "{exited:?}");
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(
        stderr.contains("the rating's processing goes on in the background"),
        "the worker stopped before the delivery was done: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

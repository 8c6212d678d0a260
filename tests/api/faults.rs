//! Faults: the store going away and coming back.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;

/// A private redis-server with an append-only file, so it can be stopped and started again on
/// the same port with its data.
struct PrivateRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> Self {
        let (l, port) = bind();
        drop(l);
        let mut r = Self {
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        r.up();
        r
    }

    fn up(&mut self) {
        let bin = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(bin)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.down();
    }
}

/// A buyer side with `workers` HTTP workers (0: one per core) on a private Redis, waiting
/// 100 ms for callbacks, whose seller ACKs silently; alice's completed orders O-1 and O-2
/// registered.
async fn on_private_redis(workers: usize) -> (PrivateRedis, ScriptedSeller, Buyer) {
    let redis = PrivateRedis::start();
    let store = StoreFixture::new(Backend::Redis);
    let url = redis.url();
    let seller = ScriptedSeller::start(Script::AckSilently).await;
    let buyer = Buyer::start(&store, "buyer", vec![seller.identity.peer()], move |s| {
        s.store.redis_url = url;
        s.buyer.callback_wait_ms = 100;
        s.server.workers = workers;
    })
    .await;
    let o = order("alice", &seller.identity.id, &seller.bpp_uri());
    for id in ["O-1", "O-2"] {
        assert_eq!(buyer.put_order(id, &o).await.0, 200);
    }
    (redis, seller, buyer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_going_away_fails_fast_changes_nothing_and_service_resumes() {
    let (mut redis, seller, buyer) = on_private_redis(0).await;
    let buyer = Arc::new(buyer);
    assert_eq!(
        buyer
            .rate("alice", &json!({"orderId": "O-1", "orderRating": 5}))
            .await
            .0,
        202
    );

    redis.down();
    let started = Instant::now();
    let (status, err) = buyer
        .rate("alice", &json!({"orderId": "O-2", "orderRating": 3}))
        .await;
    assert_eq!(status, 503, "{err}");
    assert_eq!(err["error"]["code"], "store_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "fails within the store timeouts"
    );
    assert_eq!(buyer.rating_of("alice", "O-1").await.0, 503);
    let r = buyer
        .http
        .get(format!("{}/readyz", buyer.app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(
        seller.requests().len(),
        1,
        "nothing reached the seller while the store was down"
    );

    // Back on the same port with its data: no restart of the adapter needed.
    redis.up();
    let mut resumed = false;
    for _ in 0..100 {
        if buyer.rating_of("alice", "O-1").await.0 == 200 {
            resumed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(resumed, "service resumed");
    assert_eq!(
        buyer.rating_of("alice", "O-1").await.1["data"]["status"],
        "acknowledged"
    );
    // The refused attempt left nothing behind: O-2 is unrated and can be rated now.
    assert_eq!(buyer.rating_of("alice", "O-2").await.0, 404);
    assert_eq!(
        buyer
            .rate("alice", &json!({"orderId": "O-2", "orderRating": 3}))
            .await
            .0,
        202
    );
    assert_eq!(seller.requests().len(), 2);
}

/// A worker that sat idle through a Redis outage serves its first request after it like any
/// other: its own connection, which the outage left failed, is retired once another connection
/// met the failure, and the shared one serves until a new one is open. The buyer runs two HTTP
/// workers; each client below holds one connection, and actix hands connections to its workers
/// in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_idle_through_a_redis_outage_serves_its_first_request_after_it() {
    let (mut redis, seller, buyer) = on_private_redis(2).await;
    let token = Buyer::token("alice");
    let read = |http: &reqwest::Client| {
        http.get(format!("{}/ret11/orders/O-1/rating", buyer.app.base))
            .bearer_auth(&token)
            .send()
    };
    let clients = [reqwest::Client::new(), reqwest::Client::new()];
    for http in &clients {
        // The first read opens the worker's own connection; the later ones go out on it.
        for _ in 0..3 {
            assert_eq!(read(http).await.unwrap().status(), 404);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Down long enough for every connection's own reconnect attempts to give up.
    redis.down();
    tokio::time::sleep(Duration::from_secs(3)).await;
    redis.up();
    let mut resumed = false;
    for _ in 0..100 {
        if read(&clients[0]).await.unwrap().status() == 404 {
            resumed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(resumed, "service resumed on the first client's connection");
    // The other connection's worker was idle all along: its first request succeeds.
    let r = clients[1]
        .post(format!("{}/ret11/rating", buyer.app.base))
        .bearer_auth(&token)
        .json(&json!({"orderId": "O-2", "orderRating": 4}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert_eq!(status, 202, "{}", r.text().await.unwrap_or_default());
    assert_eq!(seller.requests().len(), 1, "the rating reached the seller");
}

/// Redis goes away while the seller side sends an /on_rating: the send's outcome, which could
/// not be stored then, is stored once Redis is back, and the rating owes nothing more (no other
/// instance would send it again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_on_rating_delivered_while_redis_was_away_is_recorded_when_it_is_back() {
    delivered_while_redis_is_away(Duration::from_secs(2)).await;
}

/// The same through an outage longer than the /rating's ttl: the instance, still running, keeps
/// the outcome until Redis is back, rather than leaving the rating marked owed until it stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_on_rating_delivered_during_a_long_redis_outage_is_recorded_when_it_is_back() {
    delivered_while_redis_is_away(Duration::from_secs(34)).await;
}

/// A seller side on a private Redis sends an /on_rating that the buyer ACKs while Redis is down
/// for `outage`; the outcome is recorded once it is back, and the buyer got one /on_rating.
async fn delivered_while_redis_is_away(outage: Duration) {
    let mut redis = PrivateRedis::start();
    let store = StoreFixture::new(Backend::Redis);
    let bap = Identity::new("buyer.test");
    let go = Arc::new(tokio::sync::Notify::new());
    let buyer = ScriptedBuyer::with(Script::AckWhen(go.clone())).await;
    let url = redis.url();
    let seller = Seller::start(&store, "seller", vec![bap.peer()], move |s| {
        s.store.redis_url = url;
    })
    .await;
    let (s, ack) = seller.rated_by(&bap, &buyer.bap_uri(), "m-away").await;
    assert_eq!(s, 200, "{ack}");
    buyer.wait_for(1).await;

    // The buyer ACKs while Redis is down; it comes back `outage` later.
    redis.down();
    go.notify_one();
    tokio::time::sleep(outage).await;
    redis.up();
    let mut got = serde_json::Value::Null;
    for _ in 0..100 {
        let (status, body) = seller.received("buyer.test", "m-away").await;
        if status == 200 && body["rating"]["onRating"] != "pending" {
            got = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got["rating"]["onRating"], "sent", "{got}");
    assert_eq!(buyer.requests().len(), 1, "sent once");
}

/// Redis goes away while the seller platform's webhook answers a rating held for the platform:
/// the webhook's outcome is stored once Redis is back (within the second past the webhook's
/// budget during which the platform's own answer waits), so the platform's empty answer sends
/// the webhook's form, not the configured one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_outcome_answered_while_redis_was_away_is_recorded_when_it_is_back() {
    const SECRET: &str = "webhook-secret-for-tests";
    let mut redis = PrivateRedis::start();
    let store = StoreFixture::new(Backend::Redis);
    let bap = Identity::new("buyer.test");
    let go = Arc::new(tokio::sync::Notify::new());
    let answer = r#"{"feedback_form_url":"https://platform.test/forms/hooked"}"#;
    let hook = Recorder::start(
        "/hook",
        Script::RespondWhen(go.clone(), vec![(200, answer.into())]),
    )
    .await;
    let buyer = ScriptedBuyer::start().await;
    let (url, hook_url) = (redis.url(), format!("{}/hook", hook.base));
    let seller = Seller::start(&store, "seller", vec![bap.peer()], move |s| {
        s.store.redis_url = url;
        s.seller.webhook_url = hook_url;
        s.seller.webhook_secret = SECRET.into();
        s.seller.webhook_timeout_ms = 5_000;
        s.seller.on_rating = ondc_rating::config::OnRatingMode::Platform;
    })
    .await;
    let (s, ack) = seller.rated_by(&bap, &buyer.bap_uri(), "m-hook-away").await;
    assert_eq!(s, 200, "{ack}");
    hook.wait_for(1).await;

    // The webhook answers while Redis is down; it comes back 1.5 s later.
    redis.down();
    go.notify_one();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    redis.up();
    let mut got = serde_json::Value::Null;
    for _ in 0..100 {
        let (status, body) = seller.received("buyer.test", "m-hook-away").await;
        if status == 200 && body["rating"]["webhook"]["status"] == "delivered" {
            got = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got["rating"]["webhook"]["status"], "delivered", "{got}");
    assert_eq!(got["rating"]["verdict"], "accepted", "{got}");
    assert_eq!(got["rating"]["onRating"], "awaiting", "{got}");
    let (status, got) = seller.answer("buyer.test", "m-hook-away", "{}").await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        got["rating"]["feedbackForm"]["form"]["url"], "https://platform.test/forms/hooked",
        "{got}"
    );
    let sent = buyer.wait_for(1).await;
    let on_rating: serde_json::Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(
        on_rating["message"]["feedback_form"]["form"]["url"],
        "https://platform.test/forms/hooked"
    );
}

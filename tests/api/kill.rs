//! SIGKILL while a buyer request waits for its callback: nothing the adapter had sent is lost.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;
use crate::shared_stores;

/// A `serve` process (both roles, default config) trusting `peer`, with extra environment.
struct Served {
    child: Child,
    base: String,
}

impl Served {
    async fn start(
        dir: &std::path::Path,
        port: u16,
        peer: &Identity,
        env: &[(&str, String)],
    ) -> Self {
        Self::start_as(dir, port, peer, env, false).await
    }

    /// [`Served::start`]; with `past_file_limit`, the process ignores SIGXFSZ, so that a write
    /// past its file size limit (`prlimit --fsize`) fails with EFBIG, as on a full disk, instead
    /// of killing it.
    async fn start_as(
        dir: &std::path::Path,
        port: u16,
        peer: &Identity,
        env: &[(&str, String)],
        past_file_limit: bool,
    ) -> Self {
        let default = std::fs::read_to_string(format!(
            "{}/config/default.toml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let p = peer.peer();
        let config = dir.join("adapter.toml");
        std::fs::write(
            &config,
            format!(
                "{default}\n[[peers]]\nsubscriber_id = \"{}\"\nunique_key_id = \"{}\"\nsigning_public_key = \"{}\"\n",
                p.subscriber_id, p.unique_key_id, p.signing_public_key
            ),
        )
        .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let bin = env!("CARGO_BIN_EXE_ondc-rating");
        let mut cmd = if past_file_limit {
            let mut sh = Command::new("sh");
            sh.args(["-c", "trap '' XFSZ; exec \"$0\" \"$@\"", bin]);
            sh
        } else {
            Command::new(bin)
        };
        cmd.args(["serve", "--config", config.to_str().unwrap()])
            .env("ONDC_RATING__SERVER__BIND", format!("127.0.0.1:{port}"))
            .env("ONDC_RATING__BUYER__BAP_URI", format!("{base}/bap"))
            .env("ONDC_RATING__SELLER__BPP_URI", format!("{base}/bpp"))
            .env("ONDC_RATING__BUYER__CALLBACK_WAIT_MS", "20000")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        // Owned at once, so the process is killed and reaped (Drop) on every path.
        let served = Self {
            child: cmd.spawn().unwrap(),
            base,
        };
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if http
                .get(format!("{}/healthz", served.base))
                .send()
                .await
                .is_ok()
            {
                return served;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("adapter did not come up");
    }

    /// Sends SIGTERM (a graceful stop) and returns once the process has exited (bounded).
    async fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal("-TERM");
        for _ in 0..400 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("still running 20 s after SIGTERM");
    }

    fn kill9(&mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }

    fn signal(&self, which: &str) {
        let ok = Command::new("kill")
            .args([which, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {which}");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const TOKEN_SECRET: &str = "dev-only-hs256-secret-change-me";

/// A free loopback port, and the environment of a `serve` process keeping its state in an
/// embedded store file in `dir`.
fn embedded_in(dir: &std::path::Path) -> (u16, Vec<(&'static str, String)>) {
    let (l, port) = bind();
    drop(l);
    let env = vec![
        ("ONDC_RATING__STORE__BACKEND", "embedded".to_owned()),
        (
            "ONDC_RATING__STORE__PATH",
            dir.join("s.redb").display().to_string(),
        ),
    ];
    (port, env)
}

async fn put_order(base: &str, seller: &ScriptedSeller) {
    let order = json!({"userId": "u1", "state": "Completed", "domain": "ONDC:RET11", "city": "std:080",
        "transactionId": "t-kill", "bppId": seller.identity.id, "bppUri": seller.bpp_uri()});
    let r = reqwest::Client::new()
        .put(format!("{base}/internal/orders/O-1"))
        .bearer_auth("dev-only-internal-token")
        .json(&order)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Starts a rating that will wait, returns the /rating the seller got once it got it.
async fn rating_in_flight(base: &str, seller: &ScriptedSeller) -> Value {
    let (base, token) = (
        base.to_owned(),
        ondc_rating::bap::auth::mint_hs256(TOKEN_SECRET, "u1", now(), 600),
    );
    tokio::spawn(async move {
        let _ = reqwest::Client::new()
            .post(format!("{base}/ret11/rating"))
            .bearer_auth(token)
            .json(&json!({"orderId": "O-1", "orderRating": 4}))
            .send()
            .await;
    });
    let sent = seller.recorder.wait_for(1).await;
    serde_json::from_slice(&sent[0].body).unwrap()
}

fn callback_for(rating: &Value) -> Vec<u8> {
    let mut ctx = rating["context"].clone();
    ctx["action"] = json!("on_rating");
    ctx["timestamp"] = json!(ondc_rating::clock::ondc_timestamp(chrono::Utc::now()));
    serde_json::to_vec(&json!({"context": ctx, "message": {"feedback_ack": true, "rating_ack": true,
        "feedback_form": {"form": {"url": "https://seller.test/f", "mime_type": "text/html", "data": "d"}}}}))
    .unwrap()
}

async fn status_of(base: &str) -> (u16, Value) {
    let token = ondc_rating::bap::auth::mint_hs256(TOKEN_SECRET, "u1", now(), 600);
    let r = reqwest::Client::new()
        .get(format!("{base}/ret11/orders/O-1/rating"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_restart_after_sigkill_recovers_the_waiting_rating() {
    let seller = ScriptedSeller::start(Script::AckSilently).await;
    let dir = tempfile::tempdir().unwrap();
    let (port, env) = embedded_in(dir.path());
    let mut first = Served::start(dir.path(), port, &seller.identity, &env).await;
    put_order(&first.base, &seller).await;
    let rating = rating_in_flight(&first.base, &seller).await;
    // The ACK is recorded `buyer.acknowledged_write_delay_ms` (1 s) after it arrives when no
    // callback comes first; wait for it before the kill.
    let mut status = Value::Null;
    for _ in 0..250 {
        status = status_of(&first.base).await.1["data"]["status"].clone();
        if status == "acknowledged" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, "acknowledged");
    first.kill9();

    let second = Served::start(dir.path(), port, &seller.identity, &env).await;
    let (code, got) = status_of(&second.base).await;
    assert_eq!(
        (code, got["data"]["status"].as_str()),
        (200, Some("acknowledged")),
        "{got}"
    );
    let http = reqwest::Client::new();
    let (s, _) = post_signed(
        &http,
        &format!("{}/bap/on_rating", second.base),
        &seller.identity,
        &callback_for(&rating),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        status_of(&second.base).await.1["data"]["status"],
        "completed"
    );
}

shared_stores!(another_instance_completes_what_a_killed_one_had_sent);

async fn another_instance_completes_what_a_killed_one_had_sent(backend: Backend) {
    let seller = ScriptedSeller::start(Script::AckSilently).await;
    let store = StoreFixture::new(backend);
    let shared = store.settings("buyer");
    let dir = tempfile::tempdir().unwrap();
    let (l, port) = bind();
    drop(l);
    let env = [
        ("ONDC_RATING__STORE__BACKEND", "redis".to_owned()),
        ("REDIS_URL", shared.redis_url.clone()),
        (
            "ONDC_RATING__STORE__REDIS_CLUSTER_NODES",
            shared.redis_cluster_nodes.join(","),
        ),
        ("ONDC_RATING__STORE__KEY_PREFIX", shared.key_prefix.clone()),
    ];
    let mut killed = Served::start(dir.path(), port, &seller.identity, &env).await;
    put_order(&killed.base, &seller).await;
    let rating = rating_in_flight(&killed.base, &seller).await;
    for _ in 0..250 {
        if status_of(&killed.base).await.1["data"]["status"] == "acknowledged" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    killed.kill9();

    // The seller's callback lands on another instance sharing the Redis keyspace.
    let (l2, port2) = bind();
    drop(l2);
    let other = Served::start(dir.path(), port2, &seller.identity, &env).await;
    let http = reqwest::Client::new();
    let (s, body) = post_signed(
        &http,
        &format!("{}/bap/on_rating", other.base),
        &seller.identity,
        &callback_for(&rating),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let (code, got) = status_of(&other.base).await;
    assert_eq!(
        (code, got["data"]["status"].as_str()),
        (200, Some("completed")),
        "{got}"
    );
}

/// What the seller platform reads of a received rating at a `serve` process (default token).
async fn received_at(base: &str, message_id: &str) -> Value {
    let r = reqwest::Client::new()
        .get(format!(
            "{base}/internal/seller/ratings/buyer.test/{message_id}"
        ))
        .bearer_auth("dev-only-internal-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["rating"].clone()
}

async fn answer_at(base: &str, message_id: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!(
            "{base}/internal/seller/ratings/buyer.test/{message_id}/on_rating"
        ))
        .bearer_auth("dev-only-internal-token")
        .body("{}")
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// How many received ratings' owed work the process at `base` took up from a stopped one.
async fn taken_up(base: &str) -> f64 {
    sample(&metrics(base).await, "ondc_rating_owed_taken_up_total").unwrap()
}

/// The ratings the process at `base` took up and that wait for a turn.
async fn waiting(base: &str) -> f64 {
    sample(&metrics(base).await, "ondc_rating_owed_waiting").unwrap()
}

/// A webhook that takes every hand-off and never answers, recording each.
async fn silent_webhook() -> Recorder {
    Recorder::start(
        "/hook",
        Script::AckWhen(std::sync::Arc::new(tokio::sync::Notify::new())),
    )
    .await
}

/// Polls the received rating at `base` until `done` holds (bounded), and returns it.
async fn received_until(base: &str, message_id: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        let rec = received_at(base, message_id).await;
        if done(&rec) {
            return rec;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{message_id} never settled: {}",
        received_at(base, message_id).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_held_rating_whose_webhook_a_sigkill_cut_short_is_handed_over_again() {
    const SECRET: &str = "kill-test-webhook-secret";
    let bap = Identity::new("buyer.test");
    let buyer = ScriptedBuyer::start().await;
    let hook = silent_webhook().await;
    let dir = tempfile::tempdir().unwrap();
    let (port, mut env) = embedded_in(dir.path());
    env.extend([
        ("ONDC_RATING__SELLER__ON_RATING", "platform".to_owned()),
        (
            "ONDC_RATING__SELLER__WEBHOOK_URL",
            format!("{}/hook", hook.base),
        ),
        ("ONDC_RATING__SELLER__WEBHOOK_SECRET", SECRET.to_owned()),
        ("ONDC_RATING__SELLER__WEBHOOK_TIMEOUT_MS", "1500".to_owned()),
    ]);
    let mut first = Served::start(dir.path(), port, &bap, &env).await;
    let body = rating_body_at(
        &bap,
        &buyer.bap_uri(),
        "ondc-rating.localhost",
        &format!("{}/bpp", first.base),
        "m-k1",
        chrono::Utc::now(),
    );
    let http = reqwest::Client::new();
    let (s, ack) = post_signed(&http, &format!("{}/bpp/rating", first.base), &bap, &body).await;
    assert_eq!(s, 200, "{ack}");
    let handed = hook.wait_for(1).await;
    let rec = received_at(&first.base, "m-k1").await;
    assert_eq!(
        (&rec["verdict"], &rec["onRating"]),
        (&json!("pending"), &json!("awaiting"))
    );
    // While the webhook may still answer, the platform is told to retry.
    let (s, got) = answer_at(&first.base, "m-k1").await;
    assert_eq!(
        (s, got["error"]["code"].as_str()),
        (503, Some("too_busy")),
        "{got}"
    );
    first.kill9();

    // The restarted process hands the rating over again, under the same idempotency key, and
    // the platform's answer waits for that hand-off (its whole budget, from the restart).
    let second = Served::start(dir.path(), port, &bap, &env).await;
    let handed_again = hook.wait_for(2).await;
    assert_eq!(handed_again.len(), 2);
    let (s, got) = answer_at(&second.base, "m-k1").await;
    assert_eq!(
        (s, got["error"]["code"].as_str()),
        (503, Some("too_busy")),
        "{got}"
    );
    let key = "buyer.test|m-k1";
    let once = check_signed_webhook(&handed[0], SECRET, key);
    assert_eq!(check_signed_webhook(&handed_again[1], SECRET, key), once);
    assert_eq!(once["message_id"], "m-k1", "{once}");
    // Unanswered again: the configured form settles the verdict, and the rating stays held.
    let rec = received_until(&second.base, "m-k1", |r| r["verdict"] != "pending").await;
    assert_eq!(
        (&rec["verdict"], &rec["onRating"]),
        (&json!("accepted"), &json!("awaiting")),
        "{rec}"
    );
    assert!(buyer.requests().is_empty(), "held for the platform");
    let (s, got) = answer_at(&second.base, "m-k1").await;
    assert_eq!(s, 200, "{got}");
    assert_eq!(
        (&got["rating"]["verdict"], &got["rating"]["onRating"]),
        (&json!("accepted"), &json!("sent")),
        "{got}"
    );
    let sent = buyer.recorder.wait_for(1).await;
    assert_eq!(sent.len(), 1);
    let on_rating: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(on_rating["context"]["message_id"], "m-k1");
    assert_eq!(
        on_rating["message"]["feedback_form"]["form"]["url"], "https://seller.example/feedback/O-1",
        "the configured form: {on_rating}"
    );
    assert_eq!(received_at(&second.base, "m-k1").await, got["rating"]);
    assert_eq!(hook.requests().len(), 2, "handed over once per process");
}

/// Signs and posts `message_id`, stamped `at`, to the seller side at `base`; asserts the ACK.
async fn rate_at(
    base: &str,
    bap: &Identity,
    buyer: &ScriptedBuyer,
    message_id: &str,
    at: chrono::DateTime<chrono::Utc>,
) {
    let body = rating_body_at(
        bap,
        &buyer.bap_uri(),
        "ondc-rating.localhost",
        &format!("{base}/bpp"),
        message_id,
        at,
    );
    let http = reqwest::Client::new();
    let (s, ack) = post_signed(&http, &format!("{base}/bpp/rating"), bap, &body).await;
    assert_eq!(s, 200, "{ack}");
}

fn message_id_of(c: &Captured) -> String {
    let v: Value = serde_json::from_slice(&c.body).unwrap();
    v["context"]["message_id"].as_str().unwrap().to_owned()
}

/// A seller side on the embedded store killed while the buyer side held the ACK of the
/// /on_rating it owed for `message_id` (stamped `at`); `go` releases one held answer.
struct KilledOwing {
    bap: Identity,
    go: std::sync::Arc<tokio::sync::Notify>,
    buyer: ScriptedBuyer,
    dir: tempfile::TempDir,
    port: u16,
    env: Vec<(&'static str, String)>,
    /// The /on_rating the killed process sent.
    cut: Captured,
}

impl KilledOwing {
    async fn start(message_id: &str, at: chrono::DateTime<chrono::Utc>) -> Self {
        let bap = Identity::new("buyer.test");
        let go = std::sync::Arc::new(tokio::sync::Notify::new());
        let buyer = ScriptedBuyer::with(Script::AckWhen(go.clone())).await;
        let dir = tempfile::tempdir().unwrap();
        let (port, env) = embedded_in(dir.path());
        let mut first = Served::start(dir.path(), port, &bap, &env).await;
        rate_at(&first.base, &bap, &buyer, message_id, at).await;
        let cut = buyer.wait_for(1).await.remove(0);
        let rec = received_at(&first.base, message_id).await;
        assert_eq!(rec["onRating"], "pending", "{rec}");
        first.kill9();
        go.notify_one(); // the held request's answer goes nowhere
        Self {
            bap,
            go,
            buyer,
            dir,
            port,
            env,
            cut,
        }
    }

    async fn serve(&self) -> Served {
        Served::start(self.dir.path(), self.port, &self.bap, &self.env).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_an_on_rating_a_sigkill_cut_short_is_sent_after_the_restart() {
    let killed = KilledOwing::start("m-r1", chrono::Utc::now()).await;
    let (go, buyer) = (&killed.go, &killed.buyer);
    let mut second = killed.serve().await;
    let sent = buyer.wait_for(2).await;
    assert_eq!(message_id_of(&sent[1]), "m-r1");
    assert_eq!(taken_up(&second.base).await, 1.0);
    let (again, before): (Value, Value) = (
        serde_json::from_slice(&sent[1].body).unwrap(),
        serde_json::from_slice(&killed.cut.body).unwrap(),
    );
    assert_eq!(again["message"], before["message"], "the same answer");
    assert_eq!(again["context"]["transaction_id"], "txn-1");
    assert!(sent[1].authorization.is_some(), "signed");
    go.notify_one();
    let rec = received_until(&second.base, "m-r1", |r| r["onRating"] != "pending").await;
    assert_eq!(rec["onRating"], "sent", "{rec}");

    // Delivered, it is owed no more: a third process sends only what it is asked for since.
    second.kill9();
    let third = killed.serve().await;
    assert_eq!(taken_up(&third.base).await, 0.0);
    go.notify_one();
    rate_at(&third.base, &killed.bap, buyer, "m-r2", chrono::Utc::now()).await;
    let sent = buyer.wait_for(3).await;
    assert_eq!(message_id_of(&sent[2]), "m-r2");
    let rec = received_until(&third.base, "m-r2", |r| r["onRating"] != "pending").await;
    assert_eq!(rec["onRating"], "sent", "{rec}");
    let ids: Vec<String> = buyer.requests().iter().map(message_id_of).collect();
    assert_eq!(ids, ["m-r1", "m-r1", "m-r2"]);
}

/// A backlog of owed /on_ratings (their buyer was down when the seller side was killed) goes to
/// the buyer `seller.resume_concurrency` at a time after the restart. A graceful stop waits for
/// the ones under way only; the rest stay owed, and the next process sends them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_backlog_of_owed_work_is_taken_up_a_few_ratings_at_a_time() {
    let bap = Identity::new("buyer.test");
    let (buyer_listener, buyer_port) = bind();
    drop(buyer_listener);
    let bap_uri = format!("http://127.0.0.1:{buyer_port}/bap");
    let dir = tempfile::tempdir().unwrap();
    let (port, mut env) = embedded_in(dir.path());
    env.extend([
        ("ONDC_RATING__SELLER__RESUME_CONCURRENCY", "2".to_owned()),
        // One attempt outlasts the test: a turn frees only when the buyer answers.
        ("ONDC_RATING__SELLER__SEND_TIMEOUT_MS", "25000".to_owned()),
    ]);
    let mut first = Served::start(dir.path(), port, &bap, &env).await;
    let ids: Vec<String> = (1..=5).map(|n| format!("m-b{n}")).collect();
    let http = reqwest::Client::new();
    for id in &ids {
        let body = rating_body_at(
            &bap,
            &bap_uri,
            "ondc-rating.localhost",
            &format!("{}/bpp", first.base),
            id,
            chrono::Utc::now(),
        );
        let (s, ack) = post_signed(&http, &format!("{}/bpp/rating", first.base), &bap, &body).await;
        assert_eq!(s, 200, "{ack}");
    }
    for id in &ids {
        assert_eq!(received_at(&first.base, id).await["onRating"], "pending");
    }
    first.kill9();

    // The buyer is back, answering each /on_rating only when told to.
    let go = std::sync::Arc::new(tokio::sync::Notify::new());
    let listener = std::net::TcpListener::bind(("127.0.0.1", buyer_port)).unwrap();
    let buyer = ScriptedBuyer::on(listener, Script::AckWhen(go.clone())).await;
    let mut second = Served::start(dir.path(), port, &bap, &env).await;
    buyer.wait_for(2).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        buyer.requests().len(),
        2,
        "two taken up at once, the rest waiting"
    );
    assert_eq!(waiting(&second.base).await, 3.0);
    // An answer frees a turn for one more.
    go.notify_one();
    buyer.wait_for(3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(buyer.requests().len(), 3);
    assert_eq!(waiting(&second.base).await, 2.0);

    // Stopped, the process finishes the two under way and starts no more.
    let stopping = tokio::spawn(async move {
        let status = second.terminate().await;
        (second, status)
    });
    for _ in 0..200 {
        if http
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_err()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // The stop signal reached the whole process, not only the server.
    tokio::time::sleep(Duration::from_millis(200)).await;
    go.notify_one();
    go.notify_one();
    let (_second, status) = stopping.await.unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(buyer.requests().len(), 3, "no more started while stopping");

    // The next process sends the two left.
    let third = Served::start(dir.path(), port, &bap, &env).await;
    buyer.wait_for(5).await;
    go.notify_one();
    go.notify_one();
    let mut sent: Vec<String> = buyer.requests().iter().map(message_id_of).collect();
    sent.sort();
    assert_eq!(sent, ids, "each once");
    for id in &ids {
        let rec = received_until(&third.base, id, |r| r["onRating"] != "pending").await;
        assert_eq!(rec["onRating"], "sent", "{rec}");
    }
    assert_eq!(taken_up(&third.base).await, 2.0);
    assert_eq!(waiting(&third.base).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_an_on_rating_whose_ttl_passed_while_stopped_is_recorded_failed_not_sent() {
    // Stamped 28 s ago: two seconds of its 30 s ttl are left.
    let at = chrono::Utc::now() - chrono::Duration::seconds(28);
    let killed = KilledOwing::start("m-t1", at).await;
    let left = at + chrono::Duration::milliseconds(30_500) - chrono::Utc::now();
    tokio::time::sleep(left.to_std().unwrap_or_default()).await;

    let second = killed.serve().await;
    let rec = received_until(&second.base, "m-t1", |r| r["onRating"] != "pending").await;
    assert_eq!(rec["onRating"], "failed", "{rec}");
    assert!(
        rec["lastError"]
            .as_str()
            .unwrap_or("")
            .contains("ttl passed"),
        "{rec}"
    );
    assert_eq!(
        killed.buyer.requests().len(),
        1,
        "nothing sent after the ttl"
    );

    // The buyer, without its answer, sends the rating again: answered now, within the new ttl.
    killed.go.notify_one();
    rate_at(
        &second.base,
        &killed.bap,
        &killed.buyer,
        "m-t1",
        chrono::Utc::now(),
    )
    .await;
    let sent = killed.buyer.wait_for(2).await;
    assert_eq!(message_id_of(&sent[1]), "m-t1");
    let rec = received_until(&second.base, "m-t1", |r| r["onRating"] == "sent").await;
    assert_eq!(rec["lastError"], Value::Null, "{rec}");
}

shared_stores!(owed_work_of_a_killed_instance_is_taken_over);

/// Two seller instances share a Redis keyspace. While the one that took a /rating lives, the
/// other leaves its /on_rating alone; once it is killed, the other sends it.
async fn owed_work_of_a_killed_instance_is_taken_over(backend: Backend) {
    let bap = Identity::new("buyer.test");
    let go = std::sync::Arc::new(tokio::sync::Notify::new());
    let buyer = ScriptedBuyer::with(Script::AckWhen(go.clone())).await;
    let store = StoreFixture::new(backend);
    let dir = tempfile::tempdir().unwrap();
    let mut env = shared_redis(&store);
    // One attempt outlasts the wait below: a second request can only be the other's.
    env.push(("ONDC_RATING__SELLER__SEND_TIMEOUT_MS", "25000".to_owned()));
    let (port_a, port_b) = (dead_port(), dead_port());
    let mut taker = Served::start(dir.path(), port_a, &bap, &env).await;
    let other = Served::start(dir.path(), port_b, &bap, &env).await;
    rate_at(&taker.base, &bap, &buyer, "m-x1", chrono::Utc::now()).await;
    let cut = buyer.wait_for(1).await;
    // Longer than an instance counts as alive without a heartbeat, and than two looks for work
    // to take over: the living instance keeps its work.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(buyer.requests().len(), 1, "taken from a living instance");
    assert_eq!(
        received_at(&other.base, "m-x1").await["onRating"],
        "pending"
    );
    taker.kill9();
    go.notify_one(); // the held request's answer goes nowhere

    let sent = buyer
        .recorder
        .wait_for_within(2, Duration::from_secs(20))
        .await;
    assert_eq!(message_id_of(&sent[1]), "m-x1");
    assert_eq!(taken_up(&other.base).await, 1.0);
    let (again, before): (Value, Value) = (
        serde_json::from_slice(&sent[1].body).unwrap(),
        serde_json::from_slice(&cut[0].body).unwrap(),
    );
    assert_eq!(again["message"], before["message"], "the same answer");
    go.notify_one();
    let rec = received_until(&other.base, "m-x1", |r| r["onRating"] != "pending").await;
    assert_eq!(rec["onRating"], "sent", "{rec}");
    // Settled, it is nobody's to take over again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(buyer.requests().len(), 2);
}

/// The environment of `serve` processes sharing `store`'s Redis keyspace.
fn shared_redis(store: &StoreFixture) -> Vec<(&'static str, String)> {
    let shared = store.settings("seller");
    vec![
        ("ONDC_RATING__STORE__BACKEND", "redis".to_owned()),
        ("REDIS_URL", shared.redis_url.clone()),
        (
            "ONDC_RATING__STORE__REDIS_CLUSTER_NODES",
            shared.redis_cluster_nodes.join(","),
        ),
        ("ONDC_RATING__STORE__KEY_PREFIX", shared.key_prefix.clone()),
    ]
}

/// A held rating's hand-off cut short by a kill is made again by the instance that takes it
/// over; meanwhile the platform's answer, through that instance or a third, is told to retry,
/// and once the hand-off has ended it is sent once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_held_rating_whose_webhook_a_kill_cut_short_is_handed_over_by_another() {
    const SECRET: &str = "takeover-webhook-secret";
    let bap = Identity::new("buyer.test");
    let buyer = ScriptedBuyer::start().await;
    let hook = silent_webhook().await;
    let store = StoreFixture::new(Backend::Redis);
    let dir = tempfile::tempdir().unwrap();
    let mut env = shared_redis(&store);
    env.extend([
        ("ONDC_RATING__SELLER__ON_RATING", "platform".to_owned()),
        (
            "ONDC_RATING__SELLER__WEBHOOK_URL",
            format!("{}/hook", hook.base),
        ),
        ("ONDC_RATING__SELLER__WEBHOOK_SECRET", SECRET.to_owned()),
        ("ONDC_RATING__SELLER__WEBHOOK_TIMEOUT_MS", "4000".to_owned()),
    ]);
    let mut killed = Served::start(dir.path(), dead_port(), &bap, &env).await;
    let taker = Served::start(dir.path(), dead_port(), &bap, &env).await;
    let third = Served::start(dir.path(), dead_port(), &bap, &env).await;
    rate_at(&killed.base, &bap, &buyer, "m-h1", chrono::Utc::now()).await;
    hook.wait_for(1).await;
    killed.kill9();

    // The third instance was started after the taker: the taker looks first or both race for
    // it; either way one of them hands it over again, once.
    let handed = hook.wait_for_within(2, Duration::from_secs(10)).await;
    assert_eq!(handed.len(), 2, "handed over again");
    let key = "buyer.test|m-h1";
    assert_eq!(
        check_signed_webhook(&handed[1], SECRET, key),
        check_signed_webhook(&handed[0], SECRET, key)
    );
    for base in [&taker.base, &third.base] {
        let (s, got) = answer_at(base, "m-h1").await;
        assert_eq!(
            (s, got["error"]["code"].as_str()),
            (503, Some("too_busy")),
            "during the hand-off: {got}"
        );
    }
    let rec = received_until(&third.base, "m-h1", |r| r["verdict"] != "pending").await;
    assert_eq!(
        (&rec["verdict"], &rec["onRating"]),
        (&json!("accepted"), &json!("awaiting")),
        "{rec}"
    );
    let (s, got) = answer_at(&third.base, "m-h1").await;
    assert_eq!(s, 200, "{got}");
    assert_eq!(got["rating"]["onRating"], "sent", "{got}");
    let sent = buyer.recorder.wait_for(1).await;
    assert_eq!(message_id_of(&sent[0]), "m-h1");
    assert_eq!(received_at(&taker.base, "m-h1").await, got["rating"]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(hook.requests().len(), 2, "handed over once more, not twice");
    assert_eq!(buyer.requests().len(), 1);
}

/// `PUT /internal/orders/O-{n}`: its status and body.
async fn put_order_n(base: &str, n: usize) -> (u16, Value) {
    let order = json!({"userId": "u1", "state": "Completed", "domain": "ONDC:RET11", "city": "std:080",
        "transactionId": format!("t-{n}"), "bppId": "seller.test", "bppUri": "http://127.0.0.1:9/bpp"});
    let r = reqwest::Client::new()
        .put(format!("{base}/internal/orders/O-{n}"))
        .bearer_auth("dev-only-internal-token")
        .json(&order)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// `GET /internal/orders/O-{n}`'s status.
async fn order_status(base: &str, n: usize) -> u16 {
    reqwest::Client::new()
        .get(format!("{base}/internal/orders/O-{n}"))
        .bearer_auth("dev-only-internal-token")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Sets the soft file size limit of process `pid` (bytes, or `unlimited`), its hard limit left
/// unlimited (so that it may be raised again without privileges).
fn limit_file_size(pid: u32, limit: &str) {
    let ok = Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--fsize={limit}:unlimited"),
        ])
        .status()
        .unwrap()
        .success();
    assert!(ok, "prlimit --fsize={limit}");
}

/// The embedded store's file cannot be written (the process's file size limit set below the
/// file's size: writes past it fail with EFBIG, as they would with ENOSPC on a full disk): the
/// write gets 503 `store_unavailable` and changes nothing. redb then refuses every write until
/// the file is opened again; once the file can be written again the same process takes writes
/// by itself, no restart, with everything written before the failure still there; and all of it
/// is on disk for the next process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_store_whose_disk_filled_takes_writes_again_once_it_has_room() {
    let dir = tempfile::tempdir().unwrap();
    let peer = Identity::new("buyer.test");
    let (port, env) = embedded_in(dir.path());
    let mut served = Served::start_as(dir.path(), port, &peer, &env, true).await;
    let base = served.base.clone();
    assert_eq!(put_order_n(&base, 0).await.0, 200);
    let size = std::fs::metadata(dir.path().join("s.redb")).unwrap().len();
    assert!(size > 64 * 1024, "{size}");
    limit_file_size(served.child.id(), "65536");

    let mut failed = None;
    for n in 1..=1_000 {
        let (status, body) = put_order_n(&base, n).await;
        if status != 200 {
            assert_eq!(
                (status, &body["error"]["code"]),
                (503, &json!("store_unavailable")),
                "{body}"
            );
            failed = Some(n);
            break;
        }
    }
    let failed = failed.expect("every write went through");

    limit_file_size(served.child.id(), "unlimited");
    let mut back = false;
    for _ in 0..100 {
        if put_order_n(&base, failed + 1).await.0 == 200 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "no write was taken after the file could grow again");
    assert_eq!(order_status(&base, 0).await, 200);
    assert_eq!(order_status(&base, failed - 1).await, 200);
    assert_eq!(
        order_status(&base, failed).await,
        404,
        "a failed write changed nothing"
    );
    assert_eq!(put_order_n(&base, failed).await.0, 200);

    assert!(served.terminate().await.success());
    let served = Served::start(dir.path(), port, &peer, &env).await;
    for n in [0, failed - 1, failed, failed + 1] {
        assert_eq!(order_status(&served.base, n).await, 200, "O-{n}");
    }
}

/// Polls `/readyz` at `base` until its status is `status` (bounded); false if it never was.
async fn readiness_becomes(base: &str, status: u16) -> bool {
    for _ in 0..200 {
        let got = reqwest::get(format!("{base}/readyz")).await.unwrap();
        if got.status().as_u16() == status {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The seller side's record that its /on_rating went out (written behind the request, nobody
/// waiting for it) fails with the file (past the process's file size limit, as on a full disk),
/// and so does the next one, made while the file is being opened again. Once the file can be
/// written again the same process records both, no restart and no second /on_rating; the
/// ratings owe nothing more, so the next process sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_delivery_records_the_full_disk_refused_land_once_it_has_room() {
    let bap = Identity::new("buyer.test");
    let go = std::sync::Arc::new(tokio::sync::Notify::new());
    let buyer = ScriptedBuyer::with(Script::AckWhen(go.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let (port, env) = embedded_in(dir.path());
    let mut served = Served::start_as(dir.path(), port, &bap, &env, true).await;
    for (n, id) in ["m-f1", "m-f2"].into_iter().enumerate() {
        rate_at(&served.base, &bap, &buyer, id, chrono::Utc::now()).await;
        buyer.wait_for(n + 1).await;
        let rec = received_at(&served.base, id).await;
        assert_eq!(rec["onRating"], "pending", "{rec}");
    }

    // Every page past the first is out of reach: the first record's commit fails, and the
    // store is down (readiness 503) while its file cannot be opened again. The second record
    // comes meanwhile.
    limit_file_size(served.child.id(), "4096");
    go.notify_one();
    assert!(
        readiness_becomes(&served.base, 503).await,
        "the delivery record's write did not fail"
    );
    go.notify_one();
    tokio::time::sleep(Duration::from_millis(300)).await;

    limit_file_size(served.child.id(), "unlimited");
    assert!(
        readiness_becomes(&served.base, 200).await,
        "the store never came back"
    );
    for id in ["m-f1", "m-f2"] {
        let rec = received_until(&served.base, id, |r| r["onRating"] != "pending").await;
        assert_eq!(rec["onRating"], "sent", "{rec}");
    }
    assert_eq!(buyer.requests().len(), 2, "one /on_rating each");

    assert!(served.terminate().await.success());
    let next = Served::start(dir.path(), port, &bap, &env).await;
    assert_eq!(taken_up(&next.base).await, 0.0, "owed nothing");
    for id in ["m-f1", "m-f2"] {
        assert_eq!(received_at(&next.base, id).await["onRating"], "sent");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(buyer.requests().len(), 2, "nothing sent again");
}

const NOTIFY_SECRET: &str = "notify-secret-of-the-kill-test";

/// A `serve` process on an embedded store in `dir` notifying `hook`, and the message_id of the
/// listing feedback it was just given (its event on the way to `hook`).
struct Notifying {
    served: Served,
    env: Vec<(&'static str, String)>,
    port: u16,
    seller: ScriptedSeller,
    message_id: String,
}

impl Notifying {
    async fn start(dir: &std::path::Path, hook: &Recorder) -> Self {
        let seller = ScriptedSeller::start(Script::AckSilently).await;
        let (port, mut env) = embedded_in(dir);
        env.push((
            "ONDC_RATING__BUYER__NOTIFY_WEBHOOK_URL",
            format!("{}/events", hook.base),
        ));
        env.push((
            "ONDC_RATING__BUYER__NOTIFY_WEBHOOK_SECRET",
            NOTIFY_SECRET.into(),
        ));
        let served = Served::start(dir, port, &seller.identity, &env).await;
        put_order(&served.base, &seller).await;
        let token = ondc_rating::bap::auth::mint_hs256(TOKEN_SECRET, "u1", now(), 600);
        let r = reqwest::Client::new()
            .post(format!("{}/v2/listings/O-1/feedback", served.base))
            .bearer_auth(token)
            .json(&json!({"Rating": "Positive", "Feedback": "On time"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let answer: Value = r.json().await.unwrap();
        let message_id = answer["feedback"]["message_id"]
            .as_str()
            .unwrap()
            .to_owned();
        Self {
            served,
            env,
            port,
            seller,
            message_id,
        }
    }

    /// Another process on the same store and port.
    async fn again(&self, dir: &std::path::Path) -> Served {
        Served::start(dir, self.port, &self.seller.identity, &self.env).await
    }
}

/// A feedback event whose webhook request a SIGKILL cut short is sent again by the restarted
/// process, the same event under the same key; delivered, it is not sent by the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_notification_a_sigkill_cut_short_is_sent_after_the_restart() {
    // Each event is answered 2 s after it arrives: the first never is, its sender killed.
    let hook = Recorder::start("/events", Script::AckAfter(2_000)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut killed = Notifying::start(dir.path(), &hook).await;
    let (first, message_id) = (&mut killed.served, killed.message_id.clone());
    let cut = hook.wait_for(1).await.remove(0);
    first.kill9();

    let mut second = killed.again(dir.path()).await;
    let got = hook.wait_for(2).await;
    let key = cut.header("idempotency-key").unwrap().to_owned();
    assert!(key.ends_with(&format!("|{message_id}")), "{key}");
    let events: Vec<Value> = got
        .iter()
        .map(|c| check_signed_webhook(c, NOTIFY_SECRET, &key))
        .collect();
    assert_eq!(events[0], events[1], "the same event");
    assert_eq!(events[1]["event"], "feedback.recorded");
    assert_eq!(events[1]["listing_id"], "O-1");
    assert_eq!(events[1]["message_id"], message_id.as_str());
    // Answered 2 s after it arrived; then it is delivered and no longer kept.
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    assert!(second.terminate().await.success());
    let _third = killed.again(dir.path()).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(hook.requests().len(), 2, "delivered once, not sent again");
}

/// A feedback's notification is kept before the API answers: a SIGKILL the moment the answer
/// arrives does not lose it, and the restarted process sends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_notification_is_kept_before_the_answer() {
    let hook = Recorder::start("/events", Script::AckSilently).await;
    let dir = tempfile::tempdir().unwrap();
    let mut killed = Notifying::start(dir.path(), &hook).await;
    killed.served.kill9();
    let _again = killed.again(dir.path()).await;
    let got = hook.wait_for(1).await;
    let key = got[0].header("idempotency-key").unwrap().to_owned();
    assert!(key.ends_with(&format!("|{}", killed.message_id)), "{key}");
    let event = check_signed_webhook(&got[0], NOTIFY_SECRET, &key);
    assert_eq!(event["event"], "feedback.recorded");
    assert_eq!(event["listing_id"], "O-1");
}

/// A graceful stop (SIGTERM) waits for a notification round under way: its event, answered
/// after the stop began, is delivered and not sent again by the next process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_a_graceful_stop_lets_a_notification_under_way_finish() {
    let hook = Recorder::start("/events", Script::AckAfter(1_500)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut stopped = Notifying::start(dir.path(), &hook).await;
    hook.wait_for(1).await;
    assert!(stopped.served.terminate().await.success());
    let _next = stopped.again(dir.path()).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let got = hook.requests();
    assert_eq!(
        got.len(),
        1,
        "delivered before the stop ended, not sent again"
    );
    let key = got[0].header("idempotency-key").unwrap().to_owned();
    assert!(key.ends_with(&format!("|{}", stopped.message_id)), "{key}");
    check_signed_webhook(&got[0], NOTIFY_SECRET, &key);
}

//! Notifications of recorded v2 feedback: the signed webhook (a recorder of ours) and the email
//! through a real SMTP server process on loopback; neither changes the API's answer.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

const SECRET: &str = "notify-webhook-secret-for-tests";
const FROM: &str = "ratings@buyer.test";
const TO: &str = "support@seller.test";

/// Checks the signature the way the receiver would, and returns the event.
fn check_signed(c: &Captured, message_id: &str) -> Value {
    check_signed_webhook(c, SECRET, &format!("buyer.test|{message_id}"))
}

async fn user_active(b: &Buyer, user: &str) -> (u16, Value) {
    let r = b
        .http
        .put(format!("{}/internal/users/{user}", b.app.base))
        .bearer_auth(INTERNAL)
        .json(&json!({"active": true}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// A real SMTP server process (Python's `smtpd` DebuggingServer) printing every message it
/// takes to a file; killed on drop.
struct SmtpServer {
    child: Child,
    out: std::path::PathBuf,
    addr: String,
    _dir: tempfile::TempDir,
}

impl SmtpServer {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("smtp.out");
        let (listener, port) = bind();
        drop(listener);
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new("python3")
            .args([
                "-u",
                "-W",
                "ignore",
                "-m",
                "smtpd",
                "-n",
                "-c",
                "DebuggingServer",
            ])
            .arg(&addr)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs");
        let server = Self {
            child,
            out,
            addr,
            _dir: dir,
        };
        for _ in 0..250 {
            if tokio::net::TcpStream::connect(&server.addr).await.is_ok() {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the SMTP server did not start on {}", server.addr);
    }

    /// Waits (bounded) until a whole message was printed and returns the output.
    async fn message(&self) -> String {
        let mut text = String::new();
        for _ in 0..250 {
            text = std::fs::read_to_string(&self.out).unwrap_or_default();
            if text.contains("------------ END MESSAGE ------------") {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no message reached the SMTP server:\n{text}");
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_feedback_is_signed_to_the_webhook_and_mailed() {
    // The first attempt fails with 503: the event is retried with the same key.
    let hook = Recorder::start("/events", Script::FailFirst(1, 503)).await;
    let smtp = SmtpServer::start().await;
    let url = format!("{}/events", hook.base);
    let addr = smtp.addr.clone();
    let p = Pair::start_with(Backend::Embedded, move |s| {
        s.buyer.notify_webhook_url = url;
        s.buyer.notify_webhook_secret = SECRET.into();
        s.buyer.notify_smtp = addr;
        s.buyer.notify_email_from = FROM.into();
        s.buyer.notify_email_to = TO.into();
    })
    .await;
    let (status, body) = user_active(&p.buyer, "alice").await;
    assert_eq!(status, 200, "{body}");
    p.order("O-1", "alice").await;

    let r = p
        .buyer
        .http
        .post(format!(
            "{}/v2/feedback/users/alice/orders/O-1/rating",
            p.buyer.app.base
        ))
        .bearer_auth(Buyer::token("backend-service"))
        .json(&json!({"rating_value": "STARS4", "thank_you_note": ".Thanks"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    let got = hook.wait_for(2).await;
    let first: Value = serde_json::from_slice(&got[0].body).unwrap();
    let message_id = first["message_id"].as_str().unwrap().to_owned();
    for c in &got {
        let event = check_signed(c, &message_id);
        assert_eq!(event, first);
    }
    assert_eq!(first["event"], "feedback.recorded");
    assert_eq!(first["api"], "order_feedback");
    assert_eq!(first["order_id"], "O-1");
    assert_eq!(first["user_id"], "alice");
    assert_eq!(first["rating"], "STARS4");
    assert!(first["recorded_at"].as_str().unwrap().ends_with('Z'));
    assert!(first.get("listing_id").is_none());
    // The /rating the seller got is the one the event names.
    let (status, received) = p.seller.received("buyer.test", &message_id).await;
    assert_eq!(status, 200, "{received}");

    let mail = smtp.message().await;
    assert!(mail.contains(&format!("From: <{FROM}>")), "{mail}");
    assert!(mail.contains(&format!("To: <{TO}>")), "{mail}");
    assert!(
        mail.contains("Subject: Feedback recorded: order O-1 rated STARS4"),
        "{mail}"
    );
    assert!(mail.contains("Rating: STARS4"), "{mail}");
    assert!(
        mail.contains(&format!("Message id: {message_id}")),
        "{mail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_feedback_is_signed_to_the_webhook_and_mailed() {
    let hook = Recorder::start("/events", Script::AckSilently).await;
    let smtp = SmtpServer::start().await;
    let url = format!("{}/events", hook.base);
    let addr = smtp.addr.clone();
    let p = Pair::start_with(Backend::Embedded, move |s| {
        s.buyer.notify_webhook_url = url;
        s.buyer.notify_webhook_secret = SECRET.into();
        s.buyer.notify_smtp = addr;
        s.buyer.notify_email_from = FROM.into();
        s.buyer.notify_email_to = TO.into();
    })
    .await;
    p.order("L-1", "alice").await;
    let r = p
        .buyer
        .http
        .post(format!("{}/v2/listings/L-1/feedback", p.buyer.app.base))
        .bearer_auth(Buyer::token("alice"))
        .json(&json!({"Rating": "Negative", "Feedback": "Late"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let answer: Value = r.json().await.unwrap();
    let message_id = answer["feedback"]["message_id"].as_str().unwrap();

    let got = hook.wait_for(1).await;
    let event = check_signed(&got[0], message_id);
    assert_eq!(event["event"], "feedback.recorded");
    assert_eq!(event["api"], "listing_feedback");
    assert_eq!(event["listing_id"], "L-1");
    assert_eq!(event["user_id"], "alice");
    assert_eq!(event["rating"], "Negative");
    assert_eq!(event["message_id"], message_id);
    assert!(event.get("order_id").is_none());

    let mail = smtp.message().await;
    assert!(
        mail.contains("Subject: Feedback recorded: listing L-1 rated Negative"),
        "{mail}"
    );
    assert!(mail.contains("Rating: Negative"), "{mail}");
    assert!(mail.contains(&format!("To: <{TO}>")), "{mail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_notifications_do_not_change_the_answers() {
    let hook = Recorder::start("/events", Script::Respond(500, "down".into())).await;
    // Nothing listens there.
    let (listener, port) = bind();
    drop(listener);
    let url = format!("{}/events", hook.base);
    let p = Pair::start_with(Backend::Embedded, move |s| {
        s.buyer.notify_webhook_url = url;
        s.buyer.notify_webhook_secret = SECRET.into();
        s.buyer.notify_smtp = format!("127.0.0.1:{port}");
        s.buyer.notify_email_from = FROM.into();
        s.buyer.notify_email_to = TO.into();
    })
    .await;
    let (status, body) = user_active(&p.buyer, "alice").await;
    assert_eq!(status, 200, "{body}");
    p.order("O-1", "alice").await;
    p.order("L-1", "bob").await;

    let started = std::time::Instant::now();
    let r = p
        .buyer
        .http
        .post(format!(
            "{}/v2/feedback/users/alice/orders/O-1/rating",
            p.buyer.app.base
        ))
        .bearer_auth(Buyer::token("backend-service"))
        .json(&json!({"rating_value": "STARS1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"success": true}));
    let r = p
        .buyer
        .http
        .post(format!("{}/v2/listings/L-1/feedback", p.buyer.app.base))
        .bearer_auth(Buyer::token("bob"))
        .json(&json!({"Rating": "Neutral"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    // The retries run in the background, not within the answers.
    assert!(started.elapsed() < Duration::from_secs(5));
    // Each event is retried on 500 (two events, more than one attempt each).
    hook.wait_for(4).await;
}

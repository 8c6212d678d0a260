//! What the buyer sees when the seller misbehaves, and that the one-time claim follows the rules:
//! released when /rating never landed, kept when the seller ACKed.

use std::sync::Arc;

use ondc_rating::clock::Clock;
use serde_json::{Value, json};

use crate::both_stores;
use crate::helpers::*;
use crate::shared_stores;

async fn buyer_for(store: &StoreFixture, seller_id: &Identity, wait_ms: u64) -> Buyer {
    Buyer::start(store, "buyer", vec![seller_id.peer()], |s| {
        s.buyer.callback_wait_ms = wait_ms;
    })
    .await
}

/// A buyer side trusting `seller`, waiting `wait_ms` for callbacks, with alice's order O-1 from
/// it.
async fn buyer_with_order(store: &StoreFixture, seller: &ScriptedSeller, wait_ms: u64) -> Buyer {
    let buyer = buyer_for(store, &seller.identity, wait_ms).await;
    let o = order("alice", &seller.identity.id, &seller.bpp_uri());
    assert_eq!(buyer.put_order("O-1", &o).await.0, 200);
    buyer
}

/// Alice rates O-1 five stars: the status and body.
async fn rate_five(buyer: &Buyer) -> (u16, Value) {
    buyer
        .rate("alice", &json!({"orderId": "O-1", "orderRating": 5}))
        .await
}

async fn seller_nack_is_a_502_and_releases_the_claim(backend: Backend) {
    let store = StoreFixture::new(backend);
    let nack = r#"{"message":{"ack":{"status":"NACK"}},"error":{"type":"DOMAIN-ERROR","code":"30018","message":"order not found"}}"#;
    let seller = ScriptedSeller::start(Script::Respond(400, nack.into())).await;
    let buyer = buyer_with_order(&store, &seller, 2_000).await;

    let (status, err) = buyer
        .rate("alice", &json!({"orderId": "O-1", "orderRating": 2}))
        .await;
    assert_eq!(status, 502, "{err}");
    assert_eq!(err["error"]["code"], "seller_rejected");
    assert_eq!(
        err["error"]["sellerError"],
        json!({"type": "DOMAIN-ERROR", "code": "30018", "message": "order not found"})
    );
    // The rating is recorded as failed, with the seller's reason.
    let (_, got) = buyer.rating_of("alice", "O-1").await;
    assert_eq!(got["data"]["status"], "failed");
    assert_eq!(got["data"]["error"]["code"], "30018");

    // Sent once (a NACK is an answer, not a transport error), and the user may try again.
    assert_eq!(seller.requests().len(), 1);
    let (status, _) = buyer
        .rate("alice", &json!({"orderId": "O-1", "orderRating": 3}))
        .await;
    assert_eq!(status, 502);
    let sent: Vec<Value> = seller
        .requests()
        .iter()
        .map(|c| serde_json::from_slice(&c.body).unwrap())
        .collect();
    assert_eq!(sent.len(), 2);
    assert_ne!(
        sent[0]["context"]["message_id"],
        sent[1]["context"]["message_id"]
    );
    assert_eq!(sent[1]["message"]["ratings"][0]["value"], "3");
}
both_stores!(seller_nack_is_a_502_and_releases_the_claim);

async fn unreachable_seller_is_retried_then_502_and_released(backend: Backend) {
    let store = StoreFixture::new(backend);
    let ghost = Identity::new("gone-seller.test");
    let buyer = buyer_for(&store, &ghost, 2_000).await;
    let port = dead_port();
    let o = order("alice", &ghost.id, &format!("http://127.0.0.1:{port}/bpp"));
    assert_eq!(buyer.put_order("O-1", &o).await.0, 200);
    let (status, err) = rate_five(&buyer).await;
    assert_eq!(status, 502, "{err}");
    assert_eq!(err["error"]["code"], "seller_unreachable");
    assert!(
        err["error"].get("sellerError").is_none(),
        "no seller error to report: {err}"
    );
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Connection refused"),
        "{err}"
    );
    assert_eq!(
        buyer.rating_of("alice", "O-1").await.1["data"]["status"],
        "failed"
    );

    // Once the seller is there, the same user can rate the same order.
    let seller = Recorder::start("/bpp/rating", Script::AckSilently).await;
    let mut o2 = o.clone();
    o2["bppUri"] = json!(format!("{}/bpp", seller.base));
    assert_eq!(buyer.put_order("O-1", &o2).await.0, 200);
    let (status, body) = rate_five(&buyer).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(seller.requests().len(), 1);
}
both_stores!(unreachable_seller_is_retried_then_502_and_released);

#[tokio::test]
async fn garbage_from_the_seller_is_a_502_not_a_crash() {
    let store = StoreFixture::new(Backend::Embedded);
    let seller = ScriptedSeller::start(Script::Respond(500, "<html>oops</html>".into())).await;
    let buyer = buyer_with_order(&store, &seller, 2_000).await;
    let (status, err) = rate_five(&buyer).await;
    assert_eq!(status, 502, "{err}");
    assert_eq!(err["error"]["code"], "seller_invalid_response");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("oops"),
        "{err}"
    );
    let (_, got) = buyer.rating_of("alice", "O-1").await;
    assert_eq!(got["data"]["status"], "failed");
    assert!(
        got["data"]["failure"]
            .as_str()
            .unwrap()
            .contains("HTTP 500"),
        "{got}"
    );
}

/// A seller answering the signed /rating with a redirect is not followed to another host: the
/// buyer gets a 502, the rating fails, and the redirect's target receives nothing.
#[tokio::test]
async fn a_redirect_from_the_seller_is_not_followed() {
    let store = StoreFixture::new(Backend::Embedded);
    let elsewhere = ScriptedSeller::start(Script::AckSilently).await;
    let target = format!("{}/rating", elsewhere.bpp_uri());
    let seller = ScriptedSeller::start(Script::Redirect(308, target)).await;
    let buyer = buyer_with_order(&store, &seller, 2_000).await;
    let (status, err) = rate_five(&buyer).await;
    assert_eq!(status, 502, "{err}");
    assert_eq!(err["error"]["code"], "seller_invalid_response", "{err}");
    let (_, got) = buyer.rating_of("alice", "O-1").await;
    assert_eq!(got["data"]["status"], "failed", "{got}");
    assert!(
        got["data"]["failure"]
            .as_str()
            .unwrap()
            .contains("HTTP 308"),
        "{got}"
    );
    assert_eq!(seller.requests().len(), 1);
    assert!(elsewhere.requests().is_empty(), "the redirect was followed");
}

async fn silent_seller_gives_202_and_a_late_callback_completes(backend: Backend) {
    let store = StoreFixture::new(backend);
    let seller = ScriptedSeller::start(Script::AckSilently).await;
    let buyer = buyer_for(&store, &seller.identity, 300).await;
    let o = order("alice", &seller.identity.id, &seller.bpp_uri());
    assert_eq!(buyer.put_order("O-1", &o).await.0, 200);

    let (status, body) = buyer.rate("alice", &full_rating("O-1")).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["data"]["status"], "pending");
    let ctx = &body["data"]["dto"]["context"];
    assert_eq!(ctx["action"], "rating");
    assert_eq!(ctx["transaction_id"], o["transactionId"]);
    assert_eq!(body["data"]["dto"]["message"], json!({"order_id": "O-1"}));

    // What reached the seller is exactly what the 202 describes, signed by the buyer.
    let sent = seller.requests();
    assert_eq!(sent.len(), 1);
    let wire: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(&wire["context"], ctx);
    ondc_rating::crypto::verify_body(
        sent[0].authorization.as_deref().unwrap(),
        &sent[0].body,
        &buyer.identity.keys.verifying_key(),
        now(),
        5,
    )
    .expect("the /rating is signed by the buyer over the bytes sent");

    // The claim stays taken while the callback is outstanding.
    let (status, err) = buyer
        .rate("alice", &json!({"orderId": "O-1", "orderRating": 1}))
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("already_rated"))
    );
    assert_eq!(
        buyer.rating_of("alice", "O-1").await.1["data"]["status"],
        "acknowledged"
    );

    // The late /on_rating (the mock seller's variant, without ttl) completes the stored rating.
    let mut cb_ctx = ctx.clone();
    cb_ctx["action"] = json!("on_rating");
    cb_ctx.as_object_mut().unwrap().remove("ttl");
    cb_ctx["timestamp"] = json!(ondc_rating::clock::ondc_timestamp(chrono::Utc::now()));
    let cb = serde_json::to_vec(&json!({"context": cb_ctx, "message": {
        "order_id": "O-1",
        "feedback_form": {"form": {"url": "https://seller.test/late", "mime_type": "text/html"}}}}))
    .unwrap();
    let (status, ack) = buyer.on_rating(&seller.identity, &cb).await;
    assert_eq!(
        (status, ack),
        (200, json!({"message": {"ack": {"status": "ACK"}}}))
    );
    let (_, got) = buyer.rating_of("alice", "O-1").await;
    assert_eq!(got["data"]["status"], "completed");
    assert_eq!(
        got["data"]["feedbackForm"]["url"],
        "https://seller.test/late"
    );
    assert_eq!(buyer.rate("alice", &full_rating("O-1")).await.0, 409);
}
both_stores!(silent_seller_gives_202_and_a_late_callback_completes);

/// Reads one HTTP/1.1 request (headers and a Content-Length body) from `s`.
fn read_request(s: &mut std::net::TcpStream) -> Vec<u8> {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "client closed early");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).unwrap();
                buf.extend_from_slice(&chunk[..n]);
            }
            return buf[end + 4..end + 4 + len].to_vec();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_is_retried_with_the_same_bytes() {
    use std::io::Write;
    let store = StoreFixture::new(Backend::Embedded);
    let seller_id = Identity::new("flaky-seller.test");
    let (listener, port) = bind();
    // First connection: read the request, then hang up without answering. Second: ACK.
    let server = std::thread::spawn(move || {
        let mut bodies = Vec::new();
        let (mut first, _) = listener.accept().unwrap();
        bodies.push(read_request(&mut first));
        drop(first);
        let (mut second, _) = listener.accept().unwrap();
        bodies.push(read_request(&mut second));
        let ack = r#"{"message":{"ack":{"status":"ACK"}}}"#;
        write!(
            second,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{ack}",
            ack.len()
        )
        .unwrap();
        bodies
    });
    let buyer = buyer_for(&store, &seller_id, 200).await;
    let o = order(
        "alice",
        &seller_id.id,
        &format!("http://127.0.0.1:{port}/bpp"),
    );
    assert_eq!(buyer.put_order("O-1", &o).await.0, 200);
    let (status, body) = buyer
        .rate("alice", &json!({"orderId": "O-1", "orderRating": 4}))
        .await;
    assert_eq!(status, 202, "{body}");
    let bodies = server.join().unwrap();
    assert_eq!(bodies.len(), 2);
    assert_eq!(
        bodies[0], bodies[1],
        "a retry resends the same signed bytes"
    );
    assert_eq!(
        buyer.rating_of("alice", "O-1").await.1["data"]["status"],
        "acknowledged"
    );
}

async fn a_refusal_in_the_callback_is_a_502_and_releases_the_claim(backend: Backend) {
    let store = StoreFixture::new(backend);
    let buyer_id = Identity::new("buyer.test");
    // This seller takes no agent ratings: it ACKs the /rating and refuses it in /on_rating.
    let seller = Seller::start(&store, "seller", vec![buyer_id.peer()], |s| {
        s.seller.accepted_categories = ["Order", "Provider", "Item", "Fulfillment"]
            .map(String::from)
            .to_vec();
    })
    .await;
    let buyer = Buyer::start_as(
        buyer_id,
        &store,
        "buyer",
        vec![seller.identity.peer()],
        |_| {},
    )
    .await;
    let o = order("alice", "seller.test", &format!("{}/bpp", seller.app.base));
    assert_eq!(buyer.put_order("O-1", &o).await.0, 200);

    let (status, err) = buyer
        .rate(
            "alice",
            &json!({"orderId": "O-1", "orderRating": 5, "agentRating": 2}),
        )
        .await;
    assert_eq!(status, 502, "{err}");
    assert_eq!(err["error"]["code"], "seller_rejected");
    assert_eq!(err["error"]["sellerError"]["code"], "50003");
    let (_, got) = buyer.rating_of("alice", "O-1").await;
    assert_eq!(got["data"]["status"], "failed");
    assert_eq!(got["data"]["error"]["code"], "50003");

    // Released: the same user rates again without the agent, and the seller takes it.
    let (status, ok) = rate_five(&buyer).await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(
        buyer.rating_of("alice", "O-1").await.1["data"]["status"],
        "completed"
    );
}
both_stores!(a_refusal_in_the_callback_is_a_502_and_releases_the_claim);

/// The seller's /on_rating refusing (30018) the /rating whose context is `rating_context`, stamped
/// now.
fn refusal_of(rating_context: &Value) -> Vec<u8> {
    callback_of(
        rating_context,
        json!({"message": {"feedback_ack": false, "rating_ack": false},
            "error": {"type": "DOMAIN-ERROR", "code": "30018", "message": "order not found"}}),
    )
}

/// The `n`-th /rating (from 1) `seller` received, once it has.
async fn nth_rating(seller: &ScriptedSeller, n: usize) -> Value {
    serde_json::from_slice(&seller.recorder.wait_for(n).await[n - 1].body).unwrap()
}

/// Alice's rating `value` of O-1 from `buyer`, on a task of its own: its status and body to come.
fn spawn_rating(buyer: &Arc<Buyer>, value: u8) -> tokio::task::JoinHandle<(u16, Value)> {
    let buyer = buyer.clone();
    tokio::spawn(async move {
        buyer
            .rate("alice", &json!({"orderId": "O-1", "orderRating": value}))
            .await
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_refusal_shows_as_failed_with_the_sellers_error() {
    let store = StoreFixture::new(Backend::Embedded);
    let seller = ScriptedSeller::start(Script::AckSilently).await;
    let buyer = buyer_with_order(&store, &seller, 100).await;
    let (status, pending) = rate_five(&buyer).await;
    assert_eq!(status, 202);
    let cb = refusal_of(&pending["data"]["dto"]["context"]);
    assert_eq!(buyer.on_rating(&seller.identity, &cb).await.0, 200);
    let (_, got) = buyer.rating_of("alice", "O-1").await;
    assert_eq!(got["data"]["status"], "failed");
    assert_eq!(
        got["data"]["error"],
        json!({"type": "DOMAIN-ERROR", "code": "30018", "message": "order not found"})
    );
}

/// `rating_ack: false` says the seller did not record the rating. Without an error block it is a
/// refusal all the same: the waiting request gets 502 `seller_rejected` saying so (no seller
/// error to show), the rating reads `failed` with that reason, and the claim is released, so the
/// order is rated again and that rating, taken, completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rating_ack_false_without_an_error_is_a_refusal_and_releases_the_claim() {
    let store = StoreFixture::new(Backend::Embedded);
    let seller = ScriptedSeller::start(Script::AckSilently).await;
    let buyer = Arc::new(buyer_with_order(&store, &seller, 10_000).await);
    let rate = |value: u8| spawn_rating(&buyer, value);
    let first = rate(5);
    let sent = nth_rating(&seller, 1).await;
    let declined = callback_of(
        &sent["context"],
        json!({"message": {"feedback_ack": true, "rating_ack": false}}),
    );
    assert_eq!(buyer.on_rating(&seller.identity, &declined).await.0, 200);
    let (status, err) = first.await.unwrap();
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (502, Some("seller_rejected")),
        "{err}"
    );
    assert!(err["error"].get("sellerError").is_none(), "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("rating_ack false"), "{message}");
    let (_, got) = buyer.rating_of("alice", "O-1").await;
    assert_eq!(got["data"]["status"], "failed", "{got}");
    assert!(
        got["data"]["failure"]
            .as_str()
            .is_some_and(|f| f.contains("rating_ack false")),
        "{got}"
    );
    assert!(got["data"].get("error").is_none(), "{got}");

    // Released: the order is rated again, the seller takes this one.
    let second = rate(4);
    let sent = nth_rating(&seller, 2).await;
    let taken = callback_of(
        &sent["context"],
        json!({"message": {"feedback_ack": false, "rating_ack": true}}),
    );
    assert_eq!(buyer.on_rating(&seller.identity, &taken).await.0, 200);
    let (status, ok) = second.await.unwrap();
    assert_eq!(status, 200, "{ok}");
    assert_eq!(ok["data"]["status"], "ACK");
    assert_eq!(
        buyer.rating_of("alice", "O-1").await.1["data"]["status"],
        "completed",
        "feedback_ack false alone refuses nothing"
    );
}

/// A `rating_ack: false` callback with no error that comes after the wait reads as `failed` with
/// the reason, as a late refusal with an error block does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_rating_ack_false_shows_as_failed() {
    let store = StoreFixture::new(Backend::Embedded);
    let seller = ScriptedSeller::start(Script::AckSilently).await;
    let buyer = buyer_with_order(&store, &seller, 100).await;
    let (status, pending) = rate_five(&buyer).await;
    assert_eq!(status, 202, "{pending}");
    let cb = callback_of(
        &pending["data"]["dto"]["context"],
        json!({"message": {"rating_ack": false}}),
    );
    assert_eq!(buyer.on_rating(&seller.identity, &cb).await.0, 200);
    let (_, got) = buyer.rating_of("alice", "O-1").await;
    assert_eq!(got["data"]["status"], "failed", "{got}");
    assert!(
        got["data"]["failure"]
            .as_str()
            .is_some_and(|f| f.contains("rating_ack false")),
        "{got}"
    );
    // A repeat of the rating is refused: the claim stays taken, as after any late refusal.
    let (status, err) = rate_five(&buyer).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("already_rated")),
        "{err}"
    );
}

/// A refusal in the callback that comes after the request recorded the `acknowledged` status
/// releases the claim as well: the order can be rated again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_after_the_acknowledged_status_was_written_releases_the_claim() {
    let store = StoreFixture::new(Backend::Embedded);
    let seller = ScriptedSeller::start(Script::AckSilently).await;
    let buyer = Arc::new(
        Buyer::start(&store, "buyer", vec![seller.identity.peer()], |s| {
            s.buyer.callback_wait_ms = 10_000;
            s.buyer.acknowledged_write_delay_ms = 50;
        })
        .await,
    );
    let o = order("alice", &seller.identity.id, &seller.bpp_uri());
    assert_eq!(buyer.put_order("O-1", &o).await.0, 200);
    let rate = |value: u8| spawn_rating(&buyer, value);
    let first = rate(5);
    let sent = nth_rating(&seller, 1).await;
    let first_id = sent["context"]["message_id"].clone();
    let mut status = Value::Null;
    for _ in 0..100 {
        status = buyer.rating_of("alice", "O-1").await.1["data"]["status"].clone();
        if status == "acknowledged" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status, "acknowledged");
    let cb = refusal_of(&sent["context"]);
    assert_eq!(buyer.on_rating(&seller.identity, &cb).await.0, 200);
    let (status, err) = first.await.unwrap();
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (502, Some("seller_rejected")),
        "{err}"
    );
    // Released: another rating of the order goes to the seller.
    let _second = rate(4);
    let sent = seller.recorder.wait_for(2).await;
    let again: Value = serde_json::from_slice(&sent[1].body).unwrap();
    assert_ne!(again["context"]["message_id"], first_id);
}

/// Registers alice's orders O-1 and O-2 with `seller`, starts rating O-1 and returns (with that
/// request's answer to come) once the seller has its /rating.
async fn first_of_two_in_flight(
    buyer: &Arc<Buyer>,
    seller: &ScriptedSeller,
) -> tokio::task::JoinHandle<(u16, Value)> {
    for id in ["O-1", "O-2"] {
        let o = order("alice", &seller.identity.id, &seller.bpp_uri());
        assert_eq!(buyer.put_order(id, &o).await.0, 200);
    }
    let b = buyer.clone();
    let first = tokio::spawn(async move {
        b.rate("alice", &json!({"orderId": "O-1", "orderRating": 5}))
            .await
    });
    seller.recorder.wait_for(1).await;
    first
}

/// Rates `order_id` and asserts the answer is 503 `too_busy` with `Retry-After: 1`, in the
/// documented shape, and that the order has no rating afterwards.
async fn assert_too_busy_and_nothing_claimed(buyer: &Buyer, order_id: &str) {
    let r = buyer
        .http
        .post(format!("{}/ret11/rating", buyer.app.base))
        .bearer_auth(Buyer::token("alice"))
        .json(&json!({"orderId": order_id, "orderRating": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: Value = r.json().await.unwrap();
    assert_documented(503, &body, &schemas().rate_order_response);
    assert_eq!(body["error"]["code"], "too_busy", "{body}");
    assert_eq!(
        buyer.rating_of("alice", order_id).await.0,
        404,
        "nothing was claimed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_max_waiting_a_new_rating_is_refused_with_retry_after_and_nothing_claimed() {
    let store = StoreFixture::new(Backend::Embedded);
    let seller = ScriptedSeller::start(Script::AckSilently).await;
    let buyer = Arc::new(
        Buyer::start(&store, "buyer", vec![seller.identity.peer()], |s| {
            s.buyer.callback_wait_ms = 3_000;
            s.buyer.max_waiting = 1;
        })
        .await,
    );
    let first = first_of_two_in_flight(&buyer, &seller).await;
    assert_too_busy_and_nothing_claimed(&buyer, "O-2").await;
    assert_eq!(first.await.unwrap().0, 202);
    // Once the first answered, there is room again.
    assert_eq!(
        buyer
            .rate("alice", &json!({"orderId": "O-2", "orderRating": 4}))
            .await
            .0,
        202
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seller_too_slow_to_answer_keeps_the_claim_and_gets_the_same_bytes_again() {
    let store = StoreFixture::new(Backend::Embedded);
    let seller = ScriptedSeller::start(Script::AckAfter(1_500)).await;
    let buyer = Buyer::start(&store, "buyer", vec![seller.identity.peer()], |s| {
        s.buyer.send_timeout_ms = 300;
        s.buyer.send_attempts = 2;
    })
    .await;
    let o = order("alice", &seller.identity.id, &seller.bpp_uri());
    assert_eq!(buyer.put_order("O-1", &o).await.0, 200);
    let (status, err) = rate_five(&buyer).await;
    assert_eq!(status, 504, "{err}");
    assert_eq!(err["error"]["code"], "seller_timeout");
    // It may have reached the seller, so it is not released: no second rating for this order.
    assert_eq!(
        buyer.rating_of("alice", "O-1").await.1["data"]["status"],
        "pending"
    );
    assert_eq!(
        buyer
            .rate("alice", &json!({"orderId": "O-1", "orderRating": 1}))
            .await
            .0,
        409
    );
    let sent = seller.recorder.wait_for(2).await;
    assert_eq!(sent.len(), 2, "one retry");
    assert_eq!(
        sent[0].body, sent[1].body,
        "the retry is the same message (the seller dedupes it)"
    );

    // The seller did take it: its callback completes the rating.
    let rating: Value = serde_json::from_slice(&sent[0].body).unwrap();
    let mut ctx = rating["context"].clone();
    ctx["action"] = json!("on_rating");
    ctx["timestamp"] = json!(ondc_rating::clock::ondc_timestamp(chrono::Utc::now()));
    let cb = serde_json::to_vec(
        &json!({"context": ctx, "message": {"feedback_ack": true, "rating_ack": true}}),
    )
    .unwrap();
    assert_eq!(buyer.on_rating(&seller.identity, &cb).await.0, 200);
    assert_eq!(
        buyer.rating_of("alice", "O-1").await.1["data"]["status"],
        "completed"
    );
}

/// A claim left pending (the seller never answered, nor called back) is not lost for good: once
/// no copy of its /rating can still be on its way, the same rating sent again sends that /rating
/// again, its message_id kept and stamped anew, and the seller's callback completes it. A
/// different rating, or the same one too early, is refused; of two at once, one sends.
async fn a_rating_left_pending_is_sent_again_by_the_same_rating(backend: Backend) {
    let store = StoreFixture::new(backend);
    let hold = Arc::new(tokio::sync::Notify::new());
    let seller = ScriptedSeller::start(Script::AckWhen(hold.clone())).await;
    let clock = ondc_rating::clock::FixedClock::at_millis(chrono::Utc::now().timestamp_millis());
    let buyer = Buyer::start_as_clocked(
        Identity::new("buyer.test"),
        &store,
        "buyer",
        vec![seller.identity.peer()],
        clock.clone(),
        |s| {
            s.buyer.send_timeout_ms = 300;
            s.buyer.send_attempts = 1;
            s.buyer.callback_wait_ms = 5_000;
        },
    )
    .await;
    let o = order("alice", &seller.identity.id, &seller.bpp_uri());
    assert_eq!(buyer.put_order("O-1", &o).await.0, 200);
    let (status, err) = buyer.rate("alice", &full_rating("O-1")).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (504, Some("seller_timeout"))
    );
    hold.notify_one(); // the first /rating's answer comes too late

    // Too early: it may still be on its way.
    let (status, err) = buyer.rate("alice", &full_rating("O-1")).await;
    assert_eq!(status, 409, "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("sending the same rating again"),
        "{message}"
    );
    // The bound: 30 s of ttl, then a margin (one attempt of 0.3 s is shorter).
    clock.advance_millis(35_001);
    let mut other = full_rating("O-1");
    other["orderRating"] = json!(1);
    let (status, err) = buyer.rate("alice", &other).await;
    assert_eq!(status, 409, "another rating: {err}");
    assert!(!err["error"]["message"].as_str().unwrap().contains("again"));

    // The same rating, twice at once: one sends it again, and the seller's callback (signed at
    // the buyer's time) answers the one that sent it.
    hold.notify_one();
    let callback = async {
        let sent = seller.recorder.wait_for(2).await;
        let again: Value = serde_json::from_slice(&sent[1].body).unwrap();
        let mut ctx = again["context"].clone();
        ctx["action"] = json!("on_rating");
        ctx["timestamp"] = json!(ondc_rating::clock::ondc_timestamp(
            clock.now() + chrono::Duration::milliseconds(5)
        ));
        let cb = serde_json::to_vec(&json!({"context": ctx, "message": {"feedback_ack": true, "rating_ack": true,
            "feedback_form": {"form": {"url": "https://seller.test/f", "mime_type": "text/html", "data": "x"}}}}))
        .unwrap();
        let header = seller.identity.sign_at(&cb, clock.now().timestamp());
        let url = format!("{}/bap/on_rating", buyer.app.base);
        let (s, ack) = post_with_header(&buyer.http, &url, Some(&header), &cb).await;
        assert_eq!(s, 200, "{ack}");
        sent
    };
    let same = full_rating("O-1");
    let (a, b, sent) = tokio::join!(
        buyer.rate("alice", &same),
        buyer.rate("alice", &same),
        callback
    );
    assert_eq!(sent.len(), 2, "sent once more: {a:?} {b:?}");
    let (first, again): (Value, Value) = (
        serde_json::from_slice(&sent[0].body).unwrap(),
        serde_json::from_slice(&sent[1].body).unwrap(),
    );
    assert_eq!(again["message"], first["message"], "the same ratings");
    assert_eq!(
        again["context"]["message_id"],
        first["context"]["message_id"]
    );
    assert_eq!(
        again["context"]["transaction_id"],
        first["context"]["transaction_id"]
    );
    assert_eq!(
        again["context"]["timestamp"],
        json!(ondc_rating::clock::ondc_timestamp(clock.now()))
    );
    let (waiting, refused) = if a.0 == 409 { (b, a) } else { (a, b) };
    assert_eq!(refused.0, 409, "{refused:?}");
    assert_eq!(waiting.0, 200, "answered with its callback: {waiting:?}");
    assert_eq!(
        waiting.1["data"]["dto"]["context"]["message_id"],
        first["context"]["message_id"]
    );
    assert_eq!(seller.requests().len(), 2);
    let (_, got) = buyer.rating_of("alice", "O-1").await;
    assert_eq!(got["data"]["status"], "completed", "{got}");
    assert_eq!(got["data"]["feedbackForm"]["url"], "https://seller.test/f");
}

both_stores!(a_rating_left_pending_is_sent_again_by_the_same_rating);

/// The seller's NACK refusing a /rating for an unknown order.
const NACK: &str = r#"{"message":{"ack":{"status":"NACK"}},"error":{"type":"DOMAIN-ERROR","code":"30018","message":"unknown order"}}"#;

/// A buyer side on `store`'s "buyer" at `clock`, sending each /rating once with 20 s for its
/// answer, waiting 0.5 s for callbacks and recording `acknowledged` 50 ms after the ACK.
async fn stalling_buyer(
    store: &StoreFixture,
    seller: &ScriptedSeller,
    clock: &Arc<ondc_rating::clock::FixedClock>,
) -> Arc<Buyer> {
    Arc::new(
        Buyer::start_as_clocked(
            Identity::new("buyer.test"),
            store,
            "buyer",
            vec![seller.identity.peer()],
            clock.clone(),
            |s| {
                s.buyer.send_timeout_ms = 20_000;
                s.buyer.send_attempts = 1;
                s.buyer.callback_wait_ms = 500;
                s.buyer.acknowledged_write_delay_ms = 50;
            },
        )
        .await,
    )
}

/// A request stalled past the sending bound, whose rating another request has taken over and
/// sent again, fails late: the claim is the other request's and stays taken, so no other rating
/// of the order goes out while the resend is on its way; when the resend fails, it is released.
async fn a_request_failing_after_its_rating_was_taken_over_keeps_the_claim(backend: Backend) {
    let store = StoreFixture::new(backend);
    let hold = Arc::new(tokio::sync::Notify::new());
    let seller = ScriptedSeller::start(Script::RespondWhen(
        hold.clone(),
        vec![(400, NACK.to_owned())],
    ))
    .await;
    let clock = ondc_rating::clock::FixedClock::at_millis(chrono::Utc::now().timestamp_millis());
    let buyer = stalling_buyer(&store, &seller, &clock).await;
    let o = order("alice", &seller.identity.id, &seller.bpp_uri());
    assert_eq!(buyer.put_order("O-1", &o).await.0, 200);
    let rate = |value: u8| {
        let buyer = buyer.clone();
        let mut rating = full_rating("O-1");
        rating["orderRating"] = json!(value);
        tokio::spawn(async move { buyer.rate("alice", &rating).await })
    };
    let stalled = rate(5);
    seller.recorder.wait_for(1).await;
    // Its answer is held past the bound (30 s of ttl, then a margin; the 20 s attempt plus 3.2 s
    // is shorter): the same rating is sent again.
    clock.advance_millis(35_001);
    let again = rate(5);
    seller.recorder.wait_for(2).await;

    hold.notify_one(); // the stalled request's /rating is refused
    let (status, err) = stalled.await.unwrap();
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (409, Some("already_rated")),
        "{err}"
    );
    let other = rate(1).await.unwrap();
    assert_eq!(other.0, 409, "the resend holds the claim: {:?}", other.1);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(seller.requests().len(), 2, "no other rating sent");

    hold.notify_one(); // the resend is refused too: the claim is released
    let (status, err) = again.await.unwrap();
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (502, Some("seller_rejected")),
        "{err}"
    );
    let retry = rate(1);
    seller.recorder.wait_for(3).await;
    hold.notify_one();
    assert_eq!(retry.await.unwrap().0, 502);
}

both_stores!(a_request_failing_after_its_rating_was_taken_over_keeps_the_claim);

/// A request stalled past the sending bound on one instance, whose rating another instance has
/// taken over and sent again, gets its /rating ACKed late: it does not write its `acknowledged`
/// over the resend's record, and the resend, refused, releases the claim. (In one process the
/// resend's wait ends the stalled request's.)
async fn a_request_acknowledged_after_its_rating_was_taken_over_leaves_the_record(
    backend: Backend,
) {
    let store = StoreFixture::new(backend);
    let hold = Arc::new(tokio::sync::Notify::new());
    let ack = r#"{"message":{"ack":{"status":"ACK"}}}"#;
    let answers = vec![(200, ack.to_owned()), (400, NACK.to_owned())];
    let seller = ScriptedSeller::start(Script::RespondWhen(hold.clone(), answers)).await;
    let clock = ondc_rating::clock::FixedClock::at_millis(chrono::Utc::now().timestamp_millis());
    let (a, b) = (
        stalling_buyer(&store, &seller, &clock).await,
        stalling_buyer(&store, &seller, &clock).await,
    );
    let o = order("alice", &seller.identity.id, &seller.bpp_uri());
    assert_eq!(a.put_order("O-1", &o).await.0, 200);
    let rate = |buyer: &Arc<Buyer>| {
        let buyer = buyer.clone();
        tokio::spawn(async move { buyer.rate("alice", &full_rating("O-1")).await })
    };
    let stalled = rate(&a);
    seller.recorder.wait_for(1).await;
    let first = a.rating_of("alice", "O-1").await.1;
    clock.advance_millis(35_001);
    let again = rate(&b);
    seller.recorder.wait_for(2).await;
    let resent = b.rating_of("alice", "O-1").await.1;
    assert_ne!(resent["data"]["submittedAt"], first["data"]["submittedAt"]);

    hold.notify_one(); // the stalled request's /rating is ACKed; no callback comes
    let (status, late) = stalled.await.unwrap();
    assert_eq!(status, 202, "{late}");
    assert_eq!(
        b.rating_of("alice", "O-1").await.1,
        resent,
        "the resend's record, as it wrote it"
    );

    hold.notify_one(); // the resend is refused: the claim is released
    let (status, err) = again.await.unwrap();
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (502, Some("seller_rejected")),
        "{err}"
    );
}

shared_stores!(a_request_acknowledged_after_its_rating_was_taken_over_leaves_the_record);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_seller_is_offered_the_same_rating_again() {
    for busy in [408, 429, 503] {
        let store = StoreFixture::new(Backend::Embedded);
        let seller = ScriptedSeller::start(Script::FailFirst(1, busy)).await;
        let buyer = buyer_with_order(&store, &seller, 100).await;
        let (status, body) = rate_five(&buyer).await;
        assert_eq!(status, 202, "after a {busy}: {body}");
        let sent = seller.requests();
        assert_eq!(sent.len(), 2, "after a {busy}");
        assert_eq!(sent[0].body, sent[1].body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_seller_gets_at_most_max_in_flight_requests_at_once() {
    let store = StoreFixture::new(Backend::Embedded);
    let seller = ScriptedSeller::start(Script::AckAfter(1_500)).await;
    let buyer = Arc::new(
        Buyer::start(&store, "buyer", vec![seller.identity.peer()], |s| {
            s.buyer.max_in_flight_per_seller = 1;
            s.buyer.send_timeout_ms = 4_000;
            s.buyer.callback_wait_ms = 50;
        })
        .await,
    );
    for id in ["O-1", "O-2"] {
        let o = order("alice", &seller.identity.id, &seller.bpp_uri());
        assert_eq!(buyer.put_order(id, &o).await.0, 200);
    }
    // Two ratings at once to one seller that answers after 1.5 s, one slot: the second waits
    // for the first to finish, so the seller never sees two at a time, and both succeed.
    let tasks: Vec<_> = ["O-1", "O-2"]
        .into_iter()
        .map(|id| {
            let b = buyer.clone();
            tokio::spawn(async move {
                b.rate("alice", &json!({"orderId": id, "orderRating": 5}))
                    .await
                    .0
            })
        })
        .collect();
    seller.recorder.wait_for(1).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        seller.requests().len(),
        1,
        "the second /rating waits for the slot"
    );
    for t in tasks {
        assert_eq!(t.await.unwrap(), 202);
    }
    assert_eq!(seller.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rating_that_finds_its_sellers_slots_taken_is_refused_with_retry_after_and_nothing_claimed()
 {
    let store = StoreFixture::new(Backend::Embedded);
    // The first rating holds the one slot through two busy answers and their back-offs (200 and
    // 400 ms); the second gives up waiting for it after buyer.send_timeout_ms.
    let seller = ScriptedSeller::start(Script::FailFirst(2, 503)).await;
    let buyer = Arc::new(
        Buyer::start(&store, "buyer", vec![seller.identity.peer()], |s| {
            s.buyer.max_in_flight_per_seller = 1;
            s.buyer.send_attempts = 3;
            s.buyer.send_timeout_ms = 300;
            s.buyer.callback_wait_ms = 50;
        })
        .await,
    );
    let first = first_of_two_in_flight(&buyer, &seller).await;
    assert_too_busy_and_nothing_claimed(&buyer, "O-2").await;
    assert_eq!(first.await.unwrap().0, 202);
    let sent = seller.requests();
    assert_eq!(sent.len(), 3, "O-1's three attempts, nothing of O-2");
    assert!(sent.iter().all(|c| c.body == sent[0].body));
    // With the slot free again, the same rating goes through.
    assert_eq!(
        buyer
            .rate("alice", &json!({"orderId": "O-2", "orderRating": 4}))
            .await
            .0,
        202
    );
    assert_eq!(seller.requests().len(), 4);
}

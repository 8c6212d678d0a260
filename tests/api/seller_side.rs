//! The seller side's business answers: a well-formed /rating is ACKed, and what is wrong with
//! its ratings travels back in the /on_rating's error block; the hand-off to the seller
//! platform's webhook (signed, idempotent, bounded, with a fallback); and `mock-seller` as a real
//! process. Every /on_rating is checked against the strict outbound schema and its signature.

use std::time::Duration;

use ondc_rating::clock::Clock;
use serde_json::{Value, json};

use crate::both_stores;
use crate::helpers::*;
use crate::shared_stores;

const SECRET: &str = "webhook-secret-for-tests";

fn ack_body() -> Value {
    json!({"message": {"ack": {"status": "ACK"}}})
}

/// `{"ratings":[...]}` from (category, id, value) triples.
fn ratings(list: &[(&str, &str, &str)]) -> Value {
    json!({"ratings": list.iter().map(|(c, id, v)| json!({"rating_category": c, "id": id, "value": v})).collect::<Vec<_>>()})
}

/// A /rating from `bap` (calling back at `bap_uri`) to `seller` with `message` as its message.
fn rating_to(
    bap: &Identity,
    bap_uri: &str,
    seller: &Seller,
    message_id: &str,
    message: Value,
) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&rating_body_at(
        bap,
        bap_uri,
        &seller.identity.id,
        &format!("{}/bpp", seller.app.base),
        message_id,
        chrono::Utc::now(),
    ))
    .unwrap();
    v["message"] = message;
    serde_json::to_vec(&v).unwrap()
}

/// Posts a signed /rating and expects the plain ACK.
async fn rate(seller: &Seller, bap: &Identity, body: &[u8]) {
    let (s, b) = post_signed(&seller.http, &seller.rating_url(), bap, body).await;
    assert_eq!((s, b), (200, ack_body()));
}

/// Waits (bounded) for the /on_rating of `message_id`, checks its signature (by `signer`) and
/// the strict outbound schema, and returns it.
async fn on_rating_for(
    buyer: &ScriptedBuyer,
    signer: &ondc_rating::crypto::SigningKeyPair,
    message_id: &str,
) -> Value {
    on_rating_at(buyer, signer, message_id, now()).await
}

/// [`on_rating_for`], its signature checked at `at` (Unix seconds): a seller on a clock of the
/// test's signs at its time.
async fn on_rating_at(
    buyer: &ScriptedBuyer,
    signer: &ondc_rating::crypto::SigningKeyPair,
    message_id: &str,
    at: i64,
) -> Value {
    for _ in 0..300 {
        for c in buyer.requests() {
            let v: Value = serde_json::from_slice(&c.body).unwrap();
            if v["context"]["message_id"] != message_id {
                continue;
            }
            ondc_rating::crypto::verify_body(
                c.authorization.as_deref().expect("signed"),
                &c.body,
                &signer.verifying_key(),
                at,
                5,
            )
            .expect("/on_rating signed by the seller");
            if let Err(e) = schemas().on_rating_outbound.check(&v) {
                panic!("/on_rating breaks the strict schema: {e}\n{v}");
            }
            assert_eq!(v["context"]["action"], "on_rating");
            assert_eq!(v["context"]["transaction_id"], "txn-1");
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no /on_rating for {message_id}");
}

/// Asserts a refusal: error block as given, both acks false, no form; recorded as refused.
async fn assert_refused(
    seller: &Seller,
    buyer: &ScriptedBuyer,
    message_id: &str,
    code: &str,
    kind: &str,
    path: &str,
) -> Value {
    let got = on_rating_for(buyer, &seller.identity.keys, message_id).await;
    assert_eq!(
        got["message"],
        json!({"feedback_ack": false, "rating_ack": false}),
        "{message_id}: {got}"
    );
    let e = &got["error"];
    assert_eq!(
        (e["code"].as_str(), e["type"].as_str(), e["path"].as_str()),
        (Some(code), Some(kind), Some(path)),
        "{message_id}: {got}"
    );
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{got}"
    );
    let rec = seller.settled(message_id).await;
    assert_eq!(rec["onRating"], "sent", "{rec}");
    assert_eq!(rec["verdict"], "refused", "{rec}");
    assert_eq!(&rec["error"], e, "the read API shows what was sent");
    assert!(rec.get("feedbackForm").is_none(), "{rec}");
    got
}

/// Asserts an acceptance with the given form URL and data.
async fn assert_taken(
    seller: &Seller,
    buyer: &ScriptedBuyer,
    message_id: &str,
    url: &str,
    data: &str,
) -> Value {
    let got = on_rating_for(buyer, &seller.identity.keys, message_id).await;
    assert_eq!(
        got["message"],
        json!({"feedback_ack": true, "rating_ack": true, "feedback_form": {"form": {
            "url": url, "mime_type": "text/html", "data": data}, "required": false}}),
        "{message_id}: {got}"
    );
    assert!(got.get("error").is_none(), "{got}");
    let rec = seller.settled(message_id).await;
    assert_eq!(rec["onRating"], "sent", "{rec}");
    assert_eq!(rec["verdict"], "accepted", "{rec}");
    assert_eq!(rec["feedbackForm"], got["message"]["feedback_form"]);
    rec
}

async fn business_errors_travel_in_on_rating(backend: Backend) {
    let store = StoreFixture::new(backend);
    let bap = Identity::new("buyer.test");
    let seller = Seller::start(&store, "seller", vec![bap.peer()], |_| {}).await;
    let buyer = ScriptedBuyer::start().await;
    let uri = buyer.bap_uri();
    let cases: Vec<(&str, Value, &str, &str, &str)> = vec![
        (
            "m-zero",
            ratings(&[("Order", "O-1", "0")]),
            "30015",
            "DOMAIN-ERROR",
            "message.ratings[0].value",
        ),
        (
            "m-six",
            ratings(&[("Order", "O-1", "5"), ("Item", "I1", "6")]),
            "30015",
            "DOMAIN-ERROR",
            "message.ratings[1].value",
        ),
        (
            "m-text",
            ratings(&[("Order", "O-1", "x")]),
            "30015",
            "DOMAIN-ERROR",
            "message.ratings[0].value",
        ),
        (
            "m-decimal",
            ratings(&[("Order", "O-1", "4.4")]),
            "30015",
            "DOMAIN-ERROR",
            "message.ratings[0].value",
        ),
        // The single-object form with a numeric value: the path names the field as sent.
        (
            "m-single",
            json!({"rating_category": "order", "id": "O-1", "value": 6}),
            "30015",
            "DOMAIN-ERROR",
            "message.value",
        ),
        (
            "m-packaging",
            ratings(&[("Order", "O-1", "5"), ("Packaging", "O-1", "4")]),
            "50003",
            "POLICY-ERROR",
            "message.ratings[1].rating_category",
        ),
        // Several problems: the first rating with one, and in it the category before the value.
        (
            "m-several",
            ratings(&[("Packaging", "O-1", "9"), ("Order", "O-1", "0")]),
            "50003",
            "POLICY-ERROR",
            "message.ratings[0].rating_category",
        ),
        (
            "m-order-first",
            ratings(&[("Order", "O-1", "0"), ("Packaging", "O-1", "5")]),
            "30015",
            "DOMAIN-ERROR",
            "message.ratings[0].value",
        ),
    ];
    for (id, message, ..) in &cases {
        rate(
            &seller,
            &bap,
            &rating_to(&bap, &uri, &seller, id, message.clone()),
        )
        .await;
    }
    for (id, _, code, kind, path) in &cases {
        let got = assert_refused(&seller, &buyer, id, code, kind, path).await;
        assert_eq!(got["context"]["message_id"], *id);
    }
    // A good one next to them is taken with the configured form.
    rate(
        &seller,
        &bap,
        &rating_to(
            &bap,
            &uri,
            &seller,
            "m-good",
            ratings(&[("ORDER", "O-1", "5"), ("agent", "A1", "1")]),
        ),
    )
    .await;
    assert_taken(
        &seller,
        &buyer,
        "m-good",
        "https://seller.test/feedback/O-1",
        "order_id=O-1",
    )
    .await;
    assert_eq!(
        buyer.requests().len(),
        cases.len() + 1,
        "one /on_rating each"
    );
}
both_stores!(business_errors_travel_in_on_rating);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decimals_are_taken_when_allowed() {
    let store = StoreFixture::new(Backend::Embedded);
    let bap = Identity::new("buyer.test");
    let seller = Seller::start(&store, "seller", vec![bap.peer()], |s| {
        s.seller.allow_decimal_values = true;
    })
    .await;
    let buyer = ScriptedBuyer::start().await;
    let uri = buyer.bap_uri();
    for (id, value) in [("m-4.4", "4.4"), ("m-5.5", "5.5"), ("m-0.5", "0.5")] {
        let body = rating_to(&bap, &uri, &seller, id, ratings(&[("Order", "O-1", value)]));
        rate(&seller, &bap, &body).await;
    }
    assert_taken(
        &seller,
        &buyer,
        "m-4.4",
        "https://seller.test/feedback/O-1",
        "order_id=O-1",
    )
    .await;
    for id in ["m-5.5", "m-0.5"] {
        let got = assert_refused(
            &seller,
            &buyer,
            id,
            "30015",
            "DOMAIN-ERROR",
            "message.ratings[0].value",
        )
        .await;
        assert!(
            got["error"]["message"]
                .as_str()
                .unwrap()
                .contains("a number from 1 to 5"),
            "{got}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn categories_the_seller_does_not_accept_are_refused() {
    let store = StoreFixture::new(Backend::Embedded);
    let bap = Identity::new("buyer.test");
    let seller = Seller::start(&store, "seller", vec![bap.peer()], |s| {
        s.seller.accepted_categories = vec!["Order".into(), "item".into()];
    })
    .await;
    let buyer = ScriptedBuyer::start().await;
    let uri = buyer.bap_uri();
    let taken = ratings(&[("Order", "O-1", "5"), ("ITEM", "I1", "4")]);
    let refused = ratings(&[("Order", "O-1", "5"), ("Agent", "A1", "5")]);
    rate(
        &seller,
        &bap,
        &rating_to(&bap, &uri, &seller, "m-taken", taken),
    )
    .await;
    rate(
        &seller,
        &bap,
        &rating_to(&bap, &uri, &seller, "m-agent", refused),
    )
    .await;
    assert_taken(
        &seller,
        &buyer,
        "m-taken",
        "https://seller.test/feedback/O-1",
        "order_id=O-1",
    )
    .await;
    let got = assert_refused(
        &seller,
        &buyer,
        "m-agent",
        "50003",
        "POLICY-ERROR",
        "message.ratings[1].rating_category",
    )
    .await;
    assert!(
        got["error"]["message"].as_str().unwrap().contains("Agent"),
        "{got}"
    );
}

/// Checks one webhook request the way a seller platform would, and returns its body.
fn check_webhook_request(c: &Captured, message_id: &str) -> Value {
    check_signed_webhook(c, SECRET, &format!("buyer.test|{message_id}"))
}

fn with_webhook(url: String) -> impl FnOnce(&mut ondc_rating::config::Settings) {
    move |s| {
        s.seller.webhook_url = url;
        s.seller.webhook_secret = SECRET.into();
    }
}

async fn webhook_is_signed_called_once_and_its_form_is_used(backend: Backend) {
    let store = StoreFixture::new(backend);
    let bap = Identity::new("buyer.test");
    let answer = r#"{"feedback_form_url":"https://platform.test/forms/O-1","feedback_form_data":"token=abc"}"#;
    let hook = Recorder::start("/hook", Script::Respond(200, answer.into())).await;
    let seller = Seller::start(
        &store,
        "seller",
        vec![bap.peer()],
        with_webhook(format!("{}/hook", hook.base)),
    )
    .await;
    let buyer = ScriptedBuyer::start().await;
    let body = rating_to(
        &bap,
        &buyer.bap_uri(),
        &seller,
        "m-hook",
        ratings(&[("Order", "O-1", "5"), ("Item", "I1", "4")]),
    );
    // A repeated /rating is ACKed again but handed to the platform once.
    rate(&seller, &bap, &body).await;
    rate(&seller, &bap, &body).await;
    let rec = assert_taken(
        &seller,
        &buyer,
        "m-hook",
        "https://platform.test/forms/O-1",
        "token=abc",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = hook.requests();
    assert_eq!(calls.len(), 1, "one webhook call for a repeated /rating");
    assert_eq!(buyer.requests().len(), 1, "one /on_rating");
    let event = check_webhook_request(&calls[0], "m-hook");
    assert_eq!(
        event,
        json!({
            "event": "rating.received",
            "bap_id": "buyer.test",
            "bap_uri": buyer.bap_uri(),
            "bpp_id": "seller.test",
            "domain": "ONDC:RET11",
            "city": "std:080",
            "transaction_id": "txn-1",
            "message_id": "m-hook",
            "order_id": "O-1",
            "ratings": [
                {"rating_category": "Order", "id": "O-1", "value": "5"},
                {"rating_category": "Item", "id": "I1", "value": "4"}
            ],
            "received_at": rec["receivedAt"]
        })
    );
    assert_eq!(
        rec["webhook"],
        json!({"status": "delivered", "attempts": 1, "httpStatus": 200})
    );

    // A rating refused by the adapter's own checks is not handed to the platform.
    let bad = rating_to(
        &bap,
        &buyer.bap_uri(),
        &seller,
        "m-hook-bad",
        ratings(&[("Order", "O-1", "9")]),
    );
    rate(&seller, &bap, &bad).await;
    let rec = seller.settled("m-hook-bad").await;
    assert_eq!(rec["verdict"], "refused");
    assert!(rec.get("webhook").is_none(), "{rec}");
    assert_eq!(hook.requests().len(), 1);
}
both_stores!(webhook_is_signed_called_once_and_its_form_is_used);

/// A /rating sent again stamped anew (a buyer that never got the answer) is answered again: the
/// same answer, echoing the repeat's context, later than its timestamp, signed. The same bytes
/// again (a transport retry) get only the ACK.
async fn a_rating_sent_again_is_answered_again(backend: Backend) {
    let store = StoreFixture::new(backend);
    let bap = Identity::new("buyer.test");
    let seller = Seller::start(&store, "seller", vec![bap.peer()], |_| {}).await;
    let buyer = ScriptedBuyer::start().await;
    let message = ratings(&[("Order", "O-1", "5")]);
    let first = rating_to(&bap, &buyer.bap_uri(), &seller, "m-again", message.clone());
    rate(&seller, &bap, &first).await;
    let answer = on_rating_for(&buyer, &seller.identity.keys, "m-again").await;
    assert_eq!(seller.settled("m-again").await["onRating"], "sent");

    rate(&seller, &bap, &first).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(buyer.requests().len(), 1, "a transport retry is only ACKed");

    tokio::time::sleep(Duration::from_millis(5)).await;
    let again = rating_to(&bap, &buyer.bap_uri(), &seller, "m-again", message);
    let stamped: Value = serde_json::from_slice(&again).unwrap();
    rate(&seller, &bap, &again).await;
    let sent = buyer.wait_for(2).await;
    let second: Value = serde_json::from_slice(&sent[1].body).unwrap();
    ondc_rating::crypto::verify_body(
        sent[1].authorization.as_deref().expect("signed"),
        &sent[1].body,
        &seller.identity.keys.verifying_key(),
        now(),
        5,
    )
    .expect("/on_rating signed by the seller");
    assert_eq!(second["message"], answer["message"], "the same answer");
    assert_eq!(second["context"]["message_id"], "m-again");
    let (at, repeat_at) = (
        second["context"]["timestamp"].as_str().unwrap(),
        stamped["context"]["timestamp"].as_str().unwrap(),
    );
    assert!(at > repeat_at, "{at} after the repeat's {repeat_at}");
    assert!(repeat_at > answer["context"]["timestamp"].as_str().unwrap());
    let rec = seller.settled("m-again").await;
    assert_eq!(
        (&rec["onRating"], &rec["attempts"]),
        (&json!("sent"), &json!(1)),
        "{rec}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(buyer.requests().len(), 2);
}

both_stores!(a_rating_sent_again_is_answered_again);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_reports_an_unknown_order_as_30018() {
    let store = StoreFixture::new(Backend::Embedded);
    let bap = Identity::new("buyer.test");
    let answer = r#"{"error":{"code":"30018","message":"no order O-1 at this seller"}}"#;
    let hook = Recorder::start("/hook", Script::Respond(200, answer.into())).await;
    let seller = Seller::start(
        &store,
        "seller",
        vec![bap.peer()],
        with_webhook(format!("{}/hook", hook.base)),
    )
    .await;
    let buyer = ScriptedBuyer::start().await;
    let body = rating_to(
        &bap,
        &buyer.bap_uri(),
        &seller,
        "m-unknown",
        ratings(&[("Provider", "P1", "4"), ("Order", "O-1", "5")]),
    );
    rate(&seller, &bap, &body).await;
    let got = assert_refused(
        &seller,
        &buyer,
        "m-unknown",
        "30018",
        "DOMAIN-ERROR",
        "message.ratings[1].id",
    )
    .await;
    assert_eq!(got["error"]["message"], "no order O-1 at this seller");
    let rec = seller.settled("m-unknown").await;
    assert_eq!(rec["webhook"]["status"], "delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_failures_fall_back_to_the_configured_form() {
    let store = StoreFixture::new(Backend::Embedded);
    let bap = Identity::new("buyer.test");
    let buyer = ScriptedBuyer::start().await;
    let template = "https://seller.test/feedback/O-1";

    // (name, webhook, attempts expected, what the recorded error says, delivered?)
    let down = format!("http://127.0.0.1:{}/hook", dead_port());
    let failing = Recorder::start("/hook", Script::Respond(500, "boom".into())).await;
    let garbage = Recorder::start("/hook", Script::Respond(200, "<html>ok</html>".into())).await;
    let wrong_code = Recorder::start(
        "/hook",
        Script::Respond(200, r#"{"error":{"code":"30016"}}"#.into()),
    )
    .await;
    let flaky = Recorder::start("/hook", Script::FailFirst(1, 503)).await;
    let cases = [
        ("down", down, 3, Some("onnection refused"), false),
        (
            "500",
            format!("{}/hook", failing.base),
            3,
            Some("HTTP 500: boom"),
            false,
        ),
        (
            "garbage",
            format!("{}/hook", garbage.base),
            1,
            Some("unusable answer: not JSON"),
            false,
        ),
        (
            "code",
            format!("{}/hook", wrong_code.base),
            1,
            Some("not a seller business code"),
            false,
        ),
        ("flaky", format!("{}/hook", flaky.base), 2, None, true),
    ];
    for (name, url, attempts, error, delivered) in cases {
        let seller = Seller::start(&store, name, vec![bap.peer()], with_webhook(url)).await;
        let id = format!("m-{name}");
        let body = rating_to(
            &bap,
            &buyer.bap_uri(),
            &seller,
            &id,
            ratings(&[("Order", "O-1", "5")]),
        );
        rate(&seller, &bap, &body).await;
        let rec = assert_taken(&seller, &buyer, &id, template, "order_id=O-1").await;
        let w = &rec["webhook"];
        assert_eq!(w["attempts"], attempts, "{name}: {rec}");
        assert_eq!(
            w["status"],
            if delivered { "delivered" } else { "failed" },
            "{name}: {rec}"
        );
        match error {
            Some(e) => assert!(
                w["error"].as_str().is_some_and(|got| got.contains(e)),
                "{name}: {rec}"
            ),
            None => assert!(w.get("error").is_none(), "{name}: {rec}"),
        }
    }
    // Retries resend the same body with the same Idempotency-Key.
    let tries = failing.requests();
    assert_eq!(tries.len(), 3);
    for t in &tries {
        check_webhook_request(t, "m-500");
        assert_eq!(t.body, tries[0].body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_webhook_cannot_hold_the_on_rating_past_its_budget() {
    let store = StoreFixture::new(Backend::Embedded);
    let bap = Identity::new("buyer.test");
    let hole = black_hole().await;
    let seller = Seller::start(&store, "seller", vec![bap.peer()], |s| {
        with_webhook(format!("{hole}/hook"))(s);
        s.seller.webhook_timeout_ms = 1_500;
    })
    .await;
    let buyer = ScriptedBuyer::start().await;
    let body = rating_to(
        &bap,
        &buyer.bap_uri(),
        &seller,
        "m-silent",
        ratings(&[("Order", "O-1", "5")]),
    );
    let started = std::time::Instant::now();
    // The ACK does not wait for the webhook.
    rate(&seller, &bap, &body).await;
    assert!(started.elapsed() < Duration::from_millis(1_000));
    let rec = assert_taken(
        &seller,
        &buyer,
        "m-silent",
        "https://seller.test/feedback/O-1",
        "order_id=O-1",
    )
    .await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1_400) && took < Duration::from_millis(4_000),
        "the /on_rating went out after {took:?}, expected just after the 1.5 s webhook budget"
    );
    assert_eq!(rec["webhook"]["status"], "failed");
    assert!(
        rec["webhook"]["error"]
            .as_str()
            .unwrap()
            .contains("no answer within 1500 ms"),
        "{rec}"
    );
}

/// A seller side trusting `bap` whose webhook holds each request until `go` is notified and then
/// answers `answer`, with `concurrency` webhook requests in flight at most and `timeout_ms` for
/// each hand-off.
async fn seller_with_a_held_webhook(
    store: &StoreFixture,
    bap: &Identity,
    answer: &str,
    concurrency: usize,
    timeout_ms: u64,
) -> (Seller, Recorder, std::sync::Arc<tokio::sync::Notify>) {
    let go = std::sync::Arc::new(tokio::sync::Notify::new());
    let hook = Recorder::start(
        "/hook",
        Script::RespondWhen(go.clone(), vec![(200, answer.into())]),
    )
    .await;
    let seller = Seller::start(store, "seller", vec![bap.peer()], |s| {
        with_webhook(format!("{}/hook", hook.base))(s);
        s.seller.webhook_concurrency = concurrency;
        s.seller.webhook_timeout_ms = timeout_ms;
    })
    .await;
    (seller, hook, go)
}

/// A burst of ratings reaches a slow platform `seller.webhook_concurrency` requests at a time:
/// the others wait for a request in flight to end, then go, each handed off once with the
/// platform's answer in its /on_rating. A hand-off whose budget ends while it waits falls back to
/// the configured form, recorded with why and no request counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_reaches_the_platform_webhook_concurrency_requests_at_a_time() {
    let store = StoreFixture::new(Backend::Embedded);
    let bap = Identity::new("buyer.test");
    let answer = r#"{"feedback_form_url":"https://platform.test/forms/held"}"#;
    let (seller, hook, go) = seller_with_a_held_webhook(&store, &bap, answer, 2, 10_000).await;
    let buyer = ScriptedBuyer::start().await;
    let ids: Vec<String> = (0..5).map(|i| format!("m-burst-{i}")).collect();
    for id in &ids {
        rate_order_one(&seller, &bap, &buyer, id).await;
    }
    hook.wait_for(2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hook.requests().len(), 2, "two requests in flight at most");
    // One answer frees one slot: one more request, no more.
    go.notify_one();
    hook.wait_for(3).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hook.requests().len(), 3);
    assert_eq!(
        buyer.requests().len(),
        1,
        "only the answered rating's /on_rating"
    );
    for _ in 0..250 {
        if buyer.requests().len() == 5 {
            break;
        }
        go.notify_one();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut handed: Vec<String> = hook
        .requests()
        .iter()
        .map(|c| {
            let event: Value = serde_json::from_slice(&c.body).unwrap();
            let id = event["message_id"].as_str().unwrap().to_owned();
            check_webhook_request(c, &id);
            id
        })
        .collect();
    handed.sort();
    assert_eq!(handed, ids, "each rating handed off once");
    for id in &ids {
        let rec = assert_taken(
            &seller,
            &buyer,
            id,
            "https://platform.test/forms/held",
            "order_id=O-1",
        )
        .await;
        assert_eq!(
            rec["webhook"],
            json!({"status": "delivered", "attempts": 1, "httpStatus": 200})
        );
    }
    let text = metrics(&seller.app.base).await;
    let waits = |ended: &str| {
        sample(
            &text,
            &format!("ondc_rating_webhook_slot_waits_total{{ended=\"{ended}\"}}"),
        )
    };
    assert_eq!((waits("slot"), waits("budget")), (Some(3.0), Some(0.0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_off_whose_budget_ends_waiting_for_a_webhook_slot_falls_back_to_the_configured_form()
{
    let store = StoreFixture::new(Backend::Embedded);
    let bap = Identity::new("buyer.test");
    let (seller, hook, go) = seller_with_a_held_webhook(&store, &bap, "{}", 1, 8_000).await;
    let buyer = ScriptedBuyer::start().await;
    rate_order_one(&seller, &bap, &buyer, "m-holds").await;
    hook.wait_for(1).await;
    // Stamped 25.5 s ago with a 30 s ttl: 1.5 s of budget once 3 s are kept for the /on_rating.
    let mut late: Value = serde_json::from_slice(&rating_to(
        &bap,
        &buyer.bap_uri(),
        &seller,
        "m-late",
        ratings(&[("Order", "O-1", "5")]),
    ))
    .unwrap();
    late["context"]["timestamp"] = json!(ondc_rating::clock::ondc_timestamp(
        chrono::Utc::now() - chrono::Duration::milliseconds(25_500)
    ));
    let started = std::time::Instant::now();
    rate(&seller, &bap, &serde_json::to_vec(&late).unwrap()).await;
    let rec = assert_taken(
        &seller,
        &buyer,
        "m-late",
        "https://seller.test/feedback/O-1",
        "order_id=O-1",
    )
    .await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1_200) && took < Duration::from_millis(4_000),
        "the /on_rating went out after {took:?}, expected when its 1.5 s budget ended"
    );
    assert_eq!(rec["webhook"]["status"], "failed", "{rec}");
    assert_eq!(rec["webhook"]["attempts"], 0, "{rec}");
    let error = rec["webhook"]["error"].as_str().unwrap();
    assert!(
        error.starts_with("no free webhook slot within 1"),
        "{error}"
    );
    assert!(error.contains("seller.webhook_concurrency"), "{error}");
    assert_eq!(
        hook.requests().len(),
        1,
        "the late rating never reached the platform"
    );
    // The rating holding the slot is answered by the platform as usual.
    go.notify_one();
    assert_taken(
        &seller,
        &buyer,
        "m-holds",
        "https://seller.test/feedback/O-1",
        "order_id=O-1",
    )
    .await;
    let text = metrics(&seller.app.base).await;
    assert_eq!(
        sample(
            &text,
            "ondc_rating_webhook_slot_waits_total{ended=\"budget\"}"
        ),
        Some(1.0)
    );
}

/// Posts a signed /rating of order O-1 at 5 from `bap` (calling back at `buyer`) and expects
/// the ACK.
async fn rate_order_one(seller: &Seller, bap: &Identity, buyer: &ScriptedBuyer, message_id: &str) {
    let body = rating_to(
        bap,
        &buyer.bap_uri(),
        seller,
        message_id,
        ratings(&[("Order", "O-1", "5")]),
    );
    rate(seller, bap, &body).await;
}

fn platform_answers(s: &mut ondc_rating::config::Settings) {
    s.seller.on_rating = ondc_rating::config::OnRatingMode::Platform;
}

/// A seller side whose platform answers, on a clock the test moves, trusting `bap`.
async fn platform_seller_on_a_clock(
    store: &StoreFixture,
    bap: &Identity,
) -> (Seller, std::sync::Arc<ondc_rating::clock::FixedClock>) {
    let clock = ondc_rating::clock::FixedClock::at_millis(chrono::Utc::now().timestamp_millis());
    let seller = Seller::start_clocked(
        store,
        "seller",
        vec![bap.peer()],
        clock.clone(),
        platform_answers,
    )
    .await;
    (seller, clock)
}

/// No /on_rating for `message_id` has reached `buyer` (after a pause long enough for one sent
/// at once to arrive).
async fn assert_none_sent(buyer: &ScriptedBuyer, message_id: &str) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        sent_for(buyer, message_id),
        0,
        "an /on_rating for {message_id} went out"
    );
}

/// How many /on_ratings for `message_id` reached `buyer`.
fn sent_for(buyer: &ScriptedBuyer, message_id: &str) -> usize {
    buyer
        .requests()
        .iter()
        .filter(|c| {
            serde_json::from_slice::<Value>(&c.body).unwrap()["context"]["message_id"] == message_id
        })
        .count()
}

async fn the_platform_sends_the_on_rating_with_its_answer(backend: Backend) {
    let store = StoreFixture::new(backend);
    let bap = Identity::new("buyer.test");
    let seller = Seller::start(&store, "seller", vec![bap.peer()], platform_answers).await;
    let buyer = ScriptedBuyer::start().await;
    let uri = buyer.bap_uri();
    let one = |id: &str, order: &str, value: &str| {
        rating_to(
            &bap,
            &uri,
            &seller,
            id,
            ratings(&[("Order", order, value), ("Item", "I1", "4")]),
        )
    };

    // ACKed and held: nothing goes to the buyer until the platform answers.
    rate(&seller, &bap, &one("m-p1", "O-1", "5")).await;
    assert_none_sent(&buyer, "m-p1").await;
    let (status, rec) = seller.received("buyer.test", "m-p1").await;
    assert_eq!(status, 200, "{rec}");
    assert_eq!(
        (&rec["rating"]["onRating"], &rec["rating"]["verdict"]),
        (&json!("awaiting"), &json!("accepted")),
        "{rec}"
    );

    // Bad answers are refused with a typed error and change nothing.
    let form = r#"{"feedback_form_url":"https://platform.test/forms/O-1","feedback_form_data":"token=abc"}"#;
    let bad: [(&str, &str, u16, &str); 5] = [
        ("wrong-token", form, 401, "unauthorized"),
        (INTERNAL, "[1]", 400, "invalid_json"),
        (INTERNAL, "{not json", 400, "invalid_json"),
        (
            INTERNAL,
            r#"{"feedback_form_url":"ftp://platform.test/f"}"#,
            400,
            "validation_failed",
        ),
        (
            INTERNAL,
            r#"{"error":{"code":"20001"}}"#,
            400,
            "validation_failed",
        ),
    ];
    for (token, body, want, code) in bad {
        let (status, got) = seller.answer_as(token, "buyer.test", "m-p1", body).await;
        assert_eq!(
            (status, got["error"]["code"].as_str()),
            (want, Some(code)),
            "{body}: {got}"
        );
        assert!(
            got["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{got}"
        );
    }
    assert_eq!(
        seller.received("buyer.test", "m-p1").await.1,
        rec,
        "unchanged"
    );
    assert_none_sent(&buyer, "m-p1").await;
    let (status, got) = seller.answer("buyer.test", "m-nobody", "{}").await;
    assert_eq!(
        (status, got["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{got}"
    );

    // The platform's form: the answer is the record once the /on_rating was ACKed.
    let (status, got) = seller.answer("buyer.test", "m-p1", form).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        (
            &got["rating"]["onRating"],
            got["rating"]["attempts"].as_u64()
        ),
        (&json!("sent"), Some(1)),
        "{got}"
    );
    let rec = assert_taken(
        &seller,
        &buyer,
        "m-p1",
        "https://platform.test/forms/O-1",
        "token=abc",
    )
    .await;
    assert_eq!(rec, got["rating"], "the answer is what the read API shows");
    // Once only.
    let (status, again) = seller.answer("buyer.test", "m-p1", "{}").await;
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (409, Some("already_answered")),
        "{again}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(buyer.requests().len(), 1, "one /on_rating");

    // An empty answer sends the configured form; a refusal sends the error block.
    rate(&seller, &bap, &one("m-p2", "O-2", "4")).await;
    assert_eq!(seller.answer("buyer.test", "m-p2", "").await.0, 200);
    assert_taken(
        &seller,
        &buyer,
        "m-p2",
        "https://seller.test/feedback/O-2",
        "order_id=O-2",
    )
    .await;
    rate(&seller, &bap, &one("m-p3", "O-3", "4")).await;
    let (status, got) = seller
        .answer(
            "buyer.test",
            "m-p3",
            r#"{"error":{"code":"30018","message":"no such order here"}}"#,
        )
        .await;
    assert_eq!(status, 200, "{got}");
    let sent = assert_refused(
        &seller,
        &buyer,
        "m-p3",
        "30018",
        "DOMAIN-ERROR",
        "message.ratings[0].id",
    )
    .await;
    assert_eq!(sent["error"]["message"], "no such order here");

    // What the adapter's own checks refuse is answered at once, not held.
    rate(&seller, &bap, &one("m-p4", "O-4", "9")).await;
    assert_refused(
        &seller,
        &buyer,
        "m-p4",
        "30015",
        "DOMAIN-ERROR",
        "message.ratings[0].value",
    )
    .await;
    let (status, got) = seller.answer("buyer.test", "m-p4", "{}").await;
    assert_eq!(
        (status, got["error"]["code"].as_str()),
        (409, Some("already_answered")),
        "{got}"
    );
    assert_eq!(buyer.requests().len(), 4);
}
both_stores!(the_platform_sends_the_on_rating_with_its_answer);

/// Two seller instances sharing Redis, both asked to answer the same ratings at once: one sends
/// each /on_rating, the other is refused.
async fn two_instances_answering_one_rating_send_it_once(backend: Backend) {
    let store = StoreFixture::new(backend);
    let bap = Identity::new("buyer.test");
    let a = Seller::start(&store, "seller", vec![bap.peer()], platform_answers).await;
    let b = Seller::start(&store, "seller", vec![bap.peer()], platform_answers).await;
    let buyer = ScriptedBuyer::start().await;
    let ids: Vec<String> = (0..5).map(|i| format!("m-two-{i}")).collect();
    for id in &ids {
        rate_order_one(&a, &bap, &buyer, id).await;
    }
    for id in &ids {
        let ((sa, ga), (sb, gb)) = tokio::join!(
            a.answer("buyer.test", id, "{}"),
            b.answer("buyer.test", id, "{}")
        );
        let mut got = [
            (sa, ga["error"]["code"].clone()),
            (sb, gb["error"]["code"].clone()),
        ];
        got.sort_by_key(|(s, _)| *s);
        assert_eq!(
            got,
            [(200, Value::Null), (409, json!("already_answered"))],
            "{id}: {ga} / {gb}"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for id in &ids {
        assert_eq!(sent_for(&buyer, id), 1, "{id}: one /on_rating");
    }
}

shared_stores!(two_instances_answering_one_rating_send_it_once);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_rating_survives_a_restart_and_its_ttl_ends_the_wait() {
    let store = StoreFixture::new(Backend::Embedded);
    let bap = Identity::new("buyer.test");
    let (mut seller, clock) = platform_seller_on_a_clock(&store, &bap).await;
    let buyer = ScriptedBuyer::start().await;
    for id in ["m-r1", "m-r2"] {
        rate_order_one(&seller, &bap, &buyer, id).await;
    }
    seller.app = seller.app.restart().await;
    assert_eq!(
        seller.received("buyer.test", "m-r1").await.1["rating"]["onRating"],
        "awaiting"
    );
    let (_, page) = listed(&seller, "onRating=awaiting").await;
    assert_eq!(
        ids_of(&page),
        ["m-r1", "m-r2"],
        "still listed after the restart"
    );
    assert_eq!(seller.answer("buyer.test", "m-r1", "{}").await.0, 200);
    assert_taken(
        &seller,
        &buyer,
        "m-r1",
        "https://seller.test/feedback/O-1",
        "order_id=O-1",
    )
    .await;

    // Past the /rating's timestamp plus its ttl (30 s) an answer would reach a buyer that no
    // longer waits.
    clock.advance_millis(31_000);
    let (status, got) = seller.answer("buyer.test", "m-r2", "{}").await;
    assert_eq!(
        (status, got["error"]["code"].as_str()),
        (410, Some("ttl_passed")),
        "{got}"
    );
    assert_none_sent(&buyer, "m-r2").await;
}

/// Past its ttl a held rating is not stuck: an answer the platform gives late is kept and goes
/// out when the buyer, never answered, sends the /rating again; a repeat of one the platform never
/// answered opens a new window for that answer. Either goes out once, echoing the repeat.
async fn a_held_rating_past_its_ttl_is_answered_at_the_buyers_repeat(backend: Backend) {
    let store = StoreFixture::new(backend);
    let bap = Identity::new("buyer.test");
    let (seller, clock) = platform_seller_on_a_clock(&store, &bap).await;
    let buyer = ScriptedBuyer::start().await;
    for id in ["m-late", "m-never"] {
        rate_order_one(&seller, &bap, &buyer, id).await;
    }
    clock.advance_millis(31_000);
    let late = r#"{"feedback_form_url":"https://platform.test/forms/late"}"#;
    let (status, got) = seller.answer("buyer.test", "m-late", late).await;
    assert_eq!(
        (status, got["error"]["code"].as_str()),
        (410, Some("ttl_passed")),
        "{got}"
    );
    assert!(
        got["error"]["message"]
            .as_str()
            .unwrap()
            .contains("kept, and sent if the buyer sends the /rating again"),
        "{got}"
    );
    assert_none_sent(&buyer, "m-late").await;
    let rec = seller.received("buyer.test", "m-late").await.1["rating"].clone();
    assert_eq!(rec["onRating"], "failed", "{rec}");
    assert!(
        rec["lastError"]
            .as_str()
            .unwrap()
            .contains("passed before the seller platform answered"),
        "{rec}"
    );
    // A second answer changes nothing.
    let (status, got) = seller.answer("buyer.test", "m-late", "{}").await;
    assert_eq!(
        (status, got["error"]["code"].as_str()),
        (409, Some("already_answered")),
        "{got}"
    );

    // The /rating again, stamped anew at the seller's time and signed then.
    let repeat = |id: &str| {
        let mut v: Value = serde_json::from_slice(&rating_to(
            &bap,
            &buyer.bap_uri(),
            &seller,
            id,
            ratings(&[("Order", "O-1", "5")]),
        ))
        .unwrap();
        v["context"]["timestamp"] = json!(ondc_rating::clock::ondc_timestamp(clock.now()));
        let body = serde_json::to_vec(&v).unwrap();
        let header = bap.sign_at(&body, clock.now().timestamp());
        let (seller, url) = (&seller, seller.rating_url());
        async move {
            let (status, ack) = post_with_header(&seller.http, &url, Some(&header), &body).await;
            assert_eq!((status, ack), (200, ack_body()));
        }
    };
    repeat("m-late").await;
    let stamped = ondc_rating::clock::ondc_timestamp(clock.now());
    let got = on_rating_at(
        &buyer,
        &seller.identity.keys,
        "m-late",
        clock.now().timestamp(),
    )
    .await;
    assert_eq!(
        got["message"]["feedback_form"]["form"]["url"],
        "https://platform.test/forms/late"
    );
    assert!(
        got["context"]["timestamp"].as_str() > Some(stamped.as_str()),
        "later than the repeat: {got}"
    );
    assert_eq!(seller.settled("m-late").await["onRating"], "sent");

    repeat("m-never").await;
    let mut rec = Value::Null;
    for _ in 0..100 {
        rec = seller.received("buyer.test", "m-never").await.1["rating"].clone();
        if rec["context"]["timestamp"] == stamped.as_str() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rec["context"]["timestamp"], stamped.as_str(), "{rec}");
    assert_eq!(rec["onRating"], "awaiting", "{rec}");
    assert_none_sent(&buyer, "m-never").await;
    // Within the repeat's ttl, past the first one's.
    clock.advance_millis(10_000);
    let (status, got) = seller.answer("buyer.test", "m-never", "{}").await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["rating"]["onRating"], "sent", "{got}");
    let got = on_rating_at(
        &buyer,
        &seller.identity.keys,
        "m-never",
        clock.now().timestamp(),
    )
    .await;
    assert!(
        got["context"]["timestamp"].as_str() > Some(stamped.as_str()),
        "{got}"
    );
    assert_eq!(sent_for(&buyer, "m-late"), 1);
    assert_eq!(sent_for(&buyer, "m-never"), 1);
}

both_stores!(a_held_rating_past_its_ttl_is_answered_at_the_buyers_repeat);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_webhook_the_platform_is_told_and_its_webhook_answer_is_what_an_empty_answer_sends()
{
    let store = StoreFixture::new(Backend::Embedded);
    let bap = Identity::new("buyer.test");
    let answer = r#"{"feedback_form_url":"https://platform.test/forms/hooked"}"#;
    let hook = Recorder::start("/hook", Script::Respond(200, answer.into())).await;
    let seller = Seller::start(&store, "seller", vec![bap.peer()], |s| {
        with_webhook(format!("{}/hook", hook.base))(s);
        platform_answers(s);
    })
    .await;
    let buyer = ScriptedBuyer::start().await;
    rate_order_one(&seller, &bap, &buyer, "m-w1").await;
    let mut rec = Value::Null;
    for _ in 0..100 {
        rec = seller.received("buyer.test", "m-w1").await.1;
        if rec["rating"]["webhook"]["status"] == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rec["rating"]["webhook"]["status"], "delivered", "{rec}");
    check_webhook_request(&hook.requests()[0], "m-w1");
    assert_eq!(rec["rating"]["onRating"], "awaiting", "{rec}");
    assert_none_sent(&buyer, "m-w1").await;
    assert_eq!(seller.answer("buyer.test", "m-w1", "{}").await.0, 200);
    assert_taken(
        &seller,
        &buyer,
        "m-w1",
        "https://platform.test/forms/hooked",
        "order_id=O-1",
    )
    .await;

    // A seller that sends its own /on_ratings has none for the platform to send.
    let auto = Seller::start(&store, "auto", vec![bap.peer()], |_| {}).await;
    rate_order_one(&auto, &bap, &buyer, "m-a1").await;
    let (status, got) = auto.answer("buyer.test", "m-a1", "{}").await;
    assert_eq!(
        (status, got["error"]["code"].as_str()),
        (409, Some("already_answered")),
        "{got}"
    );
}

/// A `mock-seller` process, started with a store in a given directory, and what it printed.
struct MockSeller {
    child: tokio::process::Child,
    public_key: String,
    ukid: String,
    bpp_uri: String,
}

impl MockSeller {
    /// Starts `ondc-rating mock-seller --bind 127.0.0.1:0 ARGS --store DIR/mock.redb` and reads
    /// its printed peer block up to the `# listening on` line.
    async fn start(dir: &std::path::Path, args: &[&str]) -> Self {
        use tokio::io::{AsyncBufReadExt, BufReader};

        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ondc-rating"))
            .args(["mock-seller", "--bind", "127.0.0.1:0"])
            .args(args)
            .arg("--store")
            .arg(dir.join("mock.redb"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut public_key, mut bpp_uri, mut ukid) = (None, None, None);
        let read = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                let quoted = |prefix: &str| {
                    line.strip_prefix(prefix)
                        .map(|rest| rest.trim_matches('"').to_owned())
                };
                if let Some(k) = quoted("signing_public_key = ") {
                    public_key = Some(k);
                } else if let Some(k) = quoted("unique_key_id = ") {
                    ukid = Some(k);
                } else if let Some(u) = line.strip_prefix("# bpp_uri: ") {
                    bpp_uri = Some(u.to_owned());
                } else if line.starts_with("# listening on") {
                    break;
                }
            }
        })
        .await;
        assert!(read.is_ok(), "mock-seller did not start");
        Self {
            child,
            public_key: public_key.expect("prints its public key"),
            ukid: ukid.expect("prints its unique key id"),
            bpp_uri: bpp_uri.expect("prints its bpp_uri"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_seller_answers_a_trusted_buyer_as_a_real_process() {
    let dir = tempfile::tempdir().unwrap();
    let bap = Identity::new("buyer.test");
    let peer = format!("{}|{}|{}", bap.id, bap.ukid, bap.keys.public_key_base64());
    let mut mock = MockSeller::start(
        dir.path(),
        &[
            "--subscriber-id",
            "mock-seller.test",
            "--form-url",
            "https://mock-seller.test/rate/{order_id}",
            "--form-required",
            "--peer",
            &peer,
        ],
    )
    .await;
    let (public_key, bpp_uri) = (mock.public_key.clone(), mock.bpp_uri.clone());
    assert_eq!(mock.ukid, "mock-1");

    let buyer = ScriptedBuyer::start().await;
    let http = reqwest::Client::new();
    let body = rating_body_at(
        &bap,
        &buyer.bap_uri(),
        "mock-seller.test",
        &bpp_uri,
        "m-mock",
        chrono::Utc::now(),
    );
    let url = format!("{bpp_uri}/rating");
    // A stranger's signature is refused; the trusted peer's is ACKed.
    let (s, b) = post_signed(&http, &url, &Identity::new("buyer.test"), &body).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (401, Some("30016")),
        "{b}"
    );
    let (s, b) = post_signed(&http, &url, &bap, &body).await;
    assert_eq!((s, b), (200, ack_body()));

    let cb = buyer.wait_for(1).await.remove(0);
    let key = ondc_rating::crypto::verifying_key_from_base64(&public_key).unwrap();
    let signer = ondc_rating::crypto::verify_body(
        cb.authorization.as_deref().unwrap(),
        &cb.body,
        &key,
        now(),
        5,
    )
    .expect("signed with the printed key");
    assert_eq!(
        (signer.subscriber_id.as_str(), signer.unique_key_id.as_str()),
        ("mock-seller.test", "mock-1")
    );
    let got: Value = serde_json::from_slice(&cb.body).unwrap();
    if let Err(e) = schemas().on_rating_outbound.check(&got) {
        panic!("/on_rating breaks the strict schema: {e}\n{got}");
    }
    assert_eq!(got["context"]["message_id"], "m-mock");
    assert_eq!(got["context"]["bpp_id"], "mock-seller.test");
    assert_eq!(got["message"]["rating_ack"], true);
    assert_eq!(
        got["message"]["feedback_form"]["form"]["url"],
        "https://mock-seller.test/rate/O-1"
    );
    assert_eq!(got["message"]["feedback_form"]["required"], true, "{got}");

    // A buyer app under test may name uris off the ids' domains (a container name, a LAN
    // address): the mock answers it all the same, where a seller on the network would NACK.
    let body = rating_body_at(
        &bap,
        &buyer.bap_uri(),
        "mock-seller.test",
        "http://mock-seller:8081/bpp",
        "m-anywhere",
        chrono::Utc::now(),
    );
    let (s, b) = post_signed(&http, &url, &bap, &body).await;
    assert_eq!((s, b), (200, ack_body()));
    let cb = buyer.wait_for(2).await.remove(1);
    let got: Value = serde_json::from_slice(&cb.body).unwrap();
    assert_eq!(got["context"]["message_id"], "m-anywhere");
    assert_eq!(got["context"]["bpp_uri"], "http://mock-seller:8081/bpp");
    mock.child.kill().await.ok();
}

/// A buyer app tested against `mock-seller` meets a seller's refusals: with `--accept-categories`
/// an agent rating is refused (50003) in the /on_rating, and with `--on-rating platform` a rating
/// waits (the buyer's 202 `pending`) until it is answered by hand, here with 30018, which the
/// buyer then reads as failed with that error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_seller_refuses_categories_and_holds_ratings_for_an_answer_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let bap = Identity::new("buyer.test");
    let peer = format!("{}|{}|{}", bap.id, bap.ukid, bap.keys.public_key_base64());
    let token = "mock-internal-token-0123";
    let mut mock = MockSeller::start(
        dir.path(),
        &[
            "--subscriber-id",
            "mock-seller.test",
            "--peer",
            &peer,
            "--accept-categories",
            "Order,provider,Item,Fulfillment",
            "--on-rating",
            "platform",
            "--internal-token",
            token,
        ],
    )
    .await;
    let store = StoreFixture::new(Backend::Embedded);
    let seller_peer = ondc_rating::config::PeerSettings {
        subscriber_id: "mock-seller.test".into(),
        unique_key_id: mock.ukid.clone(),
        signing_public_key: mock.public_key.clone(),
    };
    let buyer = Buyer::start_as(bap, &store, "buyer", vec![seller_peer], |s| {
        s.buyer.callback_wait_ms = 1_500;
    })
    .await;
    for id in ["O-1", "O-2"] {
        let o = order("alice", "mock-seller.test", &mock.bpp_uri);
        assert_eq!(buyer.put_order(id, &o).await.0, 200);
    }

    // A category it does not take: refused at once, whoever answers the others.
    let (status, err) = buyer
        .rate(
            "alice",
            &json!({"orderId": "O-1", "orderRating": 5, "agentRating": 2}),
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (502, Some("seller_rejected")),
        "{err}"
    );
    assert_eq!(err["error"]["sellerError"]["code"], "50003", "{err}");

    // The others wait for an answer by hand.
    let (status, pending) = buyer
        .rate("alice", &json!({"orderId": "O-2", "orderRating": 4}))
        .await;
    assert_eq!(status, 202, "{pending}");
    let message_id = pending["data"]["dto"]["context"]["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let base = mock.bpp_uri.trim_end_matches("/bpp").to_owned();
    let http = reqwest::Client::new();
    let listed: Value = http
        .get(format!("{base}/internal/seller/ratings?onRating=awaiting"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        listed["ratings"][0]["context"]["message_id"],
        message_id.as_str(),
        "{listed}"
    );
    let answered = http
        .post(format!(
            "{base}/internal/seller/ratings/buyer.test/{message_id}/on_rating"
        ))
        .bearer_auth(token)
        .json(&json!({"error": {"code": "30018", "message": "no such order here"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 200);
    let mut got = Value::Null;
    for _ in 0..200 {
        got = buyer.rating_of("alice", "O-2").await.1;
        if got["data"]["status"] != "pending" && got["data"]["status"] != "acknowledged" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(got["data"]["status"], "failed", "{got}");
    assert_eq!(got["data"]["error"]["code"], "30018", "{got}");
    mock.child.kill().await.ok();
}

/// The new flags are checked before anything starts: an unknown mode or category stops the
/// mock seller with a message naming it.
#[test]
fn mock_seller_refuses_an_unknown_mode_or_category() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ondc-rating"))
            .args(["mock-seller", "--bind", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&["--on-rating", "sometimes"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("auto or platform"), "{stderr}");
    let (code, stderr) = run(&["--accept-categories", "Order,Stars"]);
    assert_ne!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("seller.accepted_categories[1]") && stderr.contains("Stars"),
        "{stderr}"
    );
}

/// `GET /internal/seller/ratings?{query}` with the internal token.
async fn listed(seller: &Seller, query: &str) -> (u16, Value) {
    let r = seller
        .http
        .get(format!(
            "{}/internal/seller/ratings?{query}",
            seller.app.base
        ))
        .bearer_auth(INTERNAL)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The message ids of a page of listed ratings.
fn ids_of(page: &Value) -> Vec<String> {
    page["ratings"]
        .as_array()
        .unwrap_or_else(|| panic!("{page}"))
        .iter()
        .map(|r| r["context"]["message_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Sends three /ratings of order O-1 at 5 (`ids`), the first again, then `refused` (a value of
/// 9, which the checks refuse), each ACKed.
async fn three_a_repeat_and_a_refused(
    seller: &Seller,
    bap: &Identity,
    buyer: &ScriptedBuyer,
    ids: [&str; 3],
    refused: &str,
) {
    let first = rating_to(
        bap,
        &buyer.bap_uri(),
        seller,
        ids[0],
        ratings(&[("Order", "O-1", "5")]),
    );
    rate(seller, bap, &first).await;
    for id in &ids[1..] {
        rate_order_one(seller, bap, buyer, id).await;
    }
    rate(seller, bap, &first).await;
    let refused = rating_to(
        bap,
        &buyer.bap_uri(),
        seller,
        refused,
        ratings(&[("Order", "O-1", "9")]),
    );
    rate(seller, bap, &refused).await;
}

/// A platform without a webhook hears of the ratings it answers by listing the ones held for it:
/// in the order they arrived, a page at a time, each until it is answered or answered late (kept
/// for the buyer's repeat), a repeated /rating listed once; one the checks refuse never is.
async fn the_platform_lists_the_ratings_held_for_its_answer(backend: Backend) {
    let store = StoreFixture::new(backend);
    let bap = Identity::new("buyer.test");
    let (seller, clock) = platform_seller_on_a_clock(&store, &bap).await;
    let buyer = ScriptedBuyer::start().await;
    let (status, page) = listed(&seller, "onRating=awaiting").await;
    assert_eq!((status, ids_of(&page)), (200, Vec::<String>::new()));
    three_a_repeat_and_a_refused(&seller, &bap, &buyer, ["m-l1", "m-l2", "m-l3"], "m-l-bad").await;
    assert_eq!(seller.settled("m-l-bad").await["verdict"], "refused");

    let (status, page) = listed(&seller, "onRating=awaiting&limit=2").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids_of(&page), ["m-l1", "m-l2"]);
    assert_eq!(page["ratings"][0]["onRating"], "awaiting");
    assert_eq!(page["ratings"][0]["verdict"], "accepted");
    let next = page["next"].as_str().expect("a next page").to_owned();
    let (status, page) = listed(&seller, &format!("onRating=awaiting&limit=2&after={next}")).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids_of(&page), ["m-l3"]);
    assert!(page.get("next").is_none(), "{page}");

    // Answered, it is held no more; answered late, it is kept and held no more either.
    assert_eq!(seller.answer("buyer.test", "m-l2", "{}").await.0, 200);
    let (_, page) = listed(&seller, "onRating=awaiting").await;
    assert_eq!(ids_of(&page), ["m-l1", "m-l3"]);
    clock.advance_millis(31_000);
    assert_eq!(seller.answer("buyer.test", "m-l3", "{}").await.0, 410);
    let (_, page) = listed(&seller, "onRating=awaiting").await;
    assert_eq!(
        ids_of(&page),
        ["m-l1"],
        "past its ttl and unanswered, still held"
    );

    for (query, what) in [
        ("onRating=", "onRating"),
        ("onRating=sent", "onRating"),
        ("onRating=awaiting&limit=0", "limit"),
        ("onRating=awaiting&limit=1001", "limit"),
        ("onRating=awaiting&limit=many", "limit"),
        ("onRating=awaiting&page=2", "page"),
    ] {
        let (status, err) = listed(&seller, query).await;
        assert_eq!(status, 400, "{query}: {err}");
        assert_eq!(err["error"]["code"], "validation_failed", "{query}: {err}");
        assert!(
            err["error"]["message"].as_str().unwrap().contains(what),
            "{query}: {err}"
        );
    }
    let r = seller
        .http
        .get(format!(
            "{}/internal/seller/ratings?onRating=awaiting",
            seller.app.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

both_stores!(the_platform_lists_the_ratings_held_for_its_answer);

/// With `seller.retention_days`, a received rating is forgotten that many days after its
/// /on_rating went (answered by the platform, or refused by the checks and answered at once):
/// its read-back is 404, the metric counts it, and the same /rating sent again is taken as new.
/// A rating still held for the platform's answer is kept however old.
async fn settled_ratings_are_forgotten_after_the_retention_days(backend: Backend) {
    let store = StoreFixture::new(backend);
    let bap = Identity::new("buyer.test");
    let clock = ondc_rating::clock::FixedClock::at_millis(chrono::Utc::now().timestamp_millis());
    let seller = Seller::start_clocked(&store, "seller", vec![bap.peer()], clock.clone(), |s| {
        platform_answers(s);
        s.seller.retention_days = 30;
        s.seller.retention_sweep_ms = 20;
    })
    .await;
    let buyer = ScriptedBuyer::start().await;
    for id in ["m-k1", "m-k2"] {
        rate_order_one(&seller, &bap, &buyer, id).await;
    }
    let refused = rating_to(
        &bap,
        &buyer.bap_uri(),
        &seller,
        "m-k3",
        ratings(&[("Order", "O-1", "9")]),
    );
    rate(&seller, &bap, &refused).await;
    assert_eq!(seller.answer("buyer.test", "m-k1", "{}").await.0, 200);
    let answered = seller.settled("m-k1").await;
    assert_eq!(answered["onRating"], "sent");
    assert_eq!(
        answered["settledAt"].as_str().map(|t| t.len()),
        Some(24),
        "{answered}"
    );
    assert_eq!(seller.settled("m-k3").await["onRating"], "sent");

    // A day short of the retention, swept many times over: all kept.
    clock.advance_millis(29 * 86_400_000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for id in ["m-k1", "m-k2", "m-k3"] {
        assert_eq!(seller.received("buyer.test", id).await.0, 200, "{id}");
    }
    // Past it: the two settled ones go; the one held for the platform stays, and listed.
    clock.advance_millis(86_400_000 + 60_000);
    let mut gone = false;
    for _ in 0..200 {
        gone = seller.received("buyer.test", "m-k1").await.0 == 404
            && seller.received("buyer.test", "m-k3").await.0 == 404;
        if gone {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone, "the settled ratings were not forgotten");
    let (status, held) = seller.received("buyer.test", "m-k2").await;
    assert_eq!(
        (status, &held["rating"]["onRating"]),
        (200, &json!("awaiting"))
    );
    let (_, page) = listed(&seller, "onRating=awaiting").await;
    assert_eq!(ids_of(&page), ["m-k2"]);
    let (_, page) = listed(&seller, "").await;
    assert_eq!(ids_of(&page), ["m-k2"], "forgotten ratings leave the feed");
    let text = metrics(&seller.app.base).await;
    assert_eq!(
        sample(&text, "ondc_rating_received_forgotten_total"),
        Some(2.0)
    );

    // The same /rating again, stamped now (the clock's now), is a new one to the seller side.
    let now = clock.now();
    let mut again: Value = serde_json::from_slice(&rating_body_at(
        &bap,
        &buyer.bap_uri(),
        &seller.identity.id,
        &format!("{}/bpp", seller.app.base),
        "m-k1",
        now,
    ))
    .unwrap();
    again["message"] = ratings(&[("Order", "O-1", "5")]);
    let again = serde_json::to_vec(&again).unwrap();
    let header = bap.sign_at(&again, now.timestamp());
    let (status, body) =
        post_with_header(&seller.http, &seller.rating_url(), Some(&header), &again).await;
    assert_eq!((status, body), (200, ack_body()));
    let (_, page) = listed(&seller, "onRating=awaiting").await;
    assert_eq!(ids_of(&page), ["m-k2", "m-k1"]);
    let (_, page) = listed(&seller, "").await;
    assert_eq!(ids_of(&page), ["m-k2", "m-k1"]);
}

both_stores!(settled_ratings_are_forgotten_after_the_retention_days);

/// Without `onRating` the list is every received rating, in the order they arrived, a page at a
/// time: the feed a platform reads from where it left off (its webhook failed, or it takes
/// none). A repeated /rating is listed once, a refused one is listed too, and each entry is the
/// whole record as the read-back gives it.
async fn the_platform_reads_every_received_rating_in_the_order_they_arrived(backend: Backend) {
    let store = StoreFixture::new(backend);
    let bap = Identity::new("buyer.test");
    let seller = Seller::start(&store, "seller", vec![bap.peer()], |_| {}).await;
    let buyer = ScriptedBuyer::start().await;
    let (status, page) = listed(&seller, "").await;
    assert_eq!((status, ids_of(&page)), (200, Vec::<String>::new()));
    three_a_repeat_and_a_refused(&seller, &bap, &buyer, ["m-f1", "m-f2", "m-f3"], "m-f4").await;
    for id in ["m-f1", "m-f2", "m-f3", "m-f4"] {
        seller.settled(id).await;
    }

    let mut seen = Vec::new();
    let mut query = "limit=3".to_owned();
    loop {
        let (status, page) = listed(&seller, &query).await;
        assert_eq!(status, 200, "{page}");
        for r in page["ratings"].as_array().unwrap() {
            let id = r["context"]["message_id"].as_str().unwrap();
            let (_, one) = seller.received("buyer.test", id).await;
            assert_eq!(r, &one["rating"], "the list gives the record as read back");
        }
        seen.extend(ids_of(&page));
        match page["next"].as_str() {
            Some(next) => query = format!("limit=3&after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, ["m-f1", "m-f2", "m-f3", "m-f4"]);
    let (_, page) = listed(&seller, "").await;
    assert_eq!(page["ratings"][3]["verdict"], "refused");
    assert_eq!(page["ratings"][0]["onRating"], "sent");
    let (status, page) = listed(&seller, "onRating=awaiting").await;
    assert_eq!((status, ids_of(&page)), (200, Vec::<String>::new()));
}

both_stores!(the_platform_reads_every_received_rating_in_the_order_they_arrived);

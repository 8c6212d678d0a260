//! The v2 create-or-update feedback API and the internal users API, over real HTTP against a
//! real seller adapter (or a scripted one for the failures), on both stores.

use serde_json::{Value, json};

use crate::both_stores;
use crate::helpers::*;

fn feedback_url(base: &str, user: &str, order: &str) -> String {
    format!("{base}/v2/feedback/users/{user}/orders/{order}/rating")
}

/// POSTs feedback with any valid buyer API token (a backend's: its `sub` is not the user).
async fn give(b: &Buyer, user: &str, order: &str, body: &Value) -> (u16, Value) {
    let r = b
        .http
        .post(feedback_url(&b.app.base, user, order))
        .bearer_auth(Buyer::token("backend-service"))
        .json(body)
        .send()
        .await
        .unwrap();
    let (status, body) = (r.status().as_u16(), r.json().await.unwrap_or(Value::Null));
    documented(status, &body, &schemas().feedback_response);
    (status, body)
}

async fn read_back(b: &Buyer, user: &str, order: &str) -> (u16, Value) {
    let r = b
        .http
        .get(feedback_url(&b.app.base, user, order))
        .bearer_auth(Buyer::token("backend-service"))
        .send()
        .await
        .unwrap();
    let (status, body) = (r.status().as_u16(), r.json().await.unwrap_or(Value::Null));
    documented(status, &body, &schemas().feedback_rating);
    (status, body)
}

fn documented(status: u16, body: &Value, success: &ondc_rating::protocol::schema::Schema) {
    let schema = if status < 300 {
        success
    } else {
        &schemas().feedback_error
    };
    if let Err(v) = schema.check(body) {
        panic!("HTTP {status} body does not match its schema: {v}\n{body}");
    }
}

async fn put_user(b: &Buyer, user: &str, body: &Value, token: Option<&str>) -> (u16, Value) {
    let mut req = b
        .http
        .put(format!("{}/internal/users/{user}", b.app.base))
        .json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn user_active(b: &Buyer, user: &str, active: bool) {
    let (status, body) = put_user(b, user, &json!({ "active": active }), Some(INTERNAL)).await;
    assert_eq!(status, 200, "{body}");
}

fn one_error(error: &str, code: Value, meta: Value) -> Value {
    json!({"errors": [{"error": error, "error_code": code, "error_meta": meta}]})
}

/// Waits (bounded) until the read-back reaches `status`.
async fn read_back_until(b: &Buyer, user: &str, order: &str, status: &str) -> Value {
    let mut got = Value::Null;
    for _ in 0..100 {
        got = read_back(b, user, order).await.1;
        if got["rating"]["status"] == status {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    assert_eq!(got["rating"]["status"], status, "{got}");
    got
}

async fn creates_then_updates_with_a_new_rating_each_time(backend: Backend) {
    let p = Pair::start(backend).await;
    user_active(&p.buyer, "alice", true).await;
    let order = p.order("O-1", "alice").await;
    let txn = order["transactionId"].as_str().unwrap();

    let (status, body) = give(
        &p.buyer,
        "alice",
        "O-1",
        &json!({"rating_value": "STARS4", "highlights": ["QUALITY_ITEMS", "SMOOTH_DELIVERY"],
                "thank_you_note": "Thanks for the careful packing!"}),
    )
    .await;
    assert_eq!((status, &body), (200, &json!({"success": true})));

    // The seller's /on_rating for it is matched and stored: the read-back completes.
    let first = read_back_until(&p.buyer, "alice", "O-1", "completed").await;
    let r = &first["rating"];
    assert_eq!(r["rating_value"], "STARS4");
    assert_eq!(r["highlights"], json!(["QUALITY_ITEMS", "SMOOTH_DELIVERY"]));
    assert_eq!(r["thank_you_note"], "Thanks for the careful packing!");
    assert_eq!(r["revision"], 1);
    assert_eq!(r["transaction_id"], txn);
    assert_eq!(
        r["feedback_form"],
        json!({"url": "https://seller.test/feedback/O-1", "mime_type": "text/html",
               "data": "order_id=O-1", "required": false}),
        "the form of the seller's /on_rating"
    );
    assert!(
        r.get("seller_error").is_none() && r.get("failure").is_none(),
        "{r}"
    );
    let m1 = r["message_id"].as_str().unwrap().to_owned();

    // What reached the seller: the Order rating with the stars and the answers.
    let (status, received) = p.seller.received("buyer.test", &m1).await;
    assert_eq!(status, 200, "{received}");
    let q = "What went well?";
    assert_eq!(
        received["rating"]["ratings"],
        json!([{"rating_category": "Order", "id": "O-1", "value": "4", "feedback_form": [
            {"id": "highlights.QUALITY_ITEMS", "parent_id": "order_feedback", "question": q,
             "answer": "QUALITY_ITEMS", "answer_type": "checkbox"},
            {"id": "highlights.SMOOTH_DELIVERY", "parent_id": "order_feedback", "question": q,
             "answer": "SMOOTH_DELIVERY", "answer_type": "checkbox"},
            {"id": "thank_you_note", "parent_id": "order_feedback", "question": "Thank-you note",
             "answer": "Thanks for the careful packing!", "answer_type": "text"}
        ]}])
    );
    assert_eq!(received["rating"]["context"]["transaction_id"], txn);
    assert_eq!(received["rating"]["verdict"], "accepted");

    // A second call updates: a new /rating, new message_id, same transaction.
    let (status, body) = give(&p.buyer, "alice", "O-1", &json!({"rating_value": "STARS2"})).await;
    assert_eq!((status, &body), (200, &json!({"success": true})));
    let second = read_back_until(&p.buyer, "alice", "O-1", "completed").await;
    let r = &second["rating"];
    assert_eq!(r["rating_value"], "STARS2");
    assert_eq!(r["highlights"], json!([]));
    assert!(r.get("thank_you_note").is_none(), "{second}");
    assert_eq!(r["revision"], 2);
    assert_eq!(r["transaction_id"], txn);
    let m2 = r["message_id"].as_str().unwrap().to_owned();
    assert_ne!(m1, m2);
    let (status, received) = p.seller.received("buyer.test", &m2).await;
    assert_eq!(status, 200, "{received}");
    assert_eq!(
        received["rating"]["ratings"],
        json!([{"rating_category": "Order", "id": "O-1", "value": "2"}])
    );
    assert_eq!(received["rating"]["context"]["transaction_id"], txn);
    // The first one is still there, unchanged: the seller has both messages.
    assert_eq!(p.seller.received("buyer.test", &m1).await.0, 200);

    // The one-time buyer API is separate and stays one-time on the same order.
    let (status, body) = p.buyer.rate("alice", &full_rating("O-1")).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = p.buyer.rate("alice", &full_rating("O-1")).await;
    assert_eq!(status, 409, "{body}");
    // ... and the v2 API still updates after it.
    let (status, _) = give(&p.buyer, "alice", "O-1", &json!({"rating_value": "STARS5"})).await;
    assert_eq!(status, 200);
    let third = read_back_until(&p.buyer, "alice", "O-1", "completed").await;
    assert_eq!(third["rating"]["revision"], 3);
    assert_eq!(third["rating"]["rating_value"], "STARS5");
}
both_stores!(creates_then_updates_with_a_new_rating_each_time);

async fn every_error_has_its_exact_body(backend: Backend) {
    let p = Pair::start(backend).await;
    let b = &p.buyer;
    user_active(b, "alice", true).await;
    user_active(b, "carol", false).await;
    user_active(b, "dave", true).await;
    p.order("O-1", "alice").await;
    p.order("O-D", "dave").await;
    let good = json!({"rating_value": "STARS5"});

    // 401: no token, a wrongly signed one.
    let r = b
        .http
        .post(feedback_url(&b.app.base, "alice", "O-1"))
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body, one_error("Unauthorized", json!(2001), json!({})));
    let forged = ondc_rating::bap::auth::mint_hs256("another-secret-entirely", "x", now(), 600);
    let r = b
        .http
        .post(feedback_url(&b.app.base, "alice", "O-1"))
        .bearer_auth(forged)
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // 400 unknown user.
    let (status, body) = give(b, "bob", "O-1", &good).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        one_error("User Not Found", json!(1001), json!({"key": "user_id"}))
    );
    // Several 400s at once: every bad field and the unknown user.
    let (status, body) = give(
        b,
        "bob",
        "O-1",
        &json!({"rating_value": "STARS9", "highlights": ["FAST_PICKUP", "FRIENDLY"], "tip": 5}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"errors": [
            {"error": "Unknown Field", "error_code": 1006, "error_meta": {"key": "tip"}},
            {"error": "Invalid Rating Value", "error_code": 1003, "error_meta": {"key": "rating_value"}},
            {"error": "Invalid Highlight", "error_code": 1004, "error_meta": {"key": "highlights[1]"}},
            {"error": "User Not Found", "error_code": 1001, "error_meta": {"key": "user_id"}},
        ]})
    );
    // Field errors for a known user.
    let (status, body) = give(b, "alice", "O-1", &json!({"rating_value": "stars5"})).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        one_error(
            "Invalid Rating Value",
            json!(1003),
            json!({"key": "rating_value"})
        )
    );
    let (status, body) = give(
        b,
        "alice",
        "O-1",
        &json!({"rating_value": "STARS3", "highlights": ["SMART_BAGGING", "BAD", "EASY_PARKING"]}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        one_error(
            "Invalid Highlight",
            json!(1004),
            json!({"key": "highlights[1]"})
        )
    );
    let (status, body) = give(b, "alice", "O-1", &json!({"highlights": []})).await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        one_error("Missing Field", json!(1002), json!({"key": "rating_value"}))
    );
    let (status, body) = give(
        b,
        "alice",
        "O-1",
        &json!({"rating_value": "STARS3", "thank_you_note": ["no"]}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        one_error(
            "Invalid Field",
            json!(1005),
            json!({"key": "thank_you_note"})
        )
    );
    let r = b
        .http
        .post(feedback_url(&b.app.base, "alice", "O-1"))
        .bearer_auth(Buyer::token("backend-service"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body,
        one_error("Invalid Request Body", json!(1000), json!({}))
    );

    // 403 inactive user, also after deactivating an active one.
    let (status, body) = give(b, "carol", "O-1", &good).await;
    assert_eq!(status, 403);
    assert_eq!(body, one_error("User Not Active", Value::Null, json!({})));
    user_active(b, "dave", false).await;
    let (status, body) = give(b, "dave", "O-D", &good).await;
    assert_eq!(status, 403);
    assert_eq!(body, one_error("User Not Active", Value::Null, json!({})));

    // 404 unknown order, and another user's order.
    let not_found = one_error("Resource not found", json!(4000), json!({}));
    let (status, body) = give(b, "alice", "O-404", &good).await;
    assert_eq!((status, &body), (404, &not_found));
    user_active(b, "dave", true).await;
    let (status, body) = give(b, "dave", "O-1", &good).await;
    assert_eq!((status, &body), (404, &not_found));
    // Nothing was sent, so nothing reads back.
    let (status, body) = read_back(b, "alice", "O-1").await;
    assert_eq!((status, &body), (404, &not_found));
    let (status, body) = read_back(b, "bob", "O-1").await;
    assert_eq!(status, 400);
    assert_eq!(
        body,
        one_error("User Not Found", json!(1001), json!({"key": "user_id"}))
    );

    // 422 an order that is not completed.
    let mut open = order(
        "alice",
        &p.seller.identity.id,
        &format!("{}/bpp", p.seller.app.base),
    );
    open["state"] = json!("In-progress");
    assert_eq!(b.put_order("O-OPEN", &open).await.0, 200);
    let (status, body) = give(b, "alice", "O-OPEN", &good).await;
    assert_eq!(status, 422);
    assert_eq!(
        body,
        one_error("Order Not Completed", json!(4220), json!({}))
    );
}
both_stores!(every_error_has_its_exact_body);

/// A buyer whose orders are sold by `seller` (scripted), with user alice active and order O-1.
async fn buyer_for(
    store: &StoreFixture,
    bpp_uri: &str,
    tweak: impl FnOnce(&mut ondc_rating::config::Settings),
) -> Buyer {
    let b = Buyer::start(store, "buyer", vec![], tweak).await;
    user_active(&b, "alice", true).await;
    let o = order("alice", "scripted-seller.test", bpp_uri);
    assert_eq!(b.put_order("O-1", &o).await.0, 200);
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seller_failures_are_errors_in_the_same_shape() {
    let store = StoreFixture::new(Backend::Embedded);
    let good = json!({"rating_value": "STARS3", "highlights": ["HELPFUL_CHAT"]});

    // A NACK: 502 with the seller's error; nothing is recorded.
    let nack = r#"{"message":{"ack":{"status":"NACK"}},"error":{"type":"DOMAIN-ERROR","code":"30018","message":"unknown order"}}"#;
    let seller = ScriptedSeller::start(Script::Respond(400, nack.into())).await;
    let b = buyer_for(&store, &seller.bpp_uri(), |_| {}).await;
    let (status, body) = give(&b, "alice", "O-1", &good).await;
    assert_eq!(status, 502);
    assert_eq!(
        body,
        one_error(
            "Seller Rejected",
            json!(5020),
            json!({"seller_error": {"type": "DOMAIN-ERROR", "code": "30018", "message": "unknown order"}})
        )
    );
    assert_eq!(seller.requests().len(), 1);
    assert_eq!(read_back(&b, "alice", "O-1").await.0, 404);

    // Unreachable: 502.
    let store = StoreFixture::new(Backend::Embedded);
    let dead = format!("http://127.0.0.1:{}/bpp", dead_port());
    let b = buyer_for(&store, &dead, |_| {}).await;
    let (status, body) = give(&b, "alice", "O-1", &good).await;
    assert_eq!(status, 502);
    assert_eq!(
        body,
        one_error("Seller Unreachable", json!(5021), json!({}))
    );

    // Too slow: 504.
    let store = StoreFixture::new(Backend::Embedded);
    let slow = ScriptedSeller::start(Script::AckAfter(2_000)).await;
    let b = buyer_for(&store, &slow.bpp_uri(), |s| {
        s.buyer.send_timeout_ms = 300;
        s.buyer.send_attempts = 1;
    })
    .await;
    let (status, body) = give(&b, "alice", "O-1", &good).await;
    assert_eq!(status, 504);
    assert_eq!(body, one_error("Seller Timeout", json!(5040), json!({})));

    // A seller that ACKs without calling back: 200 at once, read-back "acknowledged".
    let store = StoreFixture::new(Backend::Embedded);
    let silent = ScriptedSeller::start(Script::AckSilently).await;
    let b = buyer_for(&store, &silent.bpp_uri(), |s| {
        s.peers.push(silent.identity.peer());
    })
    .await;
    let started = std::time::Instant::now();
    let (status, _) = give(&b, "alice", "O-1", &good).await;
    assert_eq!(status, 200);
    assert!(
        started.elapsed() < std::time::Duration::from_millis(b.app.settings.buyer.callback_wait_ms),
        "the v2 API must not wait for /on_rating"
    );
    let (_, got) = read_back(&b, "alice", "O-1").await;
    assert_eq!(got["rating"]["status"], "acknowledged");
    let sent: Value = serde_json::from_slice(&silent.requests()[0].body).unwrap();
    assert_eq!(sent["message"]["ratings"][0]["value"], "3");
    assert_eq!(got["rating"]["message_id"], sent["context"]["message_id"]);

    // Its late /on_rating refusing the rating reads "refused": with rating_ack false alone (no
    // error to show), then, for the next submission, with its error block.
    let declined = callback_of(
        &sent["context"],
        json!({"message": {"feedback_ack": true, "rating_ack": false}}),
    );
    assert_eq!(b.on_rating(&silent.identity, &declined).await.0, 200);
    let got = read_back_until(&b, "alice", "O-1", "refused").await;
    assert!(got["rating"].get("seller_error").is_none(), "{got}");
    assert_eq!(
        got["rating"]["failure"],
        ondc_rating::store::CallbackRecord::DECLINED
    );
    assert!(
        got["rating"].get("feedback_form").is_none(),
        "none was sent"
    );
    assert_eq!(give(&b, "alice", "O-1", &good).await.0, 200);
    let sent: Value = serde_json::from_slice(&silent.requests()[1].body).unwrap();
    let error = json!({"type": "DOMAIN-ERROR", "code": "30018", "message": "unknown order"});
    let refused = callback_of(
        &sent["context"],
        json!({"message": {"feedback_ack": false, "rating_ack": false}, "error": error}),
    );
    assert_eq!(b.on_rating(&silent.identity, &refused).await.0, 200);
    let got = read_back(&b, "alice", "O-1").await.1;
    assert_eq!(got["rating"]["message_id"], sent["context"]["message_id"]);
    assert_eq!(got["rating"]["status"], "refused", "{got}");
    assert_eq!(got["rating"]["seller_error"], error, "{got}");
    assert!(got["rating"].get("failure").is_none(), "{got}");
}

async fn users_api_takes_only_the_internal_token(backend: Backend) {
    let store = StoreFixture::new(backend);
    let b = Buyer::start(&store, "buyer", vec![], |_| {}).await;
    let active = json!({"active": true});
    for token in [None, Some("wrong"), Some(Buyer::token("u1").as_str())] {
        let (status, body) = put_user(&b, "u1", &active, token).await;
        assert_eq!(status, 401, "{token:?}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    let get = |token: Option<&'static str>| {
        let mut req = b.http.get(format!("{}/internal/users/u1", b.app.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(get(None).await.0, 401);
    let (status, body) = get(Some(INTERNAL)).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "user_not_found");
    assert_documented(status, &body, &schemas().error);

    for bad in [
        json!({}),
        json!({"active": "yes"}),
        json!({"active": true, "x": 1}),
    ] {
        let (status, body) = put_user(&b, "u1", &bad, Some(INTERNAL)).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, body) = put_user(&b, "u1", &active, Some(INTERNAL)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"]["userId"], "u1");
    assert_eq!(body["user"]["active"], true);
    assert!(body["user"]["updatedAt"].is_string());
    let (status, body) = put_user(&b, "u1", &json!({"active": false}), Some(INTERNAL)).await;
    assert_eq!(status, 200);
    let (status, got) = get(Some(INTERNAL)).await;
    assert_eq!(status, 200);
    assert_eq!(got, body);
    assert_eq!(got["user"]["active"], false);
}
both_stores!(users_api_takes_only_the_internal_token);

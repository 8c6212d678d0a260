//! The listing feedback API (`POST /v2/listings/{listing_id}/feedback`), one-time per (rater,
//! listing), over real HTTP against a real seller adapter (or a scripted one), on both stores.

use serde_json::{Value, json};

use crate::both_stores;
use crate::helpers::*;

fn feedback_url(base: &str, listing: &str) -> String {
    format!("{base}/v2/listings/{listing}/feedback")
}

/// POSTs feedback as `sub` (None: no token). Returns status, Location and body; every body is
/// checked against its schema.
async fn post(b: &Buyer, sub: Option<&str>, listing: &str, body: &Value) -> (u16, String, Value) {
    let mut req = b.http.post(feedback_url(&b.app.base, listing)).json(body);
    if let Some(s) = sub {
        req = req.bearer_auth(Buyer::token(s));
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let location = r
        .headers()
        .get("location")
        .map(|h| h.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = r.json().await.unwrap_or(Value::Null);
    documented(status, &body);
    (status, location, body)
}

fn documented(status: u16, body: &Value) {
    let schema = if status < 300 {
        &schemas().listing_feedback_response
    } else {
        &schemas().listing_feedback_error
    };
    if let Err(v) = schema.check(body) {
        panic!("HTTP {status} body does not match its schema: {v}\n{body}");
    }
}

async fn read_back(b: &Buyer, sub: &str, location: &str) -> (u16, Value) {
    let r = b
        .http
        .get(format!("{}{location}", b.app.base))
        .bearer_auth(Buyer::token(sub))
        .send()
        .await
        .unwrap();
    let (status, body) = (r.status().as_u16(), r.json().await.unwrap_or(Value::Null));
    documented(status, &body);
    (status, body)
}

fn answer(id: &str, question: &str, answer: &str) -> Value {
    json!({"id": id, "parent_id": "listing_feedback", "question": question, "answer": answer,
           "answer_type": "text"})
}

fn conflict() -> Value {
    json!({"code": 40900, "message": "Feedback was already given on this listing."})
}

async fn both_parties_rate_once_and_the_seller_gets_the_mapping(backend: Backend) {
    let p = Pair::start(backend).await;
    let order = p.order("L-1", "alice").await;
    let txn = order["transactionId"].as_str().unwrap();

    // The shipper (the order's user) rates the provider, detailed scores taken.
    let (status, location, body) = post(
        &p.buyer,
        Some("alice"),
        "L-1",
        &json!({"Rating": "Positive", "Feedback": " Careful and on time ",
                "DetailedTspFeedback": {"Communication": 4, "CareOfGoods": 5,
                                        "Punctuality_Timeliness": 0, "ServicesAsDescribed": 3}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(location, "/v2/listings/L-1/feedback/alice");
    let f = &body["feedback"];
    assert_eq!(f["listing_id"], "L-1");
    assert_eq!(f["user_id"], "alice");
    assert_eq!(f["rater_role"], "shipper");
    assert_eq!(f["Rating"], "Positive");
    assert_eq!(f["Feedback"], "Careful and on time");
    assert_eq!(
        f["DetailedTspFeedback"],
        json!({"Communication": 4, "CareOfGoods": 5, "Punctuality_Timeliness": 0,
               "ServicesAsDescribed": 3})
    );
    assert_eq!(f["status"], "acknowledged");
    assert_eq!(f["transaction_id"], txn);
    let m1 = f["message_id"].as_str().unwrap().to_owned();

    let (status, received) = p.seller.received("buyer.test", &m1).await;
    assert_eq!(status, 200, "{received}");
    assert_eq!(
        received["rating"]["ratings"],
        json!([{"rating_category": "Order", "id": "L-1", "value": "5", "feedback_form": [
            answer("rater_role", "Rated by", "shipper"),
            answer("feedback", "Feedback", "Careful and on time"),
            answer("DetailedTspFeedback.Communication", "Communication", "4"),
            answer("DetailedTspFeedback.CareOfGoods", "CareOfGoods", "5"),
            answer("DetailedTspFeedback.Punctuality_Timeliness", "Punctuality_Timeliness", "0"),
            answer("DetailedTspFeedback.ServicesAsDescribed", "ServicesAsDescribed", "3"),
        ]}])
    );
    assert_eq!(received["rating"]["context"]["transaction_id"], txn);
    assert_eq!(received["rating"]["verdict"], "accepted");

    // The Location reads it back, for either party; the seller's /on_rating completes it.
    let mut got = Value::Null;
    for _ in 0..100 {
        got = read_back(&p.buyer, "P1", &location).await.1;
        if got["feedback"]["status"] == "completed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    assert_eq!(got["feedback"]["status"], "completed", "{got}");
    assert_eq!(got["feedback"]["message_id"], m1.as_str());
    assert_eq!(
        got["feedback"]["feedback_form"],
        json!({"url": "https://seller.test/feedback/L-1", "mime_type": "text/html",
               "data": "order_id=L-1", "required": false}),
        "the form of the seller's /on_rating"
    );
    assert_eq!(read_back(&p.buyer, "mallory", &location).await.0, 403);
    assert_eq!(
        read_back(&p.buyer, "alice", "/v2/listings/L-1/feedback/P1")
            .await
            .1,
        json!({"code": 40401, "message": "No such feedback."})
    );

    // The provider rates the shipper: its DetailedTspFeedback is ignored (even out of range).
    let (status, location, body) = post(
        &p.buyer,
        Some("P1"),
        "L-1",
        &json!({"Rating": "Negative", "Feedback": "Late at pickup",
                "DetailedTspFeedback": {"Communication": 9}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(location, "/v2/listings/L-1/feedback/P1");
    assert_eq!(body["feedback"]["rater_role"], "provider");
    assert!(
        body["feedback"].get("DetailedTspFeedback").is_none(),
        "{body}"
    );
    let m2 = body["feedback"]["message_id"].as_str().unwrap();
    assert_ne!(m1, m2);
    let (status, received) = p.seller.received("buyer.test", m2).await;
    assert_eq!(status, 200, "{received}");
    assert_eq!(
        received["rating"]["ratings"],
        json!([{"rating_category": "Order", "id": "L-1", "value": "1", "feedback_form": [
            answer("rater_role", "Rated by", "provider"),
            answer("feedback", "Feedback", "Late at pickup"),
        ]}])
    );

    // Neutral is "3"; a second feedback by the same rater is a 409, whatever it says.
    p.order("L-2", "alice").await;
    let (status, _, body) = post(
        &p.buyer,
        Some("alice"),
        "L-2",
        &json!({"Rating": "Neutral"}),
    )
    .await;
    assert_eq!(status, 201);
    let m3 = body["feedback"]["message_id"].as_str().unwrap();
    let (_, received) = p.seller.received("buyer.test", m3).await;
    assert_eq!(received["rating"]["ratings"][0]["value"], "3");
    for (sub, listing) in [("alice", "L-1"), ("P1", "L-1"), ("alice", "L-2")] {
        let (status, location, body) =
            post(&p.buyer, Some(sub), listing, &json!({"Rating": "Positive"})).await;
        assert_eq!((status, &body), (409, &conflict()), "{sub} on {listing}");
        assert_eq!(location, "");
    }
}
both_stores!(both_parties_rate_once_and_the_seller_gets_the_mapping);

async fn every_error_has_its_exact_body(backend: Backend) {
    let p = Pair::start(backend).await;
    let b = &p.buyer;
    p.order("L-1", "alice").await;
    let good = json!({"Rating": "Positive"});

    // 401: no token, a forged one, an expired one.
    let unauthorized =
        json!({"code": 40100, "message": "The token is missing, invalid or expired."});
    let (status, _, body) = post(b, None, "L-1", &good).await;
    assert_eq!((status, &body), (401, &unauthorized));
    let forged = ondc_rating::bap::auth::mint_hs256("another-secret-entirely", "alice", now(), 600);
    let expired = ondc_rating::bap::auth::mint_hs256(JWT_SECRET, "alice", now() - 3600, 60);
    for token in [forged, expired] {
        let r = b
            .http
            .post(feedback_url(&b.app.base, "L-1"))
            .bearer_auth(token)
            .json(&good)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(r.json::<Value>().await.unwrap(), unauthorized);
    }

    // 404 unknown listing; 403 someone who did not transact on it.
    let (status, _, body) = post(b, Some("alice"), "L-NONE", &good).await;
    assert_eq!(
        (status, &body),
        (
            404,
            &json!({"code": 40400, "message": "The listing was not found."})
        )
    );
    let (status, _, body) = post(b, Some("mallory"), "L-1", &good).await;
    assert_eq!(
        (status, &body),
        (
            403,
            &json!({"code": 40300, "message": "You did not transact on this listing."})
        )
    );

    // 400s.
    let (status, _, body) = post(b, Some("alice"), "L-1", &json!({"Feedback": "x"})).await;
    assert_eq!(
        (status, &body),
        (
            400,
            &json!({"code": 40001, "message": "The Rating field is required.",
                    "errors": [{"field": "Rating", "message": "The Rating field is required."}]})
        )
    );
    let invalid = "The field Rating must be one of Positive, Negative, Neutral.";
    for rating in [json!("Great"), json!("positive"), json!(5)] {
        let (status, _, body) = post(b, Some("alice"), "L-1", &json!({"Rating": rating})).await;
        assert_eq!(
            (status, &body),
            (
                400,
                &json!({"code": 40006, "message": invalid,
                        "errors": [{"field": "Rating", "message": invalid}]})
            )
        );
    }
    let (status, _, body) = post(
        b,
        Some("alice"),
        "L-1",
        &json!({"Rating": "Positive", "DetailedTspFeedback": {"Communication": 6,
                "CareOfGoods": -1, "Punctuality_Timeliness": 2.5, "ServicesAsDescribed": "4"}}),
    )
    .await;
    let between =
        |f: &str| json!({"field": f, "message": format!("The field {f} must be between 0 and 5.")});
    assert_eq!(
        (status, &body),
        (
            400,
            &json!({"code": 40000, "message": "One or more validation errors occurred.",
                    "errors": [between("Communication"), between("CareOfGoods"),
                               between("Punctuality_Timeliness"), between("ServicesAsDescribed")]})
        )
    );
    // A missing rating with bad fields: 40001, every field listed.
    let (status, _, body) = post(
        b,
        Some("alice"),
        "L-1",
        &json!({"DetailedTspFeedback": {"CareOfGoods": 7}}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], 40001);
    assert_eq!(
        body["errors"],
        json!([{"field": "Rating", "message": "The Rating field is required."}, between("CareOfGoods")])
    );
    let r = b
        .http
        .post(feedback_url(&b.app.base, "L-1"))
        .bearer_auth(Buyer::token("alice"))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"code": 40000, "message": "The request body is not valid JSON."})
    );

    // None of these took the slot: the first valid feedback is still a 201.
    let (status, _, body) = post(b, Some("alice"), "L-1", &good).await;
    assert_eq!(status, 201, "{body}");
}
both_stores!(every_error_has_its_exact_body);

/// A buyer whose listing L-1 (user alice, provider P1) is sold by a scripted seller.
async fn buyer_for(
    store: &StoreFixture,
    bpp_uri: &str,
    tweak: impl FnOnce(&mut ondc_rating::config::Settings),
) -> Buyer {
    let b = Buyer::start(store, "buyer", vec![], tweak).await;
    let o = order("alice", "scripted-seller.test", bpp_uri);
    assert_eq!(b.put_order("L-1", &o).await.0, 200);
    b
}

async fn concurrent_feedback_is_taken_once(backend: Backend) {
    let store = StoreFixture::new(backend);
    let seller = ScriptedSeller::start(Script::AckSilently).await;
    let b = buyer_for(&store, &seller.bpp_uri(), |_| {}).await;
    let posts = (0..20).map(|i| {
        let b = &b;
        async move {
            let rating = ["Positive", "Neutral", "Negative"][i % 3];
            post(b, Some("alice"), "L-1", &json!({"Rating": rating})).await
        }
    });
    let results = futures_util::future::join_all(posts).await;
    let created = results.iter().filter(|r| r.0 == 201).count();
    assert_eq!(created, 1, "{results:?}");
    for (status, _, body) in results.iter().filter(|r| r.0 != 201) {
        assert_eq!((*status, body), (409, &conflict()));
    }
    assert_eq!(
        seller.requests().len(),
        1,
        "exactly one /rating reached the seller"
    );
}
both_stores!(concurrent_feedback_is_taken_once);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seller_failures_release_the_slot_unless_it_may_have_arrived() {
    let good = json!({"Rating": "Positive", "Feedback": "fine"});

    // A NACK: 502 with the seller's error; the slot is released, so a retry is not a 409.
    let store = StoreFixture::new(Backend::Embedded);
    let nack = r#"{"message":{"ack":{"status":"NACK"}},"error":{"type":"DOMAIN-ERROR","code":"30018","message":"unknown order"}}"#;
    let seller = ScriptedSeller::start(Script::Respond(400, nack.into())).await;
    let b = buyer_for(&store, &seller.bpp_uri(), |_| {}).await;
    for n in 1..=2 {
        let (status, _, body) = post(&b, Some("alice"), "L-1", &good).await;
        assert_eq!(
            (status, &body),
            (
                502,
                &json!({"code": 50201, "message": "The provider's platform refused the feedback.",
                        "seller_error": {"type": "DOMAIN-ERROR", "code": "30018", "message": "unknown order"}})
            )
        );
        assert_eq!(seller.requests().len(), n);
    }

    // Unreachable: 502, released.
    let store = StoreFixture::new(Backend::Embedded);
    let dead = format!("http://127.0.0.1:{}/bpp", dead_port());
    let b = buyer_for(&store, &dead, |_| {}).await;
    for _ in 0..2 {
        let (status, _, body) = post(&b, Some("alice"), "L-1", &good).await;
        assert_eq!(
            (status, &body),
            (
                502,
                &json!({"code": 50202, "message": "The provider's platform could not be reached."})
            )
        );
    }

    // Too slow: 504 and the slot is kept (the seller may have it): the retry is a 409, and the
    // read-back shows it pending.
    let store = StoreFixture::new(Backend::Embedded);
    let slow = ScriptedSeller::start(Script::AckAfter(2_000)).await;
    let b = buyer_for(&store, &slow.bpp_uri(), |s| {
        s.buyer.send_timeout_ms = 300;
        s.buyer.send_attempts = 1;
    })
    .await;
    let (status, _, body) = post(&b, Some("alice"), "L-1", &good).await;
    assert_eq!(
        (status, &body),
        (
            504,
            &json!({"code": 50400, "message": "The provider's platform did not answer in time; the feedback is kept."})
        )
    );
    let (status, _, body) = post(&b, Some("alice"), "L-1", &good).await;
    assert_eq!((status, &body), (409, &conflict()));
    let (status, body) = read_back(&b, "alice", "/v2/listings/L-1/feedback/alice").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["feedback"]["status"], "pending");
}

/// The seller's late /on_rating saying `rating_ack: false`, with no error block, refuses the
/// feedback: the read-back says `refused` (where it said `completed` before) and why, in
/// `failure`; one with an error block shows it as `seller_error`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_with_rating_ack_false_reads_refused() {
    let store = StoreFixture::new(Backend::Embedded);
    let seller = ScriptedSeller::start(Script::AckSilently).await;
    let b = buyer_for(&store, &seller.bpp_uri(), |s| {
        s.peers.push(seller.identity.peer());
    })
    .await;
    let (status, location, body) =
        post(&b, Some("alice"), "L-1", &json!({"Rating": "Negative"})).await;
    assert_eq!(status, 201, "{body}");
    let sent: Value = serde_json::from_slice(&seller.requests()[0].body).unwrap();
    let declined = callback_of(
        &sent["context"],
        json!({"message": {"feedback_ack": true, "rating_ack": false}}),
    );
    assert_eq!(b.on_rating(&seller.identity, &declined).await.0, 200);
    let (status, got) = read_back(&b, "alice", &location).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["feedback"]["message_id"], sent["context"]["message_id"]);
    assert_eq!(got["feedback"]["status"], "refused", "{got}");
    assert_eq!(
        got["feedback"]["failure"],
        ondc_rating::store::CallbackRecord::DECLINED
    );
    assert!(got["feedback"].get("seller_error").is_none(), "{got}");

    // The other party's feedback, refused with an error block: the read-back shows it.
    let (status, location, body) =
        post(&b, Some("P1"), "L-1", &json!({"Rating": "Positive"})).await;
    assert_eq!(status, 201, "{body}");
    let sent: Value = serde_json::from_slice(&seller.requests()[1].body).unwrap();
    let error = json!({"type": "DOMAIN-ERROR", "code": "30018", "message": "unknown order"});
    let refused = callback_of(
        &sent["context"],
        json!({"message": {"feedback_ack": false, "rating_ack": true}, "error": error}),
    );
    assert_eq!(b.on_rating(&seller.identity, &refused).await.0, 200);
    let (status, got) = read_back(&b, "alice", &location).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["feedback"]["user_id"], "P1");
    assert_eq!(got["feedback"]["status"], "refused", "{got}");
    assert_eq!(got["feedback"]["seller_error"], error, "{got}");
    assert!(got["feedback"].get("failure").is_none(), "{got}");
}

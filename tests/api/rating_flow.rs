//! The buyer API end to end against a real seller adapter, on both stores.

use serde_json::{Value, json};

use crate::both_stores;
use crate::helpers::*;

const CONTEXT_KEYS: [&str; 13] = [
    "domain",
    "country",
    "city",
    "action",
    "core_version",
    "bap_id",
    "bap_uri",
    "bpp_id",
    "bpp_uri",
    "transaction_id",
    "message_id",
    "timestamp",
    "ttl",
];

fn is_ondc_timestamp(s: &str) -> bool {
    // YYYY-MM-DDTHH:MM:SS.sssZ
    s.len() == 24
        && s.ends_with('Z')
        && s.as_bytes()[19] == b'.'
        && chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

async fn happy_path_returns_the_exact_envelope(backend: Backend) {
    let p = Pair::start(backend).await;
    let order = p.order("O-1", "alice").await;
    let (status, body) = p.buyer.rate("alice", &full_rating("O-1")).await;
    assert_eq!(status, 200, "{body}");

    // Exactly {"data":{"dto":{"context","message"},"status":"ACK"}}.
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["data"]
    );
    let data = &body["data"];
    assert_eq!(data.as_object().unwrap().len(), 2);
    assert_eq!(data["status"], "ACK");
    let ctx = data["dto"]["context"].as_object().unwrap();
    let mut keys: Vec<&str> = ctx.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut want = CONTEXT_KEYS.to_vec();
    want.sort_unstable();
    assert_eq!(keys, want);
    assert_eq!(ctx["action"], "on_rating");
    assert_eq!(ctx["domain"], "ONDC:RET11");
    assert_eq!(ctx["country"], "IND");
    assert_eq!(ctx["city"], "std:080");
    assert_eq!(ctx["core_version"], "1.2.0");
    assert_eq!(ctx["ttl"], "PT30S");
    assert_eq!(ctx["bap_id"], "buyer.test");
    assert_eq!(ctx["bap_uri"], format!("{}/bap", p.buyer.app.base));
    assert_eq!(ctx["bpp_id"], "seller.test");
    assert_eq!(ctx["bpp_uri"], format!("{}/bpp", p.seller.app.base));
    assert_eq!(ctx["transaction_id"], order["transactionId"]);
    let message_id = ctx["message_id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(message_id).is_ok());
    assert_ne!(message_id, ctx["transaction_id"].as_str().unwrap());
    assert!(is_ondc_timestamp(ctx["timestamp"].as_str().unwrap()));
    assert_eq!(
        data["dto"]["message"],
        json!({"order_id": "O-1", "feedback_form": {"form": {
            "url": "https://seller.test/feedback/O-1", "mime_type": "text/html"}}})
    );

    // What reached the seller: the ratings in ONDC form, kept for the seller platform, and the
    // /on_rating it sent back was delivered.
    let (status, received) = p.seller.received("buyer.test", message_id).await;
    assert_eq!(status, 200, "{received}");
    let r = &received["rating"];
    assert_eq!(
        r["ratings"],
        json!([
            {"rating_category": "Order", "id": "O-1", "value": "5"},
            {"rating_category": "Provider", "id": "P1", "value": "4"},
            {"rating_category": "Item", "id": "I1", "value": "5"},
            {"rating_category": "Item", "id": "I2", "value": "1"},
            {"rating_category": "Fulfillment", "id": "F1", "value": "2"},
            {"rating_category": "Agent", "id": "A1", "value": "3"},
        ])
    );
    assert_eq!(r["context"]["action"], "rating");
    assert_eq!(r["context"]["message_id"], message_id);
    assert!(is_ondc_timestamp(
        r["context"]["timestamp"].as_str().unwrap()
    ));
    assert!(
        r["context"]["timestamp"].as_str().unwrap() < ctx["timestamp"].as_str().unwrap(),
        "on_rating must be later than rating"
    );
    // Delivery is recorded just after the buyer's ACK; allow the seller a moment to write it.
    let mut delivered = Value::Null;
    for _ in 0..50 {
        delivered =
            p.seller.received("buyer.test", message_id).await.1["rating"]["onRating"].clone();
        if delivered == "sent" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(delivered, "sent");

    // The order's rating reflects the submitted value.
    let (status, got) = p.buyer.rating_of("alice", "O-1").await;
    assert_eq!(status, 200);
    assert_eq!(got["data"]["status"], "completed");
    assert_eq!(
        got["data"]["rating"],
        json!({"orderRating": 5, "providerRating": 4, "agentRating": 3, "fulfilmentRating": 2,
               "itemRatings": [{"itemId": "I1", "rating": 5}, {"itemId": "I2", "rating": 1}]})
    );
    assert_eq!(got["data"]["messageId"], message_id);
    assert_eq!(
        got["data"]["feedbackForm"],
        json!({"url": "https://seller.test/feedback/O-1", "mime_type": "text/html",
               "data": "order_id=O-1", "required": false}),
        "the form as the seller sent it, its data and required flag included"
    );
}
both_stores!(happy_path_returns_the_exact_envelope);

async fn second_submission_is_refused_whatever_its_content(backend: Backend) {
    let p = Pair::start(backend).await;
    p.order("O-2", "alice").await;
    let (status, _) = p
        .buyer
        .rate("alice", &json!({"orderId": "O-2", "orderRating": 4}))
        .await;
    assert_eq!(status, 200);
    for body in [
        json!({"orderId": "O-2", "orderRating": 4}),
        json!({"orderId": "O-2", "orderRating": 1, "providerRating": 1}),
    ] {
        let (status, err) = p.buyer.rate("alice", &body).await;
        assert_eq!(status, 409, "{err}");
        assert_eq!(err["error"]["code"], "already_rated");
        // The refusal names the rating's status as a read of it does: its /on_rating is in.
        assert!(
            err["error"]["message"]
                .as_str()
                .is_some_and(|m| m.ends_with("(status completed)")),
            "{err}"
        );
    }
    // The stored rating is still the first one.
    let (_, got) = p.buyer.rating_of("alice", "O-2").await;
    assert_eq!(
        got["data"]["rating"],
        json!({"orderRating": 4, "itemRatings": []})
    );
}
both_stores!(second_submission_is_refused_whatever_its_content);

async fn buyer_api_errors(backend: Backend) {
    let p = Pair::start(backend).await;
    p.order("O-3", "alice").await;
    let mut pending = order(
        "alice",
        "seller.test",
        &format!("{}/bpp", p.seller.app.base),
    );
    pending["state"] = json!("In-progress");
    assert_eq!(p.buyer.put_order("O-4", &pending).await.0, 200);
    let mut bare = order(
        "alice",
        "seller.test",
        &format!("{}/bpp", p.seller.app.base),
    );
    bare.as_object_mut().unwrap().remove("agentId");
    bare.as_object_mut().unwrap().remove("providerId");
    assert_eq!(p.buyer.put_order("O-5", &bare).await.0, 200);

    let cases: Vec<(&str, Value, u16, &str, Vec<&str>)> = vec![
        (
            "alice",
            json!({"orderId": "O-3", "orderRating": 0}),
            400,
            "validation_failed",
            vec!["orderRating"],
        ),
        (
            "alice",
            json!({"orderId": "O-3", "orderRating": 6}),
            400,
            "validation_failed",
            vec!["orderRating"],
        ),
        (
            "alice",
            json!({"orderId": "O-3", "orderRating": 4.5}),
            400,
            "validation_failed",
            vec!["orderRating"],
        ),
        (
            "alice",
            json!({"orderId": "O-3", "orderRating": "5"}),
            400,
            "validation_failed",
            vec!["orderRating"],
        ),
        (
            "alice",
            json!({"orderId": "O-3"}),
            400,
            "validation_failed",
            vec!["orderRating"],
        ),
        (
            "alice",
            json!({"orderRating": 5}),
            400,
            "validation_failed",
            vec!["orderId"],
        ),
        (
            "alice",
            json!({"orderId": "O-3", "orderRating": 5, "agentRating": -1}),
            400,
            "validation_failed",
            vec!["agentRating"],
        ),
        (
            "alice",
            json!({"orderId": "O-3", "orderRating": 5, "itemRatings": [{"itemId": "nope", "rating": 3}]}),
            400,
            "validation_failed",
            vec!["itemRatings[0].itemId"],
        ),
        (
            "alice",
            json!({"orderId": "O-3", "orderRating": 5, "itemRatings": [{"itemId": "I1", "rating": 3}, {"itemId": "I1", "rating": 4}]}),
            400,
            "validation_failed",
            vec!["itemRatings[1].itemId"],
        ),
        (
            "alice",
            json!({"orderId": "O-3", "orderRating": 5, "itemRatings": [{"itemId": "I1", "rating": 7}]}),
            400,
            "validation_failed",
            vec!["itemRatings[0].rating"],
        ),
        (
            "alice",
            json!({"orderId": "O-5", "orderRating": 5, "agentRating": 4, "providerRating": 2}),
            400,
            "validation_failed",
            vec!["providerRating", "agentRating"],
        ),
        (
            "bob",
            json!({"orderId": "O-3", "orderRating": 5}),
            403,
            "forbidden",
            vec![],
        ),
        (
            "alice",
            json!({"orderId": "O-unknown", "orderRating": 5}),
            404,
            "order_not_found",
            vec![],
        ),
        (
            "alice",
            json!({"orderId": "O-4", "orderRating": 5}),
            422,
            "order_not_completed",
            vec![],
        ),
    ];
    for (user, body, want_status, want_code, want_fields) in cases {
        let (status, err) = p.buyer.rate(user, &body).await;
        assert_eq!(status, want_status, "{body} -> {err}");
        assert_eq!(err["error"]["code"], want_code, "{body} -> {err}");
        let fields: Vec<&str> = err["error"]["details"]
            .as_array()
            .map(|d| d.iter().map(|x| x["field"].as_str().unwrap()).collect())
            .unwrap_or_default();
        assert_eq!(fields, want_fields, "{body} -> {err}");
    }

    // Not JSON, and no token / a bad token.
    let url = format!("{}/ret11/rating", p.buyer.app.base);
    let r = p
        .buyer
        .http
        .post(&url)
        .bearer_auth(Buyer::token("alice"))
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_json"
    );
    let r = p
        .buyer
        .http
        .post(&url)
        .json(&json!({"orderId": "O-3", "orderRating": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "unauthorized"
    );
    let forged = ondc_rating::bap::auth::mint_hs256("some-other-secret-value", "alice", now(), 60);
    let r = p
        .buyer
        .http
        .post(&url)
        .bearer_auth(forged)
        .json(&json!({"orderId": "O-3", "orderRating": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let expired = ondc_rating::bap::auth::mint_hs256(JWT_SECRET, "alice", now() - 3600, 60);
    let r = p
        .buyer
        .http
        .post(&url)
        .bearer_auth(expired)
        .json(&json!({"orderId": "O-3", "orderRating": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.json::<Value>().await.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );

    // A body over the limit.
    let big = json!({"orderId": "O-3", "orderRating": 5, "pad": "x".repeat(70_000)});
    let r = p
        .buyer
        .http
        .post(&url)
        .bearer_auth(Buyer::token("alice"))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "payload_too_large"
    );

    // None of that rated anything: nothing reached the seller, and the order can still be rated.
    assert_eq!(p.buyer.rating_of("alice", "O-3").await.0, 404);
    let (status, _) = p
        .buyer
        .rate("alice", &json!({"orderId": "O-3", "orderRating": 5}))
        .await;
    assert_eq!(status, 200);

    // The rating endpoint is the owner's only.
    assert_eq!(p.buyer.rating_of("bob", "O-3").await.0, 403);
    assert_eq!(p.buyer.rating_of("alice", "O-unknown").await.0, 404);
}
both_stores!(buyer_api_errors);

/// An order's bppUri is where its /rating goes and what the /rating names as bpp_uri: on the
/// bppId's domain, as ONDC's checks (and a seller side of ours) require. A buyer side off the
/// public network (loopback here), a development set-up, also takes sellers off it.
async fn an_orders_seller_uri_is_on_the_sellers_domain(backend: Backend) {
    let store = StoreFixture::new(backend);
    let public = Buyer::start(&store, "public", vec![], |s| {
        s.buyer.bap_uri = "https://buyer.test/bap".into()
    })
    .await;
    let dev = Buyer::start(&store, "dev", vec![], |_| {}).await;
    for (buyer, bpp_uri, taken) in [
        (&public, "https://seller.test/bpp", true),
        (&public, "https://api.SELLER.test:8443/ondc/bpp", true),
        (&public, "http://127.0.0.1:9/bpp", false),
        (&public, "http://localhost:9/bpp", false),
        (&public, "https://seller.test.evil.example/bpp", false),
        (&public, "https://evil.example\\@seller.test/bpp", false),
        (&dev, "http://127.0.0.1:9/bpp", true),
        (&dev, "http://[::1]:9/bpp", true),
        (&dev, "http://seller:8080/bpp", true),
        (&dev, "http://10.0.0.5/bpp", true),
        (&dev, "https://elsewhere.example/bpp", false),
    ] {
        let id = format!("O-{}", uuid::Uuid::new_v4());
        let (status, body) = buyer
            .put_order(&id, &order("alice", "seller.test", bpp_uri))
            .await;
        if taken {
            assert_eq!(status, 200, "{bpp_uri}: {body}");
            continue;
        }
        assert_eq!(status, 400, "{bpp_uri}: {body}");
        assert_eq!(body["error"]["code"], "validation_failed", "{body}");
        assert_eq!(
            body["error"]["details"],
            json!([{"field": "bppUri", "message": "must be on bppId's domain (the bppId or a subdomain of it)"}]),
            "{bpp_uri}"
        );
        let r = buyer
            .http
            .get(format!("{}/internal/orders/{id}", buyer.app.base))
            .bearer_auth(INTERNAL)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{bpp_uri}: a refused order is not kept");
    }
}
both_stores!(an_orders_seller_uri_is_on_the_sellers_domain);

async fn internal_orders_api_checks_token_and_fields(backend: Backend) {
    let p = Pair::start(backend).await;
    let url = format!("{}/internal/orders/O-9", p.buyer.app.base);
    let good = order("alice", "seller.test", "https://seller.test/bpp");
    let r = p.buyer.http.put(&url).json(&good).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = p
        .buyer
        .http
        .put(&url)
        .bearer_auth("wrong-token-of-same-size!!")
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let mut bad = good.clone();
    bad["domain"] = json!("RET11");
    bad["city"] = json!("*");
    bad["bppId"] = json!("https://seller.test");
    bad["bppUri"] = json!("seller.test");
    let (status, err) = p.buyer.put_order("O-9", &bad).await;
    assert_eq!(status, 400);
    let fields: Vec<&str> = err["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["domain", "city", "bppId", "bppUri"]);
    let mut unknown = good.clone();
    unknown["colour"] = json!("red");
    assert_eq!(p.buyer.put_order("O-9", &unknown).await.0, 400);

    assert_eq!(p.buyer.put_order("O-9", &good).await.0, 200);
    let r = p
        .buyer
        .http
        .get(&url)
        .bearer_auth(INTERNAL)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["order"]["transactionId"],
        good["transactionId"]
    );
}
both_stores!(internal_orders_api_checks_token_and_fields);

#[tokio::test]
async fn unknown_routes_get_a_json_404() {
    let p = Pair::start(Backend::Embedded).await;
    let r = p
        .buyer
        .http
        .get(format!("{}/nope", p.buyer.app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "not_found"
    );
    let r = p
        .buyer
        .http
        .get(format!("{}/readyz", p.buyer.app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A rating whose /on_rating is slow reads `pending` after the seller's ACK, `acknowledged` once
/// `buyer.acknowledged_write_delay_ms` has passed while its request still waits, and `completed`
/// when the callback comes, which answers the waiting request.
async fn a_slow_callback_reads_acknowledged_after_the_delay(backend: Backend) {
    const DELAY_MS: u64 = 2_000;
    let store = StoreFixture::new(backend);
    let seller = ScriptedSeller::start(Script::AckSilently).await;
    let buyer = std::sync::Arc::new(
        Buyer::start(&store, "buyer", vec![seller.identity.peer()], |s| {
            s.buyer.callback_wait_ms = 20_000;
            s.buyer.acknowledged_write_delay_ms = DELAY_MS;
        })
        .await,
    );
    let o = order("alice", &seller.identity.id, &seller.bpp_uri());
    assert_eq!(buyer.put_order("O-1", &o).await.0, 200);
    let waiting = {
        let buyer = buyer.clone();
        tokio::spawn(async move {
            buyer
                .rate("alice", &json!({"orderId": "O-1", "orderRating": 4}))
                .await
        })
    };
    let rating = seller.recorder.wait_for(1).await.remove(0);
    let acked = std::time::Instant::now();
    let status = |v: Value| v["data"]["status"].as_str().unwrap_or_default().to_owned();
    assert_eq!(status(buyer.rating_of("alice", "O-1").await.1), "pending");
    let mut seen = String::new();
    for _ in 0..400 {
        seen = status(buyer.rating_of("alice", "O-1").await.1);
        if seen != "pending" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(seen, "acknowledged");
    assert!(
        acked.elapsed() >= std::time::Duration::from_millis(DELAY_MS - 300),
        "written {:?} after the seller had the /rating, before the delay",
        acked.elapsed()
    );
    assert!(
        !waiting.is_finished(),
        "the request still waits for its callback"
    );

    let (_, callback) = callback_for(&rating.body, "https://seller.test/form/O-1");
    assert_eq!(buyer.on_rating(&seller.identity, &callback).await.0, 200);
    let (code, answered) = waiting.await.unwrap();
    assert_eq!(code, 200, "{answered}");
    assert_eq!(answered["data"]["status"], "ACK", "{answered}");
    let (_, got) = buyer.rating_of("alice", "O-1").await;
    assert_eq!(status(got.clone()), "completed");
    assert_eq!(
        got["data"]["feedbackForm"],
        json!({"url": "https://seller.test/form/O-1", "mime_type": "text/html", "data": "d"}),
        "no required flag where the seller sent none"
    );
}
both_stores!(a_slow_callback_reads_acknowledged_after_the_delay);

//! The request-head limit (`server.max_header_bytes`, default 16 KiB): over it, every endpoint
//! answers 431 in its own error shape before anything runs, and nothing changes.

use serde_json::{Value, json};

use crate::helpers::*;

/// A header value that puts the request head over the default 16 KiB limit.
fn pad_over() -> String {
    "x".repeat(17 * 1024)
}

/// One that keeps it under.
fn pad_under() -> String {
    "x".repeat(12 * 1024)
}

async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_get_431_in_each_endpoints_shape_and_change_nothing() {
    let p = Pair::start(Backend::Embedded).await;
    p.order("O-1", "alice").await;
    let base = &p.buyer.app.base;
    let http = &p.buyer.http;
    let body = json!({"orderId": "O-1", "orderRating": 5});

    // Buyer API: the typed error, documented, and the order is still unrated.
    let (status, got) = send(
        http.post(format!("{base}/ret11/rating"))
            .bearer_auth(Buyer::token("alice"))
            .header("x-pad", pad_over())
            .json(&body),
    )
    .await;
    assert_eq!(status, 431, "{got}");
    assert_eq!(got["error"]["code"], "headers_too_large");
    assert!(
        got["error"]["message"]
            .as_str()
            .unwrap()
            .contains("16384 bytes"),
        "{got}"
    );
    assert_documented(status, &got, &schemas().rate_order_response);
    assert_eq!(p.buyer.rating_of("alice", "O-1").await.0, 404);

    // The v2 feedback and listing APIs answer in their own shapes.
    let (status, got) = send(
        http.post(format!("{base}/v2/feedback/users/alice/orders/O-1/rating"))
            .bearer_auth(Buyer::token("alice"))
            .header("x-pad", pad_over())
            .json(&json!({"rating_value": "STARS5"})),
    )
    .await;
    assert_eq!(status, 431, "{got}");
    assert_eq!(got["errors"][0]["error"], "Request Header Fields Too Large");
    assert_eq!(got["errors"][0]["error_code"], 1008);
    if let Err(v) = schemas().feedback_error.check(&got) {
        panic!("undocumented feedback error: {v}\n{got}");
    }
    let (status, got) = send(
        http.post(format!("{base}/v2/listings/O-1/feedback"))
            .bearer_auth(Buyer::token("alice"))
            .header("x-pad", pad_over())
            .json(&json!({"Rating": "Positive"})),
    )
    .await;
    assert_eq!(status, 431, "{got}");
    assert_eq!(got["code"], 43100);
    if let Err(v) = schemas().listing_feedback_error.check(&got) {
        panic!("undocumented listing error: {v}\n{got}");
    }

    // Operational endpoints too.
    let (status, got) = send(
        http.get(format!("{base}/healthz"))
            .header("x-pad", pad_over()),
    )
    .await;
    assert_eq!(
        (status, &got["error"]["code"]),
        (431, &json!("headers_too_large"))
    );

    // The seller side: a NACK with the schema code; the rating is not received.
    let rating = rating_body_at(
        &p.buyer.identity,
        &format!("{base}/bap"),
        &p.seller.identity.id,
        &format!("{}/bpp", p.seller.app.base),
        "m-limits-1",
        chrono::Utc::now(),
    );
    let (status, got) = send(
        p.seller
            .http
            .post(p.seller.rating_url())
            .header("content-type", "application/json")
            .header("authorization", p.buyer.identity.sign(&rating))
            .header("x-pad", pad_over())
            .body(rating.clone()),
    )
    .await;
    assert_eq!(status, 431, "{got}");
    assert_eq!(got["message"]["ack"]["status"], "NACK");
    assert_eq!(got["error"]["code"], "30000");
    if let Err(v) = schemas().ack.check(&got) {
        panic!("the 431 NACK does not match the ACK/NACK schema: {v}");
    }
    assert_eq!(
        p.seller
            .received(&p.buyer.identity.id, "m-limits-1")
            .await
            .0,
        404
    );

    // Just under the limit, the same requests go through.
    let (status, got) = send(
        p.seller
            .http
            .post(p.seller.rating_url())
            .header("content-type", "application/json")
            .header("authorization", p.buyer.identity.sign(&rating))
            .header("x-pad", pad_under())
            .body(rating),
    )
    .await;
    assert_eq!(
        (status, &got["message"]["ack"]["status"]),
        (200, &json!("ACK")),
        "{got}"
    );
    let (status, got) = send(
        http.post(format!("{base}/ret11/rating"))
            .bearer_auth(Buyer::token("alice"))
            .header("x-pad", pad_under())
            .json(&body),
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(p.buyer.rating_of("alice", "O-1").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_is_a_setting() {
    let p = Pair::start_with(Backend::Embedded, |s| s.server.max_header_bytes = 2048).await;
    let base = &p.buyer.app.base;
    let (status, got) = send(
        p.buyer
            .http
            .get(format!("{base}/healthz"))
            .header("x-pad", "x".repeat(3000)),
    )
    .await;
    assert_eq!(status, 431, "{got}");
    assert!(got["error"]["message"].as_str().unwrap().contains("2048"));
    let (status, _) = send(
        p.buyer
            .http
            .get(format!("{base}/healthz"))
            .header("x-pad", "x".repeat(1000)),
    )
    .await;
    assert_eq!(status, 200);
}

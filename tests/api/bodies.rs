//! Request bodies sent without a Content-Length (chunked transfer, in small pieces): read whole,
//! held to `server.max_body_bytes` all the same, on the buyer API and on the network endpoints.

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

/// POSTs `body` to `url` with `Transfer-Encoding: chunked`, in pieces of `piece` bytes, over a
/// plain TCP connection; returns the status and the JSON body of the answer.
async fn post_chunked(
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    piece: usize,
) -> (u16, Value) {
    let rest = url.strip_prefix("http://").expect("an http:// url");
    let (authority, path) = rest.split_at(rest.find('/').expect("a path"));
    let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut wire = head.into_bytes();
    for chunk in body.chunks(piece) {
        wire.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        wire.extend_from_slice(chunk);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    // A server refusing an oversized body may answer and close before reading all of it.
    let _ = stream.write_all(&wire).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let json = text
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_bodies_are_read_whole_and_the_limit_still_holds() {
    let p = Pair::start(Backend::Embedded).await;
    p.order("O-1", "alice").await;
    p.order("O-2", "alice").await;
    let url = format!("{}/ret11/rating", p.buyer.app.base);
    let token = format!("Bearer {}", Buyer::token("alice"));
    let auth = [("Authorization", token.as_str())];

    // Over the limit with no length declared: refused as too large while it streams in, and
    // nothing is rated.
    let big = serde_json::to_vec(&json!({"orderId": "O-2", "orderRating": 5,
                                         "pad": "x".repeat(70_000)}))
    .unwrap();
    let (status, got) = post_chunked(&url, &auth, &big, 4096).await;
    assert_eq!(status, 413, "{got}");
    assert_eq!(got["error"]["code"], "payload_too_large");
    assert_documented(status, &got, &schemas().rate_order_response);
    assert_eq!(p.buyer.rating_of("alice", "O-2").await.0, 404);

    // A rating in 7-byte pieces: read whole, sent on, answered with the seller's envelope.
    let body = serde_json::to_vec(&full_rating("O-1")).unwrap();
    let (status, got) = post_chunked(&url, &auth, &body, 7).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["data"]["status"], "ACK");
    assert_eq!(got["data"]["dto"]["message"]["order_id"], "O-1");
    assert_documented(status, &got, &schemas().rate_order_response);
    let message_id = got["data"]["dto"]["context"]["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, received) = p.seller.received(&p.buyer.identity.id, &message_id).await;
    assert_eq!(status, 200, "{received}");
    assert_eq!(p.buyer.rating_of("alice", "O-1").await.0, 200);

    // The seller's /rating endpoint: a signed /rating in pieces is taken; an oversized one gets
    // the NACK and is not recorded.
    let seller_url = p.seller.rating_url();
    let bap_uri = format!("{}/bap", p.buyer.app.base);
    let bpp_uri = format!("{}/bpp", p.seller.app.base);
    let signed = rating_body_at(
        &p.buyer.identity,
        &bap_uri,
        &p.seller.identity.id,
        &bpp_uri,
        "m-chunked",
        chrono::Utc::now(),
    );
    let header = p.buyer.identity.sign(&signed);
    let (status, got) = post_chunked(
        &seller_url,
        &[("Authorization", header.as_str())],
        &signed,
        11,
    )
    .await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["message"]["ack"]["status"], "ACK");
    assert_eq!(
        p.seller.received(&p.buyer.identity.id, "m-chunked").await.0,
        200
    );

    let mut oversized: Value = serde_json::from_slice(&signed).unwrap();
    oversized["context"]["message_id"] = json!("m-oversized");
    oversized["message"]["pad"] = json!("x".repeat(70_000));
    let oversized = serde_json::to_vec(&oversized).unwrap();
    let header = p.buyer.identity.sign(&oversized);
    let (status, got) = post_chunked(
        &seller_url,
        &[("Authorization", header.as_str())],
        &oversized,
        4096,
    )
    .await;
    assert_eq!(status, 413, "{got}");
    assert_eq!(got["message"]["ack"]["status"], "NACK");
    assert_eq!(
        p.seller
            .received(&p.buyer.identity.id, "m-oversized")
            .await
            .0,
        404
    );
}

//! With `server.http2` the one port speaks HTTP/1.1 and cleartext HTTP/2 (prior knowledge): a
//! buyer app on HTTP/2 rates many orders at once over one multiplexed connection and gets the
//! same answers; without it (the default) an HTTP/2 client is not served.

use futures_util::future::join_all;
use serde_json::Value;

use crate::both_stores;
use crate::helpers::*;

const ORDERS: usize = 6;

async fn buyer_api_over_one_http2_connection(backend: Backend) {
    let p = Pair::start_with(backend, |s| s.server.http2 = true).await;
    for i in 0..ORDERS {
        p.order(&format!("O-h2-{i}"), "alice").await;
    }
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let token = Buyer::token("alice");
    let rate = |order: String| {
        let (h2, token) = (h2.clone(), token.clone());
        let url = format!("{}/ret11/rating", p.buyer.app.base);
        async move {
            let r = h2
                .post(url)
                .bearer_auth(token)
                .json(&full_rating(&order))
                .send()
                .await
                .unwrap();
            let version = r.version();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            (order, version, status, body)
        }
    };

    // All ratings in flight together, each waiting for its seller's /on_rating on the same
    // connection.
    let answers = join_all((0..ORDERS).map(|i| rate(format!("O-h2-{i}")))).await;
    for (order, version, status, body) in &answers {
        assert_eq!(*version, reqwest::Version::HTTP_2, "{order}");
        assert_eq!(*status, 200, "{order}: {body}");
        assert_documented(*status, body, &schemas().rate_order_response);
        let data = &body["data"];
        assert_eq!(data["status"], "ACK", "{body}");
        assert_eq!(data["dto"]["context"]["action"], "on_rating");
        assert_eq!(data["dto"]["message"]["order_id"], order.as_str());
        assert!(
            data["dto"]["message"]["feedback_form"]["form"]["url"]
                .as_str()
                .is_some_and(|u| u.contains(order.as_str())),
            "{body}"
        );
    }
    // The message ids are distinct: six exchanges, not one answer repeated.
    let mut ids: Vec<&str> = answers
        .iter()
        .map(|(_, _, _, b)| b["data"]["dto"]["context"]["message_id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), ORDERS);

    // A second rating of a rated order is refused over HTTP/2 as over HTTP/1.1.
    let (order, version, status, body) = rate("O-h2-0".into()).await;
    assert_eq!(version, reqwest::Version::HTTP_2, "{order}");
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "already_rated");

    // The seller received each rating once, and the status reads completed over HTTP/1.1.
    for (order, _, _, body) in &answers {
        let message_id = body["data"]["dto"]["context"]["message_id"]
            .as_str()
            .unwrap();
        let (status, received) = p.seller.received("buyer.test", message_id).await;
        assert_eq!(status, 200, "{order}: {received}");
        let (status, rating) = p.buyer.rating_of("alice", order).await;
        assert_eq!(status, 200, "{rating}");
        assert_eq!(rating["data"]["status"], "completed", "{rating}");
    }
}
both_stores!(buyer_api_over_one_http2_connection);

/// Off by default: an HTTP/2 client gets no answer, and HTTP/1.1 is served as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_is_off_by_default() {
    let p = Pair::start(Backend::Embedded).await;
    p.order("O-h1", "alice").await;
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let sent = h2
        .post(format!("{}/ret11/rating", p.buyer.app.base))
        .bearer_auth(Buyer::token("alice"))
        .json(&full_rating("O-h1"))
        .send()
        .await;
    assert!(
        sent.is_err(),
        "served over HTTP/2: {:?}",
        sent.map(|r| r.status())
    );
    // Nothing was claimed: the same order is then rated over HTTP/1.1.
    let (status, body) = p.buyer.rate("alice", &full_rating("O-h1")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "ACK");
}

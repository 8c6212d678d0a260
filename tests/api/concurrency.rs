//! The one-time rule under concurrent submissions, within one instance and across two instances
//! sharing Redis.

use std::sync::Arc;

use serde_json::json;
use tokio::task::JoinSet;

use crate::helpers::*;

/// Fires `n` submissions for `order_id`, alternating between `buyers`; returns the statuses.
async fn storm(buyers: &[Arc<Buyer>], order_id: &str, n: usize) -> Vec<u16> {
    let mut set = JoinSet::new();
    for i in 0..n {
        let b = buyers[i % buyers.len()].clone();
        let body = json!({"orderId": order_id, "orderRating": 1 + (i % 5)});
        set.spawn(async move { b.rate("alice", &body).await.0 });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap());
    }
    out
}

fn count(statuses: &[u16], s: u16) -> usize {
    statuses.iter().filter(|&&x| x == s).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_submissions_across_two_instances_sharing_redis_give_one_200() {
    let p = Pair::start(Backend::Redis).await;
    // A second buyer instance: same identity, same Redis keyspace, its own port.
    let second = Buyer::start_as(
        p.buyer.identity.clone(),
        &p.store,
        "buyer",
        vec![p.seller.identity.peer()],
        |_| {},
    )
    .await;
    p.order("O-1", "alice").await;
    let buyers = [
        Arc::new(Buyer {
            app: p.buyer.app,
            identity: p.buyer.identity.clone(),
            http: p.buyer.http.clone(),
        }),
        Arc::new(second),
    ];
    let statuses = storm(&buyers, "O-1", 100).await;
    assert_eq!(count(&statuses, 200), 1, "{statuses:?}");
    assert_eq!(count(&statuses, 409), 99, "{statuses:?}");

    // The winner's rating is the one the seller holds.
    let (_, got) = buyers[1].rating_of("alice", "O-1").await;
    assert_eq!(got["data"]["status"], "completed");
    let message_id = got["data"]["messageId"].as_str().unwrap();
    let (status, rec) = p.seller.received("buyer.test", message_id).await;
    assert_eq!(status, 200);
    assert_eq!(
        rec["rating"]["ratings"][0]["value"].as_str().unwrap(),
        got["data"]["rating"]["orderRating"].to_string()
    );
}

async fn exactly_one_rating_reaches_the_seller(backend: Backend, instances: usize) {
    let store = StoreFixture::new(backend);
    let seller = ScriptedSeller::start(Script::AckSilently).await;
    let buyer_id = Identity::new("buyer.test");
    let mut buyers = Vec::new();
    for _ in 0..instances {
        buyers.push(Arc::new(
            Buyer::start_as(
                buyer_id.clone(),
                &store,
                "buyer",
                vec![seller.identity.peer()],
                |s| {
                    s.buyer.callback_wait_ms = 100;
                },
            )
            .await,
        ));
    }
    let o = order("alice", &seller.identity.id, &seller.bpp_uri());
    assert_eq!(buyers[0].put_order("O-1", &o).await.0, 200);
    let statuses = storm(&buyers, "O-1", 100).await;
    assert_eq!(count(&statuses, 202), 1, "{statuses:?}");
    assert_eq!(count(&statuses, 409), 99, "{statuses:?}");
    assert_eq!(
        seller.requests().len(),
        1,
        "exactly one /rating left the buyer side"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_rating_leaves_two_redis_instances() {
    exactly_one_rating_reaches_the_seller(Backend::Redis, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_rating_leaves_one_embedded_instance() {
    exactly_one_rating_reaches_the_seller(Backend::Embedded, 1).await;
}

/// A callback that lands on another instance wakes the waiting request through Redis, without
/// waiting for its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_landing_on_another_instance_wakes_the_waiting_request() {
    let store = StoreFixture::new(Backend::Redis);
    let seller = ScriptedSeller::start(Script::AckSilently).await;
    let id = Identity::new("buyer.test");
    let slow = |s: &mut ondc_rating::config::Settings| s.buyer.callback_wait_ms = 30_000;
    let a = Arc::new(
        Buyer::start_as(
            id.clone(),
            &store,
            "buyer",
            vec![seller.identity.peer()],
            slow,
        )
        .await,
    );
    let b = Buyer::start_as(id, &store, "buyer", vec![seller.identity.peer()], slow).await;
    let o = order("alice", &seller.identity.id, &seller.bpp_uri());
    assert_eq!(a.put_order("O-1", &o).await.0, 200);

    let waiting = {
        let a = a.clone();
        tokio::spawn(async move {
            a.rate("alice", &json!({"orderId": "O-1", "orderRating": 4}))
                .await
        })
    };
    let sent = seller.recorder.wait_for(1).await;
    let rating: serde_json::Value = serde_json::from_slice(&sent[0].body).unwrap();
    let mut ctx = rating["context"].clone();
    ctx["action"] = json!("on_rating");
    ctx["timestamp"] = json!(ondc_rating::clock::ondc_timestamp(chrono::Utc::now()));
    let cb = serde_json::to_vec(&json!({"context": ctx, "message": {"feedback_ack": true, "rating_ack": true,
        "feedback_form": {"form": {"url": "https://seller.test/f", "mime_type": "text/html", "data": "d"}}}}))
    .unwrap();
    // Delivered to instance B, while the request waits on instance A.
    assert_eq!(b.on_rating(&seller.identity, &cb).await.0, 200);
    let (status, body) = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
        .await
        .expect("woken well before its 30 s deadline")
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["dto"]["message"]["feedback_form"]["form"]["url"],
        "https://seller.test/f"
    );
}

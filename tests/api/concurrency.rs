//! The one-time rule under concurrent submissions, within one instance and across two instances
//! sharing Redis (one server, or a Redis Cluster).

use std::sync::Arc;

use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::helpers::*;
use crate::shared_stores;

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

async fn hundred_submissions_across_two_instances_give_one_200(backend: Backend) {
    let p = Pair::start(backend).await;
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

shared_stores!(hundred_submissions_across_two_instances_give_one_200);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_rating_leaves_two_redis_instances() {
    exactly_one_rating_reaches_the_seller(Backend::Redis, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_rating_leaves_two_instances_on_a_redis_cluster() {
    exactly_one_rating_reaches_the_seller(Backend::Cluster, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_rating_leaves_one_embedded_instance() {
    exactly_one_rating_reaches_the_seller(Backend::Embedded, 1).await;
}

/// A callback that lands on another instance wakes the waiting request through Redis, without
/// waiting for its deadline. On a Redis Cluster the announcement is published on one node and
/// reaches the subscription the waiting instance holds, on whichever node that is.
async fn callback_on_another_instance_wakes_the_waiting_request(backend: Backend) {
    let store = StoreFixture::new(backend);
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
    let (_, cb) = callback_for(&sent[0].body, "https://seller.test/f");
    // Delivered to instance B, while the request waits on instance A.
    assert_eq!(b.on_rating(&seller.identity, &cb).await.0, 200);
    let text = metrics(&b.app.base).await;
    assert_eq!(
        sample(
            &text,
            "ondc_rating_callbacks_matched_total{against=\"store\"}"
        ),
        Some(1.0),
        "B matched it against the store: {text}"
    );
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

shared_stores!(callback_on_another_instance_wakes_the_waiting_request);

/// A seller that calls back before its ACK to the /rating is processed (here: before it sends
/// the ACK at all): the callback is matched against the /rating the waiting request holds in
/// this process and handed to it, not looked up in the store, and the request answers with the
/// ACK envelope once the ACK is in.
async fn a_callback_before_the_ack_is_handed_to_the_waiting_request(backend: Backend) {
    let store = StoreFixture::new(backend);
    let go = Arc::new(tokio::sync::Notify::new());
    let seller = ScriptedSeller::start(Script::AckWhen(go.clone())).await;
    let buyer = Arc::new(
        Buyer::start(&store, "buyer", vec![seller.identity.peer()], |s| {
            s.buyer.callback_wait_ms = 30_000;
        })
        .await,
    );
    let o = order("alice", &seller.identity.id, &seller.bpp_uri());
    assert_eq!(buyer.put_order("O-1", &o).await.0, 200);
    let waiting = {
        let b = buyer.clone();
        tokio::spawn(async move { b.rate("alice", &full_rating("O-1")).await })
    };
    let sent = seller.recorder.wait_for(1).await;
    let (ctx, cb) = callback_for(&sent[0].body, "https://seller.test/early");
    let (status, ack) = buyer.on_rating(&seller.identity, &cb).await;
    assert_eq!(
        (status, ack),
        (200, json!({"message": {"ack": {"status": "ACK"}}}))
    );
    assert!(!waiting.is_finished(), "the /rating's ACK is still held");
    go.notify_one();
    let (status, body) = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
        .await
        .expect("answered well before its 30 s deadline")
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "ACK", "{body}");
    assert_eq!(
        body["data"]["dto"]["message"]["feedback_form"]["form"]["url"],
        "https://seller.test/early"
    );
    assert_eq!(
        body["data"]["dto"]["context"]["message_id"],
        ctx["message_id"]
    );
    let (_, got) = buyer.rating_of("alice", "O-1").await;
    assert_eq!(got["data"]["status"], "completed", "{got}");
    assert_eq!(
        got["data"]["feedbackForm"]["url"],
        "https://seller.test/early"
    );

    let text = metrics(&buyer.app.base).await;
    let matched = |against: &str| {
        sample(
            &text,
            &format!("ondc_rating_callbacks_matched_total{{against=\"{against}\"}}"),
        )
    };
    assert_eq!(
        (matched("waiting_request"), matched("store")),
        (Some(1.0), Some(0.0)),
        "{text}"
    );
}
crate::both_stores!(a_callback_before_the_ack_is_handed_to_the_waiting_request);

/// 1,000 concurrent submissions, two instances sharing Redis, 300 distinct orders (each
/// submitted three or four times): every order rated exactly once, every buyer answered with
/// 200, 202 or 409, and no callback dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_buyers_on_two_instances_rate_each_order_once() {
    const ORDERS: usize = 300;
    const REQUESTS: usize = 1_000;
    // Generous send timeouts: the whole test suite may be running beside this on two cores, and
    // what is checked here is correctness under concurrency, not speed.
    let patient = |s: &mut ondc_rating::config::Settings| {
        s.buyer.send_timeout_ms = 15_000;
        s.buyer.send_attempts = 3;
    };
    let p = Pair::start_with(Backend::Redis, patient).await;
    let second = Buyer::start_as(
        p.buyer.identity.clone(),
        &p.store,
        "buyer",
        vec![p.seller.identity.peer()],
        patient,
    )
    .await;
    for i in 0..ORDERS {
        p.order(&format!("O-{i}"), &format!("user-{i}")).await;
    }
    let buyers = [
        Arc::new(Buyer {
            app: p.buyer.app,
            identity: p.buyer.identity.clone(),
            http: p.buyer.http.clone(),
        }),
        Arc::new(second),
    ];
    let mut set = JoinSet::new();
    for i in 0..REQUESTS {
        let b = buyers[i % 2].clone();
        let n = i % ORDERS;
        set.spawn(async move {
            let body = json!({"orderId": format!("O-{n}"), "orderRating": 1 + (i % 5)});
            let (status, answer) = b.rate(&format!("user-{n}"), &body).await;
            (n, status, answer)
        });
    }
    let mut wins = vec![0usize; ORDERS];
    while let Some(r) = set.join_next().await {
        let (n, status, body) = r.unwrap();
        match status {
            // 504: the seller was too slow to answer under this load; the claim is kept and the
            // rating completes when its callback arrives (checked below).
            200 | 202 | 504 => wins[n] += 1,
            409 => {}
            other => panic!("order {n}: unexpected {other}: {body}"),
        }
    }
    assert!(
        wins.iter().all(|&w| w == 1),
        "each order rated exactly once: {wins:?}"
    );

    // Every rating's callback arrives (those answered 202 complete later).
    for n in 0..ORDERS {
        let mut status = Value::Null;
        // Up to the seller's own /on_rating budget (30 s after it took the /rating) and a margin.
        for _ in 0..700 {
            status = buyers[n % 2]
                .rating_of(&format!("user-{n}"), &format!("O-{n}"))
                .await
                .1["data"]["status"]
                .clone();
            if status == "completed" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(status, "completed", "order {n}");
    }
    // The seller processed exactly one /rating per order: one /on_rating each reached the
    // buyer instances (retried /rating messages under load are ACKed again but not processed
    // twice, so they make no second callback).
    let mut callbacks = 0.0;
    for b in &buyers {
        let metrics = reqwest::get(format!("{}/metrics", b.app.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        callbacks += metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(
                    "ondc_rating_http_requests_total{route=\"/bap/on_rating\",status=\"200\"} ",
                )
            })
            .map_or(0.0, |v| v.parse::<f64>().unwrap());
    }
    assert_eq!(callbacks, ORDERS as f64);
}

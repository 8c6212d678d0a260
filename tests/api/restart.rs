//! What survives a restart of an adapter on the embedded store.

use serde_json::json;

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_between_ack_and_on_rating_loses_nothing() {
    let store = StoreFixture::new(Backend::Embedded);
    let seller = ScriptedSeller::start(Script::AckSilently).await;
    let mut buyer = Buyer::start(&store, "buyer", vec![seller.identity.peer()], |s| {
        s.buyer.callback_wait_ms = 200;
    })
    .await;
    let o = order("alice", &seller.identity.id, &seller.bpp_uri());
    assert_eq!(buyer.put_order("O-1", &o).await.0, 200);
    let (status, body) = buyer.rate("alice", &full_rating("O-1")).await;
    assert_eq!(status, 202, "{body}");
    let ctx = body["data"]["dto"]["context"].clone();

    // Stop the process holding the redb file and start it again on the same file and port.
    buyer.app = buyer.app.restart().await;
    assert!(store.path("buyer").exists());

    let (status, got) = buyer.rating_of("alice", "O-1").await;
    assert_eq!(status, 200);
    assert_eq!(got["data"]["status"], "acknowledged");
    assert_eq!(got["data"]["rating"]["orderRating"], 5);
    assert_eq!(buyer.rate("alice", &full_rating("O-1")).await.0, 409);

    // The seller's callback arrives at the restarted process and completes the rating.
    let mut cb = ctx.clone();
    cb["action"] = json!("on_rating");
    cb["timestamp"] = json!(ondc_rating::clock::ondc_timestamp(chrono::Utc::now()));
    let body = serde_json::to_vec(&json!({"context": cb, "message": {"feedback_ack": true, "rating_ack": true,
        "feedback_form": {"form": {"url": "https://seller.test/f", "mime_type": "text/html", "data": "x"}, "required": false}}}))
    .unwrap();
    assert_eq!(buyer.on_rating(&seller.identity, &body).await.0, 200);
    let (_, got) = buyer.rating_of("alice", "O-1").await;
    assert_eq!(got["data"]["status"], "completed");
    assert_eq!(got["data"]["feedbackForm"]["url"], "https://seller.test/f");

    // And that, too, survives a restart.
    buyer.app = buyer.app.restart().await;
    assert_eq!(
        buyer.rating_of("alice", "O-1").await.1["data"]["status"],
        "completed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seller_keeps_received_ratings_across_a_restart() {
    let store = StoreFixture::new(Backend::Embedded);
    let bap = Identity::new("buyer.test");
    let mut seller = Seller::start(&store, "seller", vec![bap.peer()], |_| {}).await;
    let callbacks = ScriptedBuyer::start().await;
    let body = serde_json::to_vec(&json!({
        "context": {
            "domain": "ONDC:RET11", "country": "IND", "city": "std:080", "action": "rating",
            "core_version": "1.2.0", "bap_id": "buyer.test", "bap_uri": callbacks.bap_uri(),
            "bpp_id": "seller.test", "bpp_uri": format!("{}/bpp", seller.app.base),
            "transaction_id": "t-1", "message_id": "m-1",
            "timestamp": ondc_rating::clock::ondc_timestamp(chrono::Utc::now()), "ttl": "PT30S"
        },
        "message": {"ratings": [{"rating_category": "Order", "id": "O-1", "value": "4"}]}
    }))
    .unwrap();
    assert_eq!(
        post_signed(&seller.http, &seller.rating_url(), &bap, &body)
            .await
            .0,
        200
    );
    callbacks.wait_for(1).await;

    seller.app = seller.app.restart().await;
    let rec = seller.settled("m-1").await;
    assert_eq!(rec["ratings"][0]["value"], "4");
    assert_eq!(rec["onRating"], "sent");

    // A repeat after the restart is acknowledged and not processed again.
    assert_eq!(
        post_signed(&seller.http, &seller.rating_url(), &bap, &body)
            .await
            .0,
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(callbacks.requests().len(), 1);
}

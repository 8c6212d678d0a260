//! Key rotation: several own keys with one active, and peers registered under several key ids.

use serde_json::json;

use crate::helpers::*;
use ondc_rating::config::OwnKey;
use ondc_rating::crypto::{AuthorizationHeader, SigningKeyPair, verify_body};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_active_own_key_signs_and_switching_keys_is_a_config_change() {
    let store = StoreFixture::new(Backend::Embedded);
    let seller = ScriptedSeller::start(Script::AckSilently).await;
    let (k1, k2) = (
        SigningKeyPair::generate().unwrap(),
        SigningKeyPair::generate().unwrap(),
    );
    let own = vec![
        OwnKey {
            unique_key_id: "k1".into(),
            signing_private_key: k1.private_key_base64(),
        },
        OwnKey {
            unique_key_id: "k2".into(),
            signing_private_key: k2.private_key_base64(),
        },
    ];
    let mut buyer = Buyer::start(&store, "buyer", vec![seller.identity.peer()], |s| {
        s.identity.signing_private_key.clear();
        s.identity.keys = own;
        s.identity.unique_key_id = "k2".into();
        s.buyer.callback_wait_ms = 50;
    })
    .await;
    for id in ["O-1", "O-2"] {
        let o = order("alice", &seller.identity.id, &seller.bpp_uri());
        assert_eq!(buyer.put_order(id, &o).await.0, 200);
    }
    assert_eq!(
        buyer
            .rate("alice", &json!({"orderId": "O-1", "orderRating": 5}))
            .await
            .0,
        202
    );

    // Switch the active key and restart: the next /rating is signed with k1.
    let port = buyer.app.port;
    let (mut settings, clock) = buyer.app.stop().await;
    settings.identity.unique_key_id = "k1".into();
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    buyer.app = TestApp::start_clocked(settings, listener, clock).await;
    assert_eq!(
        buyer
            .rate("alice", &json!({"orderId": "O-2", "orderRating": 4}))
            .await
            .0,
        202
    );

    let sent = seller.requests();
    assert_eq!(sent.len(), 2);
    for (captured, (ukid, key)) in sent.iter().zip([("k2", &k2), ("k1", &k1)]) {
        let header = captured.authorization.as_deref().unwrap();
        let parsed = AuthorizationHeader::parse(header).unwrap();
        assert_eq!(
            (parsed.subscriber_id.as_str(), parsed.unique_key_id.as_str()),
            ("buyer.test", ukid)
        );
        verify_body(header, &captured.body, &key.verifying_key(), now(), 5)
            .expect("signed with the active key");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_registered_under_two_key_ids_is_accepted_under_each() {
    let store = StoreFixture::new(Backend::Embedded);
    let old = Identity::new("buyer.test");
    let new = Identity {
        ukid: "k2".into(),
        keys: SigningKeyPair::generate().unwrap(),
        ..old.clone()
    };
    let seller = Seller::start(&store, "s", vec![old.peer(), new.peer()], |_| {}).await;
    let http = reqwest::Client::new();
    let base = format!("{}/bpp", seller.app.base);
    let body = |m: &str| {
        rating_body_at(
            &old,
            "http://127.0.0.1:9/bap",
            "seller.test",
            &base,
            m,
            chrono::Utc::now(),
        )
    };
    assert_eq!(
        post_signed(&http, &seller.rating_url(), &old, &body("m-1"))
            .await
            .0,
        200
    );
    assert_eq!(
        post_signed(&http, &seller.rating_url(), &new, &body("m-2"))
            .await
            .0,
        200
    );
    // The new key id with the old key is a forgery.
    let mixed = Identity {
        keys: old.keys.clone(),
        ..new.clone()
    };
    assert_eq!(
        post_signed(&http, &seller.rating_url(), &mixed, &body("m-3"))
            .await
            .0,
        401
    );
}

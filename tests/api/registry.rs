//! Peers' keys from a registry: signed lookups, the two cache levels, rotation, misses, an
//! unavailable or rate-limiting registry, and the registry of our own that answers them.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use crate::helpers::*;
use ondc_rating::clock::{FixedClock, SharedClock, SystemClock};
use ondc_rating::registry::SubscriberRecord;
use ondc_rating::registry::server::{RegistryHandle, serve};

fn record(id: &Identity, valid_until: &str) -> SubscriberRecord {
    SubscriberRecord::from_value(&json!({
        "subscriber_id": id.id, "ukId": id.ukid, "signing_public_key": id.keys.public_key_base64(),
        "valid_from": "2020-01-01T00:00:00.000Z", "valid_until": valid_until,
        "status": "SUBSCRIBED", "type": "BAP", "domain": "ONDC:RET11", "country": "IND"
    }))
    .unwrap()
}

const FAR: &str = "2099-01-01T00:00:00.000Z";

async fn start_registry(records: Vec<SubscriberRecord>) -> (String, RegistryHandle) {
    start_registry_clocked(records, Arc::new(SystemClock)).await
}

/// A registry reading the same clock as the adapters under test.
async fn start_registry_clocked(
    records: Vec<SubscriberRecord>,
    clock: SharedClock,
) -> (String, RegistryHandle) {
    let (listener, port) = bind();
    let (server, handle) = serve(records, listener, clock).unwrap();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}"), handle)
}

fn lookups(h: &RegistryHandle) -> u64 {
    h.stats.lookups.load(Ordering::SeqCst)
}

/// A seller that knows no peers and asks the registry at `url`; the seller's own record is added
/// to the registry so that its signed lookups are accepted.
async fn seller_using(
    url: &str,
    registry: &RegistryHandle,
    store: &StoreFixture,
    name: &str,
    identity: Identity,
    clock: SharedClock,
    tweak: impl FnOnce(&mut ondc_rating::config::Settings),
) -> Seller {
    registry
        .records
        .write()
        .unwrap()
        .push(record(&identity, FAR));
    let url = url.to_owned();
    Seller::start_as(identity, store, name, vec![], clock, move |s| {
        s.registry.url = url;
        tweak(s);
    })
    .await
}

/// Posts a /rating from `bap` stamped and signed at the seller's clock time.
async fn send(seller: &Seller, bap: &Identity, message_id: &str) -> (u16, Value) {
    let at = seller.app.clock.now();
    let body = rating_body_at(
        bap,
        "http://127.0.0.1:9/bap",
        &seller.identity.id,
        &format!("{}/bpp", seller.app.base),
        message_id,
        at,
    );
    let header = bap.sign_at(&body, at.timestamp());
    post_with_header(&seller.http, &seller.rating_url(), Some(&header), &body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_unknown_to_config_is_verified_through_a_signed_cached_lookup() {
    let store = StoreFixture::new(Backend::Embedded);
    let bap = Identity::new("buyer.test");
    let (url, reg) = start_registry(vec![record(&bap, FAR)]).await;
    let seller = seller_using(
        &url,
        &reg,
        &store,
        "s",
        Identity::new("seller.test"),
        Arc::new(SystemClock),
        |_| {},
    )
    .await;

    assert_eq!(send(&seller, &bap, "m-1").await.0, 200);
    assert_eq!(lookups(&reg), 1);
    assert_eq!(checked(&seller).await.iter().sum::<f64>(), 1.0);
    assert_eq!(
        reg.stats.refused.load(Ordering::SeqCst),
        0,
        "our lookups are signed"
    );
    for i in 2..6 {
        assert_eq!(send(&seller, &bap, &format!("m-{i}")).await.0, 200);
    }
    assert_eq!(lookups(&reg), 1, "later requests are served from the cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_for_one_unknown_key_makes_one_registry_call() {
    let store = StoreFixture::new(Backend::Embedded);
    let bap = Identity::new("buyer.test");
    let (url, reg) = start_registry(vec![record(&bap, FAR)]).await;
    let seller = Arc::new(
        seller_using(
            &url,
            &reg,
            &store,
            "s",
            Identity::new("seller.test"),
            Arc::new(SystemClock),
            |_| {},
        )
        .await,
    );
    let mut set = tokio::task::JoinSet::new();
    for i in 0..50 {
        let (seller, bap) = (seller.clone(), bap.clone());
        set.spawn(async move { send(&seller, &bap, &format!("burst-{i}")).await.0 });
    }
    while let Some(status) = set.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    assert_eq!(lookups(&reg), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_redis_share_looked_up_keys() {
    let store = StoreFixture::new(Backend::Redis);
    let bap = Identity::new("buyer.test");
    let (url, reg) = start_registry(vec![record(&bap, FAR)]).await;
    let me = Identity::new("seller.test");
    let first = seller_using(
        &url,
        &reg,
        &store,
        "s",
        me.clone(),
        Arc::new(SystemClock),
        |_| {},
    )
    .await;
    let second = Seller::start_as(me, &store, "s", vec![], Arc::new(SystemClock), {
        let url = url.clone();
        move |s| s.registry.url = url
    })
    .await;
    assert_eq!(send(&first, &bap, "m-1").await.0, 200);
    assert_eq!(send(&second, &bap, "m-2").await.0, 200);
    assert_eq!(
        lookups(&reg),
        1,
        "the second instance found the key in Redis"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_looked_up_again_once_and_forgeries_do_not_hammer_the_registry() {
    let store = StoreFixture::new(Backend::Embedded);
    let clock = FixedClock::at_millis(chrono::Utc::now().timestamp_millis());
    let bap = Identity::new("buyer.test");
    let (url, reg) = start_registry_clocked(vec![record(&bap, FAR)], clock.clone()).await;
    let seller = seller_using(
        &url,
        &reg,
        &store,
        "s",
        Identity::new("seller.test"),
        clock.clone(),
        |_| {},
    )
    .await;
    assert_eq!(send(&seller, &bap, "m-1").await.0, 200);
    assert_eq!(lookups(&reg), 1);
    assert_eq!(checked(&seller).await.iter().sum::<f64>(), 1.0);

    // The buyer rotates its key under the same ukId and the registry publishes it.
    let rotated = Identity {
        keys: ondc_rating::crypto::SigningKeyPair::generate().unwrap(),
        ..bap.clone()
    };
    {
        let mut records = reg.records.write().unwrap();
        records.retain(|r| r.subscriber_id != bap.id);
        records.push(record(&rotated, FAR));
    }
    clock.advance_millis(11_000);
    assert_eq!(
        send(&seller, &rotated, "m-2").await.0,
        200,
        "rotation picked up"
    );
    assert_eq!(lookups(&reg), 2);
    // Checked under the cached key, then under the one the registry has now.
    assert_eq!(checked(&seller).await.iter().sum::<f64>(), 3.0);
    assert_eq!(send(&seller, &rotated, "m-3").await.0, 200);
    assert_eq!(lookups(&reg), 2);
    assert_eq!(checked(&seller).await.iter().sum::<f64>(), 4.0);

    // Forgeries right after: refused, and no registry call for each of them.
    let forger = Identity {
        keys: ondc_rating::crypto::SigningKeyPair::generate().unwrap(),
        ..bap.clone()
    };
    for i in 0..5 {
        assert_eq!(send(&seller, &forger, &format!("f-{i}")).await.0, 401);
    }
    assert_eq!(lookups(&reg), 2);
    // The old key is no longer accepted either.
    assert_eq!(send(&seller, &bap, "m-old").await.0, 401);
    // Each refused once under the key it was refused with: no key changed in between.
    assert_eq!(checked(&seller).await.iter().sum::<f64>(), 10.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_keys_expire_with_the_ttl_and_with_valid_until() {
    let store = StoreFixture::new(Backend::Embedded);
    let start = chrono::Utc::now();
    let clock = FixedClock::at_millis(start.timestamp_millis());
    let bap = Identity::new("buyer.test");
    let until = ondc_rating::clock::ondc_timestamp(start + chrono::Duration::seconds(150));
    let (url, reg) = start_registry_clocked(vec![record(&bap, &until)], clock.clone()).await;
    let seller = seller_using(
        &url,
        &reg,
        &store,
        "s",
        Identity::new("seller.test"),
        clock.clone(),
        |s| {
            s.registry.cache_ttl_secs = 60;
        },
    )
    .await;
    assert_eq!(send(&seller, &bap, "m-1").await.0, 200);
    clock.advance_millis(50_000);
    assert_eq!(send(&seller, &bap, "m-2").await.0, 200);
    assert_eq!(lookups(&reg), 1, "within the ttl");
    clock.advance_millis(20_000);
    assert_eq!(send(&seller, &bap, "m-3").await.0, 200);
    assert_eq!(lookups(&reg), 2, "ttl passed: looked up again");
    // The second entry is cached only until valid_until (150 s), not for another 60 s... and the
    // key is refused once the registry's record has run out.
    clock.advance_millis(81_000);
    assert_eq!(send(&seller, &bap, "m-4").await.0, 401);
    assert_eq!(lookups(&reg), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_is_cached_only_briefly() {
    let store = StoreFixture::new(Backend::Embedded);
    let clock = FixedClock::at_millis(chrono::Utc::now().timestamp_millis());
    let bap = Identity::new("newcomer.test");
    let (url, reg) = start_registry_clocked(vec![], clock.clone()).await;
    let seller = seller_using(
        &url,
        &reg,
        &store,
        "s",
        Identity::new("seller.test"),
        clock.clone(),
        |s| {
            s.registry.miss_ttl_secs = 30;
        },
    )
    .await;
    assert_eq!(send(&seller, &bap, "m-1").await.0, 401);
    assert_eq!(send(&seller, &bap, "m-2").await.0, 401);
    assert_eq!(lookups(&reg), 1, "the miss is cached");
    reg.records.write().unwrap().push(record(&bap, FAR));
    clock.advance_millis(31_000);
    assert_eq!(
        send(&seller, &bap, "m-3").await.0,
        200,
        "a newly subscribed peer is accepted"
    );
    assert_eq!(lookups(&reg), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_registry_is_a_retryable_nack_not_a_401_or_500() {
    let store = StoreFixture::new(Backend::Embedded);
    let bap = Identity::new("buyer.test");
    let seller = Seller::start(&store, "s", vec![], |s| {
        s.registry.url = format!("http://127.0.0.1:{}", dead_port());
        s.registry.attempts = 2;
    })
    .await;
    let (status, body) = send(&seller, &bap, "m-1").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["message"]["ack"]["status"], "NACK");
    assert_eq!(body["error"]["code"], "31001");
    assert_eq!(seller.received("buyer.test", "m-1").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_lookup_is_retried_and_every_lookup_is_signed_over_its_bytes() {
    let store = StoreFixture::new(Backend::Embedded);
    let bap = Identity::new("buyer.test");
    let records = serde_json::to_string(&json!([record(&bap, FAR)])).unwrap();
    let registry = Recorder::start("/v2.0/lookup", Script::FailFirstThen(1, 429, records)).await;
    let me = Identity::new("seller.test");
    let seller = Seller::start_as(me.clone(), &store, "s", vec![], Arc::new(SystemClock), {
        let url = registry.base.clone();
        move |s| s.registry.url = url
    })
    .await;
    assert_eq!(send(&seller, &bap, "m-1").await.0, 200);
    let got = registry.requests();
    assert_eq!(got.len(), 2, "one 429, then the retry");
    for c in &got {
        let body: Value = serde_json::from_slice(&c.body).unwrap();
        assert_eq!(
            body,
            json!({"country": "IND", "subscriber_id": "buyer.test", "ukId": "k1"})
        );
        let header = c.authorization.as_deref().expect("v2 lookups are signed");
        let signer =
            ondc_rating::crypto::verify_body(header, &c.body, &me.keys.verifying_key(), now(), 5)
                .expect("signed by the seller over the exact body");
        assert_eq!(signer.subscriber_id, "seller.test");
        // ONDC's own SDK accepts it too.
        let sdk = crate::interop::sdk_verify(
            std::str::from_utf8(&c.body).unwrap(),
            &me.keys.public_key_base64(),
            header,
        );
        assert_eq!(sdk.code, Some(0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_legacy_lookup_is_unsigned() {
    let store = StoreFixture::new(Backend::Embedded);
    let bap = Identity::new("buyer.test");
    let records = serde_json::to_string(&json!([record(&bap, FAR)])).unwrap();
    let registry = Recorder::start("/lookup", Script::Respond(200, records)).await;
    let seller = Seller::start(&store, "s", vec![], {
        let url = registry.base.clone();
        move |s| {
            s.registry.url = url;
            s.registry.lookup = ondc_rating::config::LookupApi::Legacy;
        }
    })
    .await;
    assert_eq!(send(&seller, &bap, "m-1").await.0, 200);
    let got = registry.requests();
    assert_eq!(got.len(), 1);
    assert!(got[0].authorization.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_registry_verifies_signed_lookups_and_filters() {
    let caller = Identity::new("caller.test");
    let other = Identity::new("other.test");
    let (url, reg) = start_registry(vec![record(&caller, FAR), record(&other, FAR)]).await;
    let http = reqwest::Client::new();
    let body = serde_json::to_vec(&json!({"subscriber_id": "other.test", "ukId": "k1"})).unwrap();
    let lookup = format!("{url}/v2.0/lookup");

    let (s, _) = post_with_header(&http, &lookup, None, &body).await;
    assert_eq!(s, 401);
    let stranger = Identity::new("stranger.test");
    assert_eq!(post_signed(&http, &lookup, &stranger, &body).await.0, 401);
    let (s, found) = post_signed(&http, &lookup, &caller, &body).await;
    assert_eq!(s, 200);
    let found = found.as_array().unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["subscriber_id"], "other.test");
    assert_eq!(
        found[0]["signing_public_key"],
        other.keys.public_key_base64()
    );
    assert_eq!(reg.stats.refused.load(Ordering::SeqCst), 2);

    // Legacy lookup: unsigned, same filters.
    let (s, all) = post_with_header(
        &http,
        &format!("{url}/lookup"),
        None,
        br#"{"domain":"ONDC:RET11"}"#,
    )
    .await;
    assert_eq!((s, all.as_array().unwrap().len()), (200, 2));
    let (s, none) = post_with_header(
        &http,
        &format!("{url}/lookup"),
        None,
        br#"{"subscriber_id":"nobody"}"#,
    )
    .await;
    assert_eq!((s, none), (200, json!([])));
    let (s, _) = post_with_header(&http, &format!("{url}/lookup"), None, b"[1]").await;
    assert_eq!(s, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_command_serves_a_records_file() {
    let dir = tempfile::tempdir().unwrap();
    let peer = Identity::new("peer.test");
    let file = dir.path().join("peers.json");
    std::fs::write(
        &file,
        serde_json::to_vec(&json!([record(&peer, FAR)])).unwrap(),
    )
    .unwrap();
    let (l, port) = bind();
    drop(l);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ondc-rating"))
        .args([
            "registry",
            "--file",
            file.to_str().unwrap(),
            "--bind",
            &format!("127.0.0.1:{port}"),
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/lookup");
    let mut answer = None;
    for _ in 0..100 {
        if let Ok(r) = http
            .post(&url)
            .body(r#"{"subscriber_id":"peer.test"}"#)
            .send()
            .await
        {
            answer = Some(r.json::<Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let answer = answer.expect("registry came up");
    assert_eq!(
        answer[0]["signing_public_key"],
        peer.keys.public_key_base64()
    );

    // A malformed file is refused with the record named.
    std::fs::write(&file, br#"[{"subscriber_id":"x"}]"#).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ondc-rating"))
        .args([
            "registry",
            "--file",
            file.to_str().unwrap(),
            "--bind",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("record 0"));
}

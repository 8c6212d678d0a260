//! Owed work among instances sharing Redis, at the store: an instance takes over the marks of an
//! instance whose heartbeat stopped, never those of a living one, and one that comes back after
//! being struck off is looked at again.

use std::time::Duration;

use ondc_rating::store::{DeliveryStatus, ReceivedRating, Space, Store};

use crate::helpers::*;
use crate::{both_stores, shared_stores};

/// A received rating still owing its /on_rating.
fn owing(message_id: &str) -> ReceivedRating {
    let mut r = ondc_rating::perf::sample_received();
    r.context.message_id = message_id.to_owned();
    r.on_rating = DeliveryStatus::Pending;
    r
}

fn key_of(r: &ReceivedRating) -> String {
    ondc_rating::store::received_key(&r.context.bap_id, &r.context.message_id)
}

/// Longer than an instance counts as alive after its last heartbeat.
const LAPSE: Duration = Duration::from_millis(5_500);

shared_stores!(marks_of_a_stopped_instance_are_taken_over);

async fn marks_of_a_stopped_instance_are_taken_over(backend: Backend) {
    let fixture = StoreFixture::new(backend);
    let settings = fixture.settings("seller");
    let (a, b) = (
        Store::open(&settings).await.unwrap(),
        Store::open(&settings).await.unwrap(),
    );
    a.beat().await.unwrap().unwrap();
    b.beat().await.unwrap().unwrap();
    let first: Vec<ReceivedRating> = (1..=3).map(|n| owing(&format!("m-o{n}"))).collect();
    for r in &first {
        assert!(a.insert_received(r).await.unwrap());
    }
    // A settled one is marked no more; one settled and then owing again (a repeat answered
    // again) is marked again.
    let mut settled = owing("m-o4");
    assert!(a.insert_received(&settled).await.unwrap());
    settled.on_rating = DeliveryStatus::Sent;
    a.put_received(&settled).await.unwrap();
    let mut reopened = owing("m-o6");
    assert!(a.insert_received(&reopened).await.unwrap());
    reopened.on_rating = DeliveryStatus::Failed;
    a.put_received(&reopened).await.unwrap();
    reopened.on_rating = DeliveryStatus::Pending;
    a.reopen_received(&reopened).await.unwrap();
    assert!(b.take_over_owed().await.unwrap().is_empty(), "a is alive");

    // a stops beating; b goes on.
    tokio::time::sleep(LAPSE).await;
    b.beat().await.unwrap().unwrap();
    let mut taken = b.take_over_owed().await.unwrap();
    taken.sort();
    let first: Vec<ReceivedRating> = first.into_iter().chain([reopened]).collect();
    let expected: Vec<String> = first.iter().map(key_of).collect();
    assert_eq!(taken, expected);
    for key in &taken {
        let r = b.owed_received(key).await.unwrap().expect("still owed");
        assert_eq!(&key_of(&r), key);
    }
    assert!(b.take_over_owed().await.unwrap().is_empty(), "taken once");
    // b's marks are b's now: a fresh instance finds nothing while b lives.
    let c = Store::open(&settings).await.unwrap();
    c.beat().await.unwrap().unwrap();
    assert!(c.take_over_owed().await.unwrap().is_empty(), "b is alive");

    // a, struck off with nothing left, comes back, marks another and stops again.
    let late = owing("m-o5");
    assert!(a.insert_received(&late).await.unwrap());
    tokio::time::sleep(LAPSE).await;
    c.beat().await.unwrap().unwrap();
    let mut taken = c.take_over_owed().await.unwrap();
    taken.sort();
    let mut expected: Vec<String> = first.iter().chain([&late]).map(key_of).collect();
    expected.sort();
    assert_eq!(taken, expected, "a's late mark, and b's (b stopped too)");
}

/// An instance that takes over a rating whose record the store cannot give it at first (here
/// Redis answers the read with an error) tries again, and sends the /on_rating once the record
/// reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_rating_taken_over_whose_read_fails_at_first_is_taken_up_once_it_reads() {
    let fixture = StoreFixture::new(Backend::Redis);
    let settings = fixture.settings("seller");
    let buyer = ScriptedBuyer::start().await;
    let mut r = owing("m-unread");
    r.context.bap_uri = buyer.bap_uri();
    r.context.timestamp = ondc_rating::clock::ondc_timestamp(chrono::Utc::now());
    let (key, prefix) = (key_of(&r), settings.key_prefix.clone());
    let record = format!("{prefix}received:{key}");
    let redis = redis_connection(&settings.redis_url).await;
    let run = |cmd: &mut redis::Cmd| redis_do(&redis, cmd.clone());
    // A stopped instance's mark, on a record Redis cannot return as a value (WRONGTYPE).
    run(redis::cmd("RPUSH").arg(&record).arg("not a record")).await;
    run(redis::cmd("ZADD")
        .arg(format!("{prefix}owed:stopped"))
        .arg(0)
        .arg(&key))
    .await;
    run(redis::cmd("SADD")
        .arg(format!("{prefix}owing"))
        .arg("stopped"))
    .await;

    let seller = Seller::start(&fixture, "seller", vec![], |_| {}).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(buyer.requests().is_empty(), "nothing to send yet");
    run(redis::cmd("DEL").arg(&record)).await;
    run(redis::cmd("SET")
        .arg(&record)
        .arg(serde_json::to_vec(&r).unwrap()))
    .await;

    let sent = buyer.wait_for(1).await;
    let on_rating: serde_json::Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(on_rating["context"]["message_id"], "m-unread");
    let mut status = serde_json::Value::Null;
    for _ in 0..100 {
        let (_, got) = seller.received(&r.context.bap_id, "m-unread").await;
        status = got["rating"]["onRating"].clone();
        if status == "sent" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "sent");
}

shared_stores!(two_takers_share_a_stopped_instances_marks);

/// Two instances looking at once share a stopped instance's marks, more than a chunk of them:
/// each is taken by exactly one, and is that taker's alone from then on (a fourth instance,
/// once both have stopped, takes every one exactly once).
async fn two_takers_share_a_stopped_instances_marks(backend: Backend) {
    let fixture = StoreFixture::new(backend);
    let settings = fixture.settings("seller");
    let open = || Store::open(&settings);
    let (a, b, c) = (
        open().await.unwrap(),
        open().await.unwrap(),
        open().await.unwrap(),
    );
    for s in [&a, &b, &c] {
        s.beat().await.unwrap().unwrap();
    }
    let all: Vec<ReceivedRating> = (0..1_300).map(|n| owing(&format!("m-t{n}"))).collect();
    for r in &all {
        assert!(a.insert_received(r).await.unwrap());
    }
    let mut expected: Vec<String> = all.iter().map(key_of).collect();
    expected.sort();

    tokio::time::sleep(LAPSE).await;
    b.beat().await.unwrap().unwrap();
    c.beat().await.unwrap().unwrap();
    let (by_b, by_c) = tokio::join!(b.take_over_owed(), c.take_over_owed());
    let mut taken: Vec<String> = by_b.unwrap().into_iter().chain(by_c.unwrap()).collect();
    taken.sort();
    assert_eq!(taken.len(), expected.len(), "each taken once");
    assert_eq!(taken, expected);

    tokio::time::sleep(LAPSE).await;
    let d = open().await.unwrap();
    d.beat().await.unwrap().unwrap();
    let mut again = d.take_over_owed().await.unwrap();
    again.sort();
    assert_eq!(again.len(), expected.len(), "each marked by one taker only");
    assert_eq!(again, expected);
}

/// An entry of a list of received ratings (those held for the platform; all of them) whose
/// record was never written (a crash between the insert's writes) is skipped when the list is
/// read, and removed once it is older than any insert could take; a young one is kept (its
/// insert may be under way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_listed_entry_a_crash_left_is_dropped_once_old() {
    let fixture = StoreFixture::new(Backend::Redis);
    let settings = fixture.settings("seller");
    let store = Store::open(&settings).await.unwrap();
    let mut held = owing("m-held");
    held.on_rating = DeliveryStatus::Awaiting;
    held.verdict = ondc_rating::store::Verdict::Accepted;
    assert!(store.insert_received(&held).await.unwrap());
    for (list, name) in [(Space::Awaiting, "awaiting"), (Space::Arrived, "arrived")] {
        a_crashed_entry_is_dropped_once_old(&store, &settings.key_prefix, list, name).await;
    }
}

async fn a_crashed_entry_is_dropped_once_old(store: &Store, prefix: &str, list: Space, name: &str) {
    let now = chrono::Utc::now().timestamp_millis();
    let crashed = format!("{:013}|buyer.test|m-crashed", now - 120_000);
    let coming = format!("{:013}|buyer.test|m-coming", now);
    let set = format!("{prefix}{name}");
    let mut c = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("ZADD")
        .arg(&set)
        .arg(0)
        .arg(&crashed)
        .arg(0)
        .arg(&coming)
        .query_async::<()>(&mut c)
        .await
        .unwrap();

    let (listed, next) = store.listed(list, None, 10).await.unwrap();
    let ids: Vec<&str> = listed
        .iter()
        .map(|r| r.context.message_id.as_str())
        .collect();
    assert_eq!((ids, next), (vec!["m-held"], None), "{name}");
    let left: Vec<String> = redis::cmd("ZRANGE")
        .arg(&set)
        .arg(0)
        .arg(-1)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(left.len(), 2, "{name}: {left:?}");
    assert!(left.contains(&coming), "{left:?}");
    assert!(left.iter().any(|e| e.ends_with("|m-held")), "{left:?}");
}

/// `r` settled (its /on_rating sent, or given up when `failed`) at `at`.
fn settled_at(
    mut r: ReceivedRating,
    at: chrono::DateTime<chrono::Utc>,
    failed: bool,
) -> ReceivedRating {
    r.on_rating = if failed {
        DeliveryStatus::Failed
    } else {
        DeliveryStatus::Sent
    };
    r.settled_at = Some(ondc_rating::clock::ondc_timestamp(at));
    r
}

both_stores!(settled_ratings_are_forgotten_past_the_cutoff_and_no_others);

/// Past the cutoff the ratings settled before it go, whether their /on_rating was sent or given
/// up; one owing work, one held for the platform, one a repeat reopened since (owing again) and
/// one settled again since (under its later time) stay; a page of entries at a time.
async fn settled_ratings_are_forgotten_past_the_cutoff_and_no_others(backend: Backend) {
    let fixture = StoreFixture::new(backend);
    let store = Store::open(&fixture.settings("seller")).await.unwrap();
    let t0 = chrono::Utc::now();
    let day = chrono::Duration::days(1);
    let hour = chrono::Duration::hours(1);
    let bap = owing("m").context.bap_id;
    let mut held = owing("m-held");
    held.on_rating = DeliveryStatus::Awaiting;
    for r in [
        owing("m-sent"),
        owing("m-failed"),
        owing("m-owing"),
        held.clone(),
        owing("m-reopened"),
        owing("m-again"),
    ] {
        assert!(store.insert_received(&r).await.unwrap());
    }
    store
        .put_received(&settled_at(owing("m-sent"), t0, false))
        .await
        .unwrap();
    store
        .put_received(&settled_at(owing("m-failed"), t0 + hour, true))
        .await
        .unwrap();
    // Settled, then reopened by a repeat: it owes its /on_rating again.
    let reopened = settled_at(owing("m-reopened"), t0, true);
    store.put_received(&reopened).await.unwrap();
    let mut again = reopened.clone();
    again.on_rating = DeliveryStatus::Pending;
    again.settled_at = None;
    store.reopen_received(&again).await.unwrap();
    // Settled, reopened and settled again two days later.
    store
        .put_received(&settled_at(owing("m-again"), t0, false))
        .await
        .unwrap();
    store.reopen_received(&owing("m-again")).await.unwrap();
    store
        .put_received(&settled_at(owing("m-again"), t0 + day * 2, false))
        .await
        .unwrap();

    // Nothing settled before the first one's time.
    assert_eq!(store.forget_settled(t0 - hour, 2).await.unwrap(), (0, 0));
    // A day on, in pages of two: four entries due (two of them left by a repeat), two records.
    let mut looked_at = 0;
    let mut gone = 0;
    loop {
        let (n, g) = store.forget_settled(t0 + day, 2).await.unwrap();
        looked_at += n;
        gone += g;
        if n < 2 {
            break;
        }
    }
    assert_eq!((looked_at, gone), (4, 2));
    for (id, kept) in [
        ("m-sent", false),
        ("m-failed", false),
        ("m-owing", true),
        ("m-held", true),
        ("m-reopened", true),
        ("m-again", true),
    ] {
        let stored = store.get_received(&bap, id).await.unwrap();
        assert_eq!(stored.is_some(), kept, "{id}");
    }
    assert_eq!(
        store
            .get_received(&bap, "m-reopened")
            .await
            .unwrap()
            .unwrap()
            .on_rating,
        DeliveryStatus::Pending
    );
    assert_eq!(store.forget_settled(t0 + day, 10).await.unwrap(), (0, 0));
    // Three days on, the one settled again goes too; the others never settled stay.
    assert_eq!(
        store.forget_settled(t0 + day * 3, 10).await.unwrap(),
        (1, 1)
    );
    assert!(store.get_received(&bap, "m-again").await.unwrap().is_none());
    for id in ["m-owing", "m-held", "m-reopened"] {
        assert!(
            store.get_received(&bap, id).await.unwrap().is_some(),
            "{id}"
        );
    }
    // The owed index is untouched by forgetting: what still owes work is taken up.
    let mut owed = store.take_over_owed().await.unwrap();
    owed.sort();
    if backend == Backend::Embedded {
        assert_eq!(
            owed,
            [key_of(&owing("m-owing")), key_of(&owing("m-reopened"))]
        );
    }
}

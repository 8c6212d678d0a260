//! Owed work among instances sharing Redis, at the store: an instance takes over the marks of an
//! instance whose heartbeat stopped, never those of a living one, and one that comes back after
//! being struck off is looked at again.

use std::time::Duration;

use ondc_rating::store::{DeliveryStatus, ReceivedRating, Store};

use crate::helpers::*;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_the_marks_of_a_stopped_instance_and_only_those_are_taken_over() {
    marks_of_a_stopped_instance_are_taken_over(Backend::Redis).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_the_marks_of_a_stopped_instance_and_only_those_are_taken_over() {
    marks_of_a_stopped_instance_are_taken_over(Backend::Cluster).await;
}

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

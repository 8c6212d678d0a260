//! Reference points for throughput measurements: representative bodies and the crypto floor.
//!
//! One rating round trip costs four signature operations: the buyer side signs the `/rating`, the
//! seller side verifies it, the seller side signs the `/on_rating`, the buyer side verifies it.
//! Each one digests the whole body (BLAKE2b-512) and writes or reads the `Authorization` header,
//! exactly as the server does ([`sign_body`], [`verify_body`]). [`crypto_floor`] runs nothing but
//! those four operations, back to back on a number of threads, and reports how many round trips
//! per second they complete: no measured full round-trip throughput on the same machine can exceed
//! it, since HTTP, JSON, the store and scheduling all come on top.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::crypto::{SigningKeyPair, b64_encode, sign_body, verify_body};
use crate::protocol::rating::parse_inbound;
use crate::protocol::{
    Action, Context, Envelope, FeedbackForm, Form, RatingCategory, RatingEntry, RatingMessage,
};
use crate::store::{DeliveryStatus, ReceivedRating, Verdict};

const EXAMPLE_RATING: &str = include_str!("../fixtures/ondc/rating.ret11.json");

fn example() -> Value {
    serde_json::from_str(EXAMPLE_RATING).expect("the embedded example is JSON")
}

/// The context of ONDC's example RET11 `/rating`.
pub fn sample_context() -> Context {
    Context::from_value(example().get("context"), Action::Rating)
        .expect("the embedded example has a valid context")
}

/// The ratings of ONDC's example RET11 `/rating`, as the buyer side sends them.
pub fn sample_ratings() -> Vec<RatingEntry> {
    sample_received()
        .ratings
        .into_iter()
        .map(|r| RatingEntry {
            rating_category: RatingCategory::parse(&r.rating_category)
                .expect("the example's categories are known"),
            id: r.id,
            value: r.value,
            feedback_form: Vec::new(),
        })
        .collect()
}

/// The example `/rating` as the seller side holds it once accepted, with a feedback form of the
/// configured-template kind, ready for its `/on_rating`.
pub fn sample_received() -> ReceivedRating {
    let context = sample_context();
    let ratings = parse_inbound(example().get("message")).expect("the example's ratings read");
    let order_id = ratings[0].id.clone();
    ReceivedRating {
        received_at: context.timestamp.clone(),
        context,
        ratings,
        on_rating: DeliveryStatus::Pending,
        attempts: 0,
        last_error: None,
        verdict: Verdict::Accepted,
        error: None,
        feedback_form: Some(FeedbackForm {
            form: Form {
                url: format!("https://seller.example/feedback/{order_id}"),
                mime_type: "text/html".into(),
                data: Some(format!("order_id={order_id}")),
            },
            required: Some(false),
        }),
        webhook: None,
        single: false,
        settled_at: None,
    }
}

/// A representative `/rating` body, built and serialised as the buyer side sends it (compact
/// JSON, context then message).
pub fn sample_rating_body() -> Vec<u8> {
    crate::protocol::to_json(&Envelope {
        context: &sample_context(),
        message: RatingMessage {
            ratings: sample_ratings(),
        },
    })
    .expect("rating message serialises")
}

/// A representative `/on_rating` body for [`sample_rating_body`], built as the seller side sends
/// it (acks and a feedback form), stamped one second after the `/rating`.
pub fn sample_on_rating_body() -> Vec<u8> {
    let r = sample_received();
    let at = crate::clock::parse_timestamp(&r.context.timestamp)
        .expect("the example's timestamp reads")
        + chrono::Duration::seconds(1);
    crate::bpp::sender::on_rating_body(&r, at)
}

/// Round trips per second that `threads` threads complete over `duration` doing nothing but the
/// four signature operations of a round trip, over [`sample_rating_body`] and
/// [`sample_on_rating_body`]: [`CryptoFloor::per_sec`] of [`crypto_floor_over`].
pub fn crypto_floor(duration: Duration, threads: usize) -> f64 {
    crypto_floor_over(
        &sample_rating_body(),
        &sample_on_rating_body(),
        duration,
        threads,
    )
    .per_sec
}

/// What [`rate_over`] measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Threads that ran.
    pub threads: usize,
    /// Operations completed per second of wall-clock time, all threads together: what this
    /// machine did during the run, whatever else was running on it.
    pub per_sec: f64,
    /// Operations per second of on-CPU time of one thread, averaged over the threads (from the
    /// scheduler's accounting; None where the kernel does not expose it): what one core does
    /// with nothing else competing for it. `threads` times this is the rate on that many
    /// dedicated cores.
    pub per_cpu_sec: Option<f64>,
}

/// What [`crypto_floor_over`] measured: its operation is one round trip's signature work.
pub type CryptoFloor = Rate;

/// On-CPU time of the calling thread so far (Linux's `/proc/thread-self/schedstat`).
pub fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Runs `op` over and over on `threads` threads (at least one), started together, for
/// `duration`, and reports how fast it went by the wall clock and per CPU-second.
///
/// # Panics
///
/// If `op` panics.
pub fn rate_over<F: Fn() + Sync>(duration: Duration, threads: usize, op: F) -> Rate {
    let threads = threads.max(1);
    let start = Barrier::new(threads);
    // Per thread: (operations, wall time, on-CPU time).
    let runs: Vec<(u64, Duration, Option<Duration>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    let (began, cpu_before) = (Instant::now(), thread_cpu_time());
                    let mut done: u64 = 0;
                    loop {
                        op();
                        done += 1;
                        let elapsed = began.elapsed();
                        if elapsed >= duration {
                            let cpu = cpu_before
                                .zip(thread_cpu_time())
                                .map(|(before, after)| after.saturating_sub(before));
                            break (done, elapsed, cpu);
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("measured operation"))
            .collect()
    });
    let per_sec = runs
        .iter()
        .map(|(n, wall, _)| *n as f64 / wall.as_secs_f64())
        .sum();
    let per_cpu_sec = runs
        .iter()
        .map(|(n, _, cpu)| {
            cpu.filter(|c| !c.is_zero())
                .map(|c| *n as f64 / c.as_secs_f64())
        })
        .sum::<Option<f64>>()
        .map(|total| total / threads as f64);
    Rate {
        threads,
        per_sec,
        per_cpu_sec,
    }
}

/// [`rate_over`] for one round trip's signature work: sign `rating` (buyer key), verify it,
/// sign `on_rating` (seller key), verify it, with the server's own [`sign_body`] and
/// [`verify_body`] (digest, signing string, Ed25519, header format and parse, time-window
/// check).
///
/// # Panics
///
/// If a signature made here does not verify (a defect in the signing code).
pub fn crypto_floor_over(
    rating: &[u8],
    on_rating: &[u8],
    duration: Duration,
    threads: usize,
) -> CryptoFloor {
    // Fixed keys: the floor needs no secret, and no random source that could fail.
    let buyer = SigningKeyPair::from_base64(&b64_encode([7u8; 32])).expect("32-byte seed");
    let seller = SigningKeyPair::from_base64(&b64_encode([9u8; 32])).expect("32-byte seed");
    let (buyer_pub, seller_pub) = (buyer.verifying_key(), seller.verifying_key());
    let created = chrono::Utc::now().timestamp();
    let expires = created + 3600;
    rate_over(duration, threads, || {
        let h = sign_body(rating, &buyer, "buyer.example", "k1", created, expires);
        let ok = verify_body(&h, rating, &buyer_pub, created, 5).is_ok();
        let h = sign_body(on_rating, &seller, "seller.example", "k1", created, expires);
        let ok = ok && verify_body(&h, on_rating, &seller_pub, created, 5).is_ok();
        assert!(ok, "a signature made by sign_body did not verify");
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::schema::Schemas;

    #[test]
    fn the_sample_bodies_meet_the_outbound_schemas() {
        let s = Schemas::compile().unwrap();
        assert_eq!(s.rating_outbound.check_bytes(&sample_rating_body()), Ok(()));
        assert_eq!(
            s.on_rating_outbound.check_bytes(&sample_on_rating_body()),
            Ok(())
        );
    }

    #[test]
    fn the_floor_counts_round_trips() {
        assert!(crypto_floor(Duration::from_millis(20), 2) > 0.0);
        let f = crypto_floor_over(b"{}", b"{}", Duration::from_millis(20), 0);
        assert_eq!(f.threads, 1);
        assert!(f.per_sec > 0.0);
    }
}

//! The crypto floor: how many round trips per second two cores could do if a round trip were
//! only its four signature operations (the buyer side signs /rating, the seller side verifies it,
//! signs /on_rating, the buyer side verifies that; each with its BLAKE2b-512 body digest), and how
//! many single verifications per second two cores do. Beside each, the same with the
//! verifications done in batches of [`BATCH`] as the adapters' HTTP workers do under load
//! (src/crypto/batch.rs): the yardstick a batching adapter is also measured against.

use std::time::Duration;

use crate::crypto::batch::verify_batch;
use crate::crypto::{AuthorizationHeader, SigningKeyPair, sign_body, verify_body};
use crate::perf::{crypto_floor_over, rate_over, sample_on_rating_body, sample_rating_body};

/// Signature-only rates, per second, over `threads` threads.
#[derive(Debug, Clone, Copy)]
pub struct Floor {
    /// Round trips (2 signs + 2 verifies) per second.
    pub round_trips_per_sec: f64,
    /// Round trips per second of one thread's on-CPU time (what one core does undisturbed).
    pub round_trips_per_cpu_sec: Option<f64>,
    /// /rating verifications per second.
    pub verifies_per_sec: f64,
    /// Verifications per second of one thread's on-CPU time.
    pub verifies_per_cpu_sec: Option<f64>,
    /// Round trips per second with their verifications in batches of [`BATCH`].
    pub batched_round_trips_per_sec: f64,
    /// /rating verifications per second in batches of [`BATCH`].
    pub batched_verifies_per_sec: f64,
    /// Threads used.
    pub threads: usize,
}

/// The batch size of the batched figures.
pub const BATCH: usize = 8;

/// Verifies each `(header, body)` the way an inbound request's is read (header parsed, time
/// window, digest, signing string), their signatures in one batch.
fn verify_together(signed: &[(String, &[u8])], key: &ed25519_dalek::VerifyingKey, now: i64) {
    let prepared: Vec<_> = signed
        .iter()
        .map(|(header, body)| {
            AuthorizationHeader::parse(header)
                .expect("a header made here parses")
                .signed(body, now, 5)
                .expect("inside its window")
        })
        .collect();
    let items: Vec<_> = prepared
        .iter()
        .map(|(message, signature)| (key, message.as_bytes(), signature))
        .collect();
    assert!(verify_batch(&items), "signatures made here verify");
}

/// Measures both rates on `threads` threads, `for_` each (blocking): the round trips with the
/// library's [`crate::perf::crypto_floor_over`] (the same figure as `cargo bench --bench micro`),
/// the single verifications with [`crate::perf::rate_over`], which it is built on.
pub fn measure(threads: usize, for_: Duration) -> Result<Floor, String> {
    let (rating, on_rating) = (sample_rating_body(), sample_on_rating_body());
    let rt = crypto_floor_over(&rating, &on_rating, for_, threads);
    let buyer = SigningKeyPair::generate().map_err(|e| e.to_string())?;
    let buyer_pub = buyer.verifying_key();
    let now = chrono::Utc::now().timestamp();
    let header = sign_body(&rating, &buyer, "buyer.bench", "k1", now, now + 60);
    let verify = || {
        let ok = verify_body(&header, &rating, &buyer_pub, now, 5).is_ok();
        assert!(ok, "a signature made here verifies");
    };
    verify();
    let verifies = rate_over(for_, threads, verify);

    // The batched figures: BATCH distinct headers per batch (their created times differ).
    let seller = SigningKeyPair::generate().map_err(|e| e.to_string())?;
    let seller_pub = seller.verifying_key();
    let headers: Vec<(String, &[u8])> = (0..BATCH as i64)
        .map(|i| {
            let h = sign_body(&rating, &buyer, "buyer.bench", "k1", now - i, now + 60);
            (h, rating.as_slice())
        })
        .collect();
    let batched_verifies = rate_over(for_, threads, || verify_together(&headers, &buyer_pub, now));
    let batched_round_trips = rate_over(for_, threads, || {
        let mut ratings = Vec::with_capacity(BATCH);
        let mut on_ratings = Vec::with_capacity(BATCH);
        for i in 0..BATCH as i64 {
            let h = sign_body(&rating, &buyer, "buyer.bench", "k1", now - i, now + 60);
            ratings.push((h, rating.as_slice()));
            let h = sign_body(&on_rating, &seller, "seller.bench", "k1", now - i, now + 60);
            on_ratings.push((h, on_rating.as_slice()));
        }
        verify_together(&ratings, &buyer_pub, now);
        verify_together(&on_ratings, &seller_pub, now);
    });
    Ok(Floor {
        round_trips_per_sec: rt.per_sec,
        round_trips_per_cpu_sec: rt.per_cpu_sec,
        verifies_per_sec: verifies.per_sec,
        verifies_per_cpu_sec: verifies.per_cpu_sec,
        batched_round_trips_per_sec: batched_round_trips.per_sec * BATCH as f64,
        batched_verifies_per_sec: batched_verifies.per_sec * BATCH as f64,
        threads,
    })
}

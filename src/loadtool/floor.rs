//! The crypto floor: how many round trips per second two cores could do if a round trip were
//! only its four signature operations (the buyer side signs /rating, the seller side verifies it,
//! signs /on_rating, the buyer side verifies that; each with its BLAKE2b-512 body digest), and how
//! many single verifications per second two cores do.

use std::time::Duration;

use crate::crypto::{SigningKeyPair, sign_body, verify_body};
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
    /// Threads used.
    pub threads: usize,
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
    Ok(Floor {
        round_trips_per_sec: rt.per_sec,
        round_trips_per_cpu_sec: rt.per_cpu_sec,
        verifies_per_sec: verifies.per_sec,
        verifies_per_cpu_sec: verifies.per_cpu_sec,
        threads,
    })
}

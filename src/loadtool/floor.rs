//! The crypto floor: how many round trips per second two cores could do if a round trip were
//! only its four signature operations (the buyer side signs /rating, the seller side verifies it,
//! signs /on_rating, the buyer side verifies that; each with its BLAKE2b-512 body digest), and how
//! many single verifications per second two cores do.

use std::time::{Duration, Instant};

use crate::crypto::{SigningKeyPair, sign_body, verify_body};
use crate::perf::{crypto_floor_over, sample_on_rating_body, sample_rating_body};

/// Signature-only rates, per second, over `threads` threads.
#[derive(Debug, Clone, Copy)]
pub struct Floor {
    /// Round trips (2 signs + 2 verifies) per second.
    pub round_trips_per_sec: f64,
    /// /rating verifications per second.
    pub verifies_per_sec: f64,
    /// Threads used.
    pub threads: usize,
}

fn per_thread<F: Fn() + Sync>(threads: usize, for_: Duration, op: F) -> f64 {
    let started = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let t = Instant::now();
                    let mut n = 0u64;
                    while t.elapsed() < for_ {
                        for _ in 0..16 {
                            op();
                        }
                        n += 16;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    total as f64 / started.elapsed().as_secs_f64()
}

/// Measures both rates on `threads` threads, `for_` each (blocking): the round trips with the
/// library's [`crate::perf::crypto_floor_over`] (the same figure as `cargo bench --bench micro`),
/// the single verifications here.
pub fn measure(threads: usize, for_: Duration) -> Result<Floor, String> {
    let (rating, on_rating) = (sample_rating_body(), sample_on_rating_body());
    let round_trips_per_sec = crypto_floor_over(&rating, &on_rating, for_, threads).per_sec;
    let buyer = SigningKeyPair::generate().map_err(|e| e.to_string())?;
    let buyer_pub = buyer.verifying_key();
    let now = chrono::Utc::now().timestamp();
    let header = sign_body(&rating, &buyer, "buyer.bench", "k1", now, now + 60);
    let verify = || {
        let ok = verify_body(&header, &rating, &buyer_pub, now, 5).is_ok();
        assert!(ok, "a signature made here verifies");
    };
    verify();
    let verifies_per_sec = per_thread(threads, for_, verify);
    Ok(Floor {
        round_trips_per_sec,
        verifies_per_sec,
        threads,
    })
}

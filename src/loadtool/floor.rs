//! The crypto floor: how many round trips per second two cores could do if a round trip were
//! only its four signature operations (the buyer side signs /rating, the seller side verifies it,
//! signs /on_rating, the buyer side verifies that; each with its BLAKE2b-512 body digest), and how
//! many single verifications per second two cores do.

use std::time::{Duration, Instant};

use crate::crypto::{SigningKeyPair, sign_body, verify_body};
use crate::perf::{crypto_floor_over, sample_on_rating_body, sample_rating_body, thread_cpu_time};

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

/// Runs `op` on `threads` threads for `for_`: (operations per second of wall-clock time, all
/// threads together; operations per second of on-CPU time of one thread, averaged).
fn per_thread<F: Fn() + Sync>(threads: usize, for_: Duration, op: F) -> (f64, Option<f64>) {
    let started = Instant::now();
    let runs: Vec<(u64, Option<Duration>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let (t, cpu_before) = (Instant::now(), thread_cpu_time());
                    let mut n = 0u64;
                    while t.elapsed() < for_ {
                        for _ in 0..16 {
                            op();
                        }
                        n += 16;
                    }
                    let cpu = cpu_before
                        .zip(thread_cpu_time())
                        .map(|(before, after)| after.saturating_sub(before));
                    (n, cpu)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or((0, None)))
            .collect()
    });
    let total: u64 = runs.iter().map(|(n, _)| n).sum();
    let per_cpu_sec = runs
        .iter()
        .map(|(n, cpu)| {
            cpu.filter(|c| !c.is_zero())
                .map(|c| *n as f64 / c.as_secs_f64())
        })
        .sum::<Option<f64>>()
        .map(|sum| sum / threads.max(1) as f64);
    (total as f64 / started.elapsed().as_secs_f64(), per_cpu_sec)
}

/// Measures both rates on `threads` threads, `for_` each (blocking): the round trips with the
/// library's [`crate::perf::crypto_floor_over`] (the same figure as `cargo bench --bench micro`),
/// the single verifications here.
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
    let (verifies_per_sec, verifies_per_cpu_sec) = per_thread(threads, for_, verify);
    Ok(Floor {
        round_trips_per_sec: rt.per_sec,
        round_trips_per_cpu_sec: rt.per_cpu_sec,
        verifies_per_sec,
        verifies_per_cpu_sec,
        threads,
    })
}

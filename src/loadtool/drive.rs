//! The load loop: N workers (tokio tasks) take the next request number from a shared counter,
//! closed loop (send again as soon as the answer is in) or open loop at a fixed rate.
//!
//! In the open loop request `i` is due at `start + i / rate`, and its latency is counted from
//! that due time, not from when a worker got round to sending it: a server that falls behind
//! shows its queueing delay in the figures instead of hiding it (no coordinated omission).
//! Every latency is kept and sorted at the end; nearest-rank percentiles.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// What one request came to.
#[derive(Debug)]
pub enum Attempt {
    /// Answered and checked.
    Ok,
    /// Failed; the label counts it ("HTTP 502", "200 without ACK", "transport: ...").
    Error(String),
    /// No more work to send (every prepared order or body was used).
    Exhausted,
}

/// One request, given its number.
pub type Request = Arc<dyn Fn(u64) -> Pin<Box<dyn Future<Output = Attempt> + Send>> + Send + Sync>;

/// How to load.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Workers.
    pub concurrency: usize,
    /// How long to send.
    pub duration: Duration,
    /// Requests per second (open loop); None: closed loop.
    pub rate: Option<f64>,
}

/// What a load run measured.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Requests answered and checked.
    pub completed: u64,
    /// Failed requests by label.
    pub errors: BTreeMap<String, u64>,
    /// Latency of every completed request, microseconds, sorted.
    pub latencies_us: Vec<u64>,
    /// Wall time from the first send to the last answer, seconds.
    pub elapsed_secs: f64,
    /// The prepared work ran out before the duration ended.
    pub exhausted: bool,
}

impl Outcome {
    /// Failed requests.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Completed requests per second.
    pub fn throughput(&self) -> f64 {
        if self.elapsed_secs > 0.0 {
            self.completed as f64 / self.elapsed_secs
        } else {
            0.0
        }
    }

    /// Nearest-rank percentile `q` (0..=1) of the latencies, microseconds.
    pub fn percentile_us(&self, q: f64) -> u64 {
        percentile(&self.latencies_us, q)
    }
}

/// Nearest-rank percentile of sorted values; 0 for none.
pub fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[derive(Default)]
struct WorkerResult {
    completed: u64,
    errors: BTreeMap<String, u64>,
    latencies_us: Vec<u64>,
}

/// Runs `request` under `load` and collects the outcome.
pub async fn run(load: Load, request: Request) -> Outcome {
    let next = Arc::new(AtomicU64::new(0));
    let exhausted = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let end = start + load.duration;
    let mut workers = Vec::with_capacity(load.concurrency);
    for _ in 0..load.concurrency.max(1) {
        let (next, exhausted, request) = (next.clone(), exhausted.clone(), request.clone());
        workers.push(tokio::spawn(async move {
            let mut out = WorkerResult::default();
            loop {
                if exhausted.load(Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let due = match load.rate {
                    Some(rate) => start + Duration::from_secs_f64(i as f64 / rate),
                    None => Instant::now(),
                };
                if due >= end {
                    break;
                }
                tokio::time::sleep_until(due).await;
                match request(i).await {
                    Attempt::Ok => {
                        out.completed += 1;
                        out.latencies_us.push(due.elapsed().as_micros() as u64);
                    }
                    Attempt::Error(label) => *out.errors.entry(label).or_default() += 1,
                    Attempt::Exhausted => {
                        exhausted.store(true, Ordering::Relaxed);
                        break;
                    }
                }
            }
            out
        }));
    }
    let mut outcome = Outcome::default();
    for w in workers {
        let r = w.await.unwrap_or_else(|e| {
            let mut r = WorkerResult::default();
            r.errors.insert(format!("worker failed: {e}"), 1);
            r
        });
        outcome.completed += r.completed;
        for (k, v) in r.errors {
            *outcome.errors.entry(k).or_default() += v;
        }
        outcome.latencies_us.extend(r.latencies_us);
    }
    outcome.elapsed_secs = start.elapsed().as_secs_f64();
    outcome.exhausted = exhausted.load(Ordering::Relaxed);
    outcome.latencies_us.sort_unstable();
    outcome
}

/// Runs `f(i)` for i in 0..count, `parallel` at a time; the first error stops it.
pub async fn for_each_parallel<F, Fut>(count: u64, parallel: usize, f: F) -> Result<(), String>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let f = Arc::new(f);
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..parallel.max(1) {
        let (f, next, failed) = (f.clone(), next.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || failed.load(Ordering::Relaxed) {
                    return Ok(());
                }
                if let Err(e) = f(i).await {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&v, 0.5), 500);
        assert_eq!(percentile(&v, 0.99), 990);
        assert_eq!(percentile(&v, 0.999), 999);
        assert_eq!(percentile(&v, 1.0), 1000);
        assert_eq!(percentile(&[7], 0.5), 7);
        assert_eq!(percentile(&[], 0.5), 0);
    }

    #[tokio::test]
    async fn open_loop_counts_from_the_due_time() {
        // One worker, 100/s, each request takes 30 ms: the worker falls behind, and latencies
        // must grow with the backlog rather than stay at 30 ms.
        let load = Load {
            concurrency: 1,
            duration: Duration::from_millis(300),
            rate: Some(100.0),
        };
        let request: Request = Arc::new(|_| {
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(30)).await;
                Attempt::Ok
            })
        });
        let out = run(load, request).await;
        assert!(out.completed >= 20, "{out:?}");
        assert!(
            out.latencies_us.last().copied().unwrap_or(0) > 200_000,
            "{out:?}"
        );
    }
}

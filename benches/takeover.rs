//! How long an instance sharing Redis takes to take over the owed marks of a stopped one: the
//! marks it must move into its own set before any of their ratings is worked on.
//!
//! Each round writes `TAKEOVER_MARKS` marks (default 150 000: 30 s of a 5 000 ratings/s seller
//! whose buyers were down) for a stopped instance under a fresh key prefix, listed as owing and
//! without a heartbeat, then times one `Store::take_over_owed` by a live instance, checks it took
//! every mark, and deletes the round's keys. Prints each round and the median.
//!
//! Run: `cargo bench --bench takeover` with a Redis at `REDIS_URL` (default
//! `redis://127.0.0.1:6379`). Knobs: `TAKEOVER_MARKS`, `TAKEOVER_ROUNDS` (3).

use std::time::{Duration, Instant};

use ondc_rating::config::{StoreBackend, StoreSettings};
use ondc_rating::store::Store;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writes `marks` marks of the stopped instance `dead` under `prefix`, and lists it as owing.
async fn fill(c: &mut redis::aio::MultiplexedConnection, prefix: &str, marks: usize) {
    let set = format!("{prefix}owed:dead");
    for start in (0..marks).step_by(1_000) {
        let mut add = redis::cmd("ZADD");
        add.arg(&set);
        for n in start..marks.min(start + 1_000) {
            add.arg(1).arg(format!("buyer.example|m-{n}"));
        }
        add.query_async::<()>(c).await.expect("ZADD");
    }
    redis::cmd("SADD")
        .arg(format!("{prefix}owing"))
        .arg("dead")
        .query_async::<()>(c)
        .await
        .expect("SADD");
}

/// Deletes every key under `prefix`.
async fn clean(c: &mut redis::aio::MultiplexedConnection, prefix: &str) {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(c)
        .await
        .expect("KEYS");
    if !keys.is_empty() {
        redis::cmd("DEL")
            .arg(keys)
            .query_async::<()>(c)
            .await
            .expect("DEL");
    }
}

fn main() {
    // `cargo bench` passes --bench; test runners that list or run every target (cargo test
    // --all-targets, nextest's --list) do not, and must not run a benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run());
}

async fn run() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let marks: usize = env_or("TAKEOVER_MARKS", 150_000);
    let rounds: usize = env_or("TAKEOVER_ROUNDS", 3);
    let client = redis::Client::open(url.as_str()).expect("REDIS_URL");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis at REDIS_URL");
    let mut took: Vec<Duration> = Vec::new();
    for round in 1..=rounds {
        let prefix = format!("bench-takeover:{}:", uuid::Uuid::new_v4());
        fill(&mut c, &prefix, marks).await;
        let settings = StoreSettings {
            backend: StoreBackend::Redis,
            redis_url: url.clone(),
            key_prefix: prefix.clone(),
            ..StoreSettings::default()
        };
        let taker = Store::open(&settings).await.expect("store");
        taker.beat().await.expect("Redis").expect("heartbeat");
        let started = Instant::now();
        let taken = taker.take_over_owed().await.expect("take over");
        let elapsed = started.elapsed();
        assert_eq!(taken.len(), marks, "every mark taken");
        clean(&mut c, &prefix).await;
        println!(
            "round {round}: {marks} marks taken over in {:.3} s ({:.0} marks/s)",
            elapsed.as_secs_f64(),
            marks as f64 / elapsed.as_secs_f64()
        );
        took.push(elapsed);
    }
    took.sort();
    let median = took[took.len() / 2];
    println!(
        "median: {marks} marks in {:.3} s ({:.0} marks/s)",
        median.as_secs_f64(),
        marks as f64 / median.as_secs_f64()
    );
}

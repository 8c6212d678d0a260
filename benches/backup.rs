//! What an online backup of the embedded store costs: how long it takes for a store of a given
//! size, and what it does meanwhile to the adapter's writes (each one durable before it returns).
//!
//! Fills a fresh redb file with `BACKUP_ENTRIES` orders (default 200 000, about 300 bytes each as
//! stored), then, `BACKUP_ROUNDS` times (default 3): writes orders one after another for as long
//! as a backup takes, first with no backup running (idle), then beside one; prints the backup's
//! time, size and rate, and the writes' count and latency percentiles in both runs.
//!
//! Run: `cargo bench --bench backup`. Knobs: `BACKUP_ENTRIES`, `BACKUP_ROUNDS`.

use std::time::{Duration, Instant};

use ondc_rating::config::{StoreBackend, StoreSettings};
use ondc_rating::store::{Order, Store};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn order(n: usize) -> Order {
    Order {
        order_id: format!("O-{n:09}"),
        user_id: format!("user-{}", n % 50_000),
        state: "Completed".into(),
        domain: "ONDC:RET11".into(),
        city: "std:080".into(),
        transaction_id: format!("{:032x}", n as u128 * 0x9e37_79b9_7f4a_7c15),
        bpp_id: "seller.example.com".into(),
        bpp_uri: "https://seller.example.com/ondc/bpp".into(),
        provider_id: Some(format!("P-{}", n % 997)),
        item_ids: vec![format!("I-{}", n % 10_007), format!("I-{}", n % 7_919)],
        fulfillment_ids: vec!["F1".into()],
        agent_id: Some(format!("A-{}", n % 311)),
    }
}

/// Writes orders one after another (each awaited) until `done` says stop; their latencies.
async fn write_until(store: &Store, from: usize, done: impl Fn() -> bool) -> Vec<Duration> {
    let mut took = Vec::new();
    let mut n = from;
    while !done() {
        let t = Instant::now();
        store.put_order(&order(n)).await.expect("write");
        took.push(t.elapsed());
        n += 1;
    }
    took
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn report(label: &str, mut took: Vec<Duration>, over: Duration) {
    took.sort();
    println!(
        "  {label:<14} {:>6} writes in {:>6.0} ms  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms",
        took.len(),
        over.as_secs_f64() * 1e3,
        percentile(&took, 0.50),
        percentile(&took, 0.99),
        percentile(&took, 1.0),
    );
}

fn main() {
    // `cargo bench` passes --bench; test runners that list or run every target (cargo test
    // --benches, nextest) pass other arguments: do nothing for them.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let entries: usize = env_or("BACKUP_ENTRIES", 200_000);
    let rounds: usize = env_or("BACKUP_ROUNDS", 3);
    let dir = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let settings = StoreSettings {
            backend: StoreBackend::Embedded,
            path: dir.path().join("store.redb"),
            ..StoreSettings::default()
        };
        let store = Store::open(&settings).await.expect("store");
        let filled = Instant::now();
        for start in (0..entries).step_by(512) {
            let batch = (start..entries.min(start + 512)).map(|n| {
                let store = store.clone();
                async move { store.put_order(&order(n)).await.expect("fill") }
            });
            futures_util::future::join_all(batch).await;
        }
        let size = std::fs::metadata(&settings.path).expect("size").len();
        println!(
            "filled {entries} orders in {:.1} s; store file {:.1} MiB",
            filled.elapsed().as_secs_f64(),
            size as f64 / (1 << 20) as f64
        );
        let mut next = entries;
        for round in 1..=rounds {
            // Beside a backup.
            let path = dir.path().join(format!("backup-{round}.redb"));
            let running = tokio::spawn({
                let (store, path) = (store.clone(), path.clone());
                async move {
                    let t = Instant::now();
                    let made = store
                        .backup(&path)
                        .await
                        .expect("embedded")
                        .expect("backup");
                    (made, t.elapsed())
                }
            });
            let started = Instant::now();
            let beside = write_until(&store, next, || running.is_finished()).await;
            next += beside.len();
            let (made, took) = running.await.expect("backup task");
            let over = started.elapsed();
            // Idle, for as long.
            let idle_from = Instant::now();
            let idle = write_until(&store, next, || idle_from.elapsed() >= over).await;
            next += idle.len();
            let copied: u64 = made.tables.values().sum();
            println!(
                "round {round}: backup of {copied} entries, {:.1} MiB, in {:.0} ms ({:.0} MiB/s)",
                made.bytes as f64 / (1 << 20) as f64,
                took.as_secs_f64() * 1e3,
                made.bytes as f64 / (1 << 20) as f64 / took.as_secs_f64()
            );
            report("idle", idle, over);
            report("beside backup", beside, over);
            std::fs::remove_file(&path).expect("remove the backup");
        }
    });
}

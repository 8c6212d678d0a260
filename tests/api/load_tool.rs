//! `ondc-rating bench round-trip`: the load tool starts its own adapter processes, drives them
//! and reports figures that add up. Only the report's consistency is checked here; performance
//! is measured by running the tool, never asserted in a test.

use std::process::Command;

use serde_json::Value;

/// Runs `ondc-rating bench ARGS --json`, asserts it exits 0, and returns its one JSON report.
fn bench_report(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_ondc-rating"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {}: {stderr}", out.status);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is one JSON report ({e}): {stderr}"))
}

/// A short load run on the embedded store: 1 s of warm-up, 2 s measured, 4 clients, a brief floor.
const SHORT_EMBEDDED: &[&str] = &[
    "--store",
    "embedded",
    "--duration",
    "2",
    "--warmup",
    "1",
    "--concurrency",
    "4",
    "--floor-secs",
    "0.3",
];

#[test]
fn round_trip_report_is_consistent() {
    let report = bench_report(&[&["round-trip"], SHORT_EMBEDDED].concat());

    assert_eq!(report["mode"], "round-trip");
    assert_eq!(report["store"], "embedded");
    // The two adapters share the machine's cores.
    let cores = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(
        report["workers_per_adapter"],
        (cores / 2).max(1),
        "{report}"
    );
    let completed = report["completed"].as_u64().unwrap();
    assert!(completed > 0, "{report}");
    assert_eq!(report["error_count"], 0, "{report}");
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    assert_eq!(report["verified_200"], completed, "{report}");
    assert_eq!(report["responses_200"], completed, "{report}");
    assert!(
        report["throughput_per_sec"].as_f64().unwrap() > 0.0,
        "{report}"
    );

    let l = &report["latency_ms"];
    let at = |k: &str| l[k].as_f64().unwrap();
    assert!(at("p50") > 0.0, "{report}");
    assert!(
        at("p50") <= at("p99") && at("p99") <= at("p99_9") && at("p99_9") <= at("max"),
        "{report}"
    );

    for side in ["buyer", "seller"] {
        let m = &report["memory"][side];
        let peak = m["peak_kib"].as_u64().unwrap();
        let rss = m["rss_final_kib"].as_u64().unwrap();
        assert!(rss > 0 && peak >= rss, "{side}: {report}");
    }
    let floor = report["floor"]["round_trips_per_sec"].as_f64().unwrap();
    assert!(floor > 0.0, "{report}");
    let ratio = report["ratio_to_floor"].as_f64().unwrap();
    assert!(ratio > 0.0, "{report}");
    // Verifying in batches of 8 costs well under half of verifying alone, so the floor that
    // batches is higher, and the run's ratio to it lower.
    let batched = report["floor"]["batched_round_trips_per_sec"]
        .as_f64()
        .unwrap();
    assert!(batched > 1.2 * floor, "{report}");
    assert!(
        report["ratio_to_batched_floor"].as_f64().unwrap() < ratio,
        "{report}"
    );
    // Each adapter counted the signatures it checked: one per round trip each (the warm-up's
    // included), in batches or alone.
    let completed = report["completed"].as_u64().unwrap();
    for side in ["buyer", "seller"] {
        let c = &report["signatures_checked"][side];
        let total: u64 = ["alone", "batch", "rechecked"]
            .iter()
            .map(|how| c[how].as_u64().unwrap())
            .sum();
        assert!(total >= completed, "{side}: {report}");
        assert_eq!(c["rechecked"], 0, "{side}: {report}");
    }
    // The machine's dropped SYNs during the run, read from /proc (machine-wide, so not zero by
    // necessity when other tests run beside it).
    assert!(report["listen_overflows"].is_u64(), "{report}");
}

#[test]
fn waiting_report_counts_every_request_as_waiting_over_http2() {
    let report = bench_report(&[
        "waiting", "--store", "embedded", "--count", "40", "--warm", "8", "--http2",
    ]);

    assert_eq!(report["mode"], "waiting");
    assert_eq!(report["protocol"], "HTTP/2");
    assert_eq!(report["warm_waiting"], 8, "{report}");
    // Every request reached the silent seller and none was answered: all 48 were waiting when
    // the memory was read.
    assert_eq!(report["sent_to_seller"], 48, "{report}");
    assert_eq!(report["answered_before_measurement"], 0, "{report}");
    assert_eq!(report["waiting_at_measurement"], 48, "{report}");
    let b = &report["buyer"];
    let (before, with) = (
        b["rss_before_kib"].as_u64().unwrap(),
        b["rss_with_waiting_kib"].as_u64().unwrap(),
    );
    assert!(
        before > 0 && b["peak_kib"].as_u64().unwrap() >= with,
        "{report}"
    );
    let per = report["kib_per_waiting_request"].as_f64().unwrap();
    assert!(
        (per - (with as f64 - before as f64) / 40.0).abs() < 0.01,
        "the figure is the RSS added per request sent after the warm-up: {report}"
    );
}

/// `bench inbound ARGS` on the embedded store, briefly.
fn inbound_report(extra: &[&str]) -> Value {
    let report = bench_report(&[&["inbound"], SHORT_EMBEDDED, extra].concat());
    assert_eq!(report["mode"], "inbound");
    let completed = report["completed"].as_u64().unwrap();
    assert!(completed > 0, "{report}");
    assert_eq!(report["error_count"], 0, "{report}");
    assert!(
        report["floor"]["verifies_per_sec"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    let ratio = report["ratio_to_verify_rate"].as_f64().unwrap();
    assert!(ratio > 0.0, "{report}");
    let (single, batched) = (
        report["floor"]["verifies_per_sec"].as_f64().unwrap(),
        report["floor"]["batched_verifies_per_sec"]
            .as_f64()
            .unwrap(),
    );
    assert!(batched > 1.2 * single, "{report}");
    assert!(
        report["ratio_to_batched_verify_rate"].as_f64().unwrap() < ratio,
        "{report}"
    );
    assert!(report["listen_overflows"].is_u64(), "{report}");
    report
}

#[test]
fn inbound_alone_holds_every_on_rating_for_the_platform() {
    let report = inbound_report(&[]);
    assert_eq!(report["on_rating"], "held for the platform", "{report}");
    assert_eq!(report["on_rating_received"]["total"], 0, "{report}");
    let checked = &report["records_checked"];
    assert_eq!(checked["on_rating"], "awaiting", "{report}");
    assert!(checked["sampled"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(checked["as_expected"], checked["sampled"], "{report}");
}

#[test]
fn inbound_with_on_rating_answers_every_acked_rating() {
    let report = inbound_report(&["--with-on-rating"]);
    assert_eq!(report["on_rating"], "sent by the adapter", "{report}");
    let completed = report["completed"].as_u64().unwrap();
    assert_eq!(report["on_rating_received"]["total"], completed, "{report}");
    let checked = &report["records_checked"];
    assert_eq!(checked["on_rating"], "sent", "{report}");
    assert_eq!(checked["as_expected"], checked["sampled"], "{report}");
}

/// `--sweep`: one closed-loop run per concurrency, each complete and checked as a single run is,
/// and a peak that is the run with the highest ratio to its own floor, with half its rate.
#[test]
fn sweep_runs_each_concurrency_and_names_the_peak() {
    let report = bench_report(&[
        "round-trip",
        "--store",
        "embedded",
        "--duration",
        "1.5",
        "--warmup",
        "0.5",
        "--floor-secs",
        "0.3",
        "--sweep",
        "2,6",
    ]);
    assert_eq!(report["mode"], "round-trip sweep", "{report}");
    let runs = report["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2, "{report}");
    for (run, c) in runs.iter().zip([2, 6]) {
        assert_eq!(run["mode"], "round-trip", "{report}");
        assert_eq!(run["concurrency"], c, "{report}");
        assert_eq!(run["rate"], Value::Null, "closed loop: {report}");
        assert!(run["completed"].as_u64().unwrap() > 0, "{report}");
        assert_eq!(run["error_count"], 0, "{report}");
        assert_eq!(run["verified_200"], run["completed"], "{report}");
    }
    let ratio = |r: &Value| r["ratio_to_floor"].as_f64().unwrap();
    let best = runs
        .iter()
        .max_by(|a, b| ratio(a).total_cmp(&ratio(b)))
        .unwrap();
    let peak = &report["peak"];
    assert_eq!(peak["chosen_by"], "ratio", "{report}");
    assert_eq!(peak["concurrency"], best["concurrency"], "{report}");
    assert_eq!(peak["ratio"], best["ratio_to_floor"], "{report}");
    let half = (best["throughput_per_sec"].as_f64().unwrap() / 2.0).round();
    assert_eq!(peak["half_peak_rate"].as_f64().unwrap(), half, "{report}");
}

/// A sweep is a closed-loop search: it cannot be combined with an open-loop rate, and is
/// refused before anything starts.
#[test]
fn sweep_with_a_rate_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_ondc-rating"))
        .args(["bench", "round-trip", "--sweep", "2,4", "--rate", "100"])
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--sweep") && stderr.contains("--rate"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    // A zero concurrency, in a sweep or alone, is refused before anything starts.
    for args in [["--sweep", "0,4"], ["--concurrency", "0"]] {
        let zero = Command::new(env!("CARGO_BIN_EXE_ondc-rating"))
            .args(["bench", "round-trip", "--floor-secs", "0"])
            .args(args)
            .output()
            .expect("the binary runs");
        assert!(!zero.status.success());
        let stderr = String::from_utf8_lossy(&zero.stderr);
        assert!(
            stderr.contains(args[0]) && stderr.contains("at least 1"),
            "{stderr}"
        );
        assert!(zero.stdout.is_empty());
    }
}

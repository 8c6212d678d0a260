//! Micro benchmarks of the per-request work, ONDC's Node SDK side by side, and the crypto floor.
//!
//! Each operation runs the crate's own code, as the server calls it, over a representative body
//! (`ondc_rating::perf`: ONDC's example RET11 /rating, built and serialised by the buyer side's
//! types; its /on_rating built by the seller side's sender):
//!
//! - digest, sign (`sign_body`), verify (`verify_body`: header parse, time window, digest,
//!   Ed25519), header parse alone, and the raw Ed25519 sign and verify they contain;
//! - the seller side's inbound front: one JSON parse and the compiled inbound schema, then the
//!   context and the tolerant ratings read;
//! - the bodies built per exchange: /rating, /on_rating, the ACK, the buyer API's envelope.
//!
//! Per operation: median ns/op over several timed batches, ops/s from it, and allocations and
//! bytes allocated per op (a counting global allocator; a realloc counts as one allocation of its
//! new size).
//!
//! Then, ONDC's Node SDK (`ondc-crypto-sdk-nodejs`, run by `benches/node/sign_verify.js` as a
//! subprocess) signs and verifies the same body bytes with the same key; each side first checks
//! the other's header, and the run stops if either is refused. Last, the crypto floor
//! (`ondc_rating::perf::crypto_floor`): round trips per second when threads do nothing but the
//! four signature operations of a round trip.
//!
//! Run: `cargo bench --bench micro`. Knobs: `MICRO_BATCHES` (11), `MICRO_BATCH_MS` (100),
//! `MICRO_FLOOR_SECS` (3), `MICRO_FLOOR_THREADS` (2), `MICRO_NODE_SECS` (3 per operation, after
//! 1 s of warm-up), `ONDC_NODE_SDK_DIR` (where `npm ci` installed the SDK; `tests/interop`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use ed25519_dalek::Signature;
use serde_json::{Value, json};

use ondc_rating::bap::api::buyer_envelope;
use ondc_rating::bpp::sender::on_rating_body;
use ondc_rating::crypto::{
    AuthorizationHeader, SigningKeyPair, body_digest, sign_body, signing_string, verify_body,
};
use ondc_rating::perf;
use ondc_rating::protocol::rating::parse_inbound;
use ondc_rating::protocol::schema::Schemas;
use ondc_rating::protocol::{AckResponse, Action, Context, Envelope, RatingMessage};

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting every allocation and its size.
struct Counting;

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(layout.size() as u64, Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        BYTES.fetch_add(new_size as u64, Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Knobs {
    batches: usize,
    batch: Duration,
    floor: Duration,
    floor_threads: usize,
    node_secs: f64,
}

/// One measured operation.
struct Row {
    name: &'static str,
    ns: f64,
    allocs: f64,
    bytes: f64,
}

impl Row {
    fn ops(&self) -> f64 {
        1e9 / self.ns
    }
}

fn run(iters: u64, f: &mut impl FnMut()) -> Duration {
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed()
}

impl Knobs {
    /// Median ns/op over the batches (each sized to take about `batch`), then the allocations.
    fn measure(&self, name: &'static str, mut f: impl FnMut()) -> Row {
        let mut iters = 1;
        let per_op = loop {
            let e = run(iters, &mut f);
            if e >= self.batch / 10 || iters >= 1 << 30 {
                break e.as_secs_f64() / iters as f64;
            }
            iters *= 2;
        };
        let iters = ((self.batch.as_secs_f64() / per_op) as u64).max(1);
        run(iters, &mut f);
        let mut samples: Vec<f64> = (0..self.batches)
            .map(|_| run(iters, &mut f).as_nanos() as f64 / iters as f64)
            .collect();
        samples.sort_by(f64::total_cmp);
        let ns = samples[samples.len() / 2];

        let n = iters.min(10_000);
        let (a0, b0) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
        run(n, &mut f);
        let (a1, b1) = (ALLOCS.load(Relaxed), BYTES.load(Relaxed));
        let row = Row {
            name,
            ns,
            allocs: (a1 - a0) as f64 / n as f64,
            bytes: (b1 - b0) as f64 / n as f64,
        };
        println!(
            "{:<44} {:>10.0} {:>12.0} {:>9.1} {:>9.0}",
            row.name,
            row.ns,
            row.ops(),
            row.allocs,
            row.bytes
        );
        row
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// What the Node SDK measured.
struct NodeFigures {
    sign: f64,
    verify: f64,
    sdk_version: String,
    node_version: String,
    same_header: bool,
}

/// The shared inputs of the signing benchmarks.
struct Signing<'a> {
    body: &'a [u8],
    keys: &'a SigningKeyPair,
    subscriber_id: &'a str,
    unique_key_id: &'a str,
    created: i64,
    expires: i64,
    header: &'a str,
}

enum NodeRun {
    Skipped(String),
    Done(NodeFigures),
}

/// Runs `benches/node/sign_verify.js` in `mode`; Ok(None) when the SDK is not installed.
fn node(script: &Path, dir: &Path, config: &Value) -> Result<Option<Value>, String> {
    let config_file = dir.join("config.json");
    std::fs::write(&config_file, config.to_string()).map_err(|e| e.to_string())?;
    let out = Command::new("node")
        .arg(script)
        .arg(&config_file)
        .output()
        .map_err(|e| format!("cannot run node: {e}"))?;
    match out.status.code() {
        Some(0) => serde_json::from_slice(&out.stdout)
            .map(Some)
            .map_err(|e| format!("unreadable output from the Node script: {e}")),
        Some(3) => {
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
            Ok(None)
        }
        _ => Err(format!(
            "the Node script failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

fn node_side(s: &Signing<'_>, secs: f64) -> NodeRun {
    let script = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/node/sign_verify.js"
    ));
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => return NodeRun::Skipped("node is not installed".into()),
    }
    let dir = std::env::temp_dir().join(format!("ondc-rating-micro-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let body_file = dir.join("body.json");
    std::fs::write(&body_file, s.body).expect("write body");
    let mut config = json!({
        "mode": "check",
        "body_file": body_file,
        "private_key": s.keys.private_key_base64(),
        "public_key": s.keys.public_key_base64(),
        "subscriber_id": s.subscriber_id,
        "unique_key_id": s.unique_key_id,
        "created": s.created.to_string(),
        "expires": s.expires.to_string(),
        "header": s.header,
        "seconds": secs,
        "warmup_seconds": 1.0,
    });
    let outcome = (|| {
        let Some(check) = node(&script, &dir, &config)? else {
            return Ok(NodeRun::Skipped(
                "ondc-crypto-sdk-nodejs is not installed (npm ci in tests/interop, or set \
                 ONDC_NODE_SDK_DIR)"
                    .into(),
            ));
        };
        if check["rust_header_valid"] != true {
            return Err("the Node SDK refuses the header made by sign_body".to_owned());
        }
        let node_header = check["node_header"].as_str().unwrap_or_default().to_owned();
        verify_body(&node_header, s.body, &s.keys.verifying_key(), s.created, 5)
            .map_err(|e| format!("verify_body refuses the Node SDK's header: {e}"))?;
        config["mode"] = "bench".into();
        let Some(bench) = node(&script, &dir, &config)? else {
            return Err("the Node SDK disappeared between two runs".to_owned());
        };
        let rate = |op: &str| {
            bench[op]["ops"].as_f64().unwrap_or(0.0) / bench[op]["secs"].as_f64().unwrap_or(1.0)
        };
        Ok(NodeRun::Done(NodeFigures {
            sign: rate("sign"),
            verify: rate("verify"),
            sdk_version: check["sdk_version"].as_str().unwrap_or("?").to_owned(),
            node_version: check["node_version"].as_str().unwrap_or("?").to_owned(),
            same_header: node_header == s.header,
        }))
    })();
    let _ = std::fs::remove_dir_all(&dir);
    match outcome {
        Ok(r) => r,
        Err(e) => {
            // Interop is broken: a throughput comparison would be meaningless.
            eprintln!("ABORT: {e}");
            std::process::exit(1);
        }
    }
}

fn main() {
    // `cargo bench` passes --bench; test runners that list or run every target (cargo test
    // --all-targets, nextest's --list) do not, and must not run a benchmark.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let knobs = Knobs {
        batches: env_or("MICRO_BATCHES", 11usize).max(1),
        batch: Duration::from_millis(env_or("MICRO_BATCH_MS", 100u64).max(1)),
        floor: Duration::from_secs_f64(env_or("MICRO_FLOOR_SECS", 3.0f64).max(0.1)),
        floor_threads: env_or("MICRO_FLOOR_THREADS", 2usize).max(1),
        node_secs: env_or("MICRO_NODE_SECS", 3.0f64).max(0.1),
    };
    println!(
        "machine: {} cores available, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );

    let rating = perf::sample_rating_body();
    let on_rating = perf::sample_on_rating_body();
    let context: Context = perf::sample_context();
    let message = RatingMessage {
        ratings: perf::sample_ratings(),
    };
    let received = perf::sample_received();
    let schemas = Schemas::compile().expect("schemas compile");
    let keys = SigningKeyPair::generate().expect("random key");
    let public = keys.verifying_key();
    let (sub, ukid) = ("buyer-app-preprod-v2.ondc.org", "k1");
    let created = chrono::Utc::now().timestamp();
    let expires = created + 3600;
    let header = sign_body(&rating, &keys, sub, ukid, created, expires);
    let digest = body_digest(&rating);
    let signing = signing_string(&created.to_string(), &expires.to_string(), &digest);
    let signature = Signature::from_bytes(&keys.sign(signing.as_bytes()));
    let on_rating_at = chrono::Utc::now();
    println!(
        "bodies: /rating {} bytes, /on_rating {} bytes; header {} bytes",
        rating.len(),
        on_rating.len(),
        header.len()
    );
    println!();
    println!(
        "{:<44} {:>10} {:>12} {:>9} {:>9}",
        "operation", "ns/op", "ops/s", "allocs/op", "bytes/op"
    );

    let body = rating.as_slice();
    let k = &knobs;
    k.measure("digest: BLAKE2b-512 + base64 (/rating)", || {
        black_box(body_digest(black_box(body)));
    });
    let sign = k.measure("sign: sign_body (digest, Ed25519, header)", || {
        black_box(sign_body(
            black_box(body),
            &keys,
            sub,
            ukid,
            created,
            expires,
        ));
    });
    let verify = k.measure("verify: verify_body (parse, digest, Ed25519)", || {
        let ok = verify_body(black_box(&header), black_box(body), &public, created, 5);
        assert!(black_box(ok).is_ok());
    });
    k.measure("header parse: AuthorizationHeader::parse", || {
        black_box(AuthorizationHeader::parse(black_box(&header)).is_ok());
    });
    k.measure("  Ed25519 sign of the signing string", || {
        black_box(keys.sign(black_box(signing.as_bytes())));
    });
    k.measure("  Ed25519 verify_strict of it", || {
        let ok = public.verify_strict(black_box(signing.as_bytes()), &signature);
        assert!(black_box(ok).is_ok());
    });
    k.measure("inbound /rating: JSON parse + schema check", || {
        let v: Value = serde_json::from_slice(black_box(body)).expect("JSON");
        assert!(schemas.rating_inbound.check(&v).is_ok());
        black_box(v);
    });
    k.measure("inbound /rating: + context + ratings read", || {
        let v: Value = serde_json::from_slice(black_box(body)).expect("JSON");
        assert!(schemas.rating_inbound.check(&v).is_ok());
        let c = Context::from_value(v.get("context"), Action::Rating).expect("context");
        let r = parse_inbound(v.get("message")).expect("ratings");
        black_box((c, r));
    });
    k.measure("build /rating body (buyer side)", || {
        let envelope = Envelope {
            context: black_box(&context),
            message: &message,
        };
        black_box(serde_json::to_vec(&envelope).expect("serialises"));
    });
    k.measure("build /on_rating body (seller side)", || {
        black_box(on_rating_body(black_box(&received), on_rating_at));
    });
    k.measure("build ACK body", || {
        black_box(serde_json::to_vec(&AckResponse::ack()).expect("serialises"));
    });
    k.measure("ACK response: http::network::ack()", || {
        black_box(ondc_rating::http::network::ack());
    });
    k.measure("build buyer API envelope (200, with form)", || {
        let e = buyer_envelope(
            black_box(&context),
            "2024-05-15-655053",
            received.feedback_form.as_ref(),
            "ACK",
        );
        black_box(serde_json::to_vec(&e).expect("serialises"));
    });

    println!();
    let per_thread = 1e9 / (2.0 * sign.ns + 2.0 * verify.ns);
    let floor_one = perf::crypto_floor(knobs.floor, 1);
    let floor = perf::crypto_floor(knobs.floor, knobs.floor_threads);
    println!(
        "crypto floor (2 x sign_body + 2 x verify_body per round trip, /rating {} B and \
         /on_rating {} B):",
        rating.len(),
        on_rating.len()
    );
    println!(
        "  1 thread: {floor_one:.0} round trips/s (from the single-op medians: {per_thread:.0})"
    );
    println!(
        "  {} threads: {floor:.0} round trips/s ({:.2}x one thread)",
        knobs.floor_threads,
        floor / floor_one
    );

    println!();
    let signing_inputs = Signing {
        body,
        keys: &keys,
        subscriber_id: sub,
        unique_key_id: ukid,
        created,
        expires,
        header: &header,
    };
    match node_side(&signing_inputs, knobs.node_secs) {
        NodeRun::Skipped(why) => {
            println!("Node SDK column skipped: {why}");
            println!("{:<8} {:>12}", "op", "Rust ops/s");
            println!("{:<8} {:>12.0}", "sign", sign.ops());
            println!("{:<8} {:>12.0}", "verify", verify.ops());
        }
        NodeRun::Done(n) => {
            println!(
                "ondc-crypto-sdk-nodejs {} on node {}: each side verifies the other's header \
                 (headers byte-identical: {})",
                n.sdk_version,
                n.node_version,
                if n.same_header { "yes" } else { "no" }
            );
            println!(
                "{:<8} {:>12} {:>12} {:>10} {:>12}",
                "op", "Rust ops/s", "Node ops/s", "Rust/Node", "target >= 3x"
            );
            for (op, rust, node) in [("sign", &sign, n.sign), ("verify", &verify, n.verify)] {
                let ratio = rust.ops() / node;
                println!(
                    "{:<8} {:>12.0} {:>12.0} {:>9.2}x {:>12}",
                    op,
                    rust.ops(),
                    node,
                    ratio,
                    if ratio >= 3.0 { "met" } else { "missed" }
                );
            }
        }
    }
}

//! `ondc-rating bench`: load runs against real adapter processes on loopback.
//!
//! - `round-trip`: a seller-side and a buyer-side adapter (child processes of this binary, fresh
//!   keys, peers configured statically); N buyers rate distinct completed orders through the
//!   buyer API, each 200 checked for the ACK envelope. Closed loop, or open loop with `--rate`.
//! - `inbound`: only the seller side; pre-signed distinct /rating requests POSTed to it, its
//!   /on_rating callbacks ACKed by a small peer in this process.
//! - `soak`: the round trip at a moderate rate for a long time, both servers' memory sampled.
//! - `waiting`: a buyer side with many requests waiting for callbacks that never come; memory
//!   per waiting request.
//!
//! Each run also measures the crypto floor (see [`floor`]) and prints the ratios to it. The
//! adapters' logs and stores live in a temp dir removed at the end; a Redis run uses its own key
//! prefix and deletes its keys afterwards. The child processes are killed on every way out,
//! Ctrl-C included.

mod children;
mod drive;
pub mod floor;
mod stub;
mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::bap::auth::mint_hs256;
use crate::clock::ondc_timestamp;
use crate::config::{BuyerSettings, SellerSettings, Settings, StoreBackend, StoreSettings};
use crate::crypto::batch::How;
use crate::crypto::{SigningKeyPair, b64_encode, sign_body};
use children::{Memory, Sampler, Scratch, Server, free_port, own_cpu_time, summarise};
use drive::{Attempt, Load, Outcome, Request, for_each_parallel};

/// `ondc-rating bench ...`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// What to measure.
    #[command(subcommand)]
    pub mode: Mode,
}

/// The load runs.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Mode {
    /// Full round trips: buyer API -> buyer side -> /rating -> seller side -> /on_rating -> 200.
    RoundTrip(LoadArgs),
    /// Seller side only: signed /rating requests straight to it.
    Inbound(InboundArgs),
    /// Round trips at a moderate rate for a long time; memory growth after a warm-up.
    Soak(SoakArgs),
    /// Memory per buyer request waiting for a callback that never comes.
    Waiting(WaitingArgs),
}

/// Store of the adapters under load.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// A redb file per adapter in the run's temp dir.
    Embedded,
    /// Redis, one key prefix per run.
    Redis,
}

/// Options every run takes.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// Store of the adapters under load.
    #[arg(long, value_enum, default_value_t = StoreKind::Embedded)]
    pub store: StoreKind,
    /// Redis for `--store redis` (keys under a prefix of this run's own, deleted afterwards).
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379/")]
    pub redis_url: String,
    /// Print one JSON report on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Log level of the adapters (their logs go to the run's temp dir).
    #[arg(long, default_value = "warn")]
    pub log_level: String,
    /// Where the run's files go (configurations, logs, embedded stores) [default: the system
    /// temp dir]. A tmpfs here shows what the embedded store costs without its fsyncs.
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// Seconds for each crypto floor measurement (0: skip it).
    #[arg(long, default_value_t = 3.0)]
    pub floor_secs: f64,
    /// HTTP workers of each adapter the run starts (`server.workers`). 0: the machine's cores
    /// shared among them, at least one each (a round trip's two adapters on two cores get one
    /// each; a seller alone gets both).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Verify each inbound signature on its own (`identity.batch_verification = false` in the
    /// adapters), for comparison with the batches they verify in by default.
    #[arg(long)]
    pub verify_singly: bool,
}

impl Common {
    /// `server.workers` of each of `adapters` adapters started on this machine.
    fn workers_each(&self, adapters: usize) -> usize {
        match self.workers {
            0 => {
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                (cores / adapters.max(1)).max(1)
            }
            n => n,
        }
    }
}

/// A count of concurrent requests: a whole number, at least 1.
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A throughput/latency run.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Concurrent clients (closed loop) or most requests outstanding (open loop); at least 1.
    #[arg(long, default_value_t = 16, value_parser = at_least_one)]
    pub concurrency: usize,
    /// Closed-loop runs at each of these concurrencies in turn (`--sweep 32,64,128,256`), each
    /// with fresh adapters and its own floor, and a summary naming the peak: the run with the
    /// highest ratio to its floor (throughput where no floor was measured) and half its rate,
    /// the rate of the half-of-peak latency target. Takes the place of `--concurrency`.
    #[arg(long, value_delimiter = ',', conflicts_with = "rate", value_parser = at_least_one)]
    pub sweep: Vec<usize>,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Open loop at this many requests per second (latency from each request's due time).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds of unmeasured load first (connections, caches, store files).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// The HTTP client the measured requests go through (setup requests always use reqwest).
    #[arg(long, value_enum, default_value_t = ClientKind::Wire)]
    pub client: ClientKind,
}

/// The HTTP client of a load run's measured requests.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// The tool's own keep-alive HTTP/1.1 client: the least CPU taken from the adapters.
    Wire,
    /// reqwest, as a buyer app might use.
    Reqwest,
}

/// A seller inbound run.
#[derive(clap::Args, Debug, Clone)]
pub struct InboundArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub load: LoadArgs,
    /// Also send each rating's /on_rating (`seller.on_rating = "auto"`): the whole seller
    /// exchange. Without it the seller holds them for its platform (`"platform"`), so the run
    /// measures the inbound path alone: verify, validate, persist, ACK.
    #[arg(long)]
    pub with_on_rating: bool,
}

impl LoadArgs {
    /// The load these arguments describe, for `secs` seconds.
    fn load(&self, secs: f64) -> Load {
        Load {
            concurrency: self.concurrency,
            duration: Duration::from_secs_f64(secs),
            rate: self.rate,
        }
    }
}

/// A soak run.
#[derive(clap::Args, Debug, Clone)]
pub struct SoakArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Seconds in all, warm-up included (by default ten minutes after the warm-up).
    #[arg(long, default_value_t = 960.0)]
    pub duration: f64,
    /// Round trips per second (open loop).
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Most requests outstanding.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Seconds after which memory is the baseline: long enough, at the default rate, for the
    /// embedded store's page cache (`store.cache_mib`, 32 MiB) to fill to its bound.
    #[arg(long, default_value_t = 360.0)]
    pub warmup: f64,
    /// Seconds between memory samples.
    #[arg(long, default_value_t = 5.0)]
    pub sample_every: f64,
}

/// A waiting-requests run.
#[derive(clap::Args, Debug, Clone)]
pub struct WaitingArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub common: Common,
    /// Buyer requests left waiting at once.
    #[arg(long, default_value_t = 2000)]
    pub count: u64,
    /// Requests left waiting before the baseline is read. The default is the buyer's
    /// `max_in_flight_per_seller` (64), sent at once, so that its connection pool to the seller
    /// (bounded by that, not by how many wait) has grown before the baseline.
    #[arg(long, default_value_t = 64)]
    pub warm: u64,
    /// Orders registered (never rated) before the baseline, so that a store that has been
    /// running a while is measured: the embedded store's page cache (`store.cache_mib`) already
    /// at its bound, not still growing with the ratings' writes.
    #[arg(long, default_value_t = 0)]
    pub prefill: u64,
    /// Send the buyer requests over cleartext HTTP/2 (prior knowledge), as a buyer app with one
    /// multiplexed connection would, instead of one HTTP/1.1 connection per waiting request.
    #[arg(long)]
    pub http2: bool,
}

/// The performance targets (docs/BENCHMARKS.md).
const ROUND_TRIP_EMBEDDED_MIN_FLOOR_RATIO: f64 = 0.35;
const ROUND_TRIP_REDIS_MIN_FLOOR_RATIO: f64 = 0.30;
const P99_MAX_MS_AT_HALF_PEAK: f64 = 25.0;
const INBOUND_MIN_VERIFY_RATIO: f64 = 0.60;
const SOAK_MAX_GROWTH_PCT: f64 = 10.0;
const WAITING_MAX_KIB: f64 = 8.0;

/// Runs a bench; Ok(true) when the run finished without a failed request.
pub async fn run(args: BenchArgs) -> Result<bool, String> {
    let common = match &args.mode {
        Mode::RoundTrip(a) => a.common.clone(),
        Mode::Inbound(a) => a.load.common.clone(),
        Mode::Soak(a) => a.common.clone(),
        Mode::Waiting(a) => a.common.clone(),
    };
    let mut mode = args.mode;
    let report = match sweep_steps(&mut mode)? {
        None => run_one(mode, &common).await?,
        Some(steps) => {
            let mut reports = Vec::with_capacity(steps.len());
            for (i, step) in steps.into_iter().enumerate() {
                if i > 0 {
                    // What the last run left behind (sockets closing, the store's files and
                    // keys going) settles before the next is measured.
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                reports.push(run_one(step, &common).await?);
            }
            sweep_report(&reports)
        }
    };
    if common.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report.json).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", report.text);
    }
    Ok(report.failed == 0)
}

/// One run with a context (and, for Redis, a key prefix) of its own, removed afterwards.
async fn run_one(mode: Mode, common: &Common) -> Result<Report, String> {
    let ctx = Ctx::new(common).await?;
    let result = tokio::select! {
        r = run_mode(mode, &ctx) => r,
        s = interrupted() => Err(format!("{s}: adapters stopped, run abandoned")),
    };
    ctx.clean_up().await;
    result
}

/// The closed/open-loop options of a run that has them (`round-trip`, `inbound`).
fn load_args(mode: &mut Mode) -> Option<&mut LoadArgs> {
    match mode {
        Mode::RoundTrip(a) => Some(a),
        Mode::Inbound(a) => Some(&mut a.load),
        Mode::Soak(_) | Mode::Waiting(_) => None,
    }
}

/// The runs of a `--sweep`, one per concurrency, in the order given; `None` without one.
fn sweep_steps(mode: &mut Mode) -> Result<Option<Vec<Mode>>, String> {
    let Some(load) = load_args(mode) else {
        return Ok(None);
    };
    let sweep = std::mem::take(&mut load.sweep);
    if sweep.is_empty() {
        return Ok(None);
    }
    let steps = sweep
        .into_iter()
        .map(|c| {
            let mut step = mode.clone();
            if let Some(load) = load_args(&mut step) {
                load.concurrency = c;
            }
            step
        })
        .collect();
    Ok(Some(steps))
}

/// The runs of a sweep side by side, and the peak: the highest ratio to the run's own floor
/// (the machine's speed moves between runs; the ratio follows it), or the highest throughput
/// when a run has no floor.
fn sweep_report(reports: &[Report]) -> Report {
    use std::fmt::Write;
    let runs: Vec<&Value> = reports.iter().map(|r| &r.json).collect();
    let throughput = |j: &Value| j["throughput_per_sec"].as_f64().unwrap_or(0.0);
    let by_ratio = reports.iter().all(|r| r.ratio.is_some());
    let score = |r: &Report| {
        if by_ratio {
            r.ratio.unwrap_or(0.0)
        } else {
            throughput(&r.json)
        }
    };
    let peak = reports.iter().max_by(|a, b| score(a).total_cmp(&score(b)));
    let mode = runs.first().map_or(Value::Null, |j| j["mode"].clone());
    let store = runs.first().map_or(Value::Null, |j| j["store"].clone());
    let mut text = String::new();
    for r in reports {
        text.push_str(&r.text);
        text.push('\n');
    }
    let _ = writeln!(
        text,
        "sweep: {}, {} store, closed loop",
        mode.as_str().unwrap_or("?"),
        store.as_str().unwrap_or("?")
    );
    let _ = writeln!(
        text,
        "  {:>11}  {:>12}  {:>6}  {:>8}  {:>8}  {:>6}",
        "concurrency", "throughput/s", "ratio", "p50 ms", "p99 ms", "errors"
    );
    for r in reports {
        let j = &r.json;
        let _ = writeln!(
            text,
            "  {:>11}  {:>12.1}  {:>6}  {:>8.3}  {:>8.3}  {:>6}",
            j["concurrency"].as_u64().unwrap_or(0),
            throughput(j),
            r.ratio.map_or("-".into(), |r| format!("{r:.3}")),
            j["latency_ms"]["p50"].as_f64().unwrap_or(f64::NAN),
            j["latency_ms"]["p99"].as_f64().unwrap_or(f64::NAN),
            j["error_count"].as_u64().unwrap_or(0),
        );
    }
    let peak_json = match peak {
        Some(Report { json: p, ratio, .. }) => {
            let half = (throughput(p) / 2.0).round();
            let _ = writeln!(
                text,
                "  peak: concurrency {} ({}), {:.1}/s; half of it, for the latency target: --rate {half}",
                p["concurrency"].as_u64().unwrap_or(0),
                if by_ratio {
                    "the highest ratio to its floor"
                } else {
                    "the highest throughput"
                },
                throughput(p),
            );
            json!({"concurrency": p["concurrency"], "throughput_per_sec": p["throughput_per_sec"],
                "ratio": ratio.map(round3), "chosen_by": if by_ratio { "ratio" } else { "throughput" },
                "half_peak_rate": half})
        }
        None => Value::Null,
    };
    Report {
        text,
        json: json!({"mode": format!("{} sweep", mode.as_str().unwrap_or("?")), "store": store,
            "runs": runs, "peak": peak_json}),
        failed: reports.iter().map(|r| r.failed).sum(),
        ratio: None,
    }
}

async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return "interrupted";
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted",
        _ = term.recv() => "terminated",
    }
}

async fn run_mode(mode: Mode, ctx: &Ctx) -> Result<Report, String> {
    match mode {
        Mode::RoundTrip(a) => round_trip(a, ctx).await,
        Mode::Inbound(a) => inbound(a, ctx).await,
        Mode::Soak(a) => soak(a, ctx).await,
        Mode::Waiting(a) => waiting(a, ctx).await,
    }
}

/// What one run needs from its surroundings: the store choice and, for Redis, its prefix.
struct Ctx {
    common: Common,
    prefix: String,
}

impl Ctx {
    async fn new(common: &Common) -> Result<Self, String> {
        let prefix = format!("ondc-rating-bench:{}:", uuid::Uuid::new_v4().simple());
        if common.store == StoreKind::Redis {
            let mut con = redis_connection(&common.redis_url).await?;
            redis::cmd("PING")
                .query_async::<String>(&mut con)
                .await
                .map_err(|e| format!("Redis at {} does not answer: {e}", common.redis_url))?;
        }
        Ok(Self {
            common: common.clone(),
            prefix,
        })
    }

    fn store(&self, dir: &std::path::Path, name: &str) -> StoreSettings {
        match self.common.store {
            StoreKind::Embedded => StoreSettings {
                backend: StoreBackend::Embedded,
                path: dir.join(format!("{name}.redb")),
                ..StoreSettings::default()
            },
            StoreKind::Redis => StoreSettings {
                backend: StoreBackend::Redis,
                redis_url: self.common.redis_url.clone(),
                key_prefix: format!("{}{name}:", self.prefix),
                ..StoreSettings::default()
            },
        }
    }

    fn store_name(&self) -> &'static str {
        match self.common.store {
            StoreKind::Embedded => "embedded",
            StoreKind::Redis => "redis",
        }
    }

    /// Deletes this run's Redis keys (best effort).
    async fn clean_up(&self) {
        if self.common.store != StoreKind::Redis {
            return;
        }
        let Ok(mut con) = redis_connection(&self.common.redis_url).await else {
            return;
        };
        let mut cursor: u64 = 0;
        loop {
            let Ok((next, keys)) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", self.prefix))
                .arg("COUNT")
                .arg(1000)
                .query_async::<(u64, Vec<String>)>(&mut con)
                .await
            else {
                return;
            };
            if !keys.is_empty() {
                let _ = redis::cmd("DEL")
                    .arg(&keys)
                    .query_async::<i64>(&mut con)
                    .await;
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }
}

async fn redis_connection(url: &str) -> Result<redis::aio::MultiplexedConnection, String> {
    let client = redis::Client::open(url).map_err(|e| format!("Redis URL {url}: {e}"))?;
    tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| format!("Redis at {url}: no connection within 5 s"))?
    .map_err(|e| format!("Redis at {url} is unreachable: {e}"))
}

/// A finished run: the table, the JSON, and how many requests failed.
struct Report {
    text: String,
    json: Value,
    failed: u64,
    /// The throughput's ratio to the run's own floor (round trips to the crypto floor, inbound
    /// /ratings to the verify rate), by which a sweep picks its peak; `None` without a floor or
    /// for runs a sweep does not take.
    ratio: Option<f64>,
}

fn random_token() -> Result<String, String> {
    let mut b = [0u8; 24];
    getrandom::fill(&mut b).map_err(|e| e.to_string())?;
    Ok(b64_encode(b))
}

fn progress(msg: impl std::fmt::Display) {
    eprintln!("bench: {msg}");
}

/// An adapter identity on a free port, both roles off.
fn participant(
    ctx: &Ctx,
    dir: &std::path::Path,
    subscriber_id: &str,
    name: &str,
    workers: usize,
) -> Result<(Settings, SigningKeyPair), String> {
    let port = free_port()?;
    let keys = SigningKeyPair::generate().map_err(|e| e.to_string())?;
    let mut s = Settings::participant(
        subscriber_id,
        "bench-key-1",
        &keys,
        format!("127.0.0.1:{port}"),
        ctx.store(dir, name),
    );
    s.server.log_level = ctx.common.log_level.clone();
    s.server.workers = workers;
    s.identity.batch_verification = !ctx.common.verify_singly;
    Ok((s, keys))
}

fn enable_seller(s: &mut Settings) -> Result<(), String> {
    let base = format!("http://{}", s.server.bind);
    s.seller = SellerSettings {
        enabled: true,
        bpp_uri: format!("{base}/bpp"),
        feedback_form_url: format!("{base}/feedback/{{order_id}}"),
        internal_token: random_token()?,
        ..SellerSettings::default()
    };
    Ok(())
}

/// A buyer side's credentials for its APIs.
struct BuyerApi {
    base: String,
    token: String,
    internal: String,
}

fn enable_buyer(s: &mut Settings, ttl_secs: i64) -> Result<BuyerApi, String> {
    let base = format!("http://{}", s.server.bind);
    let jwt = random_token()?;
    let internal = random_token()?;
    s.buyer = BuyerSettings {
        enabled: true,
        bap_uri: format!("{base}/bap"),
        jwt_hs256_secret: jwt.clone(),
        internal_token: internal.clone(),
        ..BuyerSettings::default()
    };
    Ok(BuyerApi {
        base,
        token: mint_hs256(&jwt, USER, chrono::Utc::now().timestamp(), ttl_secs),
        internal,
    })
}

const USER: &str = "bench-user";

fn order_id(i: u64) -> String {
    format!("bench-order-{i:08}")
}

/// How a run drives its load, as its report's heading says it.
fn loop_label(rate: Option<f64>) -> String {
    match rate {
        Some(r) => format!("open loop at {r}/s"),
        None => "closed loop".into(),
    }
}

/// A completed order sold by `bpp_id` at `bpp_uri`.
fn order_json(bpp_id: &str, bpp_uri: &str) -> Value {
    json!({
        "userId": USER,
        "state": "Completed",
        "domain": "ONDC:RET11",
        "city": "std:080",
        "transactionId": uuid::Uuid::new_v4().to_string(),
        "bppId": bpp_id,
        "bppUri": bpp_uri,
        "providerId": "provider-1",
        "itemIds": ["item-1", "item-2"],
        "fulfillmentIds": ["fulfillment-1"],
        "agentId": "agent-1"
    })
}

fn rating_json(order_id: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "orderId": order_id,
        "orderRating": 5,
        "providerRating": 4,
        "agentRating": 5,
        "fulfilmentRating": 4,
        "itemRatings": [{"itemId": "item-1", "rating": 5}, {"itemId": "item-2", "rating": 3}]
    }))
    .expect("serialises")
}

fn http_client(concurrency: usize) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency.max(1) * 2)
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))
}

fn transport_label(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "other"
    };
    format!("transport: {kind}")
}

/// Registers orders `first..first+count` with the buyer side, 8 at a time.
async fn register_orders(
    http: &reqwest::Client,
    buyer: &BuyerApi,
    seller: (&str, &str),
    first: u64,
    count: u64,
) -> Result<f64, String> {
    let started = std::time::Instant::now();
    let (http, base, internal) = (http.clone(), buyer.base.clone(), buyer.internal.clone());
    let (bpp_id, bpp_uri) = (seller.0.to_owned(), seller.1.to_owned());
    for_each_parallel(count, 8, move |i| {
        let (http, base, internal) = (http.clone(), base.clone(), internal.clone());
        let order = order_json(&bpp_id, &bpp_uri);
        async move { put_order(&http, &base, &internal, first + i, &order).await }
    })
    .await?;
    Ok(started.elapsed().as_secs_f64())
}

async fn put_order(
    http: &reqwest::Client,
    base: &str,
    internal: &str,
    i: u64,
    order: &Value,
) -> Result<(), String> {
    let r = http
        .put(format!("{base}/internal/orders/{}", order_id(i)))
        .bearer_auth(internal)
        .json(order)
        .send()
        .await
        .map_err(|e| format!("registering an order: {e}"))?;
    if !r.status().is_success() {
        return Err(format!(
            "registering an order: {} {}",
            r.status(),
            r.text().await.unwrap_or_default()
        ));
    }
    Ok(())
}

/// Where a run's requests go, through the client `--client` chose.
#[derive(Clone)]
enum Transport {
    Wire(Arc<wire::Client>),
    Reqwest {
        http: reqwest::Client,
        base: Arc<str>,
    },
}

impl Transport {
    /// `kind`'s client for the server at `base` (`http://IP:PORT`); `http` serves `Reqwest`.
    fn new(kind: ClientKind, base: &str, http: &reqwest::Client) -> Result<Self, String> {
        Ok(match kind {
            ClientKind::Wire => {
                Transport::Wire(Arc::new(wire::Client::new(base, Duration::from_secs(60))?))
            }
            ClientKind::Reqwest => Transport::Reqwest {
                http: http.clone(),
                base: base.into(),
            },
        })
    }

    /// POSTs the JSON `body` to `path`: the answer's status and body, or the failure's label.
    async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), String> {
        match self {
            Transport::Wire(client) => client
                .post(path, headers, body)
                .await
                .map(|r| (r.status, r.body))
                .map_err(|e| e.label()),
            Transport::Reqwest { http, base } => {
                let mut request = http
                    .post(format!("{base}{path}"))
                    .header("content-type", "application/json");
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                let r = request
                    .body(body.to_vec())
                    .send()
                    .await
                    .map_err(|e| transport_label(&e))?;
                let status = r.status().as_u16();
                let body = r.bytes().await.map_err(|e| transport_label(&e))?;
                Ok((status, body.to_vec()))
            }
        }
    }
}

/// POST /ret11/rating for one order; a 200 counts only with the ACK envelope for that order.
async fn rate_once(to: &Transport, authorization: &str, order: &str) -> Attempt {
    let (status, body) = match to
        .post(
            "/ret11/rating",
            &[("authorization", authorization)],
            &rating_json(order),
        )
        .await
    {
        Ok(answer) => answer,
        Err(label) => return Attempt::Error(label),
    };
    if status != 200 {
        let code = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
        return Attempt::Error(match code {
            Some(code) => format!("HTTP {status} {code}"),
            None => format!("HTTP {status}"),
        });
    }
    if ack_envelope_for(&body, order) {
        Attempt::Ok
    } else {
        Attempt::Error(UNVERIFIED_200.into())
    }
}

const UNVERIFIED_200: &str = "HTTP 200 without the ACK envelope";

/// The parts of the buyer API's 200 body a load run checks (the rest is skipped, not built).
mod checked {
    use std::borrow::Cow;

    #[derive(serde::Deserialize)]
    pub struct Envelope<'a> {
        #[serde(borrow)]
        pub data: Data<'a>,
    }
    #[derive(serde::Deserialize)]
    pub struct Data<'a> {
        #[serde(borrow)]
        pub status: Cow<'a, str>,
        #[serde(borrow)]
        pub dto: Dto<'a>,
    }
    #[derive(serde::Deserialize)]
    pub struct Dto<'a> {
        #[serde(borrow)]
        pub context: Context<'a>,
        #[serde(borrow)]
        pub message: Message<'a>,
    }
    #[derive(serde::Deserialize)]
    pub struct Context<'a> {
        #[serde(borrow)]
        pub action: Cow<'a, str>,
    }
    #[derive(serde::Deserialize)]
    pub struct Message<'a> {
        #[serde(borrow)]
        pub order_id: Cow<'a, str>,
    }
}

/// The buyer API's 200 body: status ACK, the seller's /on_rating context, this order.
fn ack_envelope_for(body: &[u8], order: &str) -> bool {
    serde_json::from_slice::<checked::Envelope>(body).is_ok_and(|e| {
        e.data.status == "ACK"
            && e.data.dto.context.action == "on_rating"
            && e.data.dto.message.order_id == order
    })
}

/// An ONDC ACK body.
fn is_ack(body: &[u8]) -> bool {
    serde_json::from_slice::<crate::protocol::AckResponse>(body)
        .is_ok_and(|a| a.status() == crate::protocol::AckStatus::Ack)
}

/// Rates orders `first..first+count` (then reports the work exhausted).
fn rating_requests(to: &Transport, buyer: &BuyerApi, first: u64, count: u64) -> Request {
    let to = to.clone();
    let authorization: Arc<str> = format!("Bearer {}", buyer.token).into();
    Arc::new(move |i| {
        let (to, authorization) = (to.clone(), authorization.clone());
        Box::pin(async move {
            if i >= count {
                return Attempt::Exhausted;
            }
            rate_once(&to, &authorization, &order_id(first + i)).await
        })
    })
}

async fn measure_floor(common: &Common) -> Result<Option<floor::Floor>, String> {
    if common.floor_secs <= 0.0 {
        return Ok(None);
    }
    progress(format!(
        "crypto floor: 2 threads, {:.0} s per measurement",
        common.floor_secs
    ));
    let secs = Duration::from_secs_f64(common.floor_secs);
    tokio::task::spawn_blocking(move || floor::measure(2, secs))
        .await
        .map_err(|e| e.to_string())?
        .map(Some)
}

/// The floor measured before and after the load (the machine's other work varies): the mean.
fn mean_floor(before: Option<floor::Floor>, after: Option<floor::Floor>) -> Option<floor::Floor> {
    match (before, after) {
        (Some(a), Some(b)) => {
            let mean = |x: Option<f64>, y: Option<f64>| Some((x? + y?) / 2.0);
            Some(floor::Floor {
                round_trips_per_sec: (a.round_trips_per_sec + b.round_trips_per_sec) / 2.0,
                round_trips_per_cpu_sec: mean(a.round_trips_per_cpu_sec, b.round_trips_per_cpu_sec),
                verifies_per_sec: (a.verifies_per_sec + b.verifies_per_sec) / 2.0,
                verifies_per_cpu_sec: mean(a.verifies_per_cpu_sec, b.verifies_per_cpu_sec),
                batched_round_trips_per_sec: (a.batched_round_trips_per_sec
                    + b.batched_round_trips_per_sec)
                    / 2.0,
                batched_verifies_per_sec: (a.batched_verifies_per_sec + b.batched_verifies_per_sec)
                    / 2.0,
                threads: a.threads,
            })
        }
        (one, None) | (None, one) => one,
    }
}

fn floor_json(before: Option<floor::Floor>, after: Option<floor::Floor>) -> Value {
    let one = |f: Option<floor::Floor>| match f {
        Some(f) => json!({"round_trips_per_sec": round1(f.round_trips_per_sec),
            "verifies_per_sec": round1(f.verifies_per_sec)}),
        None => Value::Null,
    };
    match mean_floor(before, after) {
        Some(f) => {
            json!({"threads": f.threads, "round_trips_per_sec": round1(f.round_trips_per_sec),
            "verifies_per_sec": round1(f.verifies_per_sec),
            "round_trips_per_cpu_sec_per_thread": f.round_trips_per_cpu_sec.map(round1),
            "verifies_per_cpu_sec_per_thread": f.verifies_per_cpu_sec.map(round1),
            "batch_size": floor::BATCH,
            "batched_round_trips_per_sec": round1(f.batched_round_trips_per_sec),
            "batched_verifies_per_sec": round1(f.batched_verifies_per_sec),
            "before": one(before), "after": one(after)})
        }
        None => Value::Null,
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn ms(us: u64) -> f64 {
    round3(us as f64 / 1000.0)
}

fn latency_json(o: &Outcome) -> Value {
    let mean = if o.latencies_us.is_empty() {
        0.0
    } else {
        o.latencies_us.iter().sum::<u64>() as f64 / o.latencies_us.len() as f64 / 1000.0
    };
    json!({
        "p50": ms(o.percentile_us(0.50)),
        "p99": ms(o.percentile_us(0.99)),
        "p99_9": ms(o.percentile_us(0.999)),
        "max": ms(o.latencies_us.last().copied().unwrap_or(0)),
        "mean": round3(mean),
    })
}

fn memory_json(server: &Server, samples: &[children::Sample], index: usize) -> Value {
    let (max_rss, last) = summarise(samples, index);
    let now = server.memory();
    json!({
        "pid": server.pid(),
        "peak_kib": now.map(|m| m.hwm_kib),
        "rss_max_sampled_kib": max_rss,
        "rss_final_kib": last.or(now).map(|m| m.rss_kib),
        "threads": now.map(|m| m.threads),
    })
}

/// The shared part of the throughput report: counts, rate, latency.
fn outcome_json(o: &Outcome) -> Value {
    let unverified = o.errors.get(UNVERIFIED_200).copied().unwrap_or(0);
    json!({
        "completed": o.completed,
        "responses_200": o.completed + unverified,
        "verified_200": o.completed,
        "errors": o.errors,
        "error_count": o.error_count(),
        "elapsed_secs": round3(o.elapsed_secs),
        "work_exhausted": o.exhausted,
        "throughput_per_sec": round1(o.throughput()),
        "latency_ms": latency_json(o),
    })
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "missed" }
}

/// Renders the common lines of a throughput run.
fn outcome_text(out: &mut String, o: &Outcome) {
    use std::fmt::Write;
    let l = latency_json(o);
    let _ = writeln!(
        out,
        "  completed          {} ({} verified 200s) in {:.2} s{}",
        o.completed,
        o.completed,
        o.elapsed_secs,
        if o.exhausted {
            " (prepared work ran out)"
        } else {
            ""
        }
    );
    let _ = writeln!(out, "  errors             {}", o.error_count());
    for (label, n) in &o.errors {
        let _ = writeln!(out, "    {label:<32} {n}");
    }
    let _ = writeln!(out, "  throughput         {:.1} /s", o.throughput());
    let _ = writeln!(
        out,
        "  latency ms         p50 {}  p99 {}  p99.9 {}  max {}  mean {}",
        l["p50"], l["p99"], l["p99_9"], l["max"], l["mean"]
    );
}

fn memory_text(out: &mut String, name: &str, m: &Value) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "  {name:<6} memory      peak (VmHWM) {} KiB, RSS max sampled {} KiB, final {} KiB",
        m["peak_kib"], m["rss_max_sampled_kib"], m["rss_final_kib"]
    );
}

async fn round_trip(a: LoadArgs, ctx: &Ctx) -> Result<Report, String> {
    let floor_before = measure_floor(&ctx.common).await?;
    let overflows_before = children::listen_overflows();
    let dir = Scratch::new(ctx.common.data_dir.as_deref())?;
    let workers = ctx.common.workers_each(2);
    let (mut seller_settings, seller_keys) =
        participant(ctx, dir.path(), "seller.bench", "seller", workers)?;
    let (mut buyer_settings, buyer_keys) =
        participant(ctx, dir.path(), "buyer.bench", "buyer", workers)?;
    enable_seller(&mut seller_settings)?;
    let ttl = (a.duration + a.warmup) as i64 + 3600;
    let buyer = enable_buyer(&mut buyer_settings, ttl)?;
    buyer_settings.buyer.max_waiting = (a.concurrency * 2).max(1024);
    seller_settings.peers = vec![buyer_settings.as_peer(&buyer_keys)];
    buyer_settings.peers = vec![seller_settings.as_peer(&seller_keys)];
    let bpp_uri = seller_settings.seller.bpp_uri.clone();

    progress(format!(
        "starting the seller and buyer adapters ({} store)",
        ctx.store_name()
    ));
    let seller = Server::start("seller", &seller_settings, dir.path()).await?;
    let buyer_server = Server::start("buyer", &buyer_settings, dir.path()).await?;
    let http = http_client(a.concurrency)?;
    let to = Transport::new(a.client, &buyer.base, &http)?;
    let seller_ref = ("seller.bench", bpp_uri.as_str());

    // Warm-up, which also tells how many orders the measured run needs.
    let warm_orders = match a.rate {
        Some(r) => (r * a.warmup * 1.2) as u64 + a.concurrency as u64,
        None => (a.concurrency as u64 * 50).max(500),
    };
    let took = register_orders(&http, &buyer, seller_ref, 0, warm_orders).await?;
    progress(format!(
        "registered {warm_orders} orders in {took:.1} s; warming up {:.0} s",
        a.warmup
    ));
    let warm = drive::run(
        a.load(a.warmup),
        rating_requests(&to, &buyer, 0, warm_orders),
    )
    .await;
    if warm.completed == 0 {
        return Err(format!(
            "no round trip completed during the warm-up: {:?}\nbuyer log:\n{}\nseller log:\n{}",
            warm.errors,
            buyer_server.log_tail(),
            seller.log_tail()
        ));
    }
    let needed = match a.rate {
        Some(r) => (r * a.duration * 1.1) as u64 + a.concurrency as u64,
        None => (warm.throughput().max(50.0) * a.duration * 3.0) as u64 + a.concurrency as u64 * 4,
    };
    let took = register_orders(&http, &buyer, seller_ref, warm_orders, needed).await?;
    progress(format!(
        "warm-up: {:.1} round trips/s; registered {needed} orders in {took:.1} s; measuring {:.0} s",
        warm.throughput(),
        a.duration
    ));

    let Measured {
        outcome,
        samples,
        cpu,
    } = measure(
        &a,
        &[&buyer_server, &seller],
        rating_requests(&to, &buyer, warm_orders, needed),
    )
    .await;
    let floor_after = measure_floor(&ctx.common).await?;
    let floor = mean_floor(floor_before, floor_after);
    let memory = json!({
        "buyer": memory_json(&buyer_server, &samples, 0),
        "seller": memory_json(&seller, &samples, 1),
    });

    let min_ratio = match ctx.common.store {
        StoreKind::Embedded => ROUND_TRIP_EMBEDDED_MIN_FLOOR_RATIO,
        StoreKind::Redis => ROUND_TRIP_REDIS_MIN_FLOOR_RATIO,
    };
    let ratio = floor.map(|f| outcome.throughput() / f.round_trips_per_sec);
    let batched_ratio = floor.map(|f| outcome.throughput() / f.batched_round_trips_per_sec);
    let p99_ms = outcome.percentile_us(0.99) as f64 / 1000.0;
    let mut targets = serde_json::Map::new();
    if let Some(r) = ratio {
        targets.insert(
            "throughput_over_floor".into(),
            json!({"value": round3(r), "min": min_ratio, "met": r >= min_ratio}),
        );
    }
    if a.rate.is_some() {
        targets.insert(
            "p99_ms_at_this_rate".into(),
            json!({"value": round3(p99_ms), "max": P99_MAX_MS_AT_HALF_PEAK,
                "met": p99_ms < P99_MAX_MS_AT_HALF_PEAK,
                "note": "the target applies when the rate is half of the closed-loop peak"}),
        );
    }
    let mut json = run_json("round-trip", ctx, &a, &warm, workers);
    merge(
        &mut json,
        json!({
        "memory": memory,
        "floor": floor_json(floor_before, floor_after),
        "ratio_to_floor": ratio.map(round3),
        "ratio_to_batched_floor": batched_ratio.map(round3),
        "targets": targets,
        }),
    );
    merge(&mut json, outcome_json(&outcome));

    let mut text = heading("round trip", ctx, &a, workers);
    {
        use std::fmt::Write;
        outcome_text(&mut text, &outcome);
        memory_text(&mut text, "buyer", &json["memory"]["buyer"]);
        memory_text(&mut text, "seller", &json["memory"]["seller"]);
        if let (Some(f), Some(r)) = (floor, ratio) {
            let _ = writeln!(
                text,
                "  crypto floor       {:.1} round trips/s (2 threads, signatures only; mean of {:.1} before and {:.1} after the load)",
                f.round_trips_per_sec,
                floor_before.map_or(f64::NAN, |f| f.round_trips_per_sec),
                floor_after.map_or(f64::NAN, |f| f.round_trips_per_sec),
            );
            let _ = writeln!(
                text,
                "  throughput/floor   {:.3} (target >= {min_ratio}: {})",
                r,
                verdict(r >= min_ratio)
            );
            against_batches(
                &mut text,
                batched_ratio,
                f.batched_round_trips_per_sec,
                "round trips/s, the floor with its verifications",
            );
        }
        if a.rate.is_some() {
            let _ = writeln!(
                text,
                "  p99                {p99_ms:.3} ms (target < {P99_MAX_MS_AT_HALF_PEAK} ms at half of peak: {})",
                verdict(p99_ms < P99_MAX_MS_AT_HALF_PEAK)
            );
        }
        json["cpu"] = cpu_report(
            &["buyer", "seller"],
            &cpu,
            outcome.completed,
            floor.and_then(|f| f.round_trips_per_cpu_sec),
            &mut text,
            "round trip",
            "the crypto floor",
        );
        json["signatures_checked"] =
            signatures_report(&[("buyer", &buyer_server), ("seller", &seller)], &mut text).await;
        json["listen_overflows"] = overflows_report(overflows_before, &mut text);
    }
    drop(buyer_server);
    drop(seller);
    Ok(Report {
        text,
        json,
        failed: outcome.error_count(),
        ratio,
    })
}

/// What the measured phase of a load run saw.
struct Measured {
    outcome: Outcome,
    /// Memory of `servers`, every 250 ms.
    samples: Vec<children::Sample>,
    cpu: CpuSpent,
}

/// The measured phase: `requests` driven for `a.duration` as `a` says, while the memory of
/// `servers` is sampled and their CPU time (and this tool's) counted.
async fn measure(a: &LoadArgs, servers: &[&Server], requests: Request) -> Measured {
    let sampler = Sampler::start(
        servers.iter().map(|s| s.pid()).collect(),
        Duration::from_millis(250),
    );
    let cpu = CpuMeter::start(servers);
    let outcome = drive::run(a.load(a.duration), requests).await;
    let cpu = cpu.finish();
    Measured {
        outcome,
        samples: sampler.finish().await,
        cpu,
    }
}

/// The JSON fields every load run's report starts with.
fn run_json(mode: &str, ctx: &Ctx, a: &LoadArgs, warm: &Outcome, workers: usize) -> Value {
    json!({
        "mode": mode,
        "store": ctx.store_name(),
        "workers_per_adapter": workers,
        "concurrency": a.concurrency,
        "rate": a.rate,
        "duration_secs": a.duration,
        "warmup": {"secs": a.warmup, "completed": warm.completed,
            "throughput_per_sec": round1(warm.throughput()), "error_count": warm.error_count()},
    })
}

/// A load run's report heading: what ran, on which store, how it was driven.
fn heading(what: &str, ctx: &Ctx, a: &LoadArgs, workers: usize) -> String {
    format!(
        "{what}, {} store, {} (concurrency {}), {} HTTP workers per adapter\n",
        ctx.store_name(),
        loop_label(a.rate),
        a.concurrency,
        workers
    )
}

/// CPU time used during a measured phase by each adapter and by this tool.
struct CpuMeter {
    pids: Vec<u32>,
    at_start: Vec<Option<Duration>>,
    tool_at_start: Option<Duration>,
}

/// What a [`CpuMeter`] measured: per adapter (in the order given), then the tool.
struct CpuSpent {
    adapters: Vec<Option<Duration>>,
    tool: Option<Duration>,
}

impl CpuMeter {
    fn start(servers: &[&Server]) -> Self {
        Self {
            pids: servers.iter().map(|s| s.pid()).collect(),
            at_start: servers.iter().map(|s| s.cpu_time()).collect(),
            tool_at_start: own_cpu_time(),
        }
    }

    fn finish(self) -> CpuSpent {
        let spent = |start: Option<Duration>, end: Option<Duration>| {
            start.zip(end).map(|(a, b)| b.saturating_sub(a))
        };
        CpuSpent {
            adapters: self
                .pids
                .iter()
                .zip(self.at_start)
                .map(|(pid, start)| spent(start, children::cpu_time_of(*pid)))
                .collect(),
            tool: spent(self.tool_at_start, own_cpu_time()),
        }
    }
}

impl CpuSpent {
    /// The adapters' CPU time together (None if any is unknown).
    fn adapters_total(&self) -> Option<Duration> {
        self.adapters.iter().copied().sum()
    }
}

/// The report line of a run's `ratio` to `batched`, a floor rate whose verifications ran in
/// batches of [`floor::BATCH`].
fn against_batches(text: &mut String, ratio: Option<f64>, batched: f64, what: &str) {
    use std::fmt::Write;
    let _ = writeln!(
        text,
        "  against batches    {:.3} of {batched:.1} {what} in batches of {}",
        ratio.unwrap_or(f64::NAN),
        floor::BATCH
    );
}

/// How each adapter checked the signatures it received since it started (warm-up included),
/// read from its `/metrics`: alone, in batches that passed, or again alone after a batch failed.
async fn signatures_report(servers: &[(&str, &Server)], text: &mut String) -> Value {
    use std::fmt::Write;
    let mut json = serde_json::Map::new();
    for (name, server) in servers {
        let Ok(body) = async {
            reqwest::get(format!("{}/metrics", server.base))
                .await?
                .text()
                .await
        }
        .await
        else {
            continue;
        };
        let count = |how: How| {
            let series = format!(
                "ondc_rating_signatures_checked_total{{how=\"{}\"}} ",
                how.label()
            );
            body.lines()
                .find_map(|l| l.strip_prefix(series.as_str()))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let counts = How::ALL.map(count);
        let _ = writeln!(
            text,
            "  signatures checked {name}: {} alone, {} in batches, {} rechecked",
            counts[0], counts[1], counts[2]
        );
        json.insert(
            (*name).to_owned(),
            json!({"alone": counts[0], "batch": counts[1], "rechecked": counts[2]}),
        );
    }
    Value::Object(json)
}

/// The machine's listen-queue overflows since `before` (a connection whose SYN was dropped and
/// retried a second later: the cause of a latency near 1 s); null where they cannot be read.
fn overflows_report(before: Option<u64>, text: &mut String) -> Value {
    use std::fmt::Write;
    let during = before
        .zip(children::listen_overflows())
        .map(|(b, a)| a.saturating_sub(b));
    match during {
        Some(n) => {
            let _ = writeln!(
                text,
                "  SYNs dropped       {n} (the machine's listen-queue overflows during the run)"
            );
        }
        None => text.push_str("  SYNs dropped       not known (no /proc/net/netstat)\n"),
    }
    json!(during)
}

/// The CPU part of a report: microseconds of CPU per operation for each adapter and the tool,
/// operations per CPU-second of the adapters together, and that against `reference` (the same
/// operation's signature work alone, per CPU-second of one thread).
fn cpu_report(
    names: &[&str],
    spent: &CpuSpent,
    ops: u64,
    reference: Option<f64>,
    text: &mut String,
    op_name: &str,
    reference_name: &str,
) -> Value {
    use std::fmt::Write;
    let per_op_us = |d: Option<Duration>| {
        d.filter(|_| ops > 0)
            .map(|d| d.as_secs_f64() * 1e6 / ops as f64)
    };
    let mut json = serde_json::Map::new();
    let mut parts = Vec::new();
    for (name, d) in names.iter().zip(&spent.adapters) {
        json.insert(
            format!("{name}_us_per_op"),
            json!(per_op_us(*d).map(round1)),
        );
        if let Some(us) = per_op_us(*d) {
            parts.push(format!("{name} {us:.0} us"));
        }
    }
    json.insert(
        "tool_us_per_op".into(),
        json!(per_op_us(spent.tool).map(round1)),
    );
    if let Some(us) = per_op_us(spent.tool) {
        parts.push(format!("load tool {us:.0} us"));
    }
    let _ = writeln!(text, "  CPU per {op_name:<10} {}", parts.join(", "));
    let per_cpu_sec = spent
        .adapters_total()
        .filter(|d| !d.is_zero())
        .map(|d| ops as f64 / d.as_secs_f64());
    json.insert(
        "adapters_ops_per_cpu_sec".into(),
        json!(per_cpu_sec.map(round1)),
    );
    json.insert("reference_per_cpu_sec".into(), json!(reference.map(round1)));
    let ratio = per_cpu_sec.zip(reference).map(|(a, r)| a / r);
    json.insert("ratio".into(), json!(ratio.map(round3)));
    if let (Some(a), Some(r), Some(x)) = (per_cpu_sec, reference, ratio) {
        let _ = writeln!(
            text,
            "  adapters' CPU      {a:.1} per CPU-second of the adapters (no other work counted); {reference_name}: {r:.1} per CPU-second of one thread; ratio {x:.3}"
        );
    }
    Value::Object(json)
}

fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(into), Value::Object(from)) = (into, from) {
        into.extend(from);
    }
}

/// Pre-signed /rating requests from `buyer` to the seller: (Authorization, body).
type Signed = Vec<(String, Vec<u8>)>;

struct InboundIdentity {
    id: String,
    keys: SigningKeyPair,
    bap_uri: String,
    bpp_uri: String,
    ttl_secs: i64,
}

fn sign_ratings(who: &InboundIdentity, first: u64, count: u64) -> Signed {
    let now = chrono::Utc::now();
    let created = now.timestamp();
    let timestamp = ondc_timestamp(now);
    let ttl = format!("PT{}S", who.ttl_secs);
    (first..first + count)
        .map(|i| {
            let order = order_id(i);
            let body = serde_json::to_vec(&json!({
                "context": {"domain": "ONDC:RET11", "country": "IND", "city": "std:080",
                    "action": "rating", "core_version": "1.2.0", "bap_id": who.id,
                    "bap_uri": who.bap_uri, "bpp_id": "seller.bench", "bpp_uri": who.bpp_uri,
                    "transaction_id": uuid::Uuid::new_v4().to_string(),
                    "message_id": uuid::Uuid::new_v4().to_string(),
                    "timestamp": timestamp, "ttl": ttl},
                "message": {"ratings": [
                    {"rating_category": "Order", "id": order, "value": "5"},
                    {"rating_category": "Provider", "id": "provider-1", "value": "4"},
                    {"rating_category": "Item", "id": "item-1", "value": "5"},
                    {"rating_category": "Item", "id": "item-2", "value": "3"},
                    {"rating_category": "Fulfillment", "id": "fulfillment-1", "value": "4"},
                    {"rating_category": "Agent", "id": "agent-1", "value": "5"}]}
            }))
            .expect("serialises");
            let header = sign_body(
                &body,
                &who.keys,
                &who.id,
                "bench-key-1",
                created,
                created + who.ttl_secs,
            );
            (header, body)
        })
        .collect()
}

async fn sign_in_background(who: &Arc<InboundIdentity>, first: u64, count: u64) -> Signed {
    let who = who.clone();
    tokio::task::spawn_blocking(move || sign_ratings(&who, first, count))
        .await
        .unwrap_or_default()
}

fn inbound_requests(to: &Transport, path: String, signed: Signed) -> Request {
    let (to, path, signed) = (to.clone(), Arc::new(path), Arc::new(signed));
    Arc::new(move |i| {
        let (to, path, signed) = (to.clone(), path.clone(), signed.clone());
        Box::pin(async move {
            let Some((header, body)) = signed.get(i as usize) else {
                return Attempt::Exhausted;
            };
            let (status, answer) = match to.post(&path, &[("authorization", header)], body).await {
                Ok(answer) => answer,
                Err(label) => return Attempt::Error(label),
            };
            if status == 200 && is_ack(&answer) {
                Attempt::Ok
            } else {
                let answer: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
                let code = answer["error"]["code"].as_str().unwrap_or("");
                Attempt::Error(format!("HTTP {status} NACK {code}").trim().to_owned())
            }
        })
    })
}

async fn inbound(args: InboundArgs, ctx: &Ctx) -> Result<Report, String> {
    let (a, with_on_rating) = (args.load, args.with_on_rating);
    let floor_before = measure_floor(&ctx.common).await?;
    let overflows_before = children::listen_overflows();
    let dir = Scratch::new(ctx.common.data_dir.as_deref())?;
    let sink = stub::AckPeer::start("/bap/on_rating")?;
    let workers = ctx.common.workers_each(1);
    let (mut seller_settings, _) = participant(ctx, dir.path(), "seller.bench", "seller", workers)?;
    enable_seller(&mut seller_settings)?;
    if !with_on_rating {
        seller_settings.seller.on_rating = crate::config::OnRatingMode::Platform;
    }
    let who = Arc::new(InboundIdentity {
        id: "buyer.bench".into(),
        keys: SigningKeyPair::generate().map_err(|e| e.to_string())?,
        bap_uri: format!("{}/bap", sink.base),
        bpp_uri: seller_settings.seller.bpp_uri.clone(),
        ttl_secs: (a.warmup + a.duration) as i64 + 600,
    });
    seller_settings.peers = vec![crate::config::PeerSettings {
        subscriber_id: who.id.clone(),
        unique_key_id: "bench-key-1".into(),
        signing_public_key: who.keys.public_key_base64(),
    }];
    progress(format!(
        "starting the seller adapter ({} store)",
        ctx.store_name()
    ));
    let seller = Server::start("seller", &seller_settings, dir.path()).await?;
    let http = http_client(a.concurrency)?;
    let base = format!("http://{}", seller_settings.server.bind);
    let to = Transport::new(a.client, &base, &http)?;
    let path = match who.bpp_uri.strip_prefix(&base) {
        Some(bpp) => format!("{bpp}/rating"),
        None => return Err(format!("{} is not served at {base}", who.bpp_uri)),
    };

    let warm_n = match a.rate {
        Some(r) => (r * a.warmup * 1.2) as u64 + a.concurrency as u64,
        None => (a.concurrency as u64 * 100).max(1000),
    };
    let warm_signed = sign_in_background(&who, 0, warm_n).await;
    progress(format!("warming up {:.0} s", a.warmup));
    let warm = drive::run(
        a.load(a.warmup),
        inbound_requests(&to, path.clone(), warm_signed),
    )
    .await;
    if warm.completed == 0 {
        return Err(format!(
            "no /rating was ACKed during the warm-up: {:?}\nseller log:\n{}",
            warm.errors,
            seller.log_tail()
        ));
    }
    let needed = match a.rate {
        Some(r) => (r * a.duration * 1.1) as u64 + a.concurrency as u64,
        None => (warm.throughput().max(100.0) * a.duration * 3.0) as u64 + a.concurrency as u64 * 4,
    };
    let signed = sign_in_background(&who, warm_n, needed).await;
    // The first ratings of the run, read back afterwards.
    let sample_ids: Vec<String> = signed
        .iter()
        .take(20)
        .map(|(_, body)| {
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            v["context"]["message_id"].as_str().unwrap_or("").to_owned()
        })
        .collect();
    // Let the warm-up's /on_rating deliveries finish before measuring.
    if with_on_rating {
        sink.wait_for(warm.completed, Duration::from_secs(10)).await;
    }
    progress(format!(
        "warm-up: {:.1} /rating/s; {needed} requests signed; measuring {:.0} s",
        warm.throughput(),
        a.duration
    ));
    let before = sink.received();
    let Measured {
        outcome,
        samples,
        cpu,
    } = measure(&a, &[&seller], inbound_requests(&to, path, signed)).await;
    let floor_after = measure_floor(&ctx.common).await?;
    let floor = mean_floor(floor_before, floor_after);
    let callbacks_in_run = sink.received() - before;
    let callbacks = if with_on_rating {
        sink.wait_for(before + outcome.completed, Duration::from_secs(15))
            .await
            - before
    } else {
        sink.received() - before
    };
    // What the seller platform reads for the first ratings of the run: each stored, and held for
    // it or sent as the mode says.
    let sampled = sample_ids.len().min(outcome.completed as usize);
    let want = if with_on_rating { "sent" } else { "awaiting" };
    let mut stored_as_expected = 0;
    for id in sample_ids.iter().take(sampled) {
        let got = http
            .get(format!(
                "http://{}/internal/seller/ratings/{}/{}",
                seller_settings.server.bind, who.id, id
            ))
            .bearer_auth(&seller_settings.seller.internal_token)
            .send()
            .await;
        if let Ok(r) = got
            && let Ok(v) = r.json::<Value>().await
            && v["rating"]["onRating"] == want
        {
            stored_as_expected += 1;
        }
    }

    let ratio = floor.map(|f| outcome.throughput() / f.verifies_per_sec);
    let batched_ratio = floor.map(|f| outcome.throughput() / f.batched_verifies_per_sec);
    let mut targets = serde_json::Map::new();
    if let Some(r) = ratio {
        targets.insert(
            "throughput_over_verify_rate".into(),
            json!({"value": round3(r), "min": INBOUND_MIN_VERIFY_RATIO,
                "met": r >= INBOUND_MIN_VERIFY_RATIO}),
        );
    }
    let mut json = run_json("inbound", ctx, &a, &warm, workers);
    merge(
        &mut json,
        json!({
        "memory": {"seller": memory_json(&seller, &samples, 0)},
        "on_rating": if with_on_rating { "sent by the adapter" } else { "held for the platform" },
        "on_rating_received": {"during_run": callbacks_in_run, "total": callbacks},
        "records_checked": {"sampled": sampled, "as_expected": stored_as_expected, "on_rating": want},
        "floor": floor_json(floor_before, floor_after),
        "ratio_to_verify_rate": ratio.map(round3),
        "ratio_to_batched_verify_rate": batched_ratio.map(round3),
        "targets": targets,
        }),
    );
    merge(&mut json, outcome_json(&outcome));
    let what = if with_on_rating {
        "seller inbound /rating with its /on_rating"
    } else {
        "seller inbound /rating alone (the /on_ratings held for the platform)"
    };
    let mut text = heading(what, ctx, &a, workers);
    {
        use std::fmt::Write;
        outcome_text(&mut text, &outcome);
        memory_text(&mut text, "seller", &json["memory"]["seller"]);
        if with_on_rating {
            let _ = writeln!(
                text,
                "  /on_rating back    {callbacks_in_run} during the run, {callbacks} of {} after it",
                outcome.completed
            );
        } else {
            let _ = writeln!(
                text,
                "  /on_rating back    {callbacks} (held for the platform)"
            );
        }
        let _ = writeln!(
            text,
            "  records read back  {stored_as_expected} of the first {sampled} stored, onRating {want}"
        );
        if let (Some(f), Some(r)) = (floor, ratio) {
            let _ = writeln!(
                text,
                "  verify rate        {:.1} /s (2 threads, digest + Ed25519 verify only; mean of {:.1} before and {:.1} after the load)",
                f.verifies_per_sec,
                floor_before.map_or(f64::NAN, |f| f.verifies_per_sec),
                floor_after.map_or(f64::NAN, |f| f.verifies_per_sec),
            );
            let _ = writeln!(
                text,
                "  throughput/verify  {:.3} (target >= {INBOUND_MIN_VERIFY_RATIO}: {})",
                r,
                verdict(r >= INBOUND_MIN_VERIFY_RATIO)
            );
            against_batches(
                &mut text,
                batched_ratio,
                f.batched_verifies_per_sec,
                "/s, verifications",
            );
        }
        json["cpu"] = cpu_report(
            &["seller"],
            &cpu,
            outcome.completed,
            floor.and_then(|f| f.verifies_per_cpu_sec),
            &mut text,
            "/rating",
            "a single verification",
        );
        json["signatures_checked"] = signatures_report(&[("seller", &seller)], &mut text).await;
        json["listen_overflows"] = overflows_report(overflows_before, &mut text);
    }
    drop(seller);
    let missing = (sampled - stored_as_expected) as u64;
    let unexpected = if with_on_rating { 0 } else { callbacks };
    Ok(Report {
        text,
        json,
        failed: outcome.error_count() + missing + unexpected,
        ratio,
    })
}

async fn soak(a: SoakArgs, ctx: &Ctx) -> Result<Report, String> {
    let dir = Scratch::new(ctx.common.data_dir.as_deref())?;
    let workers = ctx.common.workers_each(2);
    let (mut seller_settings, seller_keys) =
        participant(ctx, dir.path(), "seller.bench", "seller", workers)?;
    let (mut buyer_settings, buyer_keys) =
        participant(ctx, dir.path(), "buyer.bench", "buyer", workers)?;
    enable_seller(&mut seller_settings)?;
    let buyer = enable_buyer(&mut buyer_settings, a.duration as i64 + 3600)?;
    buyer_settings.buyer.max_waiting = (a.concurrency * 2).max(1024);
    seller_settings.peers = vec![buyer_settings.as_peer(&buyer_keys)];
    buyer_settings.peers = vec![seller_settings.as_peer(&seller_keys)];
    let bpp_uri = seller_settings.seller.bpp_uri.clone();
    progress(format!(
        "starting the seller and buyer adapters ({} store)",
        ctx.store_name()
    ));
    let seller = Server::start("seller", &seller_settings, dir.path()).await?;
    let buyer_server = Server::start("buyer", &buyer_settings, dir.path()).await?;
    let http = http_client(a.concurrency)?;
    progress(format!(
        "soak: {:.0}/s for {:.0} s, memory every {:.0} s, baseline at {:.0} s",
        a.rate, a.duration, a.sample_every, a.warmup
    ));
    // Each request registers its order first (a store write on the buyer side, as in service),
    // then rates it; the latency covers both.
    let request: Request = {
        let to = Transport::new(ClientKind::Reqwest, &buyer.base, &http)?;
        let authorization: Arc<str> = format!("Bearer {}", buyer.token).into();
        let (http, base, internal) = (http.clone(), buyer.base.clone(), buyer.internal.clone());
        Arc::new(move |i| {
            let (to, authorization) = (to.clone(), authorization.clone());
            let (http, base, internal) = (http.clone(), base.clone(), internal.clone());
            let order = order_json("seller.bench", &bpp_uri);
            Box::pin(async move {
                if let Err(e) = put_order(&http, &base, &internal, i, &order).await {
                    return Attempt::Error(e.split(':').take(2).collect::<Vec<_>>().join(":"));
                }
                rate_once(&to, &authorization, &order_id(i)).await
            })
        })
    };
    let sampler = Sampler::start(
        vec![buyer_server.pid(), seller.pid()],
        Duration::from_secs_f64(a.sample_every.max(0.1)),
    );
    let outcome = drive::run(
        Load {
            concurrency: a.concurrency,
            duration: Duration::from_secs_f64(a.duration),
            rate: Some(a.rate),
        },
        request,
    )
    .await;
    let samples = sampler.finish().await;

    let mut per_process = serde_json::Map::new();
    let mut text = String::new();
    let mut all_met = true;
    {
        use std::fmt::Write;
        let _ = writeln!(
            text,
            "soak, {} store, open loop at {}/s for {:.0} s",
            ctx.store_name(),
            a.rate,
            a.duration
        );
        outcome_text(&mut text, &outcome);
    }
    for (index, server) in [(0usize, &buyer_server), (1, &seller)] {
        let series: Vec<(f64, u64)> = samples
            .iter()
            .filter_map(|s| {
                s.memory
                    .get(index)
                    .copied()
                    .flatten()
                    .map(|m: Memory| (s.at_secs, m.rss_kib))
            })
            .collect();
        let warm = series.iter().find(|(t, _)| *t >= a.warmup).map(|x| x.1);
        let after: Vec<u64> = series
            .iter()
            .filter(|(t, _)| *t >= a.warmup)
            .map(|x| x.1)
            .collect();
        let max_after = after.iter().copied().max();
        let last = series.last().map(|x| x.1);
        let growth = |v: Option<u64>| match (warm, v) {
            (Some(w), Some(v)) if w > 0 => Some(round1((v as f64 - w as f64) / w as f64 * 100.0)),
            _ => None,
        };
        let (g_final, g_max) = (growth(last), growth(max_after));
        let met = g_max.is_some_and(|g| g <= SOAK_MAX_GROWTH_PCT);
        all_met &= met;
        per_process.insert(
            server.name.clone(),
            json!({
                "pid": server.pid(),
                "rss_at_warmup_kib": warm,
                "rss_max_after_warmup_kib": max_after,
                "rss_final_kib": last,
                "peak_kib": server.memory().map(|m| m.hwm_kib),
                "growth_final_pct": g_final,
                "growth_max_pct": g_max,
                "target_max_growth_pct": SOAK_MAX_GROWTH_PCT,
                "met": met,
                "series": series.iter().map(|(t, r)| json!([round1(*t), r])).collect::<Vec<_>>(),
            }),
        );
        use std::fmt::Write;
        let _ = writeln!(
            text,
            "  {:<6} RSS KiB      at warm-up {}  max after {}  final {}  growth final {}%  max {}% (target <= {SOAK_MAX_GROWTH_PCT}%: {})",
            server.name,
            opt(warm),
            opt(max_after),
            opt(last),
            opt(g_final),
            opt(g_max),
            verdict(met)
        );
    }
    let mut json = json!({
        "mode": "soak",
        "store": ctx.store_name(),
        "rate": a.rate,
        "concurrency": a.concurrency,
        "duration_secs": a.duration,
        "warmup_secs": a.warmup,
        "sample_every_secs": a.sample_every,
        "memory": per_process,
        "targets": {"memory_growth": {"met": all_met}},
    });
    merge(&mut json, outcome_json(&outcome));
    drop(buyer_server);
    drop(seller);
    Ok(Report {
        text,
        json,
        failed: outcome.error_count(),
        ratio: None,
    })
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

async fn waiting(a: WaitingArgs, ctx: &Ctx) -> Result<Report, String> {
    let warm = a.warm;
    let dir = Scratch::new(ctx.common.data_dir.as_deref())?;
    // A seller that ACKs /rating and never calls back: every buyer request waits.
    let silent = stub::AckPeer::start("/bpp/rating")?;
    let silent_keys = SigningKeyPair::generate().map_err(|e| e.to_string())?;
    let (mut buyer_settings, _) = participant(
        ctx,
        dir.path(),
        "buyer.bench",
        "buyer",
        ctx.common.workers_each(1),
    )?;
    let buyer = enable_buyer(&mut buyer_settings, 3600)?;
    buyer_settings.buyer.callback_wait_ms = 30_000;
    buyer_settings.buyer.max_waiting = (a.count + warm) as usize + 64;
    buyer_settings.server.http2 = a.http2;
    buyer_settings.peers = vec![crate::config::PeerSettings {
        subscriber_id: "silent-seller.bench".into(),
        unique_key_id: "bench-key-1".into(),
        signing_public_key: silent_keys.public_key_base64(),
    }];
    progress(format!(
        "starting the buyer adapter ({} store)",
        ctx.store_name()
    ));
    let buyer_server = Server::start("buyer", &buyer_settings, dir.path()).await?;
    let http = http_client(a.count as usize + warm as usize)?;
    let api = if a.http2 {
        reqwest::Client::builder()
            .http2_prior_knowledge()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?
    } else {
        http.clone()
    };
    let protocol = if a.http2 { "HTTP/2" } else { "HTTP/1.1" };
    let bpp_uri = format!("{}/bpp", silent.base);
    let took = register_orders(
        &http,
        &buyer,
        ("silent-seller.bench", &bpp_uri),
        0,
        a.count + warm,
    )
    .await?;
    progress(format!(
        "registered {} orders in {took:.1} s",
        a.count + warm
    ));
    if a.prefill > 0 {
        let took = register_orders(
            &http,
            &buyer,
            ("silent-seller.bench", &bpp_uri),
            a.count + warm,
            a.prefill,
        )
        .await?;
        progress(format!(
            "prefilled the store with {} more orders in {took:.1} s",
            a.prefill
        ));
    }

    let answered_early = Arc::new(AtomicU64::new(0));
    let to = Transport::new(ClientKind::Reqwest, &buyer.base, &api)?;
    let authorization: Arc<str> = format!("Bearer {}", buyer.token).into();
    let launch = |from: u64, n: u64| -> Vec<tokio::task::JoinHandle<()>> {
        (from..from + n)
            .map(|i| {
                let (to, authorization, early) =
                    (to.clone(), authorization.clone(), answered_early.clone());
                tokio::spawn(async move {
                    let _ = rate_once(&to, &authorization, &order_id(i)).await;
                    early.fetch_add(1, Ordering::Relaxed);
                })
            })
            .collect()
    };
    let mut tasks = launch(0, warm);
    if silent.wait_for(warm, Duration::from_secs(20)).await < warm {
        return Err(format!(
            "the buyer side did not send the warm-up ratings:\n{}",
            buyer_server.log_tail()
        ));
    }
    // Each request records its `acknowledged` status once its delay has passed: measure after.
    let status_written =
        Duration::from_millis(buyer_settings.buyer.acknowledged_write_delay_ms + 500);
    tokio::time::sleep(status_written).await;
    let before = buyer_server
        .memory()
        .ok_or("cannot read the buyer side's memory")?;
    progress(format!(
        "{warm} requests waiting, buyer RSS {} KiB; launching {}",
        before.rss_kib, a.count
    ));
    let started = tokio::time::Instant::now();
    tasks.extend(launch(warm, a.count));
    let reached = silent
        .wait_for(warm + a.count, Duration::from_secs(25))
        .await;
    let settle = started.elapsed();
    tokio::time::sleep(status_written.max(Duration::from_secs(1))).await;
    let with = buyer_server
        .memory()
        .ok_or("cannot read the buyer side's memory")?;
    let early = answered_early.load(Ordering::Relaxed);
    for t in &tasks {
        t.abort();
    }
    let waiting_now = reached.saturating_sub(early);
    let added = reached.saturating_sub(warm);
    let per = if added > 0 {
        (with.rss_kib as f64 - before.rss_kib as f64) / added as f64
    } else {
        f64::NAN
    };
    let met = per.is_finite() && per < WAITING_MAX_KIB && early == 0;
    let json = json!({
        "mode": "waiting",
        "store": ctx.store_name(),
        "protocol": protocol,
        "count": a.count,
        "warm_waiting": warm,
        "prefilled_orders": a.prefill,
        "sent_to_seller": reached,
        "answered_before_measurement": early,
        "waiting_at_measurement": waiting_now,
        "seconds_to_send_all": round3(settle.as_secs_f64()),
        "buyer": {"pid": buyer_server.pid(), "rss_before_kib": before.rss_kib,
            "rss_with_waiting_kib": with.rss_kib, "peak_kib": with.hwm_kib,
            "threads_before": before.threads, "threads_with_waiting": with.threads},
        "kib_per_waiting_request": if per.is_finite() { json!(round3(per)) } else { Value::Null },
        "targets": {"kib_per_waiting_request": {"max": WAITING_MAX_KIB, "met": met}},
    });
    let text = format!(
        "waiting buyer requests, {} store{}, {protocol}\n  \
         waiting            {waiting_now} ({} sent to the silent seller in {:.2} s, {early} answered early)\n  \
         buyer RSS          {} KiB with {warm} waiting, {} KiB with {} waiting (peak {} KiB)\n  \
         buyer threads      {} with {warm} waiting, {} with all waiting\n  \
         per waiting        {} KiB (target < {WAITING_MAX_KIB} KiB: {})\n",
        ctx.store_name(),
        if a.prefill > 0 {
            format!(" ({} orders prefilled)", a.prefill)
        } else {
            String::new()
        },
        added,
        settle.as_secs_f64(),
        before.rss_kib,
        with.rss_kib,
        waiting_now,
        with.hwm_kib,
        before.threads,
        with.threads,
        if per.is_finite() {
            format!("{per:.2}")
        } else {
            "-".into()
        },
        verdict(met)
    );
    drop(buyer_server);
    Ok(Report {
        text,
        json,
        failed: if reached < warm + a.count || early > 0 {
            1
        } else {
            0
        },
        ratio: None,
    })
}

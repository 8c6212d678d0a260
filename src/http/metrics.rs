//! Process metrics, served at `GET /metrics` in the Prometheus text exposition format (0.0.4).
//! Counters are atomics, or a mutex-protected map where a label takes open-ended values (route
//! templates, NACK codes). One [`Metrics`] per server, held in the application state.
//!
//! - `ondc_rating_http_requests_total{route,status}`: every response, by route template;
//! - `ondc_rating_nacks_total{code}`: every NACK this server answered with, by ONDC code;
//! - `ondc_rating_callback_wait_seconds{outcome}`: a histogram of the time from sending `/rating`
//!   until its `/on_rating` was found (`callback`) or the buyer's wait gave up (`timeout`);
//! - `ondc_rating_outbound_retries_total{target}`: attempts after the first (`rating`,
//!   `on_rating`, `registry`, `webhook`);
//! - `ondc_rating_store_errors_total`: store failures turned into an API error or a NACK;
//! - `ondc_rating_registry_cache_total{result}`: registry key lookups by where the answer came
//!   from (`hit_memory`, `hit_store`, `lookup`: the registry was asked; `miss`: it had no usable
//!   key);
//! - `ondc_rating_callbacks_matched_total{against}`: `/on_rating` callbacks accepted, by what they
//!   were matched against: the `/rating` a request in this process waits on (`waiting_request`),
//!   or the store (`store`: its request waits on another instance, or waits no more);
//! - `ondc_rating_signatures_checked_total{how}`: checks of inbound signatures' Ed25519
//!   equation, by how: on their own (`alone`), in a batch that passed (`batch`), or on their own
//!   after their batch failed or within `crypto::batch::SINGLY_FOR` after one of their worker's
//!   did (`rechecked`). A signature that fails under a cached key and is checked again under the
//!   key the registry has since rotated to counts twice, the second time `alone`;
//! - `ondc_rating_owed_taken_up_total`: received ratings whose owed work (a webhook hand-off, an
//!   `/on_rating`) this process took up from a stopped one: the embedded store's last run, or an
//!   instance sharing Redis whose heartbeat stopped;
//! - `ondc_rating_waiting_requests`: a gauge of the buyer requests waiting for their
//!   `/on_rating` (at most `buyer.max_waiting`; beyond it new ones get 503 `too_busy`), read from
//!   the waiters when the metrics are served ([`gauge`]);
//! - `ondc_rating_owed_waiting`: a gauge of the ratings taken up that wait for a turn
//!   (`seller.resume_concurrency`): the backlog a restart or a takeover left still to start;
//! - `ondc_rating_webhook_slot_waits_total{ended}`: seller platform webhook attempts that found
//!   all `seller.webhook_concurrency` requests in flight and waited, by how the wait ended: with
//!   a free slot (`slot`), or with the hand-off's budget spent (`budget`);
//! - `ondc_rating_received_forgotten_total`: received ratings forgotten `seller.retention_days`
//!   after their `/on_rating` was sent or given up;
//! - `ondc_rating_notification_rounds_total{channel,ended}`: rounds of attempts at a feedback
//!   notification ([`crate::bap::notify`]), by channel (`webhook`, `email`) and how the round
//!   ended: `delivered`, `retry` (kept to be tried again later) or `given_up`;
//! - `ondc_rating_notifications_kept`: a gauge of the feedback notifications kept undelivered
//!   (per channel; with Redis, those of every instance), as the last sweep counted them;
//! - `ondc_rating_backups_total{ended}`: backups of the embedded store, on request or on
//!   schedule, by how they ended: `made` or `failed`;
//! - `ondc_rating_notifications_given_up`: a gauge of the feedback notifications given up and
//!   kept for `buyer.notify_given_up_days` (listed at `GET /internal/notifications/given-up`),
//!   as the last sweep counted them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::HttpResponse;

use crate::bap::notify::Channel;
use crate::crypto::batch::How;
use crate::protocol::NackCode;

/// The `Content-Type` of the exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Upper bounds of the callback-wait histogram buckets, seconds (`+Inf` is implied).
pub const CALLBACK_WAIT_BUCKETS: [f64; 9] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The route label of a request that matched no route.
const UNMATCHED: &str = "unmatched";

/// Where an outbound request is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryTarget {
    /// The buyer side's `/rating` to a seller.
    Rating,
    /// The seller side's `/on_rating` to a buyer.
    OnRating,
    /// A registry lookup.
    Registry,
    /// The seller platform's webhook.
    Webhook,
}

impl RetryTarget {
    const ALL: [RetryTarget; 4] = [Self::Rating, Self::OnRating, Self::Registry, Self::Webhook];

    fn label(self) -> &'static str {
        match self {
            Self::Rating => "rating",
            Self::OnRating => "on_rating",
            Self::Registry => "registry",
            Self::Webhook => "webhook",
        }
    }
}

/// Where a registry key lookup was answered from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    /// Process memory.
    HitMemory,
    /// The shared store.
    HitStore,
    /// The registry was asked.
    Lookup,
    /// The registry was asked and had no usable key.
    Miss,
}

impl CacheResult {
    const ALL: [CacheResult; 4] = [Self::HitMemory, Self::HitStore, Self::Lookup, Self::Miss];

    fn label(self) -> &'static str {
        match self {
            Self::HitMemory => "hit_memory",
            Self::HitStore => "hit_store",
            Self::Lookup => "lookup",
            Self::Miss => "miss",
        }
    }
}

/// How the buyer's wait for `/on_rating` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    /// The callback was there.
    Callback,
    /// The wait gave up without it.
    Timeout,
}

impl WaitOutcome {
    const ALL: [WaitOutcome; 2] = [Self::Callback, Self::Timeout];

    fn label(self) -> &'static str {
        match self {
            Self::Callback => "callback",
            Self::Timeout => "timeout",
        }
    }
}

/// What an accepted `/on_rating` was matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackMatch {
    /// The `/rating` a request in this process waits on, handed the callback directly.
    WaitingRequest,
    /// The store's record of the `/rating`.
    Store,
}

impl CallbackMatch {
    const ALL: [CallbackMatch; 2] = [Self::WaitingRequest, Self::Store];

    fn label(self) -> &'static str {
        match self {
            Self::WaitingRequest => "waiting_request",
            Self::Store => "store",
        }
    }
}

/// How a webhook attempt's wait for a free slot ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotWait {
    /// A request in flight ended and this one went.
    Slot,
    /// The hand-off's budget ran out first.
    Budget,
}

impl SlotWait {
    const ALL: [SlotWait; 2] = [Self::Slot, Self::Budget];

    fn label(self) -> &'static str {
        match self {
            Self::Slot => "slot",
            Self::Budget => "budget",
        }
    }
}

/// How a round of attempts at a feedback notification ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeRound {
    /// The receiver or the relay took it.
    Delivered,
    /// It failed and is kept to be tried again.
    Retry,
    /// It failed and is not tried again (refused, or past `buyer.notify_retry_hours`).
    GivenUp,
}

impl NoticeRound {
    const ALL: [NoticeRound; 3] = [Self::Delivered, Self::Retry, Self::GivenUp];

    fn label(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Retry => "retry",
            Self::GivenUp => "given_up",
        }
    }
}

/// Response marker set by [`crate::http::network::nack`]: the middleware counts the NACK.
#[derive(Debug, Clone, Copy)]
pub struct NackSent(pub NackCode);

/// Response marker set when a store failure became the answer (an API error).
#[derive(Debug, Clone, Copy)]
pub struct StoreFailure;

#[derive(Default, Clone, Copy)]
struct Histogram {
    /// Per bucket (not cumulative), the last one `+Inf`.
    buckets: [u64; CALLBACK_WAIT_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

/// Every metric of one server.
#[derive(Default)]
pub struct Metrics {
    http_requests: Mutex<BTreeMap<(String, u16), u64>>,
    nacks: Mutex<BTreeMap<&'static str, u64>>,
    callback_wait: Mutex<[Histogram; 2]>,
    retries: [AtomicU64; 4],
    store_errors: AtomicU64,
    registry_cache: [AtomicU64; 4],
    callbacks_matched: [AtomicU64; 2],
    signatures_checked: [AtomicU64; 3],
    owed_taken_up: AtomicU64,
    owed_waiting: AtomicU64,
    webhook_slot_waits: [AtomicU64; 2],
    received_forgotten: AtomicU64,
    notification_rounds: [[AtomicU64; 3]; 2],
    notifications_kept: AtomicU64,
    notifications_given_up: AtomicU64,
    backups: [AtomicU64; 2],
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    /// Counts one answered request: its route template (None: no route matched), its status,
    /// and the markers the handlers left on the response (a NACK, a store failure).
    pub fn record_response<B>(&self, route: Option<&str>, response: &HttpResponse<B>) {
        let route = route.unwrap_or(UNMATCHED).to_owned();
        *lock(&self.http_requests)
            .entry((route, response.status().as_u16()))
            .or_default() += 1;
        let ext = response.extensions();
        if let Some(NackSent(code)) = ext.get::<NackSent>() {
            *lock(&self.nacks).entry(code.spec().0).or_default() += 1;
        }
        if ext.get::<StoreFailure>().is_some() {
            self.store_error();
        }
    }

    /// One store failure turned into an error answer.
    pub fn store_error(&self) {
        self.store_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// One retry (an attempt after the first) towards `target`.
    pub fn retry(&self, target: RetryTarget) {
        self.retries[target as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// One registry key lookup answered from `result`.
    pub fn registry_cache(&self, result: CacheResult) {
        self.registry_cache[result as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// One `/on_rating` accepted, matched against `against`.
    pub fn callback_matched(&self, against: CallbackMatch) {
        self.callbacks_matched[against as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// One inbound signature checked, `how`.
    pub fn signature_checked(&self, how: How) {
        self.signatures_checked[how as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// `n` received ratings whose owed work this process took up from a stopped one.
    pub fn owed_taken_up(&self, n: usize) {
        self.owed_taken_up.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// `n` ratings taken up now wait for a turn.
    pub fn owed_queued(&self, n: usize) {
        self.owed_waiting.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// `n` ratings taken up wait no more: their turn came, or no turn will (the process stops).
    pub fn owed_dequeued(&self, n: usize) {
        self.owed_waiting.fetch_sub(n as u64, Ordering::Relaxed);
    }

    /// One webhook attempt that waited for a free slot, and how the wait ended.
    pub fn webhook_slot_wait(&self, ended: SlotWait) {
        self.webhook_slot_waits[ended as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// `n` received ratings forgotten past `seller.retention_days`.
    pub fn received_forgotten(&self, n: usize) {
        self.received_forgotten
            .fetch_add(n as u64, Ordering::Relaxed);
    }

    /// One round of attempts at a feedback notification on `channel`, and how it ended.
    pub fn notification_round(&self, channel: Channel, ended: NoticeRound) {
        self.notification_rounds[channel as usize][ended as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The feedback notifications kept undelivered, as a sweep counted them.
    pub fn set_notifications_kept(&self, n: u64) {
        self.notifications_kept.store(n, Ordering::Relaxed);
    }

    /// A backup of the embedded store, made or failed.
    pub fn backup(&self, made: bool) {
        self.backups[usize::from(!made)].fetch_add(1, Ordering::Relaxed);
    }

    /// The feedback notifications given up and kept, as a sweep counted them.
    pub fn set_notifications_given_up(&self, n: u64) {
        self.notifications_given_up.store(n, Ordering::Relaxed);
    }

    /// One wait for `/on_rating`, `elapsed` since the `/rating` was sent.
    pub fn callback_wait(&self, elapsed: Duration, outcome: WaitOutcome) {
        let secs = elapsed.as_secs_f64();
        let bucket = CALLBACK_WAIT_BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(CALLBACK_WAIT_BUCKETS.len());
        let mut h = lock(&self.callback_wait);
        let h = &mut h[outcome as usize];
        h.buckets[bucket] += 1;
        h.sum += secs;
        h.count += 1;
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        header(
            &mut out,
            "ondc_rating_http_requests_total",
            "counter",
            "HTTP requests answered, by route template and status.",
        );
        for ((route, status), n) in lock(&self.http_requests).iter() {
            let _ = writeln!(
                out,
                "ondc_rating_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        header(
            &mut out,
            "ondc_rating_nacks_total",
            "counter",
            "NACKs answered, by ONDC error code.",
        );
        for (code, n) in lock(&self.nacks).iter() {
            let _ = writeln!(out, "ondc_rating_nacks_total{{code=\"{code}\"}} {n}");
        }
        header(
            &mut out,
            "ondc_rating_callback_wait_seconds",
            "histogram",
            "Time from sending /rating until its /on_rating was found or the wait gave up.",
        );
        let waits = *lock(&self.callback_wait);
        for outcome in WaitOutcome::ALL {
            let h = &waits[outcome as usize];
            let label = outcome.label();
            let mut cumulative = 0;
            for (i, le) in CALLBACK_WAIT_BUCKETS.iter().enumerate() {
                cumulative += h.buckets[i];
                let _ = writeln!(
                    out,
                    "ondc_rating_callback_wait_seconds_bucket{{outcome=\"{label}\",le=\"{le}\"}} {cumulative}"
                );
            }
            cumulative += h.buckets[CALLBACK_WAIT_BUCKETS.len()];
            let _ = writeln!(
                out,
                "ondc_rating_callback_wait_seconds_bucket{{outcome=\"{label}\",le=\"+Inf\"}} {cumulative}"
            );
            let _ = writeln!(
                out,
                "ondc_rating_callback_wait_seconds_sum{{outcome=\"{label}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "ondc_rating_callback_wait_seconds_count{{outcome=\"{label}\"}} {}",
                h.count
            );
        }
        header(
            &mut out,
            "ondc_rating_outbound_retries_total",
            "counter",
            "Outbound attempts after the first, by target.",
        );
        for target in RetryTarget::ALL {
            let _ = writeln!(
                out,
                "ondc_rating_outbound_retries_total{{target=\"{}\"}} {}",
                target.label(),
                self.retries[target as usize].load(Ordering::Relaxed)
            );
        }
        counter(
            &mut out,
            "ondc_rating_store_errors_total",
            "Store failures answered with an API error or a NACK.",
            &self.store_errors,
        );
        counter(
            &mut out,
            "ondc_rating_owed_taken_up_total",
            "Received ratings whose owed webhook hand-off or /on_rating this process took up from a stopped one.",
            &self.owed_taken_up,
        );
        header(
            &mut out,
            "ondc_rating_backups_total",
            "counter",
            "Backups of the embedded store, on request or on schedule, by how they ended.",
        );
        for (ended, n) in ["made", "failed"].iter().zip(&self.backups) {
            let _ = writeln!(
                out,
                "ondc_rating_backups_total{{ended=\"{ended}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        counter(
            &mut out,
            "ondc_rating_received_forgotten_total",
            "Received ratings forgotten seller.retention_days after their /on_rating was sent or given up.",
            &self.received_forgotten,
        );
        gauge(
            &mut out,
            "ondc_rating_owed_waiting",
            "Received ratings taken up from a stopped process and waiting for a turn (seller.resume_concurrency).",
            self.owed_waiting.load(Ordering::Relaxed),
        );
        header(
            &mut out,
            "ondc_rating_webhook_slot_waits_total",
            "counter",
            "Webhook attempts that found seller.webhook_concurrency requests in flight and waited, by how the wait ended.",
        );
        for ended in SlotWait::ALL {
            let _ = writeln!(
                out,
                "ondc_rating_webhook_slot_waits_total{{ended=\"{}\"}} {}",
                ended.label(),
                self.webhook_slot_waits[ended as usize].load(Ordering::Relaxed)
            );
        }
        header(
            &mut out,
            "ondc_rating_registry_cache_total",
            "counter",
            "Registry key lookups: cache hits by level, registry calls, and keys the registry lacked.",
        );
        for result in CacheResult::ALL {
            let _ = writeln!(
                out,
                "ondc_rating_registry_cache_total{{result=\"{}\"}} {}",
                result.label(),
                self.registry_cache[result as usize].load(Ordering::Relaxed)
            );
        }
        header(
            &mut out,
            "ondc_rating_callbacks_matched_total",
            "counter",
            "/on_rating callbacks accepted, by what they were matched against: the /rating a request here waits on, or the store.",
        );
        for against in CallbackMatch::ALL {
            let _ = writeln!(
                out,
                "ondc_rating_callbacks_matched_total{{against=\"{}\"}} {}",
                against.label(),
                self.callbacks_matched[against as usize].load(Ordering::Relaxed)
            );
        }
        header(
            &mut out,
            "ondc_rating_signatures_checked_total",
            "counter",
            "Inbound signatures checked: alone, in a batch that passed, or again alone after a batch failed.",
        );
        for how in How::ALL {
            let _ = writeln!(
                out,
                "ondc_rating_signatures_checked_total{{how=\"{}\"}} {}",
                how.label(),
                self.signatures_checked[how as usize].load(Ordering::Relaxed)
            );
        }
        gauge(
            &mut out,
            "ondc_rating_notifications_kept",
            "Feedback notifications kept undelivered (per channel), as the last sweep counted them.",
            self.notifications_kept.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "ondc_rating_notifications_given_up",
            "Feedback notifications given up and kept to be listed and sent again, as the last sweep counted them.",
            self.notifications_given_up.load(Ordering::Relaxed),
        );
        header(
            &mut out,
            "ondc_rating_notification_rounds_total",
            "counter",
            "Rounds of attempts at feedback notifications, by channel and how they ended: delivered, kept to retry, or given up.",
        );
        for channel in Channel::ALL {
            for ended in NoticeRound::ALL {
                let _ = writeln!(
                    out,
                    "ondc_rating_notification_rounds_total{{channel=\"{}\",ended=\"{}\"}} {}",
                    channel.name(),
                    ended.label(),
                    self.notification_rounds[channel as usize][ended as usize]
                        .load(Ordering::Relaxed)
                );
            }
        }
        out
    }
}

/// A gauge without labels, read by the caller: its header and its one sample.
pub fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A counter without labels: its header and its one sample.
fn counter(out: &mut String, name: &str, help: &str, value: &AtomicU64) {
    header(out, name, "counter", help);
    let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
}

/// A label value: backslash, double quote and line feed escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
    }

    #[test]
    fn renders_the_exposition_format() {
        let m = Metrics::default();
        let mut r = HttpResponse::Ok().finish();
        r.extensions_mut()
            .insert(NackSent(NackCode::SellerInvalidSignature));
        m.record_response(Some("/bpp/rating"), &r);
        m.record_response(None, &HttpResponse::NotFound().finish());
        m.retry(RetryTarget::Webhook);
        m.registry_cache(CacheResult::HitMemory);
        m.callback_matched(CallbackMatch::Store);
        m.callback_matched(CallbackMatch::Store);
        m.callback_wait(Duration::from_millis(300), WaitOutcome::Callback);
        m.callback_wait(Duration::from_secs(60), WaitOutcome::Timeout);
        m.webhook_slot_wait(SlotWait::Budget);
        let t = m.render();
        assert_eq!(
            line(&t, "ondc_rating_http_requests_total{route=\"/bpp/rating\""),
            "ondc_rating_http_requests_total{route=\"/bpp/rating\",status=\"200\"} 1"
        );
        assert!(
            t.contains("ondc_rating_http_requests_total{route=\"unmatched\",status=\"404\"} 1")
        );
        assert!(t.contains("ondc_rating_nacks_total{code=\"30016\"} 1"));
        assert!(t.contains("ondc_rating_outbound_retries_total{target=\"webhook\"} 1"));
        assert!(t.contains("ondc_rating_outbound_retries_total{target=\"rating\"} 0"));
        assert!(t.contains("ondc_rating_registry_cache_total{result=\"hit_memory\"} 1"));
        assert!(t.contains("ondc_rating_store_errors_total 0"));
        assert!(t.contains("ondc_rating_owed_taken_up_total 0"));
        m.received_forgotten(4);
        m.notification_round(Channel::Email, NoticeRound::Retry);
        m.notification_round(Channel::Email, NoticeRound::Retry);
        m.notification_round(Channel::Webhook, NoticeRound::GivenUp);
        assert!(
            m.render()
                .contains("ondc_rating_received_forgotten_total 4\n")
        );
        m.owed_queued(5);
        m.owed_dequeued(2);
        assert!(m.render().contains("ondc_rating_owed_waiting 3\n"));
        assert!(t.contains("ondc_rating_webhook_slot_waits_total{ended=\"slot\"} 0"));
        let rounds = "ondc_rating_notification_rounds_total";
        m.set_notifications_kept(7);
        m.set_notifications_given_up(3);
        let t = m.render();
        assert!(t.contains(
            "# TYPE ondc_rating_notifications_given_up gauge\nondc_rating_notifications_given_up 3\n"
        ));
        assert!(t.contains(
            "# TYPE ondc_rating_notifications_kept gauge\nondc_rating_notifications_kept 7\n"
        ));
        assert!(t.contains(&format!(
            "{rounds}{{channel=\"email\",ended=\"retry\"}} 2\n"
        )));
        assert!(t.contains(&format!(
            "{rounds}{{channel=\"webhook\",ended=\"given_up\"}} 1\n"
        )));
        assert!(t.contains(&format!(
            "{rounds}{{channel=\"webhook\",ended=\"delivered\"}} 0\n"
        )));
        assert!(t.contains("ondc_rating_webhook_slot_waits_total{ended=\"budget\"} 1"));
        assert!(t.contains("ondc_rating_callbacks_matched_total{against=\"waiting_request\"} 0"));
        assert!(t.contains("ondc_rating_callbacks_matched_total{against=\"store\"} 2"));
        let b = "ondc_rating_callback_wait_seconds_bucket{outcome=\"callback\",le=";
        assert!(t.contains(&format!("{b}\"0.25\"}} 0")));
        assert!(t.contains(&format!("{b}\"0.5\"}} 1")));
        assert!(t.contains(&format!("{b}\"+Inf\"}} 1")));
        assert!(
            t.contains("ondc_rating_callback_wait_seconds_bucket{outcome=\"timeout\",le=\"30\"} 0")
        );
        assert!(t.contains(
            "ondc_rating_callback_wait_seconds_bucket{outcome=\"timeout\",le=\"+Inf\"} 1"
        ));
        assert!(t.contains("ondc_rating_callback_wait_seconds_count{outcome=\"timeout\"} 1"));
        for family in [
            "http_requests_total counter",
            "nacks_total counter",
            "callback_wait_seconds histogram",
            "outbound_retries_total counter",
            "store_errors_total counter",
            "registry_cache_total counter",
            "callbacks_matched_total counter",
            "webhook_slot_waits_total counter",
            "owed_waiting gauge",
            "received_forgotten_total counter",
            "notification_rounds_total counter",
            "backups_total counter",
        ] {
            assert!(
                t.contains(&format!("# TYPE ondc_rating_{family}\n")),
                "{family}"
            );
        }
        assert!(t.ends_with('\n'));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

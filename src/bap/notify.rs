//! Telling the rated party what became of v2 feedback, besides the /rating itself: that it was
//! recorded (the seller ACKed its /rating), and that it was refused (the seller's /on_rating
//! carried an error block, or `rating_ack: false`). Both channels are optional, run in the
//! background (the API answer waits for their keeping, below, never for their delivery, and
//! does not depend on them) and log their outcome:
//!
//! - a signed webhook, `buyer.notify_webhook_url`: the event
//!   `{"event":"feedback.recorded","api","order_id"|"listing_id","user_id","rating","message_id",
//!   "recorded_at"}`, or `"feedback.refused"` with `refused_at`, `reason` and the seller's
//!   `seller_error` when it sent one, signed with `buyer.notify_webhook_secret` exactly like the
//!   seller platform webhook ([`crate::bpp::webhook`]: same headers, same HMAC,
//!   `Idempotency-Key: <bap_id>|<message_id>`, `|refused` after it for a refusal), retried on
//!   transport errors, 5xx and 429 within a bounded budget, at most `buyer.notify_concurrency`
//!   requests in flight, an attempt waiting within the budget;
//! - an email through a local SMTP relay, `buyer.notify_smtp` (plain SMTP: no TLS, no auth), from
//!   `buyer.notify_email_from` to `buyer.notify_email_to`; at most `buyer.notify_concurrency`
//!   sessions at once, an email waiting up to a minute for one.
//!
//! Each notification is kept in the store, per channel ([`Pending`]), before the API answers
//! (a refusal: before the `/on_rating` is ACKed), and removed once delivered; once given up it
//! is kept among the given-up ones for `buyer.notify_given_up_days`, where operators can list
//! it and send it again ([`super::notices`]). A failed round is due again after a
//! doubling wait (`buyer.notify_retry_after_ms`, at most an hour) until
//! `buyer.notify_retry_hours` after the first; [`sweep`] sends what falls due, what a stopped
//! process left included. Instances sharing Redis take each in turn with an expiring claim.

use std::time::Duration;

use actix_web::web;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

use crate::bpp::webhook::{excerpt, idempotency_key, post_signed, slot_within};
use crate::http::AppState;
use crate::http::metrics::NoticeRound;
use crate::protocol::NetworkError;
use crate::store::{CallbackRecord, FeedbackApi, FeedbackSent};

/// The event of a recorded feedback.
pub const RECORDED: &str = "feedback.recorded";
/// The event of a refused feedback.
pub const REFUSED: &str = "feedback.refused";
/// Webhook attempts at most.
const WEBHOOK_ATTEMPTS: u32 = 4;
/// An email waits this long at most for a free SMTP session (`buyer.notify_concurrency`).
const EMAIL_SLOT_WAIT: Duration = Duration::from_secs(60);
/// All webhook attempts fit in this.
const WEBHOOK_BUDGET: Duration = Duration::from_secs(20);
/// Each SMTP step (connect, one command and its reply) fits in this.
const SMTP_STEP: Duration = Duration::from_secs(10);
/// Longest SMTP reply line read.
const MAX_REPLY_LINE: usize = 4096;

/// The notifications that may be in flight at once, per channel (`buyer.notify_concurrency`),
/// and the kept ones this process is sending now (so its sweep does not start them twice).
pub struct Slots {
    webhook: tokio::sync::Semaphore,
    email: tokio::sync::Semaphore,
    sending: crate::http::Holds<()>,
    /// The rounds of attempts under way, which a graceful stop waits for.
    pub rounds: crate::http::InFlight,
}

impl Slots {
    /// `n` for each channel.
    pub fn new(n: usize) -> Self {
        Self {
            webhook: tokio::sync::Semaphore::new(n),
            email: tokio::sync::Semaphore::new(n),
            sending: Default::default(),
            rounds: Default::default(),
        }
    }
}

/// A free slot of `slots`, waited for up to `wait`; Err says what ran out.
async fn slot<'a>(
    slots: &'a tokio::sync::Semaphore,
    wait: Duration,
    channel: &str,
) -> Result<tokio::sync::SemaphorePermit<'a>, String> {
    slot_within(slots, wait, |_| {}).await.ok_or_else(|| {
        format!(
            "no free {channel} slot within {} ms (buyer.notify_concurrency in flight)",
            wait.as_millis()
        )
    })
}

/// What the seller made of the feedback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Outcome {
    /// It ACKed the /rating: `feedback.recorded`.
    Recorded,
    /// Its /on_rating refused the rating (an error block, or `rating_ack: false`):
    /// `feedback.refused`.
    Refused {
        /// The error block, when the seller sent one.
        error: Option<NetworkError>,
        /// Why, as users read it.
        reason: String,
    },
}

/// One notification: a v2 feedback and what the seller made of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// The API.
    pub api: FeedbackApi,
    /// The order or listing id.
    pub id: String,
    /// The user who gave it.
    pub user_id: String,
    /// The rating as given (`STARS4`, `Positive`, ...).
    pub rating: String,
    /// The /rating's message_id.
    pub message_id: String,
    /// When it was recorded, or refused (ONDC timestamp).
    pub at: String,
    /// Recorded or refused.
    pub outcome: Outcome,
}

impl Notice {
    /// The refusal `cb` carries of the feedback `sent`; None when `cb` refuses nothing, or when
    /// `sent` predates the keeping of its API and rating.
    pub fn refusal(sent: &FeedbackSent, cb: &CallbackRecord) -> Option<Self> {
        let reason = match (&cb.error, cb.declined_without_error()) {
            (Some(e), _) => format!(
                "the seller refused the rating: {} {}",
                e.code,
                e.message.as_deref().unwrap_or("(no message)")
            ),
            (None, Some(declined)) => declined.to_owned(),
            (None, None) => return None,
        };
        Some(Self {
            api: sent.api?,
            id: sent.order_id.clone(),
            user_id: sent.user_id.clone(),
            rating: sent.rating.clone()?,
            message_id: sent.context.message_id.clone(),
            at: cb.received_at.clone(),
            outcome: Outcome::Refused {
                error: cb.error.clone(),
                reason,
            },
        })
    }

    /// The event's name.
    pub fn event(&self) -> &'static str {
        match self.outcome {
            Outcome::Recorded => RECORDED,
            Outcome::Refused { .. } => REFUSED,
        }
    }

    /// The webhook's `Idempotency-Key`: `<bap_id>|<message_id>` for the recording (as the
    /// seller platform's webhook keys a rating), with `|refused` after it for the refusal.
    fn idempotency_key(&self, bap_id: &str) -> String {
        match self.outcome {
            Outcome::Recorded => idempotency_key(bap_id, &self.message_id),
            Outcome::Refused { .. } => {
                idempotency_key(bap_id, &format!("{}|refused", self.message_id))
            }
        }
    }
}

/// The webhook body.
pub fn event_body(n: &Notice) -> Vec<u8> {
    serde_json::to_vec(&event(n)).expect("event serialises")
}

/// The event, as the webhook body carries it.
fn event(n: &Notice) -> serde_json::Value {
    let mut v = json!({
        "event": n.event(),
        "api": n.api.name(),
        "user_id": n.user_id,
        "rating": n.rating,
        "message_id": n.message_id,
    });
    v[n.api.id_key()] = json!(n.id);
    match &n.outcome {
        Outcome::Recorded => v["recorded_at"] = json!(n.at),
        Outcome::Refused { error, reason } => {
            v["refused_at"] = json!(n.at);
            v["reason"] = json!(reason);
            if let Some(e) = error {
                v["seller_error"] = json!(e);
            }
        }
    }
    v
}

/// Keeps the configured notifications of a recorded feedback, then sends them in the
/// background ([`notify`]). A feedback whose refusal was stored before the seller's ACK was
/// processed here is not announced as recorded: its refusal went out instead
/// ([`feedback_refused`]).
pub async fn feedback_recorded(state: &web::Data<AppState>, n: Notice) {
    let b = &state.settings.buyer;
    if b.notify_webhook_url.is_empty() && b.notify_smtp.is_empty() {
        return;
    }
    match state.store.get_callback(&n.message_id).await {
        Ok(Some(cb)) if cb.refused() => {
            tracing::info!(
                api = n.api.name(), message_id = %n.message_id,
                "feedback refused before its ACK was processed: only the refusal is notified"
            );
            return;
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(
            error = %e, message_id = %n.message_id,
            "could not read the feedback's callback; notified as recorded"
        ),
    }
    notify(state, n).await;
}

/// Keeps the configured notifications of the refusal `cb` carries of the feedback `sent`, if it
/// refuses it, then sends them in the background ([`notify`]).
pub async fn feedback_refused(
    state: &web::Data<AppState>,
    sent: &FeedbackSent,
    cb: &CallbackRecord,
) {
    if !cb.refused() {
        return;
    }
    match Notice::refusal(sent, cb) {
        Some(n) => notify(state, n).await,
        None => tracing::warn!(
            message_id = %sent.context.message_id,
            "refused feedback sent before its API was recorded: not notified"
        ),
    }
}

/// A notification channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// `buyer.notify_webhook_url`.
    Webhook,
    /// `buyer.notify_smtp`.
    Email,
}

impl Channel {
    /// Both, in their order.
    pub const ALL: [Channel; 2] = [Self::Webhook, Self::Email];

    /// Its name in keys, logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Email => "email",
        }
    }
}

/// A notification not yet delivered on one channel, as the store keeps it until it is
/// delivered or given up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    /// What to tell.
    pub notice: Notice,
    /// Where.
    pub channel: Channel,
    /// When its next round of attempts is due (Unix ms).
    pub due_ms: i64,
    /// When it was first due (Unix ms): it is given up `buyer.notify_retry_hours` after.
    pub since_ms: i64,
    /// The rounds that failed so far.
    pub rounds: u32,
    /// Why the last one failed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_error: Option<String>,
    /// When it was given up (Unix ms), once it is.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub given_up_ms: Option<i64>,
}

impl Pending {
    /// Its key in the store: `{message_id}|{event}|{channel}`.
    pub fn key(&self) -> String {
        format!(
            "{}|{}|{}",
            self.notice.message_id,
            self.notice.event(),
            self.channel.name()
        )
    }
}

/// How long one instance holds a kept notification it sends (Redis): longer than a round of
/// attempts can take (a webhook's 20 s; an email's minute for a slot and six SMTP steps).
const LEASE: Duration = Duration::from_secs(180);
/// The sweep for due notifications runs this often at most (more often when
/// `buyer.notify_retry_after_ms` is shorter).
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Due notifications started per sweep, at most.
const SWEEP_BATCH: usize = 256;
/// How long a graceful stop waits for the rounds under way: a webhook's budget, and a little.
pub const ROUND_DRAIN: Duration = Duration::from_secs(21);
/// The longest wait between two rounds.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Why a round of attempts failed, and whether another round may succeed.
#[derive(Debug)]
struct Failure {
    error: String,
    permanent: bool,
}

impl Failure {
    fn transient(error: String) -> Self {
        Self {
            error,
            permanent: false,
        }
    }
}

/// Keeps `n` in the store for each configured channel (the channels' writes at once) before it
/// returns, so that the caller answers only once it is kept, then sends it there in the
/// background; what is not delivered is tried again by [`sweep`], in this process or, after a
/// restart or on another instance sharing Redis, in another. One the store could not keep is
/// sent once all the same.
async fn notify(state: &web::Data<AppState>, n: Notice) {
    let b = &state.settings.buyer;
    let now = state.clock.now().timestamp_millis();
    let channels = [
        (!b.notify_webhook_url.is_empty()).then_some(Channel::Webhook),
        (!b.notify_smtp.is_empty()).then_some(Channel::Email),
    ];
    let pending: Vec<Pending> = channels
        .into_iter()
        .flatten()
        .map(|channel| Pending {
            notice: n.clone(),
            channel,
            due_ms: now,
            since_ms: now,
            rounds: 0,
            last_error: None,
            given_up_ms: None,
        })
        .collect();
    let keeping = pending.iter().map(|p| {
        let bytes = serde_json::to_vec(p).expect("a notification serialises");
        async move { state.store.put_notice(&p.key(), bytes, p.due_ms).await }
    });
    let kept = futures_util::future::join_all(keeping).await;
    for (p, kept) in pending.into_iter().zip(kept) {
        let key = p.key();
        let unkept = match kept {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(
                    error = %e, key,
                    "could not keep the notification: sent once, not tried again later"
                );
                Some(p)
            }
        };
        start_round(state, key, unkept);
    }
}

/// [`send_kept`] in a task of its own, on the runtime that outlives the HTTP workers (a
/// worker's ends with the server): a graceful stop waits for the rounds under way.
fn start_round(state: &web::Data<AppState>, key: String, unkept: Option<Pending>) {
    let (state, background) = (state.clone(), state.background.clone());
    background.spawn(async move { send_kept(&state, &key, unkept).await });
}

/// One round of attempts for the notification `key`, unless this process or another instance
/// is sending it, or it is not due: the one the store keeps, read once claimed (another
/// instance may have sent or moved it since it was listed), or `unkept`, one the store could
/// not keep (no other instance nor sweep knows of it: no claim to take).
async fn send_kept(state: &AppState, key: &str, unkept: Option<Pending>) {
    let Ok(_sending) = state.notify_slots.sending.take(key.to_owned(), ()) else {
        return;
    };
    if let Some(p) = unkept {
        let _under_way = state.notify_slots.rounds.start();
        let outcome = round(state, &p).await;
        settle(state, key, p, outcome).await;
        return;
    }
    match state.store.claim_notice(key, LEASE).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(error = %e, key, "could not claim a kept notification; left for later");
            return;
        }
    }
    let pending = read_kept(state, key).await;
    if let Some(p) = pending.filter(|p| p.due_ms <= state.clock.now().timestamp_millis()) {
        let _under_way = state.notify_slots.rounds.start();
        let outcome = round(state, &p).await;
        settle(state, key, p, outcome).await;
    }
    if let Err(e) = state.store.release_notice(key).await {
        tracing::warn!(error = %e, key, "could not release a kept notification's claim");
    }
}

/// The kept notification `key`, read under its claim; None when it is gone (its due-time
/// entry, which a process stopped while keeping it may have left, is removed) or unreadable
/// (removed).
async fn read_kept(state: &AppState, key: &str) -> Option<Pending> {
    let remove = |why: &'static str| async move {
        if let Err(e) = state.store.remove_notice(key).await {
            tracing::warn!(error = %e, key, why, "could not remove a kept notification");
        }
    };
    match state.store.get_notice(key).await {
        Ok(Some(bytes)) => match serde_json::from_slice(&bytes) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!(error = %e, key, "a kept notification cannot be read; removed");
                remove("unreadable").await;
                None
            }
        },
        Ok(None) => {
            // Kept under its claim, so not being kept now: its entry is all that is left.
            remove("gone").await;
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, key, "could not read a kept notification; left for later");
            None
        }
    }
}

/// One round of attempts on `p`'s channel: a webhook's retries within its budget, or one email.
async fn round(state: &AppState, p: &Pending) -> Result<String, Failure> {
    let b = &state.settings.buyer;
    match p.channel {
        Channel::Webhook if b.notify_webhook_url.is_empty() => Err(Failure {
            error: "buyer.notify_webhook_url is no longer set".into(),
            permanent: true,
        }),
        Channel::Email if b.notify_smtp.is_empty() => Err(Failure {
            error: "buyer.notify_smtp is no longer set".into(),
            permanent: true,
        }),
        Channel::Webhook => send_webhook(state, &p.notice)
            .await
            .map(|attempts| format!("{attempts} attempts")),
        Channel::Email => {
            let (subject, text) = email_text(&p.notice);
            let _slot = slot(&state.notify_slots.email, EMAIL_SLOT_WAIT, "SMTP")
                .await
                .map_err(Failure::transient)?;
            send_mail(
                &b.notify_smtp,
                &b.notify_email_from,
                &b.notify_email_to,
                &subject,
                &text,
            )
            .await
            .map(|()| "sent".to_owned())
        }
    }
}

/// Removes `p` once delivered or given up, else keeps it due again after a backoff.
async fn settle(state: &AppState, key: &str, mut p: Pending, outcome: Result<String, Failure>) {
    let b = &state.settings.buyer;
    let n = &p.notice;
    let (api, event, channel) = (n.api.name(), n.event(), p.channel.name());
    let now = state.clock.now().timestamp_millis();
    let horizon = i64::from(b.notify_retry_hours) * 3_600_000;
    let kind = p.channel;
    let metrics = |ended| state.metrics.notification_round(kind, ended);
    let done = match outcome {
        Ok(how) => {
            metrics(NoticeRound::Delivered);
            tracing::info!(
                api, event, channel, message_id = %n.message_id, rounds = p.rounds + 1, how,
                "feedback notification delivered"
            );
            true
        }
        Err(f) if f.permanent || now - p.since_ms >= horizon => {
            metrics(NoticeRound::GivenUp);
            tracing::warn!(
                api, event, channel, message_id = %n.message_id, rounds = p.rounds + 1,
                error = %f.error, "feedback notification given up"
            );
            if b.notify_given_up_days == 0 {
                true
            } else {
                p.rounds += 1;
                p.last_error = Some(f.error);
                p.given_up_ms = Some(now);
                let entry = format!("{:013}|{key}", now.max(0));
                let bytes = serde_json::to_vec(&p).expect("a notification serialises");
                if let Err(e) = state.store.give_up_notice(key, &entry, bytes).await {
                    tracing::warn!(
                        error = %e, key,
                        "could not keep a notification given up; it may be sent again"
                    );
                }
                false
            }
        }
        Err(f) => {
            metrics(NoticeRound::Retry);
            p.rounds += 1;
            let wait = retry_wait(b.notify_retry_after_ms, p.rounds);
            p.due_ms = now + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2);
            tracing::warn!(
                api, event, channel, message_id = %n.message_id, rounds = p.rounds,
                error = %f.error, retry_in_ms = wait.as_millis() as u64,
                "feedback notification failed; kept to try again"
            );
            p.last_error = Some(f.error);
            let bytes = serde_json::to_vec(&p).expect("a notification serialises");
            if let Err(e) = state.store.put_notice(key, bytes, p.due_ms).await {
                tracing::warn!(error = %e, key, "could not keep the notification for a retry");
            }
            false
        }
    };
    if done && let Err(e) = state.store.remove_notice(key).await {
        tracing::warn!(error = %e, key, "could not remove a settled notification; it may be sent again");
    }
}

/// The wait before the round after `rounds` failed ones: `after_ms`, doubled for each failed
/// round after the first, at most [`MAX_RETRY_AFTER`].
fn retry_wait(after_ms: u64, rounds: u32) -> Duration {
    Duration::from_millis(after_ms)
        .saturating_mul(1 << rounds.saturating_sub(1).min(16))
        .min(MAX_RETRY_AFTER)
}

/// When the kept notification `bytes` is due (Unix ms); None when it cannot be read.
fn due_of(bytes: &[u8]) -> Option<i64> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Due {
        due_ms: i64,
    }
    serde_json::from_slice::<Due>(bytes).ok().map(|d| d.due_ms)
}

/// Why a given-up notification was not sent again.
#[derive(Debug, thiserror::Error)]
pub enum SendAgainError {
    /// Not given up (never, forgotten, or sent again already).
    #[error("no such notification given up")]
    NotFound,
    /// Its channel is not configured now.
    #[error("the notification's channel is not configured: {0} is not set")]
    NotConfigured(&'static str),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Sends the given-up notification `entry` again: kept anew in its place, as if first due now
/// (its rounds and `buyer.notify_retry_hours` start again), with a round of attempts started
/// at once. The notification as now kept.
pub async fn send_again(
    state: &web::Data<AppState>,
    entry: &str,
) -> Result<Pending, SendAgainError> {
    let bytes = state
        .store
        .get_given_up(entry)
        .await?
        .ok_or(SendAgainError::NotFound)?;
    let given_up: Pending = serde_json::from_slice(&bytes)
        .map_err(|e| crate::store::StoreError::Corrupt(format!("given_up {entry}: {e}")))?;
    let b = &state.settings.buyer;
    match given_up.channel {
        Channel::Webhook if b.notify_webhook_url.is_empty() => {
            return Err(SendAgainError::NotConfigured("buyer.notify_webhook_url"));
        }
        Channel::Email if b.notify_smtp.is_empty() => {
            return Err(SendAgainError::NotConfigured("buyer.notify_smtp"));
        }
        _ => {}
    }
    let now = state.clock.now().timestamp_millis();
    let p = Pending {
        due_ms: now,
        since_ms: now,
        rounds: 0,
        last_error: None,
        given_up_ms: None,
        ..given_up
    };
    let key = p.key();
    let bytes = serde_json::to_vec(&p).expect("a notification serialises");
    if !state.store.revive_notice(entry, &key, bytes, now).await? {
        return Err(SendAgainError::NotFound);
    }
    tracing::info!(
        api = p.notice.api.name(), event = p.notice.event(), channel = p.channel.name(),
        message_id = %p.notice.message_id, "feedback notification given up is sent again"
    );
    start_round(state, key, None);
    Ok(p)
}

/// A notification as the internal API shows it ([`super::notices`]): `id` its key (kept) or
/// entry (given up), the `event` as the webhook body carries it (the email says the same), and
/// its history: when it is due next, or when it was given up.
pub fn view(id: Option<&str>, p: &Pending) -> serde_json::Value {
    let at = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(crate::clock::ondc_timestamp)
            .unwrap_or_default()
    };
    let mut v = json!({
        "channel": p.channel.name(),
        "event": event(&p.notice),
        "firstDueAt": at(p.since_ms),
        "rounds": p.rounds,
    });
    if let Some(id) = id {
        v["id"] = json!(id);
    }
    match p.given_up_ms {
        Some(ms) => v["givenUpAt"] = json!(at(ms)),
        None => v["dueAt"] = json!(at(p.due_ms)),
    }
    if let Some(e) = &p.last_error {
        v["lastError"] = json!(e);
    }
    v
}

/// How many given-up notifications one sweep forgets at most.
const FORGET_BATCH: usize = 256;

/// Forgets the notifications given up more than `buyer.notify_given_up_days` ago (all of them,
/// set to 0), and counts those kept.
async fn forget_given_up(state: &AppState, now_ms: i64) {
    let days = i64::from(state.settings.buyer.notify_given_up_days);
    match state
        .store
        .forget_given_up(now_ms - days * 86_400_000, FORGET_BATCH)
        .await
    {
        Ok((forgotten, kept)) => {
            if forgotten > 0 {
                tracing::info!(
                    forgotten,
                    "given-up notifications past their days forgotten"
                );
            }
            state.metrics.set_notifications_given_up(kept);
        }
        Err(e) => tracing::warn!(error = %e, "could not forget given-up notifications"),
    }
}

/// Sends the kept notifications as they fall due, this process's and (Redis) those of any
/// instance that stopped: first at start-up, then every few seconds, each in its own task; and
/// forgets those given up past `buyer.notify_given_up_days`.
pub async fn sweep(state: web::Data<AppState>) {
    let every =
        SWEEP_EVERY.min(Duration::from_millis(state.settings.buyer.notify_retry_after_ms) / 2);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = state.clock.now().timestamp_millis();
        forget_given_up(&state, now).await;
        let keys = match state.store.due_notices(now, SWEEP_BATCH, due_of).await {
            Ok((keys, kept)) => {
                state.metrics.set_notifications_kept(kept);
                keys
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not look for notifications to send");
                continue;
            }
        };
        for key in keys {
            start_round(&state, key, None);
        }
    }
}

/// POSTs the event with retries; Ok: the attempts it took.
async fn send_webhook(state: &AppState, n: &Notice) -> Result<u32, Failure> {
    let b = &state.settings.buyer;
    let body = event_body(n);
    let key = n.idempotency_key(&state.settings.identity.subscriber_id);
    let deadline = Instant::now() + WEBHOOK_BUDGET;
    let mut delay = Duration::from_millis(200);
    let mut attempts = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(10) {
            return Err(Failure::transient(format!(
                "no answer within {} s",
                WEBHOOK_BUDGET.as_secs()
            )));
        }
        let _slot = slot(&state.notify_slots.webhook, left, "webhook")
            .await
            .map_err(Failure::transient)?;
        let left = deadline.saturating_duration_since(Instant::now());
        attempts += 1;
        let outcome = timeout(
            left,
            post_signed(
                &b.notify_webhook_url,
                &b.notify_webhook_secret,
                state.clock.unix(),
                &body,
                &key,
                left,
            ),
        )
        .await;
        let (error, retry_after) = match outcome {
            Err(_) => ("out of time".to_owned(), None),
            Ok(Err(e)) => (e, None),
            Ok(Ok(a)) if (200..300).contains(&a.status) => return Ok(attempts),
            Ok(Ok(a)) if a.status >= 500 || a.status == 429 => (
                format!("HTTP {}: {}", a.status, excerpt(&a.body)),
                a.retry_after,
            ),
            Ok(Ok(a)) => {
                // Another answer (a 4xx): the receiver refuses this event, now and later.
                return Err(Failure {
                    error: format!("HTTP {}: {}", a.status, excerpt(&a.body)),
                    permanent: true,
                });
            }
        };
        let wait = retry_after.unwrap_or(delay);
        if attempts >= WEBHOOK_ATTEMPTS || Instant::now() + wait >= deadline {
            return Err(Failure::transient(format!(
                "{error} (after {attempts} attempts)"
            )));
        }
        // The slot is free while it waits to retry.
        drop(_slot);
        tokio::time::sleep(wait).await;
        delay = (delay * 2).min(Duration::from_secs(4));
    }
}

/// The email's subject and body.
pub fn email_text(n: &Notice) -> (String, String) {
    let what = match n.api {
        FeedbackApi::Order => "order",
        FeedbackApi::Listing => "listing",
    };
    let fields = format!(
        "API: {}\n{}: {}\nUser: {}\nRating: {}\nMessage id: {}\n",
        n.api.name(),
        n.api.id_key(),
        n.id,
        n.user_id,
        n.rating,
        n.message_id,
    );
    match &n.outcome {
        Outcome::Recorded => (
            format!("Feedback recorded: {what} {} rated {}", n.id, n.rating),
            format!(
                "Feedback was recorded and sent to the seller.\n\n{fields}Recorded at: {}\n",
                n.at
            ),
        ),
        Outcome::Refused { reason, .. } => (
            format!("Feedback refused: {what} {} rated {}", n.id, n.rating),
            format!(
                "The seller refused feedback it was sent.\n\n{fields}Refused at: {}\nReason: {reason}\n",
                n.at
            ),
        ),
    }
}

/// Header values and addresses lose CR and LF (no header injection).
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `text` as a DATA payload: CRLF line ends, lines starting with '.' dot-stuffed.
fn dot_stuffed(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

/// The full message (headers, blank line, dot-stuffed body) followed by the `.` line.
fn message(from: &str, to: &str, subject: &str, text: &str) -> String {
    let mut m = format!(
        "From: <{}>\r\nTo: <{}>\r\nSubject: {}\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        one_line(from),
        one_line(to),
        one_line(subject)
    );
    m.push_str(&dot_stuffed(text.trim_end_matches('\n')));
    m.push_str(".\r\n");
    m
}

struct Smtp {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    /// The last step ended with the server's refusal (a reply other than the one wanted): the
    /// session is still open, to be closed with QUIT.
    refused: bool,
}

impl Smtp {
    /// Reads one (possibly multi-line) reply; Err unless its code is `want`, permanent when it
    /// is a 5yz ("permanent negative completion", RFC 5321 section 4.2.1: the same mail would
    /// be refused again).
    async fn expect(&mut self, want: u16, after: &str) -> Result<(), Failure> {
        self.reply(want, after)
            .await
            .map_err(|(error, code)| Failure {
                error,
                permanent: code.is_some_and(|c| (500..600).contains(&c)),
            })
    }

    /// [`Smtp::expect`], the error with the reply's code when there was one.
    async fn reply(&mut self, want: u16, after: &str) -> Result<(), (String, Option<u16>)> {
        self.refused = false;
        let mut all = String::new();
        loop {
            let mut line = Vec::new();
            let n = timeout(SMTP_STEP, async {
                let mut limited = (&mut self.reader).take(MAX_REPLY_LINE as u64);
                limited.read_until(b'\n', &mut line).await
            })
            .await
            .map_err(|_| {
                let error = format!("no reply to {after} within {} s", SMTP_STEP.as_secs());
                (error, None)
            })?
            .map_err(|e| (format!("reading the reply to {after}: {e}"), None))?;
            if n == 0 {
                let error = format!("connection closed before the reply to {after}");
                return Err((error, None));
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end();
            all.push_str(text);
            let code = text.get(..3).and_then(|c| c.parse::<u16>().ok());
            let Some(code) = code else {
                return Err((format!("malformed reply to {after}: {text:?}"), None));
            };
            if text.as_bytes().get(3) == Some(&b'-') {
                all.push(' ');
                continue;
            }
            self.refused = code != want;
            return if code == want {
                Ok(())
            } else {
                Err((format!("{after}: expected {want}, got {all:?}"), Some(code)))
            };
        }
    }

    async fn send(&mut self, data: &str, what: &str) -> Result<(), Failure> {
        self.refused = false;
        timeout(SMTP_STEP, self.writer.write_all(data.as_bytes()))
            .await
            .map_err(|_| format!("sending {what} took over {} s", SMTP_STEP.as_secs()))
            .and_then(|sent| sent.map_err(|e| format!("sending {what}: {e}")))
            .map_err(Failure::transient)
    }

    async fn command(&mut self, line: &str, want: u16) -> Result<(), Failure> {
        let verb = line.split([' ', ':']).next().unwrap_or(line).to_owned();
        self.send(&format!("{line}\r\n"), &verb).await?;
        self.expect(want, &verb).await
    }
}

/// Sends one plain-text email through the SMTP server at `server` (`host:port`): no TLS, no
/// auth, every reply code checked, every step bounded. A 5yz reply fails it for good.
async fn send_mail(
    server: &str,
    from: &str,
    to: &str,
    subject: &str,
    text: &str,
) -> Result<(), Failure> {
    let stream = timeout(SMTP_STEP, TcpStream::connect(server))
        .await
        .map_err(|_| format!("connecting to {server} took over {} s", SMTP_STEP.as_secs()))
        .and_then(|c| c.map_err(|e| format!("connecting to {server}: {e}")))
        .map_err(Failure::transient)?;
    let (r, w) = stream.into_split();
    let mut s = Smtp {
        reader: BufReader::new(r),
        writer: w,
        refused: false,
    };
    let sent = async {
        s.expect(220, "the greeting").await?;
        if s.command("EHLO ondc-rating", 250).await.is_err() {
            s.command("HELO ondc-rating", 250).await?;
        }
        s.command(&format!("MAIL FROM:<{}>", one_line(from)), 250)
            .await?;
        s.command(&format!("RCPT TO:<{}>", one_line(to)), 250)
            .await?;
        s.command("DATA", 354).await?;
        s.send(&message(from, to, subject, text), "the message")
            .await?;
        s.expect(250, "the message").await
    }
    .await;
    // The session ends with QUIT once the message is taken, and after a refusal too (RFC 5321
    // section 4.1.1.10), not after a silence or a broken connection. A failed QUIT changes
    // nothing: the message was taken, or refused.
    if (sent.is_ok() || s.refused)
        && let Err(e) = s.command("QUIT", 221).await
    {
        tracing::debug!(error = %e.error, "SMTP QUIT");
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_starting_with_a_dot_are_stuffed() {
        assert_eq!(dot_stuffed("a\n.b\n..c\r\nd"), "a\r\n..b\r\n...c\r\nd\r\n");
        let m = message("a@x.test", "b@y.test", "Hi\r\nBcc: c@z.test", ".\nok");
        assert!(m.contains("Subject: Hi  Bcc: c@z.test\r\n"), "{m}");
        assert!(m.ends_with("\r\n\r\n..\r\nok\r\n.\r\n"), "{m}");
    }

    #[test]
    fn the_event_names_its_api_and_id() {
        let n = Notice {
            api: FeedbackApi::Listing,
            id: "L-1".into(),
            user_id: "alice".into(),
            rating: "Positive".into(),
            message_id: "m-1".into(),
            at: "2026-01-01T10:00:00.000Z".into(),
            outcome: Outcome::Recorded,
        };
        let v: serde_json::Value = serde_json::from_slice(&event_body(&n)).unwrap();
        assert_eq!(v["event"], "feedback.recorded");
        assert_eq!(v["api"], "listing_feedback");
        assert_eq!(v["listing_id"], "L-1");
        assert_eq!(v["recorded_at"], "2026-01-01T10:00:00.000Z");
        assert!(v.get("order_id").is_none());
        assert!(v.get("reason").is_none());
        assert_eq!(n.idempotency_key("bap.test"), "bap.test|m-1");
    }

    #[test]
    fn a_refusal_is_read_from_the_callback() {
        // As stored: the API under its notification name.
        let sent: FeedbackSent = serde_json::from_value(serde_json::json!({
            "userId": "alice", "orderId": "O-1", "api": "order_feedback", "rating": "STARS2",
            "context": crate::perf::sample_context(),
        }))
        .unwrap();
        let callback =
            |message: serde_json::Value, error: Option<serde_json::Value>| CallbackRecord {
                context: sent.context.clone(),
                message: serde_json::from_value(message).unwrap(),
                error: error.map(|e| serde_json::from_value(e).unwrap()),
                received_at: "2026-01-01T10:00:01.000Z".into(),
            };
        let accepted = callback(serde_json::json!({"rating_ack": true}), None);
        assert!(Notice::refusal(&sent, &accepted).is_none());

        let declined = callback(serde_json::json!({"rating_ack": false}), None);
        let n = Notice::refusal(&sent, &declined).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&event_body(&n)).unwrap();
        assert_eq!(v["event"], "feedback.refused");
        assert_eq!(
            (&v["order_id"], &v["rating"]),
            (&json!("O-1"), &json!("STARS2"))
        );
        assert_eq!(v["refused_at"], "2026-01-01T10:00:01.000Z");
        assert_eq!(v["reason"], CallbackRecord::DECLINED);
        assert!(v.get("seller_error").is_none());
        let key = n.idempotency_key("bap.test");
        assert_eq!(key, format!("bap.test|{}|refused", sent.context.message_id));

        let error = json!({"type": "DOMAIN-ERROR", "code": "30018", "message": "Order not found"});
        let refused = callback(serde_json::json!({"rating_ack": true}), Some(error.clone()));
        let v: serde_json::Value =
            serde_json::from_slice(&event_body(&Notice::refusal(&sent, &refused).unwrap()))
                .unwrap();
        assert_eq!(v["seller_error"], error);
        assert_eq!(
            v["reason"],
            "the seller refused the rating: 30018 Order not found"
        );
        let (subject, text) = email_text(&Notice::refusal(&sent, &refused).unwrap());
        assert_eq!(subject, "Feedback refused: order O-1 rated STARS2");
        assert!(
            text.contains("Reason: the seller refused the rating: 30018"),
            "{text}"
        );

        // Kept per channel, under the event's name: the two events of one feedback apart.
        let kept = Pending {
            notice: Notice::refusal(&sent, &refused).unwrap(),
            channel: Channel::Email,
            due_ms: 1,
            since_ms: 1,
            rounds: 0,
            last_error: None,
            given_up_ms: None,
        };
        let key = format!("{}|feedback.refused|email", sent.context.message_id);
        assert_eq!(kept.key(), key);
        let bytes = serde_json::to_vec(&kept).unwrap();
        let read: Pending = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(read, kept);
        // What the embedded store's sweep reads of it.
        assert_eq!(due_of(&bytes), Some(1));
        assert_eq!(due_of(b"{\"notice\":1}"), None);

        // A record from before the API was kept: nothing to name the event by.
        let old = FeedbackSent {
            api: None,
            ..sent.clone()
        };
        assert!(Notice::refusal(&old, &declined).is_none());
    }

    #[test]
    fn rounds_wait_twice_as_long_each_time_up_to_an_hour() {
        let waits: Vec<u128> = (1..=5).map(|r| retry_wait(30_000, r).as_millis()).collect();
        assert_eq!(waits, [30_000, 60_000, 120_000, 240_000, 480_000]);
        assert_eq!(retry_wait(30_000, 8), MAX_RETRY_AFTER);
        assert_eq!(retry_wait(3_600_000, 1000), MAX_RETRY_AFTER);
    }
}

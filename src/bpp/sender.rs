//! Sends the signed `/on_rating` for a received `/rating`: the context echoes transaction_id and
//! message_id with a strictly later timestamp; the message acknowledges the rating and carries a
//! feedback form (the seller platform's, or the configured one), or, when the rating was refused
//! for a business reason, `rating_ack: false` and the error block. Retried with backoff until the
//! exchange's ttl runs out.

use std::time::Duration;

use actix_web::web;
use serde::Serialize;
use tracing::Instrument;

use super::webhook::{self, PlatformAnswer};
use crate::clock::{ondc_timestamp, parse_timestamp};
use crate::http::AppState;
use crate::http::metrics::RetryTarget;
use crate::http::outbound::PeerAnswer;
use crate::protocol::{
    Action, Context, FeedbackForm, Form, NetworkError, OnRatingMessage, RATING_TTL_SECS,
};
use crate::store::{AnswerHolder, DeliveryStatus, ReceivedRating, StoreError, Verdict};

/// Fills `{order_id}`, `{transaction_id}` and `{message_id}`, in one pass (a value that itself
/// holds a placeholder is written as it is).
fn fill(template: &str, r: &ReceivedRating, order_id: &str) -> String {
    let values = [
        ("{order_id}", order_id),
        ("{transaction_id}", r.context.transaction_id.as_str()),
        ("{message_id}", r.context.message_id.as_str()),
    ];
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(at) = rest.find('{') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        match values.iter().find(|(p, _)| rest.starts_with(p)) {
            Some((p, v)) => {
                out.push_str(v);
                rest = &rest[p.len()..];
            }
            None => {
                out.push('{');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The id the form placeholders use for `{order_id}`: the Order rating's id, else the
/// transaction id.
fn order_id(r: &ReceivedRating) -> &str {
    r.ratings
        .iter()
        .find(|x| x.rating_category == "Order")
        .map(|x| x.id.as_str())
        .unwrap_or(&r.context.transaction_id)
}

/// The configured form for `r` (`seller.feedback_form_*`), None when no URL is configured.
pub fn template_form(state: &AppState, r: &ReceivedRating) -> Option<FeedbackForm> {
    let s = &state.settings.seller;
    (!s.feedback_form_url.is_empty()).then(|| FeedbackForm {
        form: Form {
            url: fill(&s.feedback_form_url, r, order_id(r)),
            mime_type: s.feedback_form_mime_type.clone(),
            data: Some(fill(&s.feedback_form_data, r, order_id(r))),
        },
        required: Some(s.feedback_form_required),
    })
}

/// `{"context":...,"message":...,"error":...}`, in that order.
#[derive(Serialize)]
struct OnRatingBody<'a> {
    context: ReplyContext<'a>,
    message: OnRatingMessage,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a NetworkError>,
}

/// The /on_rating's context, written as a [`Context`] is (its fields in its order), borrowed from
/// the /rating's with its own action, timestamp and ttl: nothing of the received context copied.
#[derive(Serialize)]
struct ReplyContext<'a> {
    domain: &'a str,
    country: &'a str,
    city: &'a str,
    action: &'a str,
    core_version: &'a str,
    bap_id: &'a str,
    bap_uri: &'a str,
    bpp_id: &'a str,
    bpp_uri: &'a str,
    transaction_id: &'a str,
    message_id: &'a str,
    timestamp: &'a str,
    ttl: &'a str,
}

impl<'a> ReplyContext<'a> {
    fn to(rating: &'a Context, timestamp: &'a str) -> Self {
        Self {
            domain: &rating.domain,
            country: &rating.country,
            city: &rating.city,
            action: Action::OnRating.as_str(),
            core_version: &rating.core_version,
            bap_id: &rating.bap_id,
            bap_uri: &rating.bap_uri,
            bpp_id: &rating.bpp_id,
            bpp_uri: &rating.bpp_uri,
            transaction_id: &rating.transaction_id,
            message_id: &rating.message_id,
            timestamp,
            // Always the protocol's: ONDC's checks want `PT30S` on every rating message, whatever
            // the /rating named.
            ttl: crate::protocol::RATING_TTL,
        }
    }
}

/// The /on_rating body for `r`, serialised once: with `r.error`, the error block and both acks
/// false; otherwise both acks true and `r.feedback_form`.
pub fn build_on_rating(state: &AppState, r: &ReceivedRating) -> Vec<u8> {
    on_rating_body(r, state.clock.now())
}

/// [`build_on_rating`] at a given `now`, with no application state (the serialisation itself).
pub fn on_rating_body(r: &ReceivedRating, now: chrono::DateTime<chrono::Utc>) -> Vec<u8> {
    // Strictly later than the request's timestamp, even when the buyer's clock runs ahead.
    let floor = parse_timestamp(&r.context.timestamp)
        .map(|t| t + chrono::Duration::milliseconds(1))
        .unwrap_or(now);
    let timestamp = ondc_timestamp(now.max(floor));
    let taken = r.error.is_none();
    let message = OnRatingMessage {
        order_id: None,
        feedback_ack: Some(taken),
        rating_ack: Some(taken),
        feedback_form: if taken { r.feedback_form.clone() } else { None },
    };
    crate::protocol::to_json(&OnRatingBody {
        context: ReplyContext::to(&r.context, &timestamp),
        message,
        error: r.error.as_ref(),
    })
    .expect("on_rating serialises")
}

/// Takes the seller platform's answer (its webhook's, or its own call's) into `r`: a form or a
/// refusal replaces what `r` holds; a plain acceptance settles a pending verdict with the
/// configured form and leaves a settled one as it is.
pub fn apply_answer(state: &AppState, r: &mut ReceivedRating, answer: PlatformAnswer) {
    match answer {
        PlatformAnswer::Accepted => {
            if r.verdict == Verdict::Pending {
                r.verdict = Verdict::Accepted;
            }
            if r.verdict == Verdict::Accepted && r.feedback_form.is_none() {
                r.feedback_form = template_form(state, r);
            }
        }
        PlatformAnswer::Form { url, data } => {
            let s = &state.settings.seller;
            let data = data.unwrap_or_else(|| fill(&s.feedback_form_data, r, order_id(r)));
            r.verdict = Verdict::Accepted;
            r.error = None;
            r.feedback_form = Some(FeedbackForm {
                form: Form {
                    url,
                    mime_type: s.feedback_form_mime_type.clone(),
                    data: Some(data),
                },
                required: Some(s.feedback_form_required),
            });
        }
        PlatformAnswer::Refused(e) => {
            r.verdict = Verdict::Refused;
            r.error = Some(e);
            r.feedback_form = None;
        }
    }
}

/// What the receiver knows about a new /rating that the sender needs.
#[derive(Debug, Clone, Copy)]
pub struct Job {
    /// When the /rating arrived; the /on_rating is retried until the ttl after it.
    pub received: tokio::time::Instant,
    /// What is left of the /rating's own ttl (timestamp + ttl) at arrival.
    pub ttl_left: Duration,
    /// Taken up again at start after a process stopped with it owed ([`resume`]): `received`
    /// is when it was taken up and `ttl_left` what was left then. The webhook gets its whole
    /// budget (the seller platform must hear of the rating whatever the ttl), the /on_rating only
    /// what is left of the ttl.
    pub resumed: bool,
}

/// Time the /on_rating keeps after the webhook, within the request's ttl.
const ON_RATING_RESERVE: Duration = Duration::from_secs(3);

/// Starts [`process`] for a /rating just ACKed, counted as in flight until it is done.
///
/// On an HTTP worker it runs on that worker's own runtime, the thread that took the /rating:
/// handing it to the background runtime woke another thread for every rating, a tenth of the
/// seller side's CPU per round trip (docs/BENCHMARKS.md). A worker's runtime ends once a
/// graceful stop has answered every open request, dropping the tasks still on it; one cut short
/// that way goes on on the background runtime from where its record says it was (a webhook
/// not yet answered is asked again; an /on_rating being sent is sent again, which the buyer side
/// takes as a repeat), and the stop waits for it there as before.
pub fn start(state: &web::Data<AppState>, r: ReceivedRating, job: Job) {
    let owed = Owed {
        state: state.clone(),
        rating: Some(r),
        job,
        guard: Some(state.in_flight.start()),
        span: tracing::Span::current(),
        resumable: crate::store::on_worker_thread(),
    };
    spawn_here(state, owed.run());
}

/// Spawns `work` on this HTTP worker's own runtime when called on one (see [`start`]), else on
/// the background runtime.
fn spawn_here(state: &AppState, work: impl std::future::Future<Output = ()> + Send + 'static) {
    if crate::store::on_worker_thread() {
        tokio::spawn(work);
    } else {
        state.background.spawn(work);
    }
}

/// Answers a repeated /rating (`repeat`: its context, the same bap_id and message_id as one
/// received before) whose /on_rating never reached the buyer (given up: the buyer was down, or
/// the ttl passed while this adapter was stopped), or was delivered but is asked for by a new
/// send (a repeat stamped anew, not a transport retry of the same bytes): the same answer goes
/// out again, echoing the repeat's context, within the repeat's ttl (`job`). A buyer sends a
/// rating again when it never got the answer; without this its rating would stay pending. A
/// repeat of one held for the seller platform past its ttl with no answer yet opens a new window
/// for that answer ([`reopen_window`]); a repeat of one still being answered (its /on_rating on
/// its way, or held for the platform within its ttl) changes nothing. Runs after the repeat's
/// ACK; a stop before it is done leaves it to the buyer's next repeat.
pub fn answer_repeat(state: &web::Data<AppState>, repeat: Context, job: Job) {
    let task_state = state.clone();
    let answer = async move {
        let state = task_state;
        let stored = state
            .store
            .get_received(&repeat.bap_id, &repeat.message_id)
            .await;
        let mut r = match stored {
            Ok(Some(r))
                if r.on_rating == DeliveryStatus::Failed
                    || (r.on_rating == DeliveryStatus::Sent
                        && r.context.timestamp != repeat.timestamp) =>
            {
                r
            }
            Ok(Some(r)) if window_passed(&state, &r, &repeat) => {
                return reopen_window(&state, repeat).await;
            }
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the rating a repeat asks about");
                return;
            }
        };
        tracing::info!(
            was = ?r.on_rating,
            "a repeated /rating of one answered before: its /on_rating goes again"
        );
        r.context = repeat;
        r.on_rating = DeliveryStatus::Pending;
        r.settled_at = None;
        r.attempts = 0;
        r.last_error = None;
        // Marked owed with the write: a stop now leaves it to be taken up.
        if let Err(e) = state.store.reopen_received(&r).await {
            tracing::warn!(error = %e, "could not record the repeat's answer as owed");
            return;
        }
        start(&state, r, job);
    };
    spawn_here(state, answer.in_current_span());
}

/// Whether `r`, held for the seller platform's answer (`seller.on_rating = "platform"`) with its
/// verdict settled, is past its /rating's ttl with no answer, and `repeat` is the same /rating
/// stamped anew: the platform's answer would now get 410, and the buyer is asking again.
fn window_passed(state: &AppState, r: &ReceivedRating, repeat: &Context) -> bool {
    r.on_rating == DeliveryStatus::Awaiting
        && r.verdict != Verdict::Pending
        && r.context.timestamp != repeat.timestamp
        && super::receiver::ttl_left_of(&r.context, state.clock.now()).1 <= 0
}

/// Opens a new window for the seller platform's answer to a held rating whose ttl passed with
/// none ([`window_passed`]): the record takes the repeat's context, so an answer within the
/// repeat's ttl is sent, echoing it. Made under the right to answer (in this process and, with
/// Redis, among the instances): an answer being sent right now is left to finish.
async fn reopen_window(state: &AppState, repeat: Context) {
    let (bap_id, message_id) = (repeat.bap_id.clone(), repeat.message_id.clone());
    let hold = Duration::from_secs(5);
    let taken =
        super::receiver::take_answer(state, &bap_id, &message_id, hold, AnswerHolder::Repeat);
    let _held = match taken.await {
        Ok(Ok(held)) => held,
        Ok(Err(_)) => return,
        Err(e) => {
            tracing::warn!(error = %e, "could not open a new window for the platform's answer");
            return;
        }
    };
    // Read again under the claim: an answer that finished in between shows.
    let reopened = async {
        match state.store.get_received(&bap_id, &message_id).await? {
            Some(mut r) if window_passed(state, &r, &repeat) => {
                r.context = repeat;
                state.store.put_received(&r).await.map(|()| true)
            }
            _ => Ok(false),
        }
    };
    match reopened.await {
        Ok(true) => tracing::info!(
            "a repeated /rating held for the seller platform past its ttl: a new window for \
             the platform's answer"
        ),
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(error = %e, "could not open a new window for the platform's answer")
        }
    }
    if let Err(e) = state.store.release_answer(&bap_id, &message_id).await {
        tracing::warn!(error = %e, "could not release the claim of a reopened rating");
    }
}

/// A rating's processing under way: what it needs to go on elsewhere if its task is dropped.
struct Owed {
    state: web::Data<AppState>,
    /// Until the processing is done: the rating as far as it got.
    rating: Option<ReceivedRating>,
    job: Job,
    guard: Option<crate::http::InFlightGuard>,
    span: tracing::Span,
    /// Whether a drop before the end moves it to the background runtime (only from a worker's:
    /// the background runtime itself ends with the process).
    resumable: bool,
}

impl Owed {
    /// Processes the rating; done, it is dropped with nothing left to resume.
    async fn run(mut self) {
        if let Some(r) = self.rating.as_mut() {
            process(&self.state, r, self.job)
                .instrument(self.span.clone())
                .await;
        }
        self.rating = None;
    }
}

impl Drop for Owed {
    fn drop(&mut self) {
        if !self.resumable {
            return;
        }
        let Some(r) = self.rating.take() else {
            return;
        };
        let _enter = self.span.enter();
        tracing::info!("the worker stopped; the rating's processing goes on in the background");
        let resumed = Owed {
            state: self.state.clone(),
            rating: Some(r),
            job: self.job,
            guard: self.guard.take(),
            span: self.span.clone(),
            resumable: false,
        };
        self.state.background.spawn(resumed.run());
    }
}

/// Settles `r` (the seller platform's webhook when configured and the rating passed the checks),
/// records the verdict, then delivers the /on_rating. Runs after the /rating was ACKed; `r` says
/// how far it got.
async fn process(state: &web::Data<AppState>, r: &mut ReceivedRating, job: Job) {
    if r.verdict == Verdict::Pending {
        let whole = Duration::from_millis(state.settings.seller.webhook_timeout_ms);
        let budget = if job.resumed {
            whole
        } else {
            whole.min(job.ttl_left.saturating_sub(ON_RATING_RESERVE))
        };
        let handoff = webhook::hand_off(state, r, r.single, budget).await;
        if let Some(e) = &handoff.delivery.error {
            tracing::warn!(
                message_id = %r.context.message_id,
                attempts = handoff.delivery.attempts,
                error = %e,
                "seller platform webhook failed; using the configured form"
            );
        }
        r.webhook = Some(handoff.delivery);
        apply_answer(state, r, handoff.answer.unwrap_or(PlatformAnswer::Accepted));
        record_hand_off(state, r, job).await;
    }
    if r.on_rating == DeliveryStatus::Awaiting {
        // The seller platform sends it (`seller.on_rating = "platform"`); the webhook's answer
        // is what an empty answer from it sends.
        return;
    }
    let deadline = if job.resumed {
        job.received + job.ttl_left
    } else {
        job.received + Duration::from_secs(RATING_TTL_SECS as u64)
    };
    if job.resumed
        && r.on_rating == DeliveryStatus::Pending
        && tokio::time::Instant::now() >= deadline
    {
        // The buyer would refuse it as stale, as the platform's own late answers are refused.
        r.on_rating = DeliveryStatus::Failed;
        r.settled_at = Some(ondc_timestamp(state.clock.now()));
        r.last_error = Some(
            "the /rating's ttl passed while this adapter was stopped; no /on_rating sent".into(),
        );
        tracing::warn!(message_id = %r.context.message_id, "on_rating not sent: ttl passed");
    }
    deliver(state, r, deadline).await;
}

/// Takes up, on the background runtime, the work a stopped process left owed on received
/// ratings ([`crate::store::Store::take_over_owed`]), at most `seller.resume_concurrency`
/// ratings at once ([`take_up`] each); returns how many were taken. Those not yet started when
/// the server stops stay marked for the next process.
pub async fn resume(state: &web::Data<AppState>) -> Result<usize, crate::store::StoreError> {
    let keys = state.store.take_over_owed().await?;
    let count = keys.len();
    if count == 0 {
        return Ok(0);
    }
    let driver = state.clone();
    state.metrics.owed_queued(count);
    state.background.spawn(async move {
        let mut waiting = keys.len();
        for key in keys {
            // Closed when the server stops.
            let Ok(turn) = driver.taking_up.clone().acquire_owned().await else {
                break;
            };
            driver.metrics.owed_dequeued(1);
            waiting -= 1;
            let guard = driver.in_flight.start();
            let state = driver.clone();
            driver.background.spawn(async move {
                take_up(&state, &key).await;
                drop((turn, guard));
            });
        }
        // Stopping: the rest stay marked for the next process or another instance.
        driver.metrics.owed_dequeued(waiting);
    });
    Ok(count)
}

/// Takes up one received rating a stopped process left owing work, read now (work done since by
/// the platform's answer shows): a webhook hand-off that did not settle the verdict is made
/// again, with the same `Idempotency-Key` so the platform can tell the repeat, and its whole
/// budget; an /on_rating still owed is sent within what is left of its /rating's ttl (again, when
/// the stop came after it was sent: the buyer side takes it as a repeat), and recorded as failed
/// without a send once the ttl has passed.
async fn take_up(state: &web::Data<AppState>, key: &str) {
    let Some(r) = owed(state, key).await else {
        return;
    };
    // The platform's answer to a rating whose hand-off is being made again waits for it (503
    // `too_busy`), here and (Redis) on the other instances; one it is sending right now
    // settles the rating instead.
    let held = r.verdict == Verdict::Pending && r.on_rating == DeliveryStatus::Awaiting;
    let handing_off = if r.verdict == Verdict::Pending {
        match state.answering.take(key.to_owned(), AnswerHolder::HandOff) {
            Ok(hold) => Some(hold),
            Err(_) if held => return leave_to_the_answer(state, key).await,
            // Not held for the platform: its answer is refused, and this goes on.
            Err(_) => None,
        }
    } else {
        None
    };
    let mut r = if held {
        let hold = Duration::from_millis(state.settings.seller.webhook_timeout_ms)
            + Duration::from_secs(5);
        let (bap_id, message_id) = (&r.context.bap_id, &r.context.message_id);
        let what = "could not take up an owed hand-off";
        let claim = || {
            state
                .store
                .claim_answer(bap_id, message_id, hold, AnswerHolder::HandOff)
        };
        match while_away(state, what, claim).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return leave_to_the_answer(state, key).await,
            Err(e) => {
                tracing::warn!(error = %e, "{what}");
                return;
            }
        }
        // Read again under the claim: an answer that settled it before shows.
        match owed(state, key).await {
            Some(r) => r,
            None => return release(state, &r).await,
        }
    } else {
        r
    };
    state.metrics.owed_taken_up(1);
    let (_, left) = super::receiver::ttl_left_of(&r.context, state.clock.now());
    let job = Job {
        received: tokio::time::Instant::now(),
        ttl_left: Duration::from_millis(left.max(0) as u64),
        resumed: true,
    };
    let span = tracing::info_span!(
        "resumed",
        bap_id = %r.context.bap_id,
        message_id = %r.context.message_id
    );
    process(state, &mut r, job).instrument(span).await;
    if held {
        release(state, &r).await;
    }
    drop(handing_off);
}

/// The received rating under `key` when it still owes work, read while the store is away
/// ([`while_away`]). A store still failing when the process stops leaves it marked: taken up
/// again at the next start (embedded) or by another instance (Redis).
async fn owed(state: &AppState, key: &str) -> Option<ReceivedRating> {
    let what = "could not read an owed received rating";
    match while_away(state, what, || state.store.owed_received(key)).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, key, "{what}");
            None
        }
    }
}

/// Leaves a taken-up rating whose answer is being sent to that answer, which settles it.
async fn leave_to_the_answer(state: &AppState, key: &str) {
    if let Err(e) = state.store.unmark_received(key).await {
        tracing::warn!(error = %e, "could not unmark a rating the platform answers");
    }
}

/// Releases the answer claim a resumed hand-off took.
async fn release(state: &AppState, r: &ReceivedRating) {
    if let Err(e) = state
        .store
        .release_answer(&r.context.bap_id, &r.context.message_id)
        .await
    {
        tracing::warn!(error = %e, "could not release the claim of a resumed hand-off");
    }
}

/// Delivers the /on_rating owed for `r`, retrying until `deadline`, recording the outcome; one
/// already delivered or given up (a delivery resumed after its send) is only recorded.
async fn deliver(state: &AppState, r: &mut ReceivedRating, deadline: tokio::time::Instant) {
    if !matches!(r.on_rating, DeliveryStatus::Sent | DeliveryStatus::Failed) {
        send(state, r, deadline).await;
    }
    // With the embedded store the outcome goes into the writer's queue and nobody waits for its
    // commit (it counts as in flight until then, so a graceful stop waits for it); with Redis it
    // is awaited here, and retried while Redis is away.
    if let Err(guard) = state.store.queue_received(r, state.in_flight.start()) {
        record_delivery(state, r).await;
        drop(guard);
    }
}

/// Stores the webhook hand-off's outcome. For a rating held for the seller platform's answer,
/// which reads it (an empty answer sends the webhook's form or refusal), a store that is away is
/// retried ([`while_away_until`]) for as long as that answer is refused with 503 `too_busy`: a
/// second past the webhook's budget after the /rating arrived (or was taken up). Otherwise the
/// delivery record that follows at once carries it too.
async fn record_hand_off(state: &AppState, r: &ReceivedRating, job: Job) {
    let what = "could not record the webhook outcome";
    let stored = if r.on_rating == DeliveryStatus::Awaiting {
        let until = job.received
            + Duration::from_millis(state.settings.seller.webhook_timeout_ms)
            + Duration::from_secs(1);
        while_away_until(what, until, || state.store.put_received(r)).await
    } else {
        state.store.put_received(r).await
    };
    if let Err(e) = stored {
        tracing::error!(error = %e, "{what}");
    }
}

/// How long [`while_away`] goes on retrying once the process is stopping.
const STORE_AWAY_FOR: Duration = Duration::from_secs(RATING_TTL_SECS as u64);

/// Runs `op` until it succeeds or fails otherwise than with the store unavailable, retrying an
/// unavailable store with backoff (100 ms, doubling to 2 s) for as long as the process runs, and
/// once it is stopping (no more owed work is taken up) for up to [`STORE_AWAY_FOR`] from the
/// first attempt; then its last error. `what` says in the log what failed.
async fn while_away<T, F>(
    state: &AppState,
    what: &str,
    op: impl FnMut() -> F,
) -> Result<T, StoreError>
where
    F: std::future::Future<Output = Result<T, StoreError>>,
{
    let window = tokio::time::Instant::now() + STORE_AWAY_FOR;
    retry_away(what, |at| at >= window && state.taking_up.is_closed(), op).await
}

/// [`while_away`], giving up at `until` whether the process is stopping or not.
async fn while_away_until<T, F>(
    what: &str,
    until: tokio::time::Instant,
    op: impl FnMut() -> F,
) -> Result<T, StoreError>
where
    F: std::future::Future<Output = Result<T, StoreError>>,
{
    retry_away(what, |at| at >= until, op).await
}

/// Runs `op`, retrying it while it fails with the store unavailable, unless `give_up(at)` for the
/// time `at` the retry would be made. Logs the first failure, then one every 30 retries or so.
async fn retry_away<T, F>(
    what: &str,
    give_up: impl Fn(tokio::time::Instant) -> bool,
    mut op: impl FnMut() -> F,
) -> Result<T, StoreError>
where
    F: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut pause = Duration::from_millis(100);
    let mut failures = 0u32;
    loop {
        match op().await {
            Err(StoreError::Unavailable(e)) if !give_up(tokio::time::Instant::now() + pause) => {
                if failures.is_multiple_of(30) {
                    tracing::warn!(error = %e, failures, "{what}; retrying");
                }
                failures += 1;
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            done => return done,
        }
    }
}

/// Stores the outcome of `r`'s delivery, retrying while the store is away ([`while_away`]).
/// Nothing else writes a rating whose /on_rating this adapter is sending, so a late write
/// overwrites nothing newer; and a write given up (the process stopped first) leaves the rating
/// marked owed with its delivery pending, for the instance that takes it over to send again.
async fn record_delivery(state: &AppState, r: &ReceivedRating) {
    let what = "could not record the /on_rating delivery";
    if let Err(e) = while_away(state, what, || state.store.put_received(r)).await {
        tracing::error!(error = %e, "{what}");
    }
}

/// Sends the /on_rating owed for `r`, retrying until `deadline`; `r` says how it went
/// (`on_rating` sent or failed, `settled_at`, `attempts`, `last_error`), not yet recorded.
pub async fn send(state: &AppState, r: &mut ReceivedRating, deadline: tokio::time::Instant) {
    r.on_rating = DeliveryStatus::Pending;
    r.settled_at = None;
    let body = web::Bytes::from(build_on_rating(state, r));
    if state.settings.server.validate_outbound
        && let Err(v) = state.schemas.on_rating_outbound.check_bytes(&body)
    {
        tracing::error!(violation = %v, "outbound /on_rating fails its schema; not sent");
        r.on_rating = DeliveryStatus::Failed;
        r.settled_at = Some(ondc_timestamp(state.clock.now()));
        r.last_error = Some(format!("outbound schema violation: {v}"));
        return;
    }
    let url = format!("{}/on_rating", r.context.bap_uri.trim_end_matches('/'));
    state.record(
        crate::http::record::Direction::Sent,
        crate::protocol::Action::OnRating,
        &url,
        &body,
    );
    let auth = state.outbound.authorization(&body);
    let timeout = Duration::from_millis(state.settings.seller.send_timeout_ms);
    let mut delay = Duration::from_millis(200);
    loop {
        r.attempts += 1;
        let outcome = state
            .outbound
            .post(&url, body.clone(), &auth, timeout)
            .await;
        let retry = match &outcome {
            Ok(PeerAnswer::Ack) => {
                r.on_rating = DeliveryStatus::Sent;
                r.last_error = None;
                false
            }
            // The buyer refused it: retrying the same bytes cannot help, except after its own
            // internal error (5xx).
            Ok(PeerAnswer::Nack { status, error }) => {
                r.last_error = Some(format!("NACK {status}: {error:?}"));
                *status >= 500
            }
            Ok(PeerAnswer::Invalid { status, excerpt }) => {
                r.last_error = Some(format!("HTTP {status}: {excerpt}"));
                *status >= 500 || *status == 429
            }
            Err(e) => {
                r.last_error = Some(e.to_string());
                true
            }
        };
        if !retry || tokio::time::Instant::now() + delay >= deadline {
            r.settled_at = Some(ondc_timestamp(state.clock.now()));
            if r.on_rating != DeliveryStatus::Sent {
                r.on_rating = DeliveryStatus::Failed;
                tracing::warn!(
                    message_id = %r.context.message_id,
                    attempts = r.attempts,
                    error = ?r.last_error,
                    "on_rating not delivered"
                );
            } else {
                tracing::info!(message_id = %r.context.message_id, attempts = r.attempts, "on_rating delivered");
            }
            break;
        }
        state.metrics.retry(RetryTarget::OnRating);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received() -> ReceivedRating {
        crate::perf::sample_received()
    }

    #[test]
    fn the_reply_context_is_the_rating_context_with_its_own_action_time_and_the_protocols_ttl() {
        for ttl in [Some("PT10S".to_owned()), None] {
            let mut r = received();
            r.context.ttl = ttl.clone();
            let at = crate::clock::parse_timestamp("2030-01-01T00:00:00.000Z").unwrap();
            let body = String::from_utf8(on_rating_body(&r, at)).expect("UTF-8");
            let mut want = r.context.clone();
            want.action = "on_rating".into();
            want.timestamp = "2030-01-01T00:00:00.000Z".into();
            want.ttl = Some("PT30S".into());
            // Byte for byte as the Context would be written, its fields in its order.
            let context = format!(
                "{{\"context\":{},\"message\":",
                serde_json::to_string(&want).unwrap()
            );
            assert!(body.starts_with(&context), "{body}\n{context}");
        }
    }

    #[test]
    fn placeholders_are_filled_once_each_where_they_stand() {
        let mut r = received();
        r.context.transaction_id = "t-{message_id}".into();
        r.context.message_id = "m1".into();
        assert_eq!(
            fill(
                "https://f/{order_id}?t={transaction_id}&m={message_id}&x={other}{",
                &r,
                "o1"
            ),
            "https://f/o1?t=t-{message_id}&m=m1&x={other}{"
        );
        assert_eq!(fill("", &r, "o1"), "");
        assert_eq!(fill("{order_id}{order_id}", &r, "o1"), "o1o1");
    }
}

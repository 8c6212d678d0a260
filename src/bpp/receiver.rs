//! `POST {bpp_uri}/rating`: verify the raw body, read it tolerantly, apply the business checks,
//! persist it once per (bap_id, message_id), ACK, and hand it to the sender (seller platform
//! webhook, then /on_rating).

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::Value;
use tracing::Instrument;
use tracing::field::Empty;

use crate::bap::orders::check_internal;
use crate::clock::{ondc_timestamp, parse_timestamp};
use crate::config::OnRatingMode;
use crate::http::AppState;
use crate::http::error::{ApiCode, ApiError};
use crate::http::network::{SELLER, accept_inbound, ack, nack};
use crate::protocol::rating::parse_inbound;
use crate::protocol::{Action, Context, NackCode};
use crate::store::{AnswerHolder, DeliveryStatus, ReceivedRating, Space, Verdict, received_key};

use super::checks::{context_problem, first_problem};
use super::sender::{Job, apply_answer, send, template_form};
use super::webhook::read_answer;

/// Reads an ISO 8601 duration of the forms ONDC uses (`PT30S`, `PT5M`, `PT1H`, `P1D`) as seconds.
pub fn iso_duration_secs(s: &str) -> Option<i64> {
    let rest = s.strip_prefix('P')?;
    if rest.is_empty() || rest.ends_with('T') {
        return None;
    }
    let (date, time) = rest.split_once('T').unwrap_or((rest, ""));
    let date_units: &[(char, i64)] = &[('D', 86_400)];
    let time_units: &[(char, i64)] = &[('H', 3_600), ('M', 60), ('S', 1)];
    let mut total: i64 = 0;
    for (part, units) in [(date, date_units), (time, time_units)] {
        let mut num = String::new();
        for ch in part.chars() {
            if ch.is_ascii_digit() {
                num.push(ch);
                continue;
            }
            let mult = units.iter().find(|(u, _)| *u == ch)?.1;
            total = total.checked_add(num.parse::<i64>().ok()?.checked_mul(mult)?)?;
            num.clear();
        }
        if !num.is_empty() {
            return None;
        }
    }
    Some(total)
}

/// Milliseconds left of a /rating's ttl (`ttl_secs`, at most the protocol's 30 s) after its
/// timestamp `sent_at`, at `now`; zero or less once it has passed. A timestamp ahead of `now`
/// counts as `now`.
fn ttl_left_ms(
    ttl_secs: i64,
    sent_at: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
) -> i64 {
    ttl_secs
        .min(crate::protocol::RATING_TTL_SECS)
        .saturating_mul(1000)
        .saturating_sub((now - sent_at).num_milliseconds().max(0))
}

/// The ttl of a stored /rating's context (at most the protocol's) and the milliseconds left of
/// it at `now`; zero or less once it has passed.
pub(crate) fn ttl_left_of(context: &Context, now: chrono::DateTime<chrono::Utc>) -> (i64, i64) {
    let sent_at = parse_timestamp(&context.timestamp).unwrap_or(now);
    let ttl = context
        .ttl
        .as_deref()
        .and_then(iso_duration_secs)
        .unwrap_or(crate::protocol::RATING_TTL_SECS)
        .min(crate::protocol::RATING_TTL_SECS);
    (ttl, ttl_left_ms(ttl, sent_at, now))
}

/// `POST {bpp_uri}/rating`, in a span that carries the context's ids once they are read (the
/// webhook and the /on_rating delivery run in it too).
pub async fn rating(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let span = tracing::info_span!(
        "rating",
        action = "rating",
        transaction_id = Empty,
        message_id = Empty,
        bap_id = Empty,
        bpp_id = Empty,
    );
    handle(state, req, payload).instrument(span).await
}

async fn handle(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let (v, context) = match accept_inbound(
        &state,
        &req,
        payload,
        SELLER,
        Action::Rating,
        &state.schemas.rating_inbound,
    )
    .await
    {
        Ok(accepted) => accepted,
        Err(nack) => return nack,
    };
    if context.bpp_id != state.settings.identity.subscriber_id {
        return nack(
            NackCode::SellerInvalidContext,
            Some("context.bpp_id".into()),
            format!("this seller is {:?}", state.settings.identity.subscriber_id),
        );
    }
    if let Some(e) = context_problem(&context, &state.settings.seller) {
        return nack(NackCode::SellerInvalidContext, Some(e.path), e.message);
    }
    let ttl = match context.ttl.as_deref().map(iso_duration_secs) {
        None => crate::protocol::RATING_TTL_SECS,
        Some(Some(t)) => t,
        Some(None) => {
            return nack(
                SELLER.invalid,
                Some("context.ttl".into()),
                "must be an ISO 8601 duration",
            );
        }
    };
    let sent_at = parse_timestamp(&context.timestamp).expect("checked by Context::from_value");
    let now = state.clock.now();
    // The peer's ttl, but never past the protocol's 30 s, the outer limit for a rating: a
    // /rating older than that is stale whatever ttl it names (to the millisecond).
    if ttl_left_ms(ttl, sent_at, now) < 0 {
        return nack(
            NackCode::SellerStaleRequest,
            Some("context.timestamp".into()),
            "request is older than its ttl",
        );
    }
    if (sent_at - now).num_seconds() > state.settings.identity.clock_skew_secs {
        return nack(
            NackCode::SellerStaleRequest,
            Some("context.timestamp".into()),
            "request is dated in the future beyond the allowed clock skew",
        );
    }
    let ratings = match parse_inbound(v.json.get("message")) {
        Ok(r) => r,
        Err(e) => return nack(SELLER.invalid, Some(e.path), e.message),
    };
    // Business checks: the request is fine and gets its ACK; what is wrong with the ratings goes
    // back in the /on_rating's error block.
    let single =
        !matches!(v.json.get("message"), Some(Value::Object(m)) if m.contains_key("ratings"));
    let seller = &state.settings.seller;
    let error = first_problem(&ratings, single, seller);
    let verdict = match (&error, seller.webhook_url.is_empty()) {
        (Some(_), _) => Verdict::Refused,
        (None, false) => Verdict::Pending,
        (None, true) => Verdict::Accepted,
    };
    // With `seller.on_rating = "platform"` a rating that passed the checks waits for the seller
    // platform's answer; a refused one is answered at once either way.
    let held = seller.on_rating == OnRatingMode::Platform && verdict != Verdict::Refused;
    let mut received = ReceivedRating {
        context,
        ratings,
        received_at: ondc_timestamp(now),
        on_rating: if held {
            DeliveryStatus::Awaiting
        } else {
            DeliveryStatus::Pending
        },
        attempts: 0,
        last_error: None,
        verdict,
        error,
        feedback_form: None,
        webhook: None,
        single,
        settled_at: None,
    };
    if verdict == Verdict::Accepted {
        received.feedback_form = template_form(&state, &received);
    }
    let job = Job {
        received: tokio::time::Instant::now(),
        // Saturating: a peer may send any ttl. At most the protocol's 30 s: that is all a
        // graceful stop waits for owed /on_rating deliveries.
        ttl_left: Duration::from_millis(ttl_left_ms(ttl, sent_at, now).max(0) as u64),
        resumed: false,
    };
    match state.store.insert_received(&received).await {
        Ok(true) => {
            tracing::info!(
                ratings = received.ratings.len(),
                verdict = ?received.verdict,
                "rating received"
            );
            // ACK first (the response below), then the webhook and the call back, each with its
            // own deadline. A held rating without a webhook has nothing left to do here.
            if !held || received.verdict == Verdict::Pending {
                super::sender::start(&state, received, job);
            }
        }
        Ok(false) => {
            tracing::info!("repeated /rating acknowledged, not processed again");
            super::sender::answer_repeat(&state, received.context, job);
        }
        Err(e) => {
            tracing::error!(error = %e, "store failure on /rating");
            state.metrics.store_error();
            return nack(SELLER.internal, None, "temporarily unable to record; retry");
        }
    }
    ack()
}

/// The query of [`list_received`].
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Which ratings: `awaiting` (those held for the platform's answer); without it, all.
    #[serde(rename = "onRating")]
    on_rating: Option<String>,
    /// At most this many (1 to 1000; 100 without it).
    limit: Option<String>,
    /// The `next` of the page before.
    after: Option<String>,
}

/// `GET /internal/seller/ratings[?onRating=awaiting][&limit=N][&after=NEXT]`: the seller
/// platform reads the received ratings, in the order they arrived: every one (a feed to read from
/// where it left off, which a webhook that failed or a platform that takes none needs), or with
/// `onRating=awaiting` those held for its answer (`seller.on_rating = "platform"`), whether their
/// ttl has passed or not (an answer after it is kept for the buyer's repeat). A page ends with
/// `next` when more may follow: the `after` of the next page.
pub async fn list_received(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    check_internal(&req, &state.settings.seller.internal_token)?;
    let q = web::Query::<ListQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::new(ApiCode::ValidationFailed, format!("query: {e}")))?
        .into_inner();
    let list = match q.on_rating.as_deref() {
        None => Space::Arrived,
        Some("awaiting") => Space::Awaiting,
        Some(_) => {
            return Err(ApiError::new(
                ApiCode::ValidationFailed,
                "onRating: only \"awaiting\" is listed apart (without it, every rating is)",
            ));
        }
    };
    let limit = crate::http::page_limit(q.limit.as_deref())?;
    let (ratings, next) = state.store.listed(list, q.after.as_deref(), limit).await?;
    let mut body = serde_json::json!({ "ratings": ratings });
    if let Some(next) = next {
        body["next"] = next.into();
    }
    Ok(HttpResponse::Ok().json(body))
}

/// `GET /internal/seller/ratings/{bap_id}/{message_id}`: the seller platform reads a received
/// rating and the state of its /on_rating.
pub async fn get_received(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    check_internal(&req, &state.settings.seller.internal_token)?;
    let (bap_id, message_id) = path.into_inner();
    match state.store.get_received(&bap_id, &message_id).await? {
        Some(r) => Ok(HttpResponse::Ok().json(serde_json::json!({ "rating": r }))),
        None => Err(ApiError::new(ApiCode::NotFound, "no such received rating")),
    }
}

/// Takes the right to settle the held rating (`bap_id`, `message_id`) for `by`: in this process,
/// then among the instances sharing the store, for `hold` (released with
/// [`crate::store::Store::release_answer`]). When another has it, who (`Err`), and where: `""`
/// (in this process) or `" by another instance"`.
pub(crate) async fn take_answer(
    state: &AppState,
    bap_id: &str,
    message_id: &str,
    hold: Duration,
    by: AnswerHolder,
) -> Result<Result<crate::http::Held, (AnswerHolder, &'static str)>, crate::store::StoreError> {
    let held = match state.answering.take(received_key(bap_id, message_id), by) {
        Ok(held) => held,
        Err(other) => return Ok(Err((other, ""))),
    };
    Ok(state
        .store
        .claim_answer(bap_id, message_id, hold, by)
        .await?
        .map(|()| held)
        .map_err(|other| (other, " by another instance")))
}

/// The answer to a platform's answer that finds its rating held `by` other work (`where_`: in this
/// process, or ` by another instance`): a hand-off a restart took up again settles the verdict
/// the answer would read, so it is retried after; another answer has it.
fn held_by(by: AnswerHolder, where_: &str) -> ApiError {
    match by {
        AnswerHolder::HandOff => ApiError::new(
            ApiCode::TooBusy,
            format!(
                "the rating is still being handed to the seller platform's webhook{where_}; retry"
            ),
        ),
        AnswerHolder::Repeat => ApiError::new(
            ApiCode::TooBusy,
            format!(
                "a repeat of the /rating is opening a new window for the answer{where_}; retry"
            ),
        ),
        AnswerHolder::Answer => ApiError::new(
            ApiCode::AlreadyAnswered,
            format!("its /on_rating is being sent{where_}"),
        ),
    }
}

/// `POST /internal/seller/ratings/{bap_id}/{message_id}/on_rating` (`seller.on_rating =
/// "platform"`): the seller platform's answer to a rating that passed the checks, in the form its
/// webhook answers take (empty or `{}`: what the record holds; a `feedback_form_url`; an `error`
/// with a seller business code). The signed /on_rating goes out with it, retried within the
/// /rating's ttl, and the answer is the record once the outcome is stored.
pub async fn answer_received(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    check_internal(&req, &state.settings.seller.internal_token)?;
    let (bap_id, message_id) = path.into_inner();
    // Instances sharing Redis: one of them sends. Held past the longest ttl an answer can have
    // (a crash while sending leaves it to expire).
    let hold = Duration::from_secs(crate::protocol::RATING_TTL_SECS as u64 + 5);
    let claim = take_answer(&state, &bap_id, &message_id, hold, AnswerHolder::Answer)
        .await?
        .map_err(|(by, where_)| held_by(by, where_))?;
    let answered = answer_claimed(&state, &bap_id, &message_id, &body, claim).await;
    if let Err(e) = state.store.release_answer(&bap_id, &message_id).await {
        tracing::warn!(error = %e, "could not release the claim of an answered rating");
    }
    answered
}

/// [`answer_received`] once this instance holds the right to answer.
async fn answer_claimed(
    state: &web::Data<AppState>,
    bap_id: &str,
    message_id: &str,
    body: &[u8],
    claim: crate::http::Held,
) -> Result<HttpResponse, ApiError> {
    // Read after the claim: an answer that finished in between shows in the record.
    let Some(mut r) = state.store.get_received(bap_id, message_id).await? else {
        return Err(ApiError::new(ApiCode::NotFound, "no such received rating"));
    };
    let now = state.clock.now();
    match (r.on_rating, r.verdict) {
        (DeliveryStatus::Awaiting, Verdict::Pending) => {
            // The webhook hand-off ends within its budget (and its record a moment later); a
            // verdict still pending after that is one a crash cut short, which the answer settles.
            let over = parse_timestamp(&r.received_at).unwrap_or(now)
                + chrono::Duration::milliseconds(
                    state.settings.seller.webhook_timeout_ms as i64 + 1_000,
                );
            if now < over {
                return Err(ApiError::new(
                    ApiCode::TooBusy,
                    "the rating is still being handed to the seller platform's webhook; retry",
                ));
            }
        }
        (DeliveryStatus::Awaiting, _) => {}
        (DeliveryStatus::Sent, _) => {
            return Err(ApiError::new(
                ApiCode::AlreadyAnswered,
                "its /on_rating was sent already",
            ));
        }
        (DeliveryStatus::Failed, _) => {
            return Err(ApiError::new(
                ApiCode::AlreadyAnswered,
                "its /on_rating was given up (not delivered, or answered after the ttl); the \
                 buyer sending the /rating again gets it",
            ));
        }
        (DeliveryStatus::Pending, _) => {
            return Err(ApiError::new(
                ApiCode::AlreadyAnswered,
                "this adapter sends its /on_rating (it was not held for the seller platform)",
            ));
        }
    }
    if !body.iter().all(u8::is_ascii_whitespace)
        && !matches!(serde_json::from_slice::<Value>(body), Ok(Value::Object(_)))
    {
        return Err(ApiError::new(
            ApiCode::InvalidJson,
            "the answer must be empty or a JSON object",
        ));
    }
    let answer =
        read_answer(body, &r, r.single).map_err(|e| ApiError::new(ApiCode::ValidationFailed, e))?;
    apply_answer(state, &mut r, answer);
    let (ttl, left) = ttl_left_of(&r.context, now);
    if left <= 0 {
        // Too late for this /rating, kept for its repeat: a buyer that never got an answer sends
        // the rating again, and [`super::sender::answer_repeat`] sends this one then.
        r.on_rating = DeliveryStatus::Failed;
        r.settled_at = Some(ondc_timestamp(now));
        r.last_error = Some(format!(
            "the /rating's ttl ({ttl} s) passed before the seller platform answered; sent if the \
             buyer sends the /rating again"
        ));
        state.store.settle_received(&r).await?;
        return Err(ApiError::new(
            ApiCode::TtlPassed,
            format!(
                "the /rating's ttl ({ttl} s) has passed; the buyer would not take an /on_rating \
                 now. The answer is kept, and sent if the buyer sends the /rating again"
            ),
        ));
    }
    // On the background runtime: a platform that hangs up does not cut a delivery short.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(left as u64);
    let guard = state.in_flight.start();
    let task_state = state.clone();
    let sent = state
        .background
        .spawn(
            async move {
                send(&task_state, &mut r, deadline).await;
                let stored = task_state.store.settle_received(&r).await;
                // Here too: the platform may have hung up, and the handler with it.
                if let Err(e) = task_state
                    .store
                    .release_answer(&r.context.bap_id, &r.context.message_id)
                    .await
                {
                    tracing::warn!(error = %e, "could not release the claim of an answered rating");
                }
                drop((guard, claim));
                stored.map(|()| r)
            }
            .in_current_span(),
        )
        .await
        .map_err(|_| ApiError::new(ApiCode::InternalError, "the /on_rating task failed"))?;
    let r = sent?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "rating": r })))
}

#[cfg(test)]
mod tests {
    use super::iso_duration_secs;

    #[test]
    fn iso_durations() {
        assert_eq!(iso_duration_secs("PT30S"), Some(30));
        assert_eq!(iso_duration_secs("PT5M"), Some(300));
        assert_eq!(iso_duration_secs("PT1H30M"), Some(5400));
        assert_eq!(iso_duration_secs("P1D"), Some(86_400));
        assert_eq!(iso_duration_secs("P1M"), None);
        assert_eq!(iso_duration_secs("30S"), None);
        assert_eq!(iso_duration_secs("PT"), None);
        assert_eq!(iso_duration_secs("PT30"), None);
    }
}

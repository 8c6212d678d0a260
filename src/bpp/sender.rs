//! Sends the signed `/on_rating` for a received `/rating`: the context echoes transaction_id and
//! message_id with a strictly later timestamp; the message acknowledges the rating and carries the
//! configured feedback form. Retried with backoff until the exchange's ttl runs out.

use std::time::Duration;

use actix_web::web;

use crate::clock::{ondc_timestamp, parse_timestamp};
use crate::http::AppState;
use crate::http::outbound::PeerAnswer;
use crate::protocol::{Action, Envelope, FeedbackForm, Form, OnRatingMessage, RATING_TTL_SECS};
use crate::store::{DeliveryStatus, ReceivedRating};

/// Fills `{order_id}`, `{transaction_id}` and `{message_id}`.
fn fill(template: &str, r: &ReceivedRating, order_id: &str) -> String {
    template
        .replace("{order_id}", order_id)
        .replace("{transaction_id}", &r.context.transaction_id)
        .replace("{message_id}", &r.context.message_id)
}

/// The /on_rating body for `r`, serialised once.
pub fn build_on_rating(state: &AppState, r: &ReceivedRating) -> Vec<u8> {
    let s = &state.settings.seller;
    let order_id = r
        .ratings
        .iter()
        .find(|x| x.rating_category == "Order")
        .map(|x| x.id.as_str())
        .unwrap_or(&r.context.transaction_id);
    let mut context = r.context.clone();
    context.action = Action::OnRating.as_str().into();
    // Strictly later than the request's timestamp, even when the buyer's clock runs ahead.
    let now = state.clock.now();
    let floor = parse_timestamp(&r.context.timestamp)
        .map(|t| t + chrono::Duration::milliseconds(1))
        .unwrap_or(now);
    context.timestamp = ondc_timestamp(now.max(floor));
    if context.ttl.is_none() {
        context.ttl = Some(crate::protocol::RATING_TTL.into());
    }
    let message = OnRatingMessage {
        order_id: None,
        feedback_ack: Some(true),
        rating_ack: Some(true),
        feedback_form: (!s.feedback_form_url.is_empty()).then(|| FeedbackForm {
            form: Form {
                url: fill(&s.feedback_form_url, r, order_id),
                mime_type: s.feedback_form_mime_type.clone(),
                data: Some(fill(&s.feedback_form_data, r, order_id)),
            },
            required: Some(s.feedback_form_required),
        }),
    };
    serde_json::to_vec(&Envelope {
        context: &context,
        message,
    })
    .expect("on_rating serialises")
}

/// Delivers the /on_rating owed for `r`, recording the outcome.
pub async fn deliver(state: web::Data<AppState>, mut r: ReceivedRating) {
    let body = web::Bytes::from(build_on_rating(&state, &r));
    if state.settings.server.validate_outbound
        && let Err(v) = state.schemas.on_rating_outbound.check_bytes(&body)
    {
        tracing::error!(violation = %v, "outbound /on_rating fails its schema; not sent");
        r.on_rating = DeliveryStatus::Failed;
        r.last_error = Some(format!("outbound schema violation: {v}"));
        if let Err(e) = state.store.put_received(&r).await {
            tracing::error!(error = %e, "could not record on_rating delivery");
        }
        return;
    }
    let url = format!("{}/on_rating", r.context.bap_uri.trim_end_matches('/'));
    let auth = state.outbound.authorization(&body);
    let timeout = Duration::from_millis(state.settings.seller.send_timeout_ms);
    let started = tokio::time::Instant::now();
    let budget = Duration::from_secs(RATING_TTL_SECS as u64);
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
                r.last_error = Some(e.clone());
                true
            }
        };
        if !retry || started.elapsed() + delay >= budget {
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
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    if let Err(e) = state.store.put_received(&r).await {
        tracing::error!(error = %e, "could not record on_rating delivery");
    }
}

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
use crate::http::AppState;
use crate::http::error::{ApiCode, ApiError};
use crate::http::network::{SELLER, accept_inbound, ack, nack};
use crate::protocol::rating::parse_inbound;
use crate::protocol::{Action, NackCode};
use crate::store::{DeliveryStatus, ReceivedRating, Verdict};

use super::checks::first_problem;
use super::sender::{Job, process, template_form};

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
            SELLER.invalid,
            Some("context.bpp_id".into()),
            format!("this seller is {:?}", state.settings.identity.subscriber_id),
        );
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
    if (now - sent_at).num_seconds() > ttl {
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
    let mut received = ReceivedRating {
        context,
        ratings,
        received_at: ondc_timestamp(now),
        on_rating: DeliveryStatus::Pending,
        attempts: 0,
        last_error: None,
        verdict,
        error,
        feedback_form: None,
        webhook: None,
    };
    if verdict == Verdict::Accepted {
        received.feedback_form = template_form(&state, &received);
    }
    let job = Job {
        single,
        received: tokio::time::Instant::now(),
        // Saturating: a peer may send any ttl. At most the protocol's 30 s: that is all a
        // graceful stop waits for owed /on_rating deliveries.
        ttl_left: Duration::from_millis(
            ttl.min(crate::protocol::RATING_TTL_SECS)
                .saturating_mul(1000)
                .saturating_sub((now - sent_at).num_milliseconds().max(0))
                .max(0) as u64,
        ),
    };
    match state.store.insert_received(&received).await {
        Ok(true) => {
            tracing::info!(
                ratings = received.ratings.len(),
                verdict = ?received.verdict,
                "rating received"
            );
            let state = state.clone();
            // ACK first (the response below), then the webhook and the call back, each with its
            // own deadline.
            let guard = state.in_flight.start();
            let runtime = state.background.clone();
            runtime.spawn(
                async move {
                    process(state, received, job).await;
                    drop(guard);
                }
                .in_current_span(),
            );
        }
        Ok(false) => tracing::info!("repeated /rating acknowledged, not processed again"),
        Err(e) => {
            tracing::error!(error = %e, "store failure on /rating");
            state.metrics.store_error();
            return nack(SELLER.internal, None, "temporarily unable to record; retry");
        }
    }
    ack()
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

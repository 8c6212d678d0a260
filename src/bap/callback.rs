//! The buyer side's `POST {bap_uri}/on_rating`: verify, match to an outstanding rating, store,
//! ACK, and wake the waiting buyer request.

use actix_web::{HttpRequest, HttpResponse, web};
use tracing::Instrument;
use tracing::field::Empty;

use crate::clock::{ondc_timestamp, parse_timestamp};
use crate::http::AppState;
use crate::http::metrics::CallbackMatch;
use crate::http::network::{BUYER, accept_inbound, ack, nack};
use crate::protocol::{Action, NackCode, NetworkError, OnRatingMessage};
use crate::store::{CallbackRecord, RatingStatus};

use super::bridge::{SentContext, SentRecord};

/// `POST {bap_uri}/on_rating`, in a span that carries the context's ids once they are read.
pub async fn on_rating(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let span = tracing::info_span!(
        "on_rating",
        action = "on_rating",
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
        BUYER,
        Action::OnRating,
        &state.schemas.on_rating_inbound,
    )
    .await
    {
        Ok(accepted) => accepted,
        Err(nack) => return nack,
    };
    let message = match OnRatingMessage::from_value(v.json.get("message")) {
        Ok(m) => m,
        Err(e) => return nack(BUYER.invalid, Some(e.path), e.message),
    };
    let internal = |e: crate::store::StoreError| {
        tracing::error!(error = %e, "store failure on /on_rating");
        state.metrics.store_error();
        nack(
            NackCode::BuyerInternal,
            None,
            "temporarily unable to record; retry",
        )
    };
    // The one-time buyer API's outstanding rating: the /rating a request here waits on, else
    // the store's (the request may wait on another instance, or have stopped waiting); or a
    // /rating the v2 feedback API sent.
    let waiting_here = state.waiters.sent(&context.message_id);
    let mut feedback = None;
    let sent = match &waiting_here {
        Some(packed) => match SentRecord::read(packed) {
            Ok(s) => Some(s.context),
            Err(e) => return internal(crate::store::StoreError::Corrupt(e.to_string())),
        },
        None => match state.store.order_for_message(&context.message_id).await {
            Ok(Some(order_id)) => match state.store.get_rating(&order_id).await {
                Ok(r) => r
                    .filter(|r| {
                        r.message_id() == context.message_id && r.status != RatingStatus::Failed
                    })
                    .map(|r| SentContext::owned(r.context)),
                Err(e) => return internal(e),
            },
            Ok(None) => match state.store.get_feedback_sent(&context.message_id).await {
                Ok(f) => f.map(|f| {
                    let sent = SentContext::owned(f.context.clone());
                    feedback = Some(f);
                    sent
                }),
                Err(e) => return internal(e),
            },
            Err(e) => return internal(e),
        },
    };
    let Some(sent) = sent else {
        return nack(
            NackCode::BuyerOutOfSequence,
            Some("context.message_id".into()),
            "no outstanding rating for this message_id",
        );
    };
    let sent = &sent;
    for (field, got, want) in [
        (
            "transaction_id",
            &context.transaction_id,
            &sent.transaction_id,
        ),
        ("bpp_id", &context.bpp_id, &sent.bpp_id),
        ("bap_id", &context.bap_id, &sent.bap_id),
        ("domain", &context.domain, &sent.domain),
        ("country", &context.country, &sent.country),
        ("city", &context.city, &sent.city),
        ("core_version", &context.core_version, &sent.core_version),
        ("bap_uri", &context.bap_uri, &sent.bap_uri),
        ("bpp_uri", &context.bpp_uri, &sent.bpp_uri),
    ] {
        if got.as_str() != want.as_ref() {
            return nack(
                NackCode::BuyerInvalidContext,
                Some(format!("context.{field}")),
                format!("does not match the /rating ({want:?})"),
            );
        }
    }
    if parse_timestamp(&context.timestamp) <= parse_timestamp(&sent.timestamp) {
        // A conformance rule the seller broke; the rating itself is still good, so record it.
        tracing::warn!("on_rating timestamp is not later than the rating's");
    }
    // A business refusal travels in the callback's error block (the schema checked its shape).
    let error = match v.json.get("error").filter(|e| !e.is_null()) {
        None => None,
        Some(e) => match serde_json::from_value::<NetworkError>(e.clone()) {
            Ok(e) => Some(e),
            Err(e) => return nack(BUYER.invalid, Some("error".into()), e.to_string()),
        },
    };
    let cb = CallbackRecord {
        context,
        message,
        error,
        received_at: ondc_timestamp(state.clock.now()),
    };
    let first = match state.store.put_callback(&cb).await {
        Ok(first) => first,
        Err(e) => return internal(e),
    };
    state.metrics.callback_matched(if waiting_here.is_some() {
        CallbackMatch::WaitingRequest
    } else {
        CallbackMatch::Store
    });
    if !first {
        // The first one stored is the answer: wake the waiter to read it.
        tracing::info!("duplicate on_rating acknowledged, first one kept");
        return announce(&state, &cb.context.message_id).await;
    }
    tracing::info!("on_rating stored");
    if let Some(f) = &feedback {
        // v2 feedback: a refusal is told to whom its recording was.
        super::notify::feedback_refused(&state, f, &cb).await;
    }
    if waiting_here.is_some() {
        // Its request waits in this process and nowhere else: hand the callback over (a request
        // whose deadline passed meanwhile reads it from the store when asked).
        state.waiters.deliver(Box::new(cb));
        return ack();
    }
    announce(&state, &cb.context.message_id).await
}

/// Tells the request waiting on `message_id` that its callback is stored, here and (the request
/// may wait on another instance) on every instance, then ACKs. Stored first, so a lost
/// announcement only delays the answer to the waiter's deadline check.
async fn announce(state: &AppState, message_id: &str) -> HttpResponse {
    state.waiters.notify(message_id);
    if let Err(e) = state.store.announce_callback(message_id).await {
        tracing::warn!(error = %e, "could not announce the callback to other instances");
    }
    ack()
}

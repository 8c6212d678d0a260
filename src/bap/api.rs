//! The buyer API: `POST /ret11/rating` (rate a completed order, once) and
//! `GET /ret11/orders/{orderId}/rating` (what was submitted and where it stands).

use std::borrow::Cow;
use std::time::Duration;

use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::HeaderMap;
use actix_web::{HttpRequest, HttpResponse, Responder, web};
use serde::Serialize;
use serde_json::json;
use tracing::Instrument;
use tracing::field::Empty;

use super::bridge::{SentRecord, Waiter, Woken};
use super::request::RateOrder;
use crate::clock::ondc_timestamp;
use crate::http::error::{ApiCode, ApiError};
use crate::http::metrics::{RetryTarget, WaitOutcome};
use crate::http::outbound::{PeerAnswer, TransportError};
use crate::http::record::Direction;
use crate::http::{AppState, read_body};
use crate::protocol::{
    Action, CORE_VERSION, COUNTRY, Context, Envelope, FeedbackForm, NetworkError, RATING_TTL,
    RatingMessage,
};
use crate::store::{CallbackRecord, Claim, Order, RatingRecord, RatingStatus};

/// The context of a new /rating for `order`: a fresh message_id, the order's transaction, this
/// participant as the BAP, stamped `now`.
pub fn rating_context(
    settings: &crate::config::Settings,
    order: &Order,
    now: chrono::DateTime<chrono::Utc>,
) -> Context {
    Context {
        domain: order.domain.clone(),
        country: COUNTRY.into(),
        city: order.city.clone(),
        action: Action::Rating.as_str().into(),
        core_version: CORE_VERSION.into(),
        bap_id: settings.identity.subscriber_id.clone(),
        bap_uri: settings.buyer.bap_uri.clone(),
        bpp_id: order.bpp_id.clone(),
        bpp_uri: order.bpp_uri.clone(),
        transaction_id: order.transaction_id.clone(),
        message_id: uuid::Uuid::new_v4().to_string(),
        timestamp: ondc_timestamp(now),
        ttl: Some(RATING_TTL.into()),
    }
}

/// Reads the bearer token and returns the user id.
fn user(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let header = headers
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    state
        .tokens
        .user_from_header(header, state.clock.unix())
        .map_err(|e| ApiError::new(ApiCode::Unauthorized, e.to_string()))
}

/// Loads the order and checks it belongs to `user_id`.
async fn owned_order(state: &AppState, order_id: &str, user_id: &str) -> Result<Order, ApiError> {
    let order =
        state.store.get_order(order_id).await?.ok_or_else(|| {
            ApiError::new(ApiCode::OrderNotFound, format!("no order {order_id:?}"))
        })?;
    if order.user_id != user_id {
        return Err(ApiError::new(
            ApiCode::Forbidden,
            "this order belongs to another user",
        ));
    }
    Ok(order)
}

#[derive(Serialize)]
struct BuyerForm<'a> {
    url: &'a str,
    mime_type: &'a str,
}

#[derive(Serialize)]
struct BuyerFeedbackForm<'a> {
    form: BuyerForm<'a>,
}

#[derive(Serialize)]
struct BuyerMessage<'a> {
    order_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    feedback_form: Option<BuyerFeedbackForm<'a>>,
}

#[derive(Serialize)]
struct BuyerData<'a> {
    dto: Envelope<'a, BuyerMessage<'a>>,
    status: &'static str,
}

/// The buyer API's answer to a rating: `{"data":{"dto":{"context","message"},"status"}}`.
#[derive(Serialize)]
pub struct BuyerEnvelope<'a> {
    data: BuyerData<'a>,
}

/// The buyer envelope `{"data":{"dto":{"context","message"},"status"}}`.
pub fn buyer_envelope<'a>(
    context: &'a Context,
    order_id: &'a str,
    form: Option<&'a crate::protocol::FeedbackForm>,
    status: &'static str,
) -> BuyerEnvelope<'a> {
    BuyerEnvelope {
        data: BuyerData {
            dto: Envelope {
                context,
                message: BuyerMessage {
                    order_id,
                    feedback_form: form.map(|f| BuyerFeedbackForm {
                        form: BuyerForm {
                            url: &f.form.url,
                            mime_type: &f.form.mime_type,
                        },
                    }),
                },
            },
            status,
        },
    }
}

/// `POST /ret11/rating`, as a service of its own rather than a handler: the request's headers
/// are taken out of it and handed to the rating, which reads them (the user's token, the body's
/// length) while it is prepared and drops them then. A handler would keep them until its answer,
/// and a request waits for its /on_rating for up to `buyer.callback_wait_ms`: actix-web holds a
/// request's headers in a hash table of about 210 bytes a slot, 1.7 KiB for the four headers of
/// the load tool's requests (twice that from eight headers), more than any other part of a
/// waiting request (docs/BENCHMARKS.md). The request is not shared yet when its service is
/// called, so its headers can be taken.
pub fn rate_order_service() -> impl ServiceFactory<
    ServiceRequest,
    Config = (),
    Response = ServiceResponse,
    Error = actix_web::Error,
    InitError = (),
> {
    actix_web::dev::fn_service(|mut req: ServiceRequest| {
        let headers = std::mem::take(req.headers_mut());
        let (req, payload) = req.into_parts();
        async move {
            let answer = match req.app_data::<web::Data<AppState>>() {
                Some(state) => rate_order(state.clone(), headers, payload).await,
                None => Err(ApiError::new(
                    ApiCode::InternalError,
                    "the server's state is not configured",
                )),
            };
            let res = answer.respond_to(&req).map_into_boxed_body();
            Ok(ServiceResponse::new(req, res))
        }
    })
}

/// A rating, in a span that carries the exchange's ids once the order is claimed.
async fn rate_order(
    state: web::Data<AppState>,
    headers: HeaderMap,
    payload: actix_web::dev::Payload,
) -> Result<HttpResponse, ApiError> {
    let span = tracing::info_span!(
        "rate_order",
        action = "rating",
        order_id = Empty,
        transaction_id = Empty,
        message_id = Empty,
        bap_id = Empty,
        bpp_id = Empty,
    );
    rate(state, headers, payload).instrument(span).await
}

async fn rate(
    state: web::Data<AppState>,
    headers: HeaderMap,
    payload: actix_web::dev::Payload,
) -> Result<HttpResponse, ApiError> {
    // Four phases, each in a future of its own, so that what a request keeps while it waits is
    // only what that wait needs: queued for a slot to its seller, the rating it will send (not
    // the state of the read before it or of the send after it); waiting for /on_rating, its
    // record packed, the waiter and the timer.
    // The headers go to the first phase and end with it.
    let prepared = Box::pin(prepare(&state, headers, payload)).await?;
    // The slot before the claim: a request that finds its seller's slots full after
    // `buyer.send_timeout_ms` is refused having changed nothing, and a burst of ratings to a
    // slow seller queues as small records instead of claimed, half-sent exchanges.
    let wait = Duration::from_millis(state.settings.buyer.send_timeout_ms);
    // Boxed: the wait for a slot is the largest of the waits, and a request's future is as large
    // as its largest state for its whole life.
    let Some(slot) = Box::pin(state.seller_slots.acquire(&prepared.url, wait)).await else {
        return Err(ApiError::new(
            ApiCode::TooBusy,
            format!(
                "{} /rating requests are already in flight to this seller; retry shortly",
                state.settings.buyer.max_in_flight_per_seller
            ),
        ));
    };
    let mut sent = Box::pin(claim_and_send(&state, prepared, slot)).await?;
    // Wait for /on_rating: handed over when it reaches this process, else read from the store.
    // The `acknowledged` status is written only if it does not come within the delay: a stored
    // callback is what makes the rating read as completed, and most come within milliseconds.
    let wait = Duration::from_millis(state.settings.buyer.callback_wait_ms);
    let delay = Duration::from_millis(state.settings.buyer.acknowledged_write_delay_ms).min(wait);
    let woken = match sent.waiter.wait_at_most(delay).await {
        Some(woken) => woken,
        None => {
            // Boxed: the write's state is larger than the wait's, and only a few requests get
            // here.
            Box::pin(record_acknowledged(&state, &sent.record)).await;
            sent.waiter.wait(wait - delay).await
        }
    };
    Box::pin(answer(&state, sent, woken)).await
}

/// A rating read and checked, not yet claimed: what a request keeps while it queues for a slot
/// to its seller.
struct Prepared {
    /// Boxed: this is held inline in the request's future while it queues.
    record: Box<RatingRecord>,
    ratings: Vec<crate::protocol::RatingEntry>,
    /// `{bpp_uri}/rating`.
    url: String,
}

/// A rating the seller ACKed, waiting for its /on_rating.
struct Sent {
    /// Kept for the whole wait, packed.
    record: Packed,
    waiter: Waiter,
    sent_at: std::time::Instant,
}

/// A record kept as its JSON while its request waits: one allocation of the record's size
/// instead of the struct and the two dozen strings it points to, read back once when the wait is
/// over. Measured against the boxed struct and against reading the record back from the store
/// (docs/BENCHMARKS.md): the least memory per waiting request of the three, with no store read.
/// Shared with the request's waiter entry, against which a callback arriving here is matched.
struct Packed(std::sync::Arc<[u8]>);

impl Packed {
    fn new(record: &RatingRecord) -> Self {
        Self(
            crate::protocol::to_json(record)
                .expect("a rating record serialises")
                .into(),
        )
    }

    fn unpack(&self) -> Result<RatingRecord, ApiError> {
        serde_json::from_slice(&self.0).map_err(unreadable)
    }

    /// What a completed exchange's answer needs of the record (its order and ttl), borrowed
    /// from its JSON.
    fn summary(&self) -> Result<SentRecord<'_>, ApiError> {
        SentRecord::read(&self.0).map_err(unreadable)
    }
}

fn unreadable(e: serde_json::Error) -> ApiError {
    ApiError::new(
        ApiCode::InternalError,
        format!("the waiting rating's record does not read back: {e}"),
    )
}

/// Reads and checks the request (the user, the body, the order and its state, the entries) and
/// builds the record and the /rating's context; nothing is claimed or written. The request's
/// headers are dropped when it returns.
async fn prepare(
    state: &AppState,
    headers: HeaderMap,
    payload: actix_web::dev::Payload,
) -> Result<Prepared, ApiError> {
    let user_id = user(state, &headers)?;
    let body = read_body(&headers, payload, state.settings.server.max_body_bytes).await?;
    drop(headers);
    let request = RateOrder::parse(&body)?;
    let order = owned_order(state, &request.order_id, &user_id).await?;
    if !order.state.eq_ignore_ascii_case("Completed") {
        return Err(ApiError::new(
            ApiCode::OrderNotCompleted,
            format!(
                "only completed orders can be rated; this order is {:?}",
                order.state
            ),
        ));
    }
    let ratings = request.entries_for(&order)?;

    let now = state.clock.now();
    let context = rating_context(&state.settings, &order, now);
    let url = context.rating_url();
    let record = Box::new(RatingRecord {
        order_id: order.order_id,
        user_id,
        status: RatingStatus::Pending,
        submitted: request.rating,
        // The claim's time is the /rating's.
        created_at: context.timestamp.clone(),
        context,
        error: None,
        failure: None,
    });
    Ok(Prepared {
        record,
        ratings,
        url,
    })
}

/// Claims the rating, sends /rating over the held slot and returns once the seller ACKed it;
/// any other outcome is the request's answer (the claim released, or kept when delivery is
/// unknown).
async fn claim_and_send(
    state: &AppState,
    prepared: Prepared,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> Result<Sent, ApiError> {
    let Prepared {
        record,
        ratings,
        mut url,
    } = prepared;
    let settings = &state.settings;
    // Each waiting request holds a connection and a little memory until its callback or
    // deadline: bound them, and refuse before claiming so the user can simply retry.
    if state.waiters.len() >= settings.buyer.max_waiting {
        return Err(ApiError::new(
            ApiCode::TooBusy,
            "too many ratings are waiting for their sellers; retry shortly",
        ));
    }
    // Register before sending: a fast seller may call back before its ACK reaches us.
    let waiter = state.waiters.register(&record.context.message_id);
    // The record as the request keeps it while it waits, serialised once for the claim and for
    // itself.
    let packed = Packed::new(&record);
    let (record, waiter, packed) = match state.store.claim_rating(&record, &packed.0).await? {
        Claim::Won => (record, waiter, packed),
        Claim::Taken {
            record: existing,
            stored,
        } => {
            drop(waiter);
            let (status, _) = rated_status(state, &existing).await?;
            let again = send_again(state, *existing, status, &record)?;
            let packed = Packed::new(&again);
            if !state.store.replace_rating(&again, stored).await? {
                return Err(ApiError::new(
                    ApiCode::AlreadyRated,
                    "this order's rating is being sent again by another request",
                ));
            }
            tracing::warn!(
                message_id = %again.context.message_id,
                "a rating left pending is sent again"
            );
            url = again.context.rating_url();
            let waiter = state.waiters.register(&again.context.message_id);
            (Box::new(again), waiter, packed)
        }
    };
    let context = &record.context;
    crate::http::network::record_ids(context);
    tracing::Span::current().record("order_id", record.order_id.as_str());
    tracing::info!("claimed; sending /rating");

    // Serialise once; these exact bytes are signed and sent.
    let body = crate::protocol::to_json(&Envelope {
        context,
        message: RatingMessage { ratings },
    })
    .expect("rating message serialises");
    if settings.server.validate_outbound
        && let Err(v) = state.schemas.rating_outbound.check_bytes(&body)
    {
        tracing::error!(violation = %v, "outbound /rating fails its schema; not sent");
        let failure = Failure::Other(format!("outbound /rating fails its schema: {v}"));
        return Err(release(state, &packed, failure, ApiCode::InternalError).await);
    }
    // The packed record goes to the waiter before the send: a seller that calls back before its
    // ACK is processed here (a fast seller, a busy worker) finds it in this process, not only in
    // the store.
    waiter.holds(packed.0.clone());
    state.record(Direction::Sent, Action::Rating, &url, &body);
    let sent_at = std::time::Instant::now();
    let outcome = send_held(state, &url, body).await;
    drop(slot);
    let (failure, code) = match outcome {
        Ok(PeerAnswer::Ack) => (None, ApiCode::SellerRejected),
        Ok(PeerAnswer::Nack {
            error: Some(error), ..
        }) => (Some(Failure::Nack(error)), ApiCode::SellerRejected),
        Ok(PeerAnswer::Nack {
            status,
            error: None,
        }) => (
            Some(Failure::Other(format!(
                "HTTP {status}: NACK without an error block"
            ))),
            ApiCode::SellerRejected,
        ),
        Ok(PeerAnswer::Invalid { status, excerpt }) => (
            Some(Failure::Other(format!("HTTP {status}: {excerpt}"))),
            ApiCode::SellerInvalidResponse,
        ),
        Err(e) if e.maybe_delivered => {
            // The seller may have the /rating (an attempt timed out or was cut after it was
            // sent): releasing the claim could get the order rated twice. Keep it pending; the
            // seller's /on_rating completes it if it took the rating.
            tracing::warn!(error = %e, "/rating delivery unknown; claim kept");
            return Err(ApiError::new(
                ApiCode::SellerTimeout,
                format!(
                    "the seller did not answer in time; the rating is kept and completes if the \
                     seller took it ({e})"
                ),
            ));
        }
        Err(e) => (Some(Failure::Other(e.message)), ApiCode::SellerUnreachable),
    };
    if let Some(failure) = failure {
        return Err(release(state, &packed, failure, code).await);
    }
    Ok(Sent {
        record: packed,
        waiter,
        sent_at,
    })
}

/// How long after its claim a rating's /rating may still be on its way: its ttl (a seller refuses
/// it as stale after that), or the longest a send with every retry takes, whichever is later, and
/// a margin. A claim still pending after that was left by a process killed while sending, or by
/// a send whose delivery stayed unknown and was never answered.
fn sending_bound(settings: &crate::config::Settings) -> chrono::Duration {
    let b = &settings.buyer;
    // Each attempt's timeout and the backoff before the next (at most 3.2 s).
    let sends = i64::from(b.send_attempts) * (b.send_timeout_ms as i64 + 3_200);
    chrono::Duration::milliseconds((crate::protocol::RATING_TTL_SECS * 1000).max(sends) + 5_000)
}

/// What a request to rate an order already claimed may do: send again the /rating a claim left
/// pending past [`sending_bound`], when the request rates the order as that claim did. The
/// record returned is that claim's, with its message_id and ratings, stamped now (a seller that
/// had it sees a repeat by message_id; one that did not takes it). Anything else is refused.
fn send_again(
    state: &AppState,
    existing: RatingRecord,
    status: RatingStatus,
    wanted: &RatingRecord,
) -> Result<RatingRecord, ApiError> {
    let refused = |detail: String| {
        Err(ApiError::new(
            ApiCode::AlreadyRated,
            format!(
                "this order was rated already (status {}){detail}",
                status.as_str()
            ),
        ))
    };
    if status != RatingStatus::Pending || existing.submitted != wanted.submitted {
        return refused(String::new());
    }
    let due = crate::clock::parse_timestamp(&existing.created_at)
        .map(|t| t + sending_bound(&state.settings));
    if due.is_none_or(|due| state.clock.now() < due) {
        return refused(format!(
            "; if it is still pending at {}, sending the same rating again sends it again",
            due.map(ondc_timestamp).unwrap_or_default()
        ));
    }
    let mut again = existing;
    again.context.timestamp = wanted.context.timestamp.clone();
    again.created_at = wanted.created_at.clone();
    again.error = None;
    again.failure = None;
    Ok(again)
}

/// Records the `acknowledged` status of the rating `packed` holds, while its request waits for
/// the callback (the waiter keeps one that comes meanwhile), unless another request has taken the
/// rating over to send it again since (the record is then that request's, and left alone). A
/// failure is logged: the claim stays taken, and the rating reads as `pending` until its callback
/// is stored. So does a rating whose request ended (its client hung up) before this.
async fn record_acknowledged(state: &AppState, packed: &Packed) {
    let written = match packed.unpack() {
        Ok(mut record) => {
            record.status = RatingStatus::Acknowledged;
            state
                .store
                .replace_rating(&record, packed.0.to_vec())
                .await
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(e.message),
    };
    match written {
        Ok(true) => {}
        Ok(false) => tracing::warn!("the rating was taken over to be sent again; not recorded"),
        Err(e) => tracing::error!(error = %e, "could not record the rating's status"),
    }
}

/// Answers a sent rating once its wait is over: the ACK envelope when the /on_rating is stored,
/// the seller's refusal, or 202 pending when the callback is late.
async fn answer(state: &AppState, sent: Sent, woken: Woken) -> Result<HttpResponse, ApiError> {
    let Sent {
        record,
        waiter,
        sent_at,
    } = sent;
    let callback = match woken {
        Woken::Callback(cb) => Some(*cb),
        Woken::Told | Woken::Deadline => state.store.get_callback(waiter.message_id()).await?,
    };
    drop(waiter);
    state.metrics.callback_wait(
        sent_at.elapsed(),
        match callback {
            Some(_) => WaitOutcome::Callback,
            None => WaitOutcome::Timeout,
        },
    );
    match callback {
        Some(mut cb) if !cb.refused() => {
            // The stored callback is what makes the rating read as completed (`get_rating`, a
            // repeated claim's answer): the record is not written again, and of it the envelope
            // needs only the order and the exchange's ttl.
            let sent = record.summary()?;
            if cb.context.ttl.is_none() {
                // Some sellers omit ttl on callbacks; the envelope always carries the
                // exchange's ttl.
                cb.context.ttl = sent.context.ttl.map(Cow::into_owned);
            }
            Ok(envelope_response(
                StatusCode::OK,
                &buyer_envelope(
                    &cb.context,
                    &sent.order_id,
                    cb.message.feedback_form.as_ref(),
                    "ACK",
                ),
            ))
        }
        // The seller took the /rating but refused it in its callback (an unknown order, a value
        // or category it does not accept): the same answer as a NACK, claim released.
        Some(CallbackRecord {
            error: Some(error), ..
        }) => Err(Box::pin(release(
            state,
            &record,
            Failure::Nack(error),
            ApiCode::SellerRejected,
        ))
        .await),
        // `rating_ack: false` with no error block: refused all the same, the reason said.
        Some(_) => Err(Box::pin(release(
            state,
            &record,
            Failure::Other(CallbackRecord::DECLINED.into()),
            ApiCode::SellerRejected,
        ))
        .await),
        None => {
            let record = record.unpack()?;
            Ok(envelope_response(
                StatusCode::ACCEPTED,
                &buyer_envelope(&record.context, &record.order_id, None, "pending"),
            ))
        }
    }
}

/// The buyer API's envelope as a JSON response, serialised once into a buffer of its size class
/// ([`crate::protocol::to_json`]).
fn envelope_response(status: StatusCode, envelope: &BuyerEnvelope<'_>) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(actix_web::http::header::ContentType::json())
        .body(crate::protocol::to_json(envelope).expect("the envelope serialises"))
}

/// Sends with a bounded retry on transport errors and busy answers (408, 429, 5xx), holding one
/// of the seller's slots for every attempt (a slow seller cannot take all our outbound
/// connections); any other answer is final. See [`send_held`].
pub(crate) async fn send_with_retry(
    state: &AppState,
    url: &str,
    body: Vec<u8>,
) -> Result<PeerAnswer, TransportError> {
    let b = &state.settings.buyer;
    let timeout = Duration::from_millis(b.send_timeout_ms);
    let Some(_slot) = state.seller_slots.acquire(url, timeout).await else {
        return Err(TransportError {
            message: format!(
                "{} /rating requests already in flight to this seller",
                b.max_in_flight_per_seller
            ),
            maybe_delivered: false,
        });
    };
    send_held(state, url, body).await
}

/// Signs `body` and sends it with a bounded retry on transport errors and busy answers (408,
/// 429, 5xx); any other answer is final. The caller holds a slot to the seller at `url`.
/// Every attempt sends the same bytes with the same message_id, which the seller side dedupes, so
/// retrying after a timeout cannot make it process the rating twice.
async fn send_held(
    state: &AppState,
    url: &str,
    body: Vec<u8>,
) -> Result<PeerAnswer, TransportError> {
    let b = &state.settings.buyer;
    let body = web::Bytes::from(body);
    let auth = state.outbound.authorization(&body);
    let timeout = Duration::from_millis(b.send_timeout_ms);
    let mut last = TransportError {
        message: String::new(),
        maybe_delivered: false,
    };
    let mut maybe_delivered = false;
    for attempt in 0..b.send_attempts {
        if attempt > 0 {
            state.metrics.retry(RetryTarget::Rating);
            tokio::time::sleep(Duration::from_millis(200 << (attempt - 1).min(4))).await;
        }
        match state.outbound.post(url, body.clone(), &auth, timeout).await {
            // A busy or failing seller (408, 429, 5xx): offer the same bytes again; a seller side
            // that did take them dedupes the repeat by message_id.
            Ok(answer) if attempt + 1 < b.send_attempts && seller_busy(&answer) => {
                tracing::warn!(
                    attempt = attempt + 1,
                    ?answer,
                    url,
                    "seller busy; /rating offered again"
                );
            }
            // After an attempt that may have arrived, only a clear answer settles it: an ACK, or a
            // NACK (a seller that had the message would ACK its repeat, not refuse it).
            Ok(PeerAnswer::Invalid { status, excerpt }) if maybe_delivered => {
                return Err(TransportError {
                    message: format!("an attempt timed out, then HTTP {status}: {excerpt}"),
                    maybe_delivered: true,
                });
            }
            Ok(answer) => return Ok(answer),
            Err(e) => {
                tracing::warn!(attempt = attempt + 1, error = %e, url, "/rating not delivered");
                maybe_delivered |= e.maybe_delivered;
                last = e;
            }
        }
    }
    // One attempt that may have arrived makes the whole send ambiguous.
    last.maybe_delivered = maybe_delivered;
    Err(last)
}

/// The API error for a /rating that did not end in an ACK (None for an ACK): the seller's NACK,
/// an unreadable answer, a seller never reached, or a delivery that may have happened
/// (`seller_timeout`: the caller keeps what it claimed).
pub(crate) fn send_failure(outcome: Result<PeerAnswer, TransportError>) -> Option<ApiError> {
    match outcome {
        Ok(PeerAnswer::Ack) => None,
        Ok(PeerAnswer::Nack { error, status }) => Some(ApiError {
            seller_error: error.map(Box::new),
            ..ApiError::new(
                ApiCode::SellerRejected,
                format!("HTTP {status}: the seller NACKed"),
            )
        }),
        Ok(PeerAnswer::Invalid { status, excerpt }) => Some(ApiError::new(
            ApiCode::SellerInvalidResponse,
            format!("HTTP {status}: {excerpt}"),
        )),
        Err(e) if e.maybe_delivered => Some(ApiError::new(ApiCode::SellerTimeout, e.message)),
        Err(e) => Some(ApiError::new(ApiCode::SellerUnreachable, e.message)),
    }
}

/// An answer meaning the seller did not process the request now (request timeout, rate limit,
/// server error): worth offering the same bytes again.
fn seller_busy(answer: &PeerAnswer) -> bool {
    let status = match answer {
        PeerAnswer::Ack => return false,
        PeerAnswer::Nack { status, .. } | PeerAnswer::Invalid { status, .. } => *status,
    };
    status == 408 || status == 429 || status >= 500
}

/// Why an exchange failed: the seller's NACK, or a reason of ours (unreachable, garbage answer).
enum Failure {
    Nack(NetworkError),
    Other(String),
}

/// Marks the exchange failed, which releases the one-time claim, and builds the 502.
///
/// The claim is released only while it is still this request's: the record as this request
/// claimed it (`held`), or with the `acknowledged` status it may have written since. A request
/// that took the rating over to send it again ([`send_again`], after a stall of this one past
/// the sending bound) holds the claim now and keeps it; this one then answers 409.
async fn release(state: &AppState, held: &Packed, failure: Failure, code: ApiCode) -> ApiError {
    let claimed = match held.unpack() {
        Ok(r) => r,
        Err(e) => return e,
    };
    let mut record = claimed.clone();
    record.status = RatingStatus::Failed;
    let (seller_error, reason) = match failure {
        Failure::Nack(e) => (Some(e), None),
        Failure::Other(reason) => (None, Some(reason)),
    };
    record.error = seller_error.clone();
    record.failure = reason.clone();
    let released = match state.store.replace_rating(&record, held.0.to_vec()).await {
        Ok(false) => {
            let acknowledged = RatingRecord {
                status: RatingStatus::Acknowledged,
                ..claimed
            };
            let was = crate::protocol::to_json(&acknowledged).expect("a rating record serialises");
            state.store.replace_rating(&record, was).await
        }
        as_claimed => as_claimed,
    };
    match released {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(
                order_id = %record.order_id,
                "the exchange failed after another request took the rating over; the claim is its"
            );
            return ApiError::new(
                ApiCode::AlreadyRated,
                "this order's rating is being sent again by another request",
            );
        }
        // Not known to be another's: answered as the failure it is.
        Err(e) => {
            tracing::error!(error = %e, order_id = %record.order_id, "could not release the claim")
        }
    }
    let message = match code {
        ApiCode::SellerRejected => "the seller refused the rating; it was not recorded, try again",
        ApiCode::SellerInvalidResponse => "the seller's answer was not understood; try again",
        ApiCode::InternalError => "the rating could not be sent; it was not recorded",
        _ => "the seller could not be reached; the rating was not recorded, try again",
    };
    let message = match &reason {
        Some(r) => format!("{message} ({r})"),
        None => message.to_owned(),
    };
    ApiError {
        seller_error: seller_error.map(Box::new),
        ..ApiError::new(code, message)
    }
}

/// A rating's status as users see it: its record's, unless an /on_rating is stored for it, which
/// completes it, or fails it when it carries the seller's refusal. The record itself is not
/// written again when its callback comes.
async fn rated_status(
    state: &AppState,
    record: &RatingRecord,
) -> Result<(RatingStatus, Option<CallbackRecord>), ApiError> {
    let callback = match record.status {
        RatingStatus::Failed => None,
        _ => state.store.get_callback(record.message_id()).await?,
    };
    let status = match &callback {
        Some(c) if c.refused() => RatingStatus::Failed,
        Some(_) => RatingStatus::Completed,
        None => record.status,
    };
    Ok((status, callback))
}

/// A seller's feedback form as buyer apps read it: `{"url","mime_type"}`, with `data` (what the
/// form is opened with: a prefill, a token) and `required` (whether the user must fill it: the app
/// decides how to prompt) when the seller sent them. The 200 envelope has room for neither.
pub fn form_view(f: &FeedbackForm) -> serde_json::Value {
    let mut v = json!({ "url": f.form.url, "mime_type": f.form.mime_type });
    if let Some(d) = &f.form.data {
        v["data"] = json!(d);
    }
    if let Some(required) = f.required {
        v["required"] = json!(required);
    }
    v
}

/// `GET /ret11/orders/{orderId}/rating`.
pub async fn get_rating(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let user_id = user(&state, req.headers())?;
    let order = owned_order(&state, &path, &user_id).await?;
    let record = state
        .store
        .get_rating(&order.order_id)
        .await?
        .ok_or_else(|| ApiError::new(ApiCode::RatingNotFound, "this order has not been rated"))?;
    let (status, callback) = rated_status(&state, &record).await?;
    let seller_refusal = callback.as_ref().and_then(|c| c.error.clone());
    let mut data = json!({
        "orderId": record.order_id,
        "status": status,
        "rating": record.submitted,
        "transactionId": record.context.transaction_id,
        "messageId": record.context.message_id,
        "submittedAt": record.created_at,
    });
    if let Some(f) = callback
        .as_ref()
        .and_then(|c| c.message.feedback_form.as_ref())
    {
        data["feedbackForm"] = form_view(f);
    }
    if let Some(e) = record.error.as_ref().or(seller_refusal.as_ref()) {
        data["error"] = json!(e);
    }
    let declined = callback
        .as_ref()
        .and_then(CallbackRecord::declined_without_error);
    if let Some(f) = record.failure.as_deref().or(declined) {
        data["failure"] = json!(f);
    }
    Ok(HttpResponse::Ok().json(json!({ "data": data })))
}

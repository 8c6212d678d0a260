//! Buyer API errors: one table gives each error its stable code and HTTP status, and every error
//! renders as `{"error":{"code","message","details"?,"sellerError"?}}`. Nothing leaves as a bare 500.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::protocol::NetworkError;
use crate::store::StoreError;

/// The stable machine codes of the buyer and internal APIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiCode {
    /// Missing, malformed, expired or wrongly signed bearer token.
    Unauthorized,
    /// The body is not JSON or not an object.
    InvalidJson,
    /// One or more fields are invalid (see details).
    ValidationFailed,
    /// The body exceeds the configured limit.
    PayloadTooLarge,
    /// The request's headers exceed `server.max_header_bytes`.
    HeadersTooLarge,
    /// The order belongs to another user.
    Forbidden,
    /// No such order.
    OrderNotFound,
    /// The order has not been rated.
    RatingNotFound,
    /// The order is not in state Completed.
    OrderNotCompleted,
    /// The order was rated already.
    AlreadyRated,
    /// The seller NACKed /rating.
    SellerRejected,
    /// The seller could not be reached after retries.
    SellerUnreachable,
    /// The seller answered something that is not an ACK/NACK.
    SellerInvalidResponse,
    /// The store could not be reached; nothing was changed.
    StoreUnavailable,
    /// The registry could not be reached (readiness).
    RegistryUnavailable,
    /// No such route.
    NotFound,
    /// The route is served, with other methods (the `Allow` header names them).
    MethodNotAllowed,
    /// A defect of ours caught before it reached a peer (an outbound payload failed its schema).
    InternalError,
    /// Too many buyer requests are waiting for callbacks; retry after the Retry-After seconds.
    TooBusy,
    /// The seller did not answer /rating in time; it may have it, so the rating stays claimed.
    SellerTimeout,
    /// The registry's `/on_subscribe` challenge could not be decrypted.
    InvalidChallenge,
    /// No such user (internal users API).
    UserNotFound,
    /// The received rating's `/on_rating` was sent already, is being sent, or is not the seller
    /// platform's to send.
    AlreadyAnswered,
    /// The received rating's ttl has passed: an `/on_rating` now would come too late.
    TtlPassed,
    /// No such given-up notification (never, forgotten, or sent again already).
    NotificationNotFound,
    /// The notification's channel is not configured now: sending it again would fail at once.
    ChannelNotConfigured,
    /// No backups here: `store.backup_dir` is not set, or the store is Redis.
    BackupUnavailable,
    /// A backup is being made by this process already.
    BackupInProgress,
    /// The backup could not be written (the directory, the disk); nothing was left.
    BackupFailed,
}

impl ApiCode {
    /// (code, status).
    pub fn spec(self) -> (&'static str, StatusCode) {
        use ApiCode::*;
        match self {
            Unauthorized => ("unauthorized", StatusCode::UNAUTHORIZED),
            InvalidJson => ("invalid_json", StatusCode::BAD_REQUEST),
            ValidationFailed => ("validation_failed", StatusCode::BAD_REQUEST),
            PayloadTooLarge => ("payload_too_large", StatusCode::PAYLOAD_TOO_LARGE),
            HeadersTooLarge => (
                "headers_too_large",
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ),
            Forbidden => ("forbidden", StatusCode::FORBIDDEN),
            OrderNotFound => ("order_not_found", StatusCode::NOT_FOUND),
            RatingNotFound => ("rating_not_found", StatusCode::NOT_FOUND),
            OrderNotCompleted => ("order_not_completed", StatusCode::UNPROCESSABLE_ENTITY),
            AlreadyRated => ("already_rated", StatusCode::CONFLICT),
            SellerRejected => ("seller_rejected", StatusCode::BAD_GATEWAY),
            SellerUnreachable => ("seller_unreachable", StatusCode::BAD_GATEWAY),
            SellerInvalidResponse => ("seller_invalid_response", StatusCode::BAD_GATEWAY),
            StoreUnavailable => ("store_unavailable", StatusCode::SERVICE_UNAVAILABLE),
            RegistryUnavailable => ("registry_unavailable", StatusCode::SERVICE_UNAVAILABLE),
            NotFound => ("not_found", StatusCode::NOT_FOUND),
            MethodNotAllowed => ("method_not_allowed", StatusCode::METHOD_NOT_ALLOWED),
            InternalError => ("internal_error", StatusCode::INTERNAL_SERVER_ERROR),
            TooBusy => ("too_busy", StatusCode::SERVICE_UNAVAILABLE),
            SellerTimeout => ("seller_timeout", StatusCode::GATEWAY_TIMEOUT),
            InvalidChallenge => ("invalid_challenge", StatusCode::BAD_REQUEST),
            UserNotFound => ("user_not_found", StatusCode::NOT_FOUND),
            AlreadyAnswered => ("already_answered", StatusCode::CONFLICT),
            TtlPassed => ("ttl_passed", StatusCode::GONE),
            NotificationNotFound => ("notification_not_found", StatusCode::NOT_FOUND),
            ChannelNotConfigured => ("channel_not_configured", StatusCode::CONFLICT),
            BackupUnavailable => ("backup_unavailable", StatusCode::CONFLICT),
            BackupInProgress => ("backup_in_progress", StatusCode::CONFLICT),
            BackupFailed => ("backup_failed", StatusCode::INTERNAL_SERVER_ERROR),
        }
    }
}

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// JSON path, e.g. `itemRatings[1].rating`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    /// Convenience constructor.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A buyer or internal API error.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// Code and status.
    pub code: ApiCode,
    /// Human-readable message.
    pub message: String,
    /// Field errors, for validation failures.
    pub details: Vec<FieldError>,
    /// The seller's NACK error, when there was one.
    pub seller_error: Option<Box<NetworkError>>,
}

impl ApiError {
    /// An error with a message.
    pub fn new(code: ApiCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Vec::new(),
            seller_error: None,
        }
    }

    /// A validation failure listing every bad field.
    pub fn validation(details: Vec<FieldError>) -> Self {
        Self {
            code: ApiCode::ValidationFailed,
            message: "request has invalid fields".into(),
            details,
            seller_error: None,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.spec().0, self.message)
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody<'a> {
    code: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    details: &'a [FieldError],
    #[serde(skip_serializing_if = "Option::is_none")]
    seller_error: Option<&'a NetworkError>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: ErrorBody<'a>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.spec().1
    }

    fn error_response(&self) -> HttpResponse {
        let (code, status) = self.code.spec();
        if status.is_server_error() {
            tracing::warn!(code, message = %self.message, "buyer API error");
        }
        let mut r = HttpResponse::build(status).json(Envelope {
            error: ErrorBody {
                code,
                message: &self.message,
                details: &self.details,
                seller_error: self.seller_error.as_deref(),
            },
        });
        if self.code == ApiCode::TooBusy
            && let Ok(v) = actix_web::http::header::HeaderValue::from_str("1")
        {
            r.headers_mut()
                .insert(actix_web::http::header::RETRY_AFTER, v);
        }
        if self.code == ApiCode::StoreUnavailable {
            // Only `From<StoreError>` builds this code; the metrics middleware counts it.
            r.extensions_mut().insert(super::metrics::StoreFailure);
        }
        r
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        ApiError::new(
            ApiCode::StoreUnavailable,
            "the rating store is unavailable; nothing was changed, try again",
        )
    }
}

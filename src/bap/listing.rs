//! The listing feedback API: a one-time feedback between the parties of a listing (an order).
//!
//! `POST /v2/listings/{listing_id}/feedback` with a buyer API token. The token's `sub` is the
//! rater: the order's user is the shipper (rating the service provider); a token whose `sub`
//! equals the order's `providerId` is the provider (rating the shipper, its
//! `DetailedTspFeedback` ignored); anyone else gets 403. Each (rater, listing) may give feedback
//! once: the slot is taken atomically before the signed `/rating` is sent and released only when
//! that /rating surely did not reach the seller. `GET /v2/listings/{listing_id}/feedback/{user}`
//! (the `Location` of a 201) reads it back for either party. Errors are
//! `{"code","message","errors":[{"field","message"}]}`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::{Map, Value, json};

use crate::clock::ondc_timestamp;
use crate::http::error::{ApiCode, ApiError, FieldError};
use crate::http::record::Direction;
use crate::http::{AppState, read_body};
use crate::protocol::{
    Action, Envelope, FeedbackAnswer, NetworkError, RatingCategory, RatingEntry, RatingMessage,
};
use crate::store::{FeedbackApi, FeedbackSent, ListingFeedbackRecord, Order};

/// The overall ratings and the ONDC value each is sent as.
pub const RATINGS: [(&str, &str); 3] = [("Positive", "5"), ("Neutral", "3"), ("Negative", "1")];

/// The detailed service-provider scores, in the order they are sent.
pub const DETAILED_FIELDS: [&str; 4] = [
    "Communication",
    "CareOfGoods",
    "Punctuality_Timeliness",
    "ServicesAsDescribed",
];

/// The highest detailed score.
pub const DETAILED_MAX: u64 = 5;

/// The longest free-text feedback taken, in characters.
pub const FEEDBACK_MAX_CHARS: usize = 1000;

/// The `feedback_form` root every answer hangs from.
const FORM_ROOT: &str = "listing_feedback";

/// A listing feedback API error.
#[derive(Debug, Clone)]
pub struct ListingError {
    /// HTTP status.
    pub status: StatusCode,
    /// Numeric code (40001 missing rating, 40006 invalid rating, ...).
    pub code: u32,
    /// What went wrong, in words.
    pub message: String,
    /// One entry per invalid field.
    pub errors: Vec<FieldError>,
    /// The seller's error block, on a NACK.
    pub seller_error: Option<Box<NetworkError>>,
    store_failure: bool,
}

impl ListingError {
    fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            errors: Vec::new(),
            seller_error: None,
            store_failure: false,
        }
    }

    fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, 40400, "The listing was not found.")
    }

    fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            40300,
            "You did not transact on this listing.",
        )
    }
}

impl std::fmt::Display for ListingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.code, self.message)
    }
}

impl ResponseError for ListingError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        if self.status.is_server_error() {
            tracing::warn!(error = %self, "listing feedback API error");
        }
        let mut body = json!({ "code": self.code, "message": self.message });
        if !self.errors.is_empty() {
            body["errors"] = json!(self.errors);
        }
        if let Some(e) = &self.seller_error {
            body["seller_error"] = json!(e);
        }
        let mut r = HttpResponse::build(self.status).json(body);
        if self.store_failure {
            r.extensions_mut()
                .insert(crate::http::metrics::StoreFailure);
        }
        r
    }
}

/// The buyer API's errors in this API's shape.
impl From<ApiError> for ListingError {
    fn from(e: ApiError) -> Self {
        use ApiCode::*;
        let (code, message) = match e.code {
            Unauthorized => (40100, "The token is missing, invalid or expired."),
            InvalidJson | ValidationFailed | InvalidChallenge => {
                (40000, "The request body is not valid JSON.")
            }
            PayloadTooLarge => (41300, "The request body is too large."),
            HeadersTooLarge => (43100, "The request headers are too large."),
            Forbidden => return Self::forbidden(),
            OrderNotFound | RatingNotFound | NotFound | UserNotFound => return Self::not_found(),
            OrderNotCompleted => (42200, "Only a completed listing can be rated."),
            AlreadyRated => (40900, "Feedback was already given on this listing."),
            SellerRejected => (50201, "The provider's platform refused the feedback."),
            SellerUnreachable => (50202, "The provider's platform could not be reached."),
            SellerInvalidResponse => (50203, "The provider's platform answered unintelligibly."),
            StoreUnavailable | TooBusy | RegistryUnavailable => {
                (50300, "The service is unavailable; try again.")
            }
            SellerTimeout => (
                50400,
                "The provider's platform did not answer in time; the feedback is kept.",
            ),
            // (A 405 is answered before any handler.)
            InternalError | AlreadyAnswered | TtlPassed | MethodNotAllowed
            | NotificationNotFound | ChannelNotConfigured | BackupUnavailable
            | BackupInProgress | BackupFailed => (50000, "Internal error."),
        };
        Self {
            seller_error: e.seller_error,
            store_failure: e.code == StoreUnavailable,
            ..Self::new(e.code.spec().1, code, message)
        }
    }
}

impl From<crate::store::StoreError> for ListingError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

/// What a listing feedback body carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingSubmission {
    /// `Positive`, `Neutral` or `Negative`.
    pub rating: String,
    /// The free text, trimmed; None when absent or blank.
    pub feedback: Option<String>,
    /// The detailed scores given, in [`DETAILED_FIELDS`] order (empty when not taken).
    pub detailed: Vec<(String, u8)>,
}

fn field_error(field: &str, message: String) -> FieldError {
    FieldError::new(field, message)
}

/// Reads a body. `take_detailed` is true for a shipper rating the provider; otherwise
/// `DetailedTspFeedback` is ignored (not even checked). Every bad field is reported; the code is
/// 40001 when `Rating` is missing, 40006 when it is not an allowed value, 40000 otherwise.
pub fn parse(body: &[u8], take_detailed: bool) -> Result<ListingSubmission, ListingError> {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
        return Err(ApiError::new(ApiCode::InvalidJson, "not a JSON object").into());
    };
    let mut errors = Vec::new();
    let mut code = 40000;
    let rating = match obj.get("Rating") {
        None | Some(Value::Null) => {
            code = 40001;
            errors.push(field_error(
                "Rating",
                "The Rating field is required.".into(),
            ));
            None
        }
        Some(Value::String(s)) if RATINGS.iter().any(|(r, _)| r == s) => Some(s.clone()),
        Some(_) => {
            code = 40006;
            errors.push(field_error(
                "Rating",
                "The field Rating must be one of Positive, Negative, Neutral.".into(),
            ));
            None
        }
    };
    let feedback = match obj.get("Feedback") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.chars().count() <= FEEDBACK_MAX_CHARS => {
            Some(s.trim().to_owned()).filter(|s| !s.is_empty())
        }
        Some(_) => {
            errors.push(field_error(
                "Feedback",
                format!(
                    "The field Feedback must be a string with a maximum length of {FEEDBACK_MAX_CHARS}."
                ),
            ));
            None
        }
    };
    let mut detailed = Vec::new();
    if take_detailed {
        match obj.get("DetailedTspFeedback") {
            None | Some(Value::Null) => {}
            Some(Value::Object(d)) => {
                for field in DETAILED_FIELDS {
                    match d.get(field) {
                        None | Some(Value::Null) => {}
                        // A whole number, as its schema's `integer` is: `3.0` is 3.
                        Some(v) => match v
                            .as_f64()
                            .filter(|n| n.fract() == 0.0 && (0.0..=DETAILED_MAX as f64).contains(n))
                        {
                            Some(n) => detailed.push((field.to_owned(), n as u8)),
                            None => errors.push(field_error(
                                field,
                                format!("The field {field} must be between 0 and {DETAILED_MAX}."),
                            )),
                        },
                    }
                }
            }
            Some(_) => errors.push(field_error(
                "DetailedTspFeedback",
                "The field DetailedTspFeedback must be an object.".into(),
            )),
        }
    }
    match rating {
        Some(rating) if errors.is_empty() => Ok(ListingSubmission {
            rating,
            feedback,
            detailed,
        }),
        _ => {
            let message = match code {
                40001 | 40006 => errors[0].message.clone(),
                _ => "One or more validation errors occurred.".to_owned(),
            };
            Err(ListingError {
                errors,
                ..ListingError::new(StatusCode::BAD_REQUEST, code, message)
            })
        }
    }
}

/// The ONDC rating: the Order rating with the mapped value, the rater's role, the free text and
/// the detailed scores as `feedback_form` answers.
pub fn rating_entry(listing_id: &str, role: &str, s: &ListingSubmission) -> RatingEntry {
    let value = RATINGS
        .iter()
        .find(|(r, _)| *r == s.rating)
        .map_or("3", |(_, v)| v)
        .to_owned();
    let answer = |id: String, question: &str, answer: String| FeedbackAnswer {
        id,
        parent_id: FORM_ROOT.into(),
        question: question.into(),
        answer,
        answer_type: "text".into(),
    };
    let mut answers = vec![answer("rater_role".into(), "Rated by", role.to_owned())];
    if let Some(f) = &s.feedback {
        answers.push(answer("feedback".into(), "Feedback", f.clone()));
    }
    for (field, n) in &s.detailed {
        answers.push(answer(
            format!("DetailedTspFeedback.{field}"),
            field,
            n.to_string(),
        ));
    }
    RatingEntry {
        rating_category: RatingCategory::Order,
        id: listing_id.to_owned(),
        value,
        feedback_form: answers,
    }
}

fn rater(state: &AppState, req: &HttpRequest) -> Result<String, ListingError> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    state
        .tokens
        .user_from_header(header, state.clock.unix())
        .map_err(|e| ApiError::new(ApiCode::Unauthorized, e.to_string()).into())
}

/// `shipper` for the order's user, `provider` for its provider, None for anyone else.
fn role_of(order: &Order, sub: &str) -> Option<&'static str> {
    if order.user_id == sub {
        Some("shipper")
    } else if order.provider_id.as_deref() == Some(sub) {
        Some("provider")
    } else {
        None
    }
}

async fn listing(state: &AppState, listing_id: &str) -> Result<Order, ListingError> {
    state
        .store
        .get_order(listing_id)
        .await?
        .ok_or_else(ListingError::not_found)
}

/// Where a user's feedback on a listing is read back.
pub fn location(listing_id: &str, user_id: &str) -> String {
    format!(
        "/v2/listings/{}/feedback/{}",
        segment(listing_id),
        segment(user_id)
    )
}

/// Percent-encodes all but unreserved characters, for one path segment.
fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn view(r: &ListingFeedbackRecord, status: &str) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("listing_id".into(), json!(r.listing_id));
    out.insert("user_id".into(), json!(r.user_id));
    out.insert("rater_role".into(), json!(r.rater_role));
    out.insert("Rating".into(), json!(r.rating));
    if let Some(f) = &r.feedback {
        out.insert("Feedback".into(), json!(f));
    }
    if !r.detailed.is_empty() {
        let d: Map<String, Value> = r
            .detailed
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        out.insert("DetailedTspFeedback".into(), Value::Object(d));
    }
    out.insert("status".into(), json!(status));
    out.insert("transaction_id".into(), json!(r.context.transaction_id));
    out.insert("message_id".into(), json!(r.context.message_id));
    out.insert("submitted_at".into(), json!(r.submitted_at));
    out
}

/// `POST /v2/listings/{listing_id}/feedback`.
pub async fn post_feedback(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ListingError> {
    let sub = rater(&state, &req)?;
    let listing_id = path.into_inner();
    let body = read_body(req.headers(), payload, state.settings.server.max_body_bytes).await?;
    let order = listing(&state, &listing_id).await?;
    let role = role_of(&order, &sub).ok_or_else(ListingError::forbidden)?;
    let submission = parse(&body, role == "shipper")?;
    if !order.state.eq_ignore_ascii_case("Completed") {
        return Err(ApiError::new(ApiCode::OrderNotCompleted, "order not completed").into());
    }

    let now = state.clock.now();
    let settings = &state.settings;
    let context = super::api::rating_context(settings, &order, now);
    let mut record = ListingFeedbackRecord {
        user_id: sub.clone(),
        listing_id: listing_id.clone(),
        rater_role: role.to_owned(),
        rating: submission.rating.clone(),
        feedback: submission.feedback.clone(),
        detailed: submission.detailed.clone(),
        status: "pending".into(),
        context: context.clone(),
        submitted_at: ondc_timestamp(now),
    };
    if !state.store.claim_listing_feedback(&record).await? {
        return Err(ListingError::new(
            StatusCode::CONFLICT,
            40900,
            "Feedback was already given on this listing.",
        ));
    }
    crate::http::network::record_ids(&context);
    let release = |reason: ApiError| {
        let state = state.clone();
        let (sub, listing_id) = (sub.clone(), listing_id.clone());
        async move {
            if let Err(e) = state
                .store
                .release_listing_feedback(&sub, &listing_id)
                .await
            {
                tracing::error!(error = %e, "could not release the listing feedback slot");
            }
            ListingError::from(reason)
        }
    };
    let body = crate::protocol::to_json(&Envelope {
        context: &context,
        message: RatingMessage {
            ratings: vec![rating_entry(&order.order_id, role, &submission)],
        },
    })
    .expect("rating message serialises");
    if settings.server.validate_outbound
        && let Err(v) = state.schemas.rating_outbound.check_bytes(&body)
    {
        tracing::error!(violation = %v, "outbound /rating fails its schema; not sent");
        return Err(release(ApiError::new(ApiCode::InternalError, v.to_string())).await);
    }
    // Indexed before sending, so the seller's /on_rating is recognised however fast it comes.
    if let Err(e) = state
        .store
        .put_feedback_sent(&FeedbackSent {
            user_id: sub.clone(),
            order_id: listing_id.clone(),
            context: context.clone(),
            api: Some(FeedbackApi::Listing),
            rating: Some(record.rating.clone()),
        })
        .await
    {
        return Err(release(e.into()).await);
    }
    let url = context.rating_url();
    state.record(Direction::Sent, Action::Rating, &url, &body);
    let failure = super::api::send_failure(super::api::send_with_retry(&state, &url, body).await);
    if let Some(e) = failure
        .as_ref()
        .filter(|e| e.code == ApiCode::SellerTimeout)
    {
        // The seller may have it: keep the slot (pending) so the listing is not rated twice.
        tracing::warn!(error = %e, "listing feedback /rating delivery unknown; slot kept");
        return Err(e.clone().into());
    }
    if let Some(e) = failure {
        tracing::warn!(error = %e, "listing feedback /rating not taken; slot released");
        return Err(release(e).await);
    }
    record.status = "acknowledged".into();
    if let Err(e) = state.store.put_listing_feedback(&record).await {
        // The seller has it and the slot stays taken; only the status lags.
        tracing::error!(error = %e, "could not record the seller's ACK");
    }
    super::notify::feedback_recorded(
        &state,
        super::notify::Notice {
            api: FeedbackApi::Listing,
            id: listing_id.clone(),
            user_id: sub.clone(),
            rating: record.rating.clone(),
            message_id: record.context.message_id.clone(),
            at: ondc_timestamp(now),
            outcome: super::notify::Outcome::Recorded,
        },
    )
    .await;
    Ok(HttpResponse::Created()
        .insert_header((
            actix_web::http::header::LOCATION,
            location(&listing_id, &sub),
        ))
        .json(json!({ "feedback": view(&record, "acknowledged") })))
}

/// `GET /v2/listings/{listing_id}/feedback/{user_id}`: for either party of the listing.
pub async fn get_feedback(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ListingError> {
    let sub = rater(&state, &req)?;
    let (listing_id, user_id) = path.into_inner();
    let order = listing(&state, &listing_id).await?;
    role_of(&order, &sub).ok_or_else(ListingError::forbidden)?;
    let record = state
        .store
        .get_listing_feedback(&user_id, &listing_id)
        .await?
        .ok_or_else(|| ListingError::new(StatusCode::NOT_FOUND, 40401, "No such feedback."))?;
    let callback = state.store.get_callback(&record.context.message_id).await?;
    let status = match &callback {
        None => record.status.as_str(),
        Some(c) if c.refused() => "refused",
        Some(_) => "completed",
    };
    let mut out = view(&record, status);
    super::feedback::callback_view(&mut out, callback.as_ref());
    Ok(HttpResponse::Ok().json(json!({ "feedback": out })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_a_shipper_body() {
        let s = parse(
            br#"{"Rating":"Negative","Feedback":" late ","DetailedTspFeedback":
                {"Communication":0,"Punctuality_Timeliness":5,"Other":9}}"#,
            true,
        )
        .unwrap();
        let e = rating_entry("L1", "shipper", &s);
        assert_eq!(e.value, "1");
        let ids: Vec<(&str, &str)> = e
            .feedback_form
            .iter()
            .map(|a| (a.id.as_str(), a.answer.as_str()))
            .collect();
        assert_eq!(
            ids,
            [
                ("rater_role", "shipper"),
                ("feedback", "late"),
                ("DetailedTspFeedback.Communication", "0"),
                ("DetailedTspFeedback.Punctuality_Timeliness", "5"),
            ]
        );
        // A provider's detailed scores are ignored, even invalid ones.
        let p = parse(
            br#"{"Rating":"Neutral","DetailedTspFeedback":{"Communication":9}}"#,
            false,
        )
        .unwrap();
        assert!(p.detailed.is_empty());
        assert_eq!(rating_entry("L1", "provider", &p).value, "3");
    }

    #[test]
    fn a_detailed_score_is_a_whole_number_however_written() {
        let p = parse(
            br#"{"Rating":"Positive","DetailedTspFeedback":{"Communication":3.0,"CareOfGoods":0,"ServicesAsDescribed":5e0}}"#,
            true,
        )
        .unwrap();
        assert_eq!(
            p.detailed,
            vec![
                ("Communication".to_owned(), 3),
                ("CareOfGoods".to_owned(), 0),
                ("ServicesAsDescribed".to_owned(), 5)
            ]
        );
        for refused in ["2.5", "-1", "6", "5.000001", "\"3\"", "true"] {
            let body = format!(
                r#"{{"Rating":"Positive","DetailedTspFeedback":{{"Communication":{refused}}}}}"#
            );
            let e = parse(body.as_bytes(), true).unwrap_err();
            assert_eq!(e.code, 40000, "{refused}");
            assert_eq!(e.errors[0].field, "Communication", "{refused}");
        }
    }

    #[test]
    fn codes_follow_the_rating() {
        assert_eq!(parse(b"{}", true).unwrap_err().code, 40001);
        assert_eq!(
            parse(br#"{"Rating":"Great"}"#, true).unwrap_err().code,
            40006
        );
        let e = parse(
            br#"{"Rating":"Positive","DetailedTspFeedback":{"Communication":6,"CareOfGoods":-1}}"#,
            true,
        )
        .unwrap_err();
        assert_eq!(e.code, 40000);
        assert_eq!(e.errors.len(), 2);
        assert_eq!(
            e.errors[0].message,
            "The field Communication must be between 0 and 5."
        );
        assert_eq!(parse(b"[]", true).unwrap_err().code, 40000);
    }
}

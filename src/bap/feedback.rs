//! The v2 feedback API: create or update a user's feedback on an order.
//!
//! `POST /v2/feedback/users/{user_id}/orders/{order_id}/rating` sends a new signed `/rating`
//! (fresh message_id, the order's transaction_id) on every call and answers `{"success":true}`
//! once the seller ACKed it; `GET` on the same path reads back the latest acknowledged
//! submission. It never touches the one-time claim of `POST /ret11/rating`: the two APIs keep
//! their own records. Errors are `{"errors":[{"error","error_code","error_meta"}]}`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::clock::ondc_timestamp;
use crate::http::error::{ApiCode, ApiError};
use crate::http::record::Direction;
use crate::http::{AppState, read_body};
use crate::protocol::{
    Action, Envelope, FeedbackAnswer, RatingCategory, RatingEntry, RatingMessage,
};
use crate::store::{
    CallbackRecord, FeedbackApi, FeedbackRecord, FeedbackSent, FeedbackSubmission, Order,
};

/// The rating values, lowest first; `STARSn` is sent as `"n"`.
pub const RATING_VALUES: [&str; 5] = ["STARS1", "STARS2", "STARS3", "STARS4", "STARS5"];

/// The highlights a caller may give.
pub const HIGHLIGHTS: [&str; 10] = [
    "QUALITY_ITEMS",
    "SMART_BAGGING",
    "EXTRA_EFFORT",
    "HELPFUL_CHAT",
    "GOOD_REPLACEMENTS",
    "SMOOTH_DELIVERY",
    "FAST_PICKUP",
    "CLEAR_PICKUP_INSTRUCTIONS",
    "EASY_PARKING",
    "SMOOTH_HANDOFF",
];

/// The longest thank-you note taken, in characters.
pub const NOTE_MAX_CHARS: usize = 1000;

/// The `feedback_form` root every answer hangs from.
const FORM_ROOT: &str = "order_feedback";

/// One entry of the error list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeedbackErrorItem {
    /// Human-readable error name.
    pub error: &'static str,
    /// Numeric code, null when the API specifies none.
    pub error_code: Option<u32>,
    /// Details, e.g. `{"key":"user_id"}`.
    pub error_meta: Value,
}

impl FeedbackErrorItem {
    fn new(error: &'static str, code: Option<u32>, meta: Value) -> Self {
        Self {
            error,
            error_code: code,
            error_meta: meta,
        }
    }

    fn keyed(error: &'static str, code: u32, key: impl Into<String>) -> Self {
        Self::new(error, Some(code), json!({ "key": key.into() }))
    }
}

/// A v2 feedback API error: a status and one or several errors.
#[derive(Debug, Clone)]
pub struct FeedbackError {
    /// HTTP status.
    pub status: StatusCode,
    /// The errors, at least one.
    pub errors: Vec<FeedbackErrorItem>,
    store_failure: bool,
}

impl FeedbackError {
    fn one(status: StatusCode, item: FeedbackErrorItem) -> Self {
        Self {
            status,
            errors: vec![item],
            store_failure: false,
        }
    }

    fn bad_request(errors: Vec<FeedbackErrorItem>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            errors,
            store_failure: false,
        }
    }

    fn not_found() -> Self {
        Self::one(
            StatusCode::NOT_FOUND,
            FeedbackErrorItem::new("Resource not found", Some(4000), json!({})),
        )
    }
}

impl std::fmt::Display for FeedbackError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.errors.iter().map(|e| e.error).collect();
        write!(f, "{}: {}", self.status, names.join(", "))
    }
}

impl ResponseError for FeedbackError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, errors = %self, "feedback API error");
        }
        let mut r = HttpResponse::build(self.status).json(json!({ "errors": self.errors }));
        if self.store_failure {
            r.extensions_mut()
                .insert(crate::http::metrics::StoreFailure);
        }
        r
    }
}

/// The buyer API's errors in this API's shape (authentication, body limits, the store, the
/// seller exchange).
impl From<ApiError> for FeedbackError {
    fn from(e: ApiError) -> Self {
        use ApiCode::*;
        let (error, code, meta) = match e.code {
            Unauthorized => ("Unauthorized", 2001, json!({})),
            InvalidJson | ValidationFailed => ("Invalid Request Body", 1000, json!({})),
            PayloadTooLarge => ("Payload Too Large", 1007, json!({})),
            HeadersTooLarge => ("Request Header Fields Too Large", 1008, json!({})),
            SellerRejected => (
                "Seller Rejected",
                5020,
                match &e.seller_error {
                    Some(s) => json!({ "seller_error": s }),
                    None => json!({}),
                },
            ),
            SellerUnreachable => ("Seller Unreachable", 5021, json!({})),
            SellerInvalidResponse => ("Seller Invalid Response", 5022, json!({})),
            StoreUnavailable | TooBusy | RegistryUnavailable => {
                ("Service Unavailable", 5030, json!({}))
            }
            SellerTimeout => ("Seller Timeout", 5040, json!({})),
            OrderNotFound | RatingNotFound | NotFound | Forbidden | UserNotFound => {
                return Self::not_found();
            }
            OrderNotCompleted => ("Order Not Completed", 4220, json!({})),
            // Codes this API's handlers never give (a 405 is answered before any handler).
            AlreadyRated | InvalidChallenge | InternalError | AlreadyAnswered | TtlPassed
            | MethodNotAllowed | NotificationNotFound | ChannelNotConfigured
            | BackupUnavailable | BackupInProgress | BackupFailed => {
                ("Internal Error", 5000, json!({}))
            }
        };
        Self {
            status: e.code.spec().1,
            errors: vec![FeedbackErrorItem::new(error, Some(code), meta)],
            store_failure: e.code == StoreUnavailable,
        }
    }
}

impl From<crate::store::StoreError> for FeedbackError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

/// Reads a feedback body, reporting every bad field. Keys: `rating_value`, `highlights[i]`,
/// `thank_you_note`, or the unknown field's name.
pub fn parse(body: &[u8]) -> Result<FeedbackSubmission, Vec<FeedbackErrorItem>> {
    let invalid_body = || {
        vec![FeedbackErrorItem::new(
            "Invalid Request Body",
            Some(1000),
            json!({}),
        )]
    };
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
        return Err(invalid_body());
    };
    let mut errors = Vec::new();
    for key in obj.keys() {
        if !["rating_value", "highlights", "thank_you_note"].contains(&key.as_str()) {
            errors.push(FeedbackErrorItem::keyed("Unknown Field", 1006, key));
        }
    }
    let rating_value = match obj.get("rating_value") {
        None | Some(Value::Null) => {
            errors.push(FeedbackErrorItem::keyed(
                "Missing Field",
                1002,
                "rating_value",
            ));
            None
        }
        Some(Value::String(s)) if RATING_VALUES.contains(&s.as_str()) => Some(s.clone()),
        Some(_) => {
            errors.push(FeedbackErrorItem::keyed(
                "Invalid Rating Value",
                1003,
                "rating_value",
            ));
            None
        }
    };
    let mut highlights: Vec<String> = Vec::new();
    match obj.get("highlights") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, h) in list.iter().enumerate() {
                match h.as_str().filter(|s| HIGHLIGHTS.contains(s)) {
                    Some(s) if highlights.iter().any(|x| x == s) => {}
                    Some(s) => highlights.push(s.to_owned()),
                    None => errors.push(FeedbackErrorItem::keyed(
                        "Invalid Highlight",
                        1004,
                        format!("highlights[{i}]"),
                    )),
                }
            }
        }
        Some(_) => errors.push(FeedbackErrorItem::keyed(
            "Invalid Field",
            1005,
            "highlights",
        )),
    }
    let thank_you_note = match obj.get("thank_you_note") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.chars().count() <= NOTE_MAX_CHARS => {
            // A blank note is no note: ONDC answers are never blank.
            Some(s.trim().to_owned()).filter(|s| !s.is_empty())
        }
        Some(_) => {
            errors.push(FeedbackErrorItem::keyed(
                "Invalid Field",
                1005,
                "thank_you_note",
            ));
            None
        }
    };
    match rating_value {
        Some(rating_value) if errors.is_empty() => Ok(FeedbackSubmission {
            rating_value,
            highlights,
            thank_you_note,
        }),
        _ => Err(errors),
    }
}

/// The ONDC rating for a submission: the Order rating with the stars, and the highlights and
/// thank-you note as its `feedback_form` answers.
pub fn rating_entry(order_id: &str, s: &FeedbackSubmission) -> RatingEntry {
    let value = s
        .rating_value
        .strip_prefix("STARS")
        .unwrap_or(&s.rating_value)
        .to_owned();
    let mut answers: Vec<FeedbackAnswer> = s
        .highlights
        .iter()
        .map(|h| FeedbackAnswer {
            id: format!("highlights.{h}"),
            parent_id: FORM_ROOT.into(),
            question: "What went well?".into(),
            answer: h.clone(),
            answer_type: "checkbox".into(),
        })
        .collect();
    if let Some(note) = &s.thank_you_note {
        answers.push(FeedbackAnswer {
            id: "thank_you_note".into(),
            parent_id: FORM_ROOT.into(),
            question: "Thank-you note".into(),
            answer: note.clone(),
            answer_type: "text".into(),
        });
    }
    RatingEntry {
        rating_category: RatingCategory::Order,
        id: order_id.to_owned(),
        value,
        feedback_form: answers,
    }
}

/// Any valid buyer API token (HS256 or EdDSA): the caller is a backend, and the user is the one
/// in the path, not the token's `sub`.
fn authenticate(state: &AppState, req: &HttpRequest) -> Result<(), FeedbackError> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    state
        .tokens
        .user_from_header(header, state.clock.unix())
        .map(|_| ())
        .map_err(|e| ApiError::new(ApiCode::Unauthorized, e.to_string()).into())
}

/// The order, when it exists and belongs to `user_id` (another user's order is "not found").
async fn users_order(
    state: &AppState,
    user_id: &str,
    order_id: &str,
) -> Result<Order, FeedbackError> {
    match state.store.get_order(order_id).await? {
        Some(o) if o.user_id == user_id => Ok(o),
        _ => Err(FeedbackError::not_found()),
    }
}

fn user_not_found() -> FeedbackErrorItem {
    FeedbackErrorItem::keyed("User Not Found", 1001, "user_id")
}

/// `POST /v2/feedback/users/{user_id}/orders/{order_id}/rating`.
pub async fn put_feedback(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse, FeedbackError> {
    authenticate(&state, &req)?;
    let (user_id, order_id) = path.into_inner();
    let body = read_body(req.headers(), payload, state.settings.server.max_body_bytes).await?;
    let parsed = parse(&body);
    let user = state.store.get_user(&user_id).await?;
    // Every 400 at once: the body's and the unknown user.
    let submission = match (parsed, &user) {
        (Ok(s), Some(_)) => s,
        (Ok(_), None) => return Err(FeedbackError::bad_request(vec![user_not_found()])),
        (Err(mut errors), user) => {
            if user.is_none() {
                errors.push(user_not_found());
            }
            return Err(FeedbackError::bad_request(errors));
        }
    };
    if !user.is_some_and(|u| u.active) {
        return Err(FeedbackError::one(
            StatusCode::FORBIDDEN,
            FeedbackErrorItem::new("User Not Active", None, json!({})),
        ));
    }
    let order = users_order(&state, &user_id, &order_id).await?;
    if !order.state.eq_ignore_ascii_case("Completed") {
        return Err(ApiError::new(ApiCode::OrderNotCompleted, "order not completed").into());
    }
    let previous = state.store.get_feedback(&user_id, &order_id).await?;

    let now = state.clock.now();
    let settings = &state.settings;
    let context = super::api::rating_context(settings, &order, now);
    crate::http::network::record_ids(&context);
    let body = crate::protocol::to_json(&Envelope {
        context: &context,
        message: RatingMessage {
            ratings: vec![rating_entry(&order.order_id, &submission)],
        },
    })
    .expect("rating message serialises");
    if settings.server.validate_outbound
        && let Err(v) = state.schemas.rating_outbound.check_bytes(&body)
    {
        tracing::error!(violation = %v, "outbound /rating fails its schema; not sent");
        return Err(ApiError::new(ApiCode::InternalError, v.to_string()).into());
    }
    // Indexed before sending, so the seller's /on_rating is recognised however fast it comes.
    state
        .store
        .put_feedback_sent(&FeedbackSent {
            user_id: user_id.clone(),
            order_id: order_id.clone(),
            context: context.clone(),
            api: Some(FeedbackApi::Order),
            rating: Some(submission.rating_value.clone()),
        })
        .await?;
    let url = context.rating_url();
    state.record(Direction::Sent, Action::Rating, &url, &body);
    let failure = super::api::send_failure(super::api::send_with_retry(&state, &url, body).await);
    if let Some(e) = failure {
        tracing::warn!(error = %e, "feedback /rating not taken; the stored feedback is unchanged");
        return Err(e.into());
    }
    // The seller has it; should this write fail, a retry simply sends it again as an update.
    let recorded = super::notify::Notice {
        api: FeedbackApi::Order,
        id: order_id.clone(),
        user_id: user_id.clone(),
        rating: submission.rating_value.clone(),
        message_id: context.message_id.clone(),
        at: ondc_timestamp(now),
        outcome: super::notify::Outcome::Recorded,
    };
    state
        .store
        .put_feedback(&FeedbackRecord {
            user_id,
            order_id,
            submitted: submission,
            context,
            submitted_at: ondc_timestamp(now),
            revision: previous.map_or(1, |p| p.revision + 1),
        })
        .await?;
    super::notify::feedback_recorded(&state, recorded).await;
    Ok(HttpResponse::Ok().json(json!({ "success": true })))
}

/// `GET /v2/feedback/users/{user_id}/orders/{order_id}/rating`: the latest feedback the seller
/// acknowledged, and what its /on_rating said when one arrived.
pub async fn get_feedback(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, FeedbackError> {
    authenticate(&state, &req)?;
    let (user_id, order_id) = path.into_inner();
    if state.store.get_user(&user_id).await?.is_none() {
        return Err(FeedbackError::bad_request(vec![user_not_found()]));
    }
    users_order(&state, &user_id, &order_id).await?;
    let record = state
        .store
        .get_feedback(&user_id, &order_id)
        .await?
        .ok_or_else(FeedbackError::not_found)?;
    let callback = state.store.get_callback(&record.context.message_id).await?;
    let status = match &callback {
        None => "acknowledged",
        Some(c) if c.refused() => "refused",
        Some(_) => "completed",
    };
    let s = &record.submitted;
    let mut out = Map::new();
    out.insert("user_id".into(), json!(record.user_id));
    out.insert("order_id".into(), json!(record.order_id));
    out.insert("rating_value".into(), json!(s.rating_value));
    out.insert("highlights".into(), json!(s.highlights));
    if let Some(n) = &s.thank_you_note {
        out.insert("thank_you_note".into(), json!(n));
    }
    out.insert("status".into(), json!(status));
    out.insert("revision".into(), json!(record.revision));
    out.insert(
        "transaction_id".into(),
        json!(record.context.transaction_id),
    );
    out.insert("message_id".into(), json!(record.context.message_id));
    out.insert("submitted_at".into(), json!(record.submitted_at));
    callback_view(&mut out, callback.as_ref());
    Ok(HttpResponse::Ok().json(json!({ "rating": out })))
}

/// What a v2 read-back shows of the seller's /on_rating, when one arrived: its `feedback_form`
/// ([`super::api::form_view`]), its error block as `seller_error`, and `failure` for a refusal
/// without one (`rating_ack: false`).
pub fn callback_view(out: &mut Map<String, Value>, callback: Option<&CallbackRecord>) {
    let Some(c) = callback else { return };
    if let Some(f) = &c.message.feedback_form {
        out.insert("feedback_form".into(), super::api::form_view(f));
    }
    if let Some(e) = &c.error {
        out.insert("seller_error".into(), json!(e));
    }
    if let Some(reason) = c.declined_without_error() {
        out.insert("failure".into(), json!(reason));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(errors: Vec<FeedbackErrorItem>) -> Vec<(Option<u32>, String)> {
        errors
            .into_iter()
            .map(|e| {
                (
                    e.error_code,
                    e.error_meta["key"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn reads_a_full_body_and_maps_it() {
        let s = parse(
            br#"{"rating_value":"STARS4","highlights":["FAST_PICKUP","EASY_PARKING","FAST_PICKUP"],
                "thank_you_note":"  thanks!  "}"#,
        )
        .unwrap();
        assert_eq!(s.highlights, ["FAST_PICKUP", "EASY_PARKING"]);
        assert_eq!(s.thank_you_note.as_deref(), Some("thanks!"));
        let e = rating_entry("O1", &s);
        assert_eq!(e.value, "4");
        assert_eq!(e.feedback_form.len(), 3);
        assert_eq!(e.feedback_form[0].answer_type, "checkbox");
        assert_eq!(e.feedback_form[2].answer_type, "text");
        let plain = parse(br#"{"rating_value":"STARS1","thank_you_note":" "}"#).unwrap();
        assert!(rating_entry("O1", &plain).feedback_form.is_empty());
    }

    #[test]
    fn every_bad_field_is_keyed() {
        let e = parse(
            br#"{"rating_value":"STARS6","highlights":["FAST_PICKUP","NICE",3],"thank_you_note":5,"x":1}"#,
        )
        .unwrap_err();
        assert_eq!(
            keys(e),
            [
                (Some(1006), "x".to_owned()),
                (Some(1003), "rating_value".to_owned()),
                (Some(1004), "highlights[1]".to_owned()),
                (Some(1004), "highlights[2]".to_owned()),
                (Some(1005), "thank_you_note".to_owned()),
            ]
        );
        assert_eq!(keys(parse(b"{}").unwrap_err())[0].0, Some(1002));
        assert_eq!(keys(parse(b"[1]").unwrap_err())[0].0, Some(1000));
        let long = format!(
            r#"{{"rating_value":"STARS5","thank_you_note":"{}"}}"#,
            "x".repeat(NOTE_MAX_CHARS + 1)
        );
        assert_eq!(keys(parse(long.as_bytes()).unwrap_err())[0].0, Some(1005));
    }
}

//! The internal users API: how the buyer app registers its users and (de)activates them for the
//! v2 feedback API. `PUT /internal/users/{user_id}` with `Authorization: Bearer
//! <buyer.internal_token>` and `{"active": bool}`; `GET` on the same path reads it.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::orders::check_internal;
use crate::clock::ondc_timestamp;
use crate::http::error::{ApiCode, ApiError, FieldError};
use crate::http::{AppState, read_body};
use crate::store::User;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserBody {
    active: bool,
}

/// `PUT /internal/users/{user_id}`: create or replace a user.
pub async fn put_user(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    check_internal(&req, &state.settings.buyer.internal_token)?;
    let user_id = path.into_inner();
    if user_id.trim().is_empty() || user_id.len() > 255 {
        return Err(ApiError::validation(vec![FieldError::new(
            "userId",
            "must be a non-empty id of at most 255 bytes",
        )]));
    }
    let body = read_body(req.headers(), payload, state.settings.server.max_body_bytes).await?;
    let b: UserBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(ApiCode::InvalidJson, format!("invalid user: {e}")))?;
    let user = User {
        user_id,
        active: b.active,
        updated_at: ondc_timestamp(state.clock.now()),
    };
    state.store.put_user(&user).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "user": user })))
}

/// `GET /internal/users/{user_id}`.
pub async fn get_user(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    check_internal(&req, &state.settings.buyer.internal_token)?;
    match state.store.get_user(&path).await? {
        Some(user) => Ok(HttpResponse::Ok().json(serde_json::json!({ "user": user }))),
        None => Err(ApiError::new(ApiCode::UserNotFound, "no such user")),
    }
}

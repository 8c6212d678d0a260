//! The internal API over the feedback notifications ([`super::notify`]), for the buyer app's
//! operators. `GET /internal/notifications/kept` lists those kept to be sent (the backlog, each
//! with when it is due next and why its last round failed), and `GET
//! /internal/notifications/given-up` those given up, oldest first, both a page at a time.
//! `POST /internal/notifications/given-up/{id}/send` sends a given-up one again, once the
//! receiver or the relay is fixed; `DELETE /internal/notifications/given-up/{id}` forgets one
//! not to be sent. `Authorization: Bearer <buyer.internal_token>`. Given-up ones are kept for
//! `buyer.notify_given_up_days`.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::notify::{Pending, SendAgainError, send_again, view};
use super::orders::check_internal;
use crate::http::AppState;
use crate::http::error::{ApiCode, ApiError};
use crate::store::Space;

/// The query of a listing.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// At most this many (1 to 1000; 100 without it).
    limit: Option<String>,
    /// The `next` of the page before.
    after: Option<String>,
}

/// `GET /internal/notifications/given-up[?limit=N][&after=NEXT]`: the notifications given up,
/// in the order they were given up; `next` when more may follow.
pub async fn list(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    page(&state, &req, Space::GivenUp).await
}

/// `GET /internal/notifications/kept[?limit=N][&after=NEXT]`: the notifications kept to be sent,
/// in the order of their keys (`{message_id}|{event}|{channel}`); `next` when more may follow.
pub async fn list_kept(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    page(&state, &req, Space::Notices).await
}

/// A page of the notifications of `list` ([`crate::store::Store::notices`]).
async fn page(state: &AppState, req: &HttpRequest, list: Space) -> Result<HttpResponse, ApiError> {
    check_internal(req, &state.settings.buyer.internal_token)?;
    let q = web::Query::<ListQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::new(ApiCode::ValidationFailed, format!("query: {e}")))?
        .into_inner();
    let limit = crate::http::page_limit(q.limit.as_deref())?;
    let (entries, next) = state.store.notices(list, q.after.as_deref(), limit).await?;
    let mut listed = Vec::with_capacity(entries.len());
    for (id, bytes) in entries {
        match serde_json::from_slice::<Pending>(&bytes) {
            Ok(p) => listed.push(view(Some(&id), &p)),
            Err(e) => tracing::error!(error = %e, id, "a kept notification cannot be read"),
        }
    }
    let mut body = json!({ "notifications": listed });
    if let Some(next) = next {
        body["next"] = next.into();
    }
    Ok(HttpResponse::Ok().json(body))
}

/// `POST /internal/notifications/given-up/{id}/send`: sends the notification again, in the
/// background; 202 with it as now kept (listed no more; given up again, it is listed anew).
pub async fn send(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    check_internal(&req, &state.settings.buyer.internal_token)?;
    match send_again(&state, &id).await {
        Ok(p) => Ok(HttpResponse::Accepted().json(json!({ "notification": view(None, &p) }))),
        Err(SendAgainError::NotFound) => Err(not_found()),
        Err(e @ SendAgainError::NotConfigured(_)) => {
            Err(ApiError::new(ApiCode::ChannelNotConfigured, e.to_string()))
        }
        Err(SendAgainError::Store(e)) => Err(e.into()),
    }
}

/// `DELETE /internal/notifications/given-up/{id}`: forgets a given-up notification that is not
/// to be sent (204); 404 when it is not listed.
pub async fn dismiss(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    check_internal(&req, &state.settings.buyer.internal_token)?;
    if state.store.dismiss_given_up(&id).await? {
        tracing::info!(id = %id, "given-up notification dismissed");
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(not_found())
    }
}

fn not_found() -> ApiError {
    ApiError::new(
        ApiCode::NotificationNotFound,
        "no such notification given up (never, forgotten, or sent again already)",
    )
}

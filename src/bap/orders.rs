//! The internal orders API: how the buyer app tells the adapter what it knows of an order after
//! on_confirm/on_status. `PUT /internal/orders/{orderId}` with `Authorization: Bearer
//! <buyer.internal_token>`; the body is the [`Order`] in camelCase without `orderId`.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::checker::rules::{is_peer_uri_acceptable, is_retail_domain, is_std_city};
use crate::http::error::{ApiCode, ApiError, FieldError};
use crate::http::{AppState, read_body};
use crate::protocol::context::looks_like_url;
use crate::store::Order;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OrderBody {
    user_id: String,
    state: String,
    domain: String,
    city: String,
    transaction_id: String,
    bpp_id: String,
    bpp_uri: String,
    #[serde(default)]
    provider_id: Option<String>,
    #[serde(default)]
    item_ids: Vec<String>,
    #[serde(default)]
    fulfillment_ids: Vec<String>,
    #[serde(default)]
    agent_id: Option<String>,
}

/// Checks the internal bearer token (constant-time compare).
pub fn check_internal(req: &HttpRequest, token: &str) -> Result<(), ApiError> {
    let given = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    let ok = !token.is_empty()
        && given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            ApiCode::Unauthorized,
            "invalid internal token",
        ))
    }
}

/// What is wrong with `order`, field by field. `bap_uri` is this buyer side's own: one off the
/// public network (a development set-up, see [`is_peer_uri_acceptable`]) also takes a seller off
/// it.
fn validate(order: &Order, bap_uri: &str) -> Vec<FieldError> {
    let mut e = Vec::new();
    if !is_retail_domain(&order.domain) {
        e.push(FieldError::new(
            "domain",
            "must be ONDC:RET10..ONDC:RET19 or ONDC:RET1A",
        ));
    }
    // An STD code, as every /rating context must carry (PROTOCOL.md, `city.std` in the checker).
    if !is_std_city(&order.city) {
        e.push(FieldError::new("city", "must be std:<digits>"));
    }
    for (name, v) in [
        ("userId", &order.user_id),
        ("state", &order.state),
        ("transactionId", &order.transaction_id),
        ("bppId", &order.bpp_id),
    ] {
        if v.trim().is_empty() {
            e.push(FieldError::new(name, "must not be empty"));
        }
    }
    if looks_like_url(&order.bpp_id) {
        e.push(FieldError::new(
            "bppId",
            "must be a subscriber id, not a URL",
        ));
    }
    match reqwest::Url::parse(&order.bpp_uri) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            // The /rating names it as its bpp_uri, which ONDC's checks (and a seller side of
            // ours) require on the bpp_id's domain.
            if !looks_like_url(&order.bpp_id)
                && !order.bpp_id.trim().is_empty()
                && !is_peer_uri_acceptable(&order.bpp_uri, &order.bpp_id, bap_uri)
            {
                e.push(FieldError::new(
                    "bppUri",
                    "must be on bppId's domain (the bppId or a subdomain of it)",
                ));
            }
        }
        _ => e.push(FieldError::new("bppUri", "must be an http(s) URL")),
    }
    for (name, list) in [
        ("itemIds", &order.item_ids),
        ("fulfillmentIds", &order.fulfillment_ids),
    ] {
        if list.iter().any(|s| s.trim().is_empty()) {
            e.push(FieldError::new(name, "ids must not be empty"));
        }
    }
    e
}

/// `PUT /internal/orders/{orderId}`: create or replace an order.
pub async fn put_order(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    check_internal(&req, &state.settings.buyer.internal_token)?;
    let body = read_body(req.headers(), payload, state.settings.server.max_body_bytes).await?;
    let b: OrderBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(ApiCode::InvalidJson, format!("invalid order: {e}")))?;
    let order = Order {
        order_id: path.into_inner(),
        user_id: b.user_id,
        state: b.state,
        domain: b.domain,
        city: b.city,
        transaction_id: b.transaction_id,
        bpp_id: b.bpp_id,
        bpp_uri: b.bpp_uri,
        provider_id: b.provider_id.filter(|s| !s.is_empty()),
        item_ids: b.item_ids,
        fulfillment_ids: b.fulfillment_ids,
        agent_id: b.agent_id.filter(|s| !s.is_empty()),
    };
    let errors = validate(&order, &state.settings.buyer.bap_uri);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    state.store.put_order(&order).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "order": order })))
}

/// `GET /internal/orders/{orderId}`.
pub async fn get_order(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    check_internal(&req, &state.settings.buyer.internal_token)?;
    match state.store.get_order(&path).await? {
        Some(order) => Ok(HttpResponse::Ok().json(serde_json::json!({ "order": order }))),
        None => Err(ApiError::new(ApiCode::OrderNotFound, "no such order")),
    }
}

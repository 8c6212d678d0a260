//! A registry of our own for local networks and tests: answers `POST /v2.0/lookup` (the caller's
//! signature verified against the records it serves) and the legacy unsigned `POST /lookup` from a
//! list of subscriber records, filtered by the request's fields.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use actix_web::dev::Server;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

use super::SubscriberRecord;
use crate::clock::SharedClock;
use crate::crypto::{AuthorizationHeader, verifying_key_from_base64};

/// Counters a test or an operator can read.
#[derive(Debug, Default)]
pub struct RegistryStats {
    /// Lookups answered (both APIs).
    pub lookups: AtomicU64,
    /// Signed lookups refused.
    pub refused: AtomicU64,
}

/// The served records (replaceable while running) and the counters.
#[derive(Clone)]
pub struct RegistryHandle {
    /// What lookups are answered from.
    pub records: Arc<RwLock<Vec<SubscriberRecord>>>,
    /// Counters.
    pub stats: Arc<RegistryStats>,
}

struct State {
    records: Arc<RwLock<Vec<SubscriberRecord>>>,
    clock: SharedClock,
    stats: Arc<RegistryStats>,
    skew: i64,
}

/// Reads a records file: a JSON array of flat or nested subscriber records.
pub fn read_records(text: &str) -> Result<Vec<SubscriberRecord>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Array(items) = v else {
        return Err("must be a JSON array of subscriber records".into());
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let r = SubscriberRecord::from_value(item).ok_or_else(|| {
                format!("record {i}: subscriber_id, ukId and signing_public_key are required")
            })?;
            verifying_key_from_base64(&r.signing_public_key)
                .map_err(|e| format!("record {i}: signing_public_key: {e}"))?;
            Ok(r)
        })
        .collect()
}

/// Starts serving `records` on `listener`.
pub fn serve(
    records: Vec<SubscriberRecord>,
    listener: TcpListener,
    clock: SharedClock,
) -> std::io::Result<(Server, RegistryHandle)> {
    let stats = Arc::new(RegistryStats::default());
    let records = Arc::new(RwLock::new(records));
    let handle = RegistryHandle {
        records: records.clone(),
        stats: stats.clone(),
    };
    let state = web::Data::new(State {
        records,
        clock,
        stats: stats.clone(),
        skew: 5,
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/v2.0/lookup", web::post().to(signed_lookup))
            .route("/lookup", web::post().to(legacy_lookup))
            .route(
                "/healthz",
                web::get().to(|| async { HttpResponse::Ok().json(json!({"status": "ok"})) }),
            )
    })
    .workers(2)
    .listen(listener)?
    .run();
    Ok((server, handle))
}

impl State {
    fn records(&self) -> Vec<SubscriberRecord> {
        self.records
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn error(status: u16, message: &str) -> HttpResponse {
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST),
    )
    .json(json!({"error": {"message": message}}))
}

async fn signed_lookup(
    state: web::Data<State>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    let verified = header
        .ok_or_else(|| "missing Authorization".to_owned())
        .and_then(|h| AuthorizationHeader::parse(h).map_err(|e| e.to_string()))
        .and_then(|h| {
            let now = state.clock.now();
            let caller = state
                .records()
                .into_iter()
                .find(|r| {
                    r.subscriber_id == h.subscriber_id
                        && r.unique_key_id == h.unique_key_id
                        && r.usable_at(now)
                })
                .ok_or_else(|| "caller is not subscribed".to_owned())?;
            let key =
                verifying_key_from_base64(&caller.signing_public_key).map_err(|e| e.to_string())?;
            h.verify(&body, &key, now.timestamp(), state.skew)
                .map_err(|e| e.to_string())
        });
    if let Err(reason) = verified {
        state.stats.refused.fetch_add(1, Ordering::Relaxed);
        return error(401, &format!("lookup signature refused: {reason}"));
    }
    answer(&state, &body)
}

async fn legacy_lookup(state: web::Data<State>, body: web::Bytes) -> HttpResponse {
    answer(&state, &body)
}

fn answer(state: &State, body: &[u8]) -> HttpResponse {
    let Ok(Value::Object(filter)) = serde_json::from_slice::<Value>(body) else {
        return error(400, "body must be a JSON object of lookup fields");
    };
    state.stats.lookups.fetch_add(1, Ordering::Relaxed);
    let want = |name: &str| filter.get(name).and_then(Value::as_str);
    // A field the record leaves out matches any wanted value.
    let matches = |field: Option<&str>, wanted: Option<&str>| {
        wanted.is_none_or(|w| field.is_none_or(|f| f == w))
    };
    let found: Vec<SubscriberRecord> = state
        .records()
        .into_iter()
        .filter(|r| {
            matches(Some(&r.subscriber_id), want("subscriber_id"))
                && matches(
                    Some(&r.unique_key_id),
                    want("ukId").or(want("unique_key_id")),
                )
                && matches(r.domain.as_deref(), want("domain"))
                && matches(r.kind.as_deref(), want("type"))
                && matches(r.city.as_deref(), want("city"))
                && matches(r.country.as_deref(), want("country"))
        })
        .collect();
    HttpResponse::Ok().json(found)
}

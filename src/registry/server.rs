//! A registry of our own for local networks and tests: answers `POST /v2.0/lookup` (the caller's
//! signature verified against the records it serves) and the legacy unsigned `POST /lookup` from a
//! list of subscriber records, filtered by the request's fields.
//!
//! With an encryption key pair it also plays the registry side of onboarding, `POST /subscribe`:
//! it fetches the subscriber's site verification page and checks the signed request_id, sends an
//! encrypted challenge to its `/on_subscribe`, and on the right answer publishes the key, so
//! lookups find it at once.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::{Value, json};

use super::SubscriberRecord;
use crate::clock::{SharedClock, ondc_timestamp, parse_timestamp};
use crate::crypto::{
    AuthorizationHeader, ChallengeKey, EncryptionKeyPair, b64_decode,
    encryption_public_key_from_base64, verifying_key_from_base64,
};
use crate::http::onboarding::{SITE_VERIFICATION_PATH, on_subscribe_path};

/// Counters a test or an operator can read.
#[derive(Debug, Default)]
pub struct RegistryStats {
    /// Lookups answered (both APIs).
    pub lookups: AtomicU64,
    /// Signed lookups refused.
    pub refused: AtomicU64,
    /// `/subscribe` requests that passed every check (the record was published).
    pub subscribed: AtomicU64,
    /// `/subscribe` requests refused (malformed, or a failed check).
    pub subscribe_refused: AtomicU64,
}

/// What the registry does besides answering lookups.
#[derive(Clone, Debug)]
pub struct RegistryOptions {
    /// The registry's X25519 key pair, which encrypts the `/on_subscribe` challenge. `None`:
    /// `/subscribe` is not offered (404 NACK).
    pub encryption_keys: Option<EncryptionKeyPair>,
    /// Where a subscriber is reached for site verification and `/on_subscribe`, by subscriber_id,
    /// instead of `https://{subscriber_id}` (local networks, where subscriber ids do not resolve).
    pub site_bases: HashMap<String, String>,
    /// Bound on each outbound call while checking a `/subscribe` (connect and whole response).
    pub timeout: Duration,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            encryption_keys: None,
            site_bases: HashMap::new(),
            timeout: Duration::from_secs(5),
        }
    }
}

/// Reads a `--site-base` argument, `SUBSCRIBER_ID=URL` (http or https), into the pair for
/// [`RegistryOptions::site_bases`]; a trailing slash is removed.
///
/// ```
/// use ondc_rating::registry::server::parse_site_base;
/// assert_eq!(
///     parse_site_base("seller.example=http://127.0.0.1:8081/").unwrap(),
///     ("seller.example".to_owned(), "http://127.0.0.1:8081".to_owned())
/// );
/// assert!(parse_site_base("seller.example").is_err());
/// assert!(parse_site_base("seller.example=ftp://x").is_err());
/// ```
pub fn parse_site_base(arg: &str) -> Result<(String, String), String> {
    let Some((id, url)) = arg.split_once('=') else {
        return Err(format!("{arg:?} is not SUBSCRIBER_ID=URL"));
    };
    let (id, url) = (id.trim(), url.trim());
    if id.is_empty() {
        return Err(format!("{arg:?}: the subscriber id is empty"));
    }
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            Ok((id.to_owned(), url.trim_end_matches('/').to_owned()))
        }
        _ => Err(format!("{arg:?}: {url:?} is not an http(s) URL")),
    }
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
    options: RegistryOptions,
    http: reqwest::Client,
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

/// Starts serving `records` on `listener`, lookups only.
pub fn serve(
    records: Vec<SubscriberRecord>,
    listener: TcpListener,
    clock: SharedClock,
) -> std::io::Result<(Server, RegistryHandle)> {
    serve_with(records, listener, clock, RegistryOptions::default())
}

/// Starts serving `records` on `listener`, with `/subscribe` when `options` has encryption keys.
pub fn serve_with(
    records: Vec<SubscriberRecord>,
    listener: TcpListener,
    clock: SharedClock,
    options: RegistryOptions,
) -> std::io::Result<(Server, RegistryHandle)> {
    // No idle connections are kept: each actix worker runs its own runtime, and a pooled
    // connection belongs to the runtime that opened it.
    let http = reqwest::Client::builder()
        .connect_timeout(options.timeout)
        .timeout(options.timeout)
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
        .map_err(std::io::Error::other)?;
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
        options,
        http,
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/v2.0/lookup", web::post().to(signed_lookup))
            .route("/lookup", web::post().to(legacy_lookup))
            .route("/subscribe", web::post().to(subscribe))
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

/// `/subscribe` answers: the ACK, or a NACK whose error names the field or the failed check.
fn nack(status: u16, code: &str, path: Option<&str>, message: &str) -> HttpResponse {
    let mut error = json!({"type": "POLICY-ERROR", "code": code, "message": message});
    if let Some(path) = path {
        error["type"] = "JSON-SCHEMA-ERROR".into();
        error["path"] = path.into();
    }
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST),
    )
    .json(json!({"message": {"ack": {"status": "NACK"}}, "error": error}))
}

/// A malformed `/subscribe` field: its path in the payload and what is wrong.
#[derive(Debug, PartialEq, Eq)]
struct Malformed {
    path: String,
    message: String,
}

fn malformed(path: &str, message: impl Into<String>) -> Malformed {
    Malformed {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// One `network_participant` entry.
#[derive(Debug)]
struct Participant {
    subscriber_url: String,
    kind: Option<String>,
    domain: Option<String>,
    cities: Vec<String>,
}

/// What a `/subscribe` payload says, read and checked for shape.
#[derive(Debug)]
struct SubscribeRequest {
    request_id: String,
    subscriber_id: String,
    unique_key_id: String,
    callback_url: String,
    signing_public_key: String,
    signing_key: VerifyingKey,
    encryption_public_key: String,
    encryption_key: x25519_dalek::PublicKey,
    valid_from: DateTime<Utc>,
    valid_until: DateTime<Utc>,
    country: Option<String>,
    participants: Vec<Participant>,
}

/// A non-empty string at `key` of `v`, reported as `path` when missing.
fn string_at<'a>(v: &'a Value, key: &str, path: &str) -> Result<&'a str, Malformed> {
    match v.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim()),
        Some(Value::String(_)) => Err(malformed(path, "must not be empty")),
        Some(_) => Err(malformed(path, "must be a string")),
        None => Err(malformed(path, "is required")),
    }
}

fn object_at<'a>(v: &'a Value, key: &str, path: &str) -> Result<&'a Value, Malformed> {
    match v.get(key) {
        Some(o @ Value::Object(_)) => Ok(o),
        Some(_) => Err(malformed(path, "must be an object")),
        None => Err(malformed(path, "is required")),
    }
}

fn timestamp_at(v: &Value, key: &str, path: &str) -> Result<DateTime<Utc>, Malformed> {
    parse_timestamp(string_at(v, key, path)?)
        .ok_or_else(|| malformed(path, "must be an RFC 3339 timestamp"))
}

impl SubscribeRequest {
    /// Reads the payload tolerantly: unknown fields are ignored, `ops_no` may be a number or a
    /// numeric string, `unique_key_id` may be spelled `ukId`.
    fn parse(body: &[u8], now: DateTime<Utc>) -> Result<Self, Malformed> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| malformed("body", format!("is not JSON: {e}")))?;
        if !v.is_object() {
            return Err(malformed("body", "must be a JSON object"));
        }
        let operation = object_at(&v, "context", "context")
            .and_then(|c| object_at(c, "operation", "context.operation"))?;
        let ops_no = match operation.get("ops_no") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        };
        if !matches!(ops_no, Some(1 | 2 | 4)) {
            return Err(malformed(
                "context.operation.ops_no",
                "must be 1 (buyer app), 2 (seller app) or 4 (both)",
            ));
        }
        let message = object_at(&v, "message", "message")?;
        let request_id = string_at(message, "request_id", "message.request_id")?.to_owned();
        let entity = object_at(message, "entity", "message.entity")?;
        let subscriber_id =
            string_at(entity, "subscriber_id", "message.entity.subscriber_id")?.to_owned();
        let unique_key_id = ["unique_key_id", "ukId"]
            .iter()
            .find(|k| entity.get(**k).is_some())
            .map_or("unique_key_id", |k| k);
        let unique_key_id = string_at(
            entity,
            unique_key_id,
            &format!("message.entity.{unique_key_id}"),
        )?
        .to_owned();
        let callback_url =
            string_at(entity, "callback_url", "message.entity.callback_url")?.to_owned();
        if !callback_url.starts_with('/') || callback_url.contains(['?', '#', ' ']) {
            return Err(malformed(
                "message.entity.callback_url",
                "must be a path starting with '/'",
            ));
        }
        let key_pair = object_at(entity, "key_pair", "message.entity.key_pair")?;
        let path = "message.entity.key_pair.signing_public_key";
        let signing_public_key = string_at(key_pair, "signing_public_key", path)?.to_owned();
        let signing_key = verifying_key_from_base64(&signing_public_key)
            .map_err(|e| malformed(path, e.to_string()))?;
        let path = "message.entity.key_pair.encryption_public_key";
        let encryption_public_key = string_at(key_pair, "encryption_public_key", path)?.to_owned();
        let encryption_key = encryption_public_key_from_base64(&encryption_public_key)
            .map_err(|e| malformed(path, e.to_string()))?;
        let valid_from =
            timestamp_at(key_pair, "valid_from", "message.entity.key_pair.valid_from")?;
        let path = "message.entity.key_pair.valid_until";
        let valid_until = timestamp_at(key_pair, "valid_until", path)?;
        if valid_until <= valid_from {
            return Err(malformed(path, "must be after valid_from"));
        }
        if valid_until <= now {
            return Err(malformed(path, "has already passed"));
        }
        let country = entity
            .get("country")
            .and_then(Value::as_str)
            .map(str::to_owned);

        let path = "message.network_participant";
        let participants = match message.get("network_participant") {
            Some(Value::Array(items)) if !items.is_empty() => items,
            Some(Value::Array(_)) => return Err(malformed(path, "must not be empty")),
            Some(_) => return Err(malformed(path, "must be an array")),
            None => return Err(malformed(path, "is required")),
        };
        let participants = participants
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let at = |field: &str| format!("{path}[{i}].{field}");
                if !p.is_object() {
                    return Err(malformed(&format!("{path}[{i}]"), "must be an object"));
                }
                let optional = |field: &str| match p.get(field) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    Some(_) => Err(malformed(&at(field), "must be a string")),
                };
                let cities = match p.get("city_code") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::String(s)) => vec![s.clone()],
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|c| {
                            c.as_str()
                                .map(str::to_owned)
                                .ok_or_else(|| malformed(&at("city_code"), "must be strings"))
                        })
                        .collect::<Result<_, _>>()?,
                    Some(_) => {
                        return Err(malformed(
                            &at("city_code"),
                            "must be an array of city codes",
                        ));
                    }
                };
                Ok(Participant {
                    subscriber_url: string_at(p, "subscriber_url", &at("subscriber_url"))?
                        .to_owned(),
                    kind: optional("type")?,
                    domain: optional("domain")?,
                    cities,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        Ok(Self {
            request_id,
            subscriber_id,
            unique_key_id,
            callback_url,
            signing_public_key,
            signing_key,
            encryption_public_key,
            encryption_key,
            valid_from,
            valid_until,
            country,
            participants,
        })
    }

    /// The records to publish: one per network participant and city code, flat, SUBSCRIBED.
    /// `buyerApp` and `sellerApp` are published as the lookup types `BAP` and `BPP`.
    fn records(&self) -> Vec<SubscriberRecord> {
        let mut out = Vec::new();
        for p in &self.participants {
            let kind = p.kind.as_deref().map(|k| match k {
                "buyerApp" => "BAP".to_owned(),
                "sellerApp" => "BPP".to_owned(),
                other => other.to_owned(),
            });
            let cities: Vec<Option<String>> = if p.cities.is_empty() {
                vec![None]
            } else {
                p.cities.iter().cloned().map(Some).collect()
            };
            for city in cities {
                out.push(SubscriberRecord {
                    subscriber_id: self.subscriber_id.clone(),
                    unique_key_id: self.unique_key_id.clone(),
                    signing_public_key: self.signing_public_key.clone(),
                    encr_public_key: Some(self.encryption_public_key.clone()),
                    valid_from: Some(ondc_timestamp(self.valid_from)),
                    valid_until: Some(ondc_timestamp(self.valid_until)),
                    subscriber_url: Some(p.subscriber_url.clone()),
                    kind: kind.clone(),
                    domain: p.domain.clone(),
                    city,
                    country: self.country.clone(),
                    status: Some("SUBSCRIBED".into()),
                });
            }
        }
        out
    }
}

impl State {
    /// Where the subscriber is reached: the configured override, else `https://{subscriber_id}`
    /// (which must then be a plain host name).
    fn site_base(&self, subscriber_id: &str) -> Result<String, Malformed> {
        if let Some(base) = self.options.site_bases.get(subscriber_id) {
            return Ok(base.trim_end_matches('/').to_owned());
        }
        let base = format!("https://{subscriber_id}");
        match reqwest::Url::parse(&base) {
            Ok(u)
                if u.host_str()
                    .is_some_and(|h| h.eq_ignore_ascii_case(subscriber_id))
                    && u.path() == "/" =>
            {
                Ok(base)
            }
            _ => Err(malformed(
                "message.entity.subscriber_id",
                "must be a host name: the site verification page is fetched from \
                 https://{subscriber_id}",
            )),
        }
    }

    /// GETs the site verification page and checks its signature of the request_id.
    async fn check_site(&self, base: &str, req: &SubscribeRequest) -> Result<(), String> {
        let url = format!("{base}{SITE_VERIFICATION_PATH}");
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("cannot fetch {url}: {}", describe(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("{url} answered {status}; the page is missing"));
        }
        let page = read_limited(response, PAGE_LIMIT)
            .await
            .map_err(|e| format!("cannot read {url}: {e}"))?;
        let content = site_verification_meta(&String::from_utf8_lossy(&page)).ok_or_else(|| {
            format!("{url} has no <meta name='ondc-site-verification' content='...'> tag")
        })?;
        let signature: [u8; 64] = b64_decode(&content)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("the tag on {url} is not a base64 Ed25519 signature"))?;
        if crate::crypto::verify_strict(
            &req.signing_key,
            req.request_id.as_bytes(),
            &Signature::from_bytes(&signature),
        ) {
            Ok(())
        } else {
            Err(format!(
                "the tag on {url} is not request_id {:?} signed with \
                 entity.key_pair.signing_public_key",
                req.request_id
            ))
        }
    }

    /// POSTs an encrypted random challenge to `/on_subscribe` and checks the answer.
    async fn check_challenge(
        &self,
        key: &ChallengeKey,
        base: &str,
        req: &SubscribeRequest,
    ) -> Result<(), String> {
        let url = format!("{base}{}", on_subscribe_path(&req.callback_url));
        let plaintext = uuid::Uuid::new_v4().to_string();
        let body = json!({
            "subscriber_id": req.subscriber_id,
            "challenge": key.encrypt(&plaintext),
        });
        let response = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("cannot reach {url}: {}", describe(&e)))?;
        let status = response.status();
        let text = read_limited(response, PAGE_LIMIT)
            .await
            .map_err(|e| format!("cannot read the answer of {url}: {e}"))?;
        let text = String::from_utf8_lossy(&text);
        if !status.is_success() {
            return Err(format!("{url} answered {status}: {}", excerpt(&text)));
        }
        let answer = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("answer").and_then(Value::as_str).map(str::to_owned))
            .ok_or_else(|| {
                format!(
                    "{url} did not answer {{\"answer\": ...}}: {}",
                    excerpt(&text)
                )
            })?;
        if answer == plaintext {
            Ok(())
        } else {
            Err(format!(
                "{url} answered wrongly (it decrypts with another key than \
                 entity.key_pair.encryption_public_key and this registry's public key)"
            ))
        }
    }
}

/// Largest page or `/on_subscribe` answer read, bytes.
const PAGE_LIMIT: usize = 64 * 1024;

async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
        if out.len() + chunk.len() > limit {
            return Err(format!("larger than {limit} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A transport error with its causes (reqwest's own message rarely says what happened).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn excerpt(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_owned(),
    }
}

/// The `content` of the `<meta name='ondc-site-verification' content='...'>` tag of `html`:
/// either quote style or none, attributes in any order, names in any case.
pub fn site_verification_meta(html: &str) -> Option<String> {
    // ASCII lower-casing keeps every byte offset, so positions found in `lower` index `html`.
    let lower = html.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find("<meta") {
        let start = from + i + "<meta".len();
        let end = start + lower[start..].find('>')?;
        let attributes = attributes(&html[start..end]);
        let named = attributes.iter().any(|(name, value)| {
            name.eq_ignore_ascii_case("name")
                && value.trim().eq_ignore_ascii_case("ondc-site-verification")
        });
        if named {
            return attributes
                .into_iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("content"))
                .map(|(_, value)| value.trim().to_owned());
        }
        from = end;
    }
    None
}

/// The `name=value` pairs of a tag's inside (after the tag name, before `>`).
fn attributes(mut rest: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '/');
        if rest.is_empty() {
            return out;
        }
        let name_end = rest
            .find(|c: char| c.is_whitespace() || c == '=' || c == '/')
            .unwrap_or(rest.len());
        let name = &rest[..name_end];
        rest = rest[name_end..].trim_start();
        let Some(after) = rest.strip_prefix('=') else {
            out.push((name, ""));
            continue;
        };
        let after = after.trim_start();
        let (value, remaining) = match after.chars().next() {
            Some(quote @ ('\'' | '"')) => {
                let inner = &after[1..];
                match inner.find(quote) {
                    Some(j) => (&inner[..j], &inner[j + 1..]),
                    None => (inner, ""),
                }
            }
            _ => {
                let j = after.find(char::is_whitespace).unwrap_or(after.len());
                (&after[..j], &after[j..])
            }
        };
        out.push((name, value));
        rest = remaining;
    }
}

async fn subscribe(state: web::Data<State>, body: web::Bytes) -> HttpResponse {
    let Some(keys) = state.options.encryption_keys.as_ref() else {
        return nack(
            404,
            "not_enabled",
            None,
            "this registry does not take /subscribe (it was started without an encryption key)",
        );
    };
    let refuse = |status: u16, code: &str, path: Option<&str>, message: &str| {
        state
            .stats
            .subscribe_refused
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(code, message, "subscribe refused");
        nack(status, code, path, message)
    };
    let checked = SubscribeRequest::parse(&body, state.clock.now()).and_then(|req| {
        let base = state.site_base(&req.subscriber_id)?;
        let key = ChallengeKey::new(keys, &req.encryption_key).map_err(|e| {
            malformed(
                "message.entity.key_pair.encryption_public_key",
                e.to_string(),
            )
        })?;
        Ok((req, base, key))
    });
    let (req, base, key) = match checked {
        Ok(checked) => checked,
        Err(m) => {
            return refuse(
                400,
                "invalid_request",
                Some(&m.path),
                &format!("{}: {}", m.path, m.message),
            );
        }
    };
    if let Err(reason) = state.check_site(&base, &req).await {
        return refuse(
            403,
            "site_verification_failed",
            None,
            &format!("site verification failed: {reason}"),
        );
    }
    if let Err(reason) = state.check_challenge(&key, &base, &req).await {
        return refuse(
            403,
            "challenge_failed",
            None,
            &format!("on_subscribe challenge failed: {reason}"),
        );
    }
    let published = req.records();
    {
        let mut records = state.records.write().unwrap_or_else(|p| p.into_inner());
        records.retain(|r| {
            !(r.subscriber_id == req.subscriber_id && r.unique_key_id == req.unique_key_id)
        });
        records.extend(published);
    }
    state.stats.subscribed.fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        subscriber_id = req.subscriber_id,
        ukId = req.unique_key_id,
        "subscribed"
    );
    HttpResponse::Ok().json(json!({"message": {"ack": {"status": "ACK"}}}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SigningKeyPair;
    use proptest::prelude::*;

    #[test]
    fn the_meta_tag_is_found_in_any_spelling() {
        let sig = "BcJeNC7OWGvLKsmdSKmn43O1WNrmT4zDsH3nkAsRTCEs6C7RQ9FVEEqC+dmhUYlCiRsjGKkybQ6N5j7O0mPkBw==";
        for page in [
            format!("<html><head><meta name='ondc-site-verification' content='{sig}' /></head>"),
            format!("<META CONTENT=\"{sig}\" NAME=\"ondc-site-verification\">"),
            format!(
                "<meta charset=utf-8><meta name=description content=x>\n<meta\n name = \
                 'ondc-site-verification'\n content = '{sig}'/>"
            ),
            format!("<meta name=ondc-site-verification content={sig}>"),
        ] {
            assert_eq!(
                site_verification_meta(&page).as_deref(),
                Some(sig),
                "{page}"
            );
        }
        for page in [
            "",
            "<html></html>",
            "<meta name='description' content='x'>",
            "<meta name='ondc-site-verification'",
            "<meta name='ondc-site-verification'>",
        ] {
            assert_eq!(site_verification_meta(page), None, "{page}");
        }
    }

    fn payload() -> Value {
        let signing = SigningKeyPair::generate().unwrap();
        let encryption = EncryptionKeyPair::generate().unwrap();
        json!({
            "context": {"operation": {"ops_no": 4}},
            "message": {
                "request_id": "r-1",
                "timestamp": "2026-01-01T00:00:00.000Z",
                "entity": {
                    "subscriber_id": "np.example", "unique_key_id": "k1", "callback_url": "/",
                    "country": "IND",
                    "key_pair": {
                        "signing_public_key": signing.public_key_base64(),
                        "encryption_public_key": encryption.public_key_der_base64(),
                        "valid_from": "2026-01-01T00:00:00.000Z",
                        "valid_until": "2027-01-01T00:00:00.000Z"
                    }
                },
                "network_participant": [
                    {"subscriber_url": "https://np.example/bap", "domain": "ONDC:RET11",
                     "type": "buyerApp", "msn": false, "city_code": ["std:080", "std:011"]},
                    {"subscriber_url": "https://np.example/bpp", "domain": "ONDC:RET11",
                     "type": "sellerApp", "msn": false, "city_code": []}
                ]
            }
        })
    }

    fn now() -> DateTime<Utc> {
        parse_timestamp("2026-06-01T00:00:00.000Z").unwrap()
    }

    fn parse(v: &Value) -> Result<SubscribeRequest, Malformed> {
        SubscribeRequest::parse(v.to_string().as_bytes(), now())
    }

    #[test]
    fn a_payload_becomes_one_record_per_participant_and_city() {
        let p = payload();
        let req = parse(&p).unwrap();
        let records = req.records();
        let rows: Vec<(Option<&str>, Option<&str>)> = records
            .iter()
            .map(|r| (r.kind.as_deref(), r.city.as_deref()))
            .collect();
        assert_eq!(
            rows,
            [
                (Some("BAP"), Some("std:080")),
                (Some("BAP"), Some("std:011")),
                (Some("BPP"), None)
            ]
        );
        for r in &records {
            assert_eq!(
                (r.subscriber_id.as_str(), r.unique_key_id.as_str()),
                ("np.example", "k1")
            );
            assert_eq!(r.status.as_deref(), Some("SUBSCRIBED"));
            assert_eq!(r.country.as_deref(), Some("IND"));
            assert_eq!(r.valid_until.as_deref(), Some("2027-01-01T00:00:00.000Z"));
            assert_eq!(
                r.signing_public_key,
                p["message"]["entity"]["key_pair"]["signing_public_key"]
            );
            assert!(r.usable_at(now()));
        }
        // Tolerated spellings.
        let mut p = payload();
        p["context"]["operation"]["ops_no"] = "2".into();
        let entity = p["message"]["entity"].as_object_mut().unwrap();
        let k = entity.remove("unique_key_id").unwrap();
        entity.insert("ukId".into(), k);
        p["message"]["network_participant"][0]["city_code"] = "std:080".into();
        let req = parse(&p).unwrap();
        assert_eq!(req.unique_key_id, "k1");
        assert_eq!(req.participants[0].cities, ["std:080"]);
    }

    #[test]
    fn malformed_payloads_name_the_field() {
        type Mutation = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("body", Box::new(|p| *p = json!([1]))),
            ("context", Box::new(|p| p["context"] = Value::Null)),
            (
                "context.operation.ops_no",
                Box::new(|p| p["context"]["operation"]["ops_no"] = 3.into()),
            ),
            (
                "message.request_id",
                Box::new(|p| p["message"]["request_id"] = "".into()),
            ),
            (
                "message.entity.subscriber_id",
                Box::new(|p| p["message"]["entity"]["subscriber_id"] = 7.into()),
            ),
            (
                "message.entity.unique_key_id",
                Box::new(|p| {
                    p["message"]["entity"]
                        .as_object_mut()
                        .unwrap()
                        .remove("unique_key_id");
                }),
            ),
            (
                "message.entity.callback_url",
                Box::new(|p| p["message"]["entity"]["callback_url"] = "https://x".into()),
            ),
            (
                "message.entity.key_pair",
                Box::new(|p| p["message"]["entity"]["key_pair"] = "k".into()),
            ),
            (
                "message.entity.key_pair.signing_public_key",
                Box::new(|p| {
                    p["message"]["entity"]["key_pair"]["signing_public_key"] = "AAAA".into()
                }),
            ),
            (
                "message.entity.key_pair.encryption_public_key",
                Box::new(|p| {
                    p["message"]["entity"]["key_pair"]["encryption_public_key"] = "%%".into()
                }),
            ),
            (
                "message.entity.key_pair.valid_from",
                Box::new(|p| p["message"]["entity"]["key_pair"]["valid_from"] = "soon".into()),
            ),
            (
                "message.entity.key_pair.valid_until",
                Box::new(|p| {
                    p["message"]["entity"]["key_pair"]["valid_until"] =
                        "2026-03-01T00:00:00.000Z".into()
                }),
            ),
            (
                "message.network_participant",
                Box::new(|p| p["message"]["network_participant"] = json!([])),
            ),
            (
                "message.network_participant[1].subscriber_url",
                Box::new(|p| p["message"]["network_participant"][1]["subscriber_url"] = 1.into()),
            ),
            (
                "message.network_participant[0].city_code",
                Box::new(|p| p["message"]["network_participant"][0]["city_code"] = json!([1])),
            ),
        ];
        for (path, mutate) in cases {
            let mut p = payload();
            mutate(&mut p);
            let err = parse(&p).expect_err(path);
            assert_eq!(err.path, path, "{}", err.message);
        }
        assert_eq!(
            SubscribeRequest::parse(b"{not json", now())
                .unwrap_err()
                .path,
            "body"
        );
    }

    proptest! {
        #[test]
        fn arbitrary_pages_never_panic(page in ".{0,300}") {
            let _ = site_verification_meta(&page);
            let _ = site_verification_meta(&format!("<meta name='ondc-site-verification' {page}"));
        }

        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = SubscribeRequest::parse(&body, now());
        }
    }
}

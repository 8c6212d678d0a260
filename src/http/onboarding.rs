//! Registry onboarding over HTTP: the two endpoints the registry calls while it checks a
//! `/subscribe` (`GET /ondc-site-verification.html`, `POST {callback_url}/on_subscribe`), and the
//! `/subscribe` request itself, built from `[onboarding]` and sent by `ondc-rating subscribe`.
//!
//! Each endpoint exists only when configured: the page when `onboarding.request_id` is set,
//! `/on_subscribe` when `onboarding.encryption_private_key` is. Otherwise the JSON 404 answers.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::error::{ApiCode, ApiError, FieldError};
use super::read_body;
use crate::clock::{ondc_timestamp, parse_timestamp};
use crate::config::Settings;
use crate::crypto::{ChallengeKey, EncryptionKeyPair, SigningKeyPair, site_verification_html};

/// Where the site verification page is served.
pub const SITE_VERIFICATION_PATH: &str = "/ondc-site-verification.html";

/// The ONDC registries by environment name: (name, base URL). `/subscribe` and the lookups sit
/// directly under the base URL.
pub const REGISTRY_URLS: [(&str, &str); 3] = [
    ("staging", "https://staging.registry.ondc.org"),
    ("preprod", "https://preprod.registry.ondc.org/ondc"),
    ("prod", "https://prod.registry.ondc.org"),
];

/// `{callback_url}/on_subscribe`, with `/` as the root.
pub fn on_subscribe_path(callback_url: &str) -> String {
    format!("{}/on_subscribe", callback_url.trim_end_matches('/'))
}

/// The network participants of a `/subscribe` with operation `ops_no`: (type, subscriber_url),
/// the buyer app's then the seller app's; `onboarding.subscriber_url` when set, else the role's
/// `bap_uri` / `bpp_uri`.
fn participants(settings: &Settings, ops_no: u8) -> Vec<(&'static str, &str)> {
    let own = settings.onboarding.subscriber_url.as_str();
    let url = |uri| if own.is_empty() { uri } else { own };
    let mut out = Vec::new();
    if matches!(ops_no, 1 | 4) {
        out.push(("buyerApp", url(settings.buyer.bap_uri.as_str())));
    }
    if matches!(ops_no, 2 | 4) {
        out.push(("sellerApp", url(settings.seller.bpp_uri.as_str())));
    }
    out
}

/// Every path `/on_subscribe` is served at: `{callback_url}/on_subscribe` first, where ONDC's
/// onboarding guide has the registry call (`https://{subscriber_id}{callback_url}/on_subscribe`),
/// then `/on_subscribe` under the path of each subscriber_url the configuration's `/subscribe`
/// sends, where a registry calling `{subscriber_url}/on_subscribe` (PROTOCOL.md section 2) sends
/// the challenge.
pub fn on_subscribe_paths(settings: &Settings) -> Vec<String> {
    // (An ops_no the settings refuse never serves; both roles' paths then, which is harmless.)
    let ops_no = ops_no(settings, None).unwrap_or(4);
    let mut paths = vec![on_subscribe_path(&settings.onboarding.callback_url)];
    for (_, url) in participants(settings, ops_no) {
        let path = on_subscribe_path(&crate::config::uri_path(url));
        if !paths.contains(&path) {
            paths.push(path);
        }
    }
    paths
}

/// The onboarding endpoints `settings` enables, as (method, path).
pub fn paths(settings: &Settings) -> Vec<(actix_web::http::Method, String)> {
    let o = &settings.onboarding;
    let mut out = Vec::new();
    if !o.request_id.is_empty() {
        out.push((
            actix_web::http::Method::GET,
            SITE_VERIFICATION_PATH.to_owned(),
        ));
    }
    if !o.encryption_private_key.is_empty() {
        for path in on_subscribe_paths(settings) {
            out.push((actix_web::http::Method::POST, path));
        }
    }
    out
}

/// Registers the onboarding endpoints that `settings` enables.
pub fn configure(cfg: &mut web::ServiceConfig, settings: &Settings) {
    let o = &settings.onboarding;
    if !o.request_id.is_empty() {
        // validate() requires a configured signing key whenever request_id is set.
        match SigningKeyPair::from_base64(settings.identity.active_private_key().unwrap_or("")) {
            Ok(keys) => {
                let page: Arc<str> = site_verification_html(&keys, &o.request_id).into();
                cfg.route(
                    SITE_VERIFICATION_PATH,
                    super::get_or_head().to(move || {
                        let page = page.clone();
                        async move {
                            HttpResponse::Ok()
                                .content_type("text/html; charset=utf-8")
                                .body(page.to_string())
                        }
                    }),
                );
            }
            Err(e) => tracing::error!(error = %e, "site verification page not served"),
        }
    }
    if !o.encryption_private_key.is_empty() {
        match ChallengeKey::from_base64(&o.encryption_private_key, o.registry_public_key()) {
            Ok(key) => {
                let responder = Arc::new(ChallengeResponder {
                    key,
                    subscriber_id: settings.identity.subscriber_id.clone(),
                    limit: settings.server.max_body_bytes,
                });
                for path in on_subscribe_paths(settings) {
                    let responder = responder.clone();
                    cfg.route(
                        &path,
                        web::post().to(
                            move |req: actix_web::HttpRequest, payload: web::Payload| {
                                let responder = responder.clone();
                                async move { responder.answer(&req, payload).await }
                            },
                        ),
                    );
                }
            }
            Err(e) => tracing::error!(error = %e, "/on_subscribe not served"),
        }
    }
}

/// What `/on_subscribe` needs: the AES key shared with the registry, derived once.
struct ChallengeResponder {
    key: ChallengeKey,
    subscriber_id: String,
    limit: usize,
}

impl ChallengeResponder {
    async fn answer(
        &self,
        req: &actix_web::HttpRequest,
        payload: web::Payload,
    ) -> Result<HttpResponse, ApiError> {
        let body = read_body(req.headers(), payload, self.limit).await?;
        let parsed: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::new(ApiCode::InvalidJson, format!("body is not JSON: {e}")))?;
        let Some(parsed) = parsed.as_object() else {
            return Err(ApiError::new(
                ApiCode::InvalidJson,
                "body must be a JSON object {\"subscriber_id\",\"challenge\"}",
            ));
        };
        let mut details = Vec::new();
        match parsed.get("subscriber_id").and_then(Value::as_str) {
            None => details.push(FieldError::new("subscriber_id", "must be a string")),
            Some(s) if s != self.subscriber_id => details.push(FieldError::new(
                "subscriber_id",
                format!("is not this participant ({})", self.subscriber_id),
            )),
            Some(_) => {}
        }
        let challenge = parsed.get("challenge").and_then(Value::as_str);
        if challenge.is_none() {
            details.push(FieldError::new("challenge", "must be a string"));
        }
        let (Some(challenge), true) = (challenge, details.is_empty()) else {
            return Err(ApiError::validation(details));
        };
        let answer = self.key.decrypt(challenge).map_err(|e| {
            tracing::warn!(error = %e, "on_subscribe challenge refused");
            ApiError::new(ApiCode::InvalidChallenge, e.to_string())
        })?;
        tracing::info!("answered the registry's on_subscribe challenge");
        Ok(HttpResponse::Ok().json(json!({ "answer": answer })))
    }
}

/// Why a `/subscribe` request could not be built or sent.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    /// A setting the payload needs is empty.
    #[error("{0} must be set to subscribe")]
    Missing(&'static str),
    /// A value is unusable.
    #[error("{key}: {message}")]
    Invalid {
        /// Setting or flag.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The registry could not be reached.
    #[error("cannot reach the registry at {url}: {source}")]
    Transport {
        /// The `/subscribe` URL.
        url: String,
        /// Cause.
        source: reqwest::Error,
    },
}

/// The registry base URL for `staging`, `preprod`, `prod`, or an http(s) URL given directly
/// (trailing slash removed).
pub fn registry_url(env_or_url: &str) -> Result<String, SubscribeError> {
    let env_or_url = env_or_url.trim();
    if let Some((_, url)) = REGISTRY_URLS.iter().find(|(name, _)| *name == env_or_url) {
        return Ok((*url).to_owned());
    }
    match reqwest::Url::parse(env_or_url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            Ok(env_or_url.trim_end_matches('/').to_owned())
        }
        _ => Err(SubscribeError::Invalid {
            key: "--env",
            message: format!("{env_or_url:?} is not staging, preprod, prod or an http(s) URL"),
        }),
    }
}

/// The `/subscribe` operation for `settings`: `ops_no` when given, else `onboarding.ops_no`, else
/// from the enabled roles (1 buyer app, 2 seller app, 4 both).
pub fn ops_no(settings: &Settings, ops_no: Option<u8>) -> Result<u8, SubscribeError> {
    let n = ops_no.or(settings.onboarding.ops_no).unwrap_or(
        match (settings.buyer.enabled, settings.seller.enabled) {
            (true, true) => 4,
            (true, false) => 1,
            _ => 2,
        },
    );
    if matches!(n, 1 | 2 | 4) {
        Ok(n)
    } else {
        Err(SubscribeError::Invalid {
            key: "ops_no",
            message: format!("{n} is not 1 (buyer app), 2 (seller app) or 4 (both)"),
        })
    }
}

fn required<'a>(key: &'static str, value: &'a str) -> Result<&'a str, SubscribeError> {
    if value.trim().is_empty() {
        Err(SubscribeError::Missing(key))
    } else {
        Ok(value)
    }
}

fn timestamp(key: &'static str, value: &str) -> Result<Option<DateTime<Utc>>, SubscribeError> {
    if value.is_empty() {
        return Ok(None);
    }
    parse_timestamp(value)
        .map(Some)
        .ok_or_else(|| SubscribeError::Invalid {
            key,
            message: "must be an RFC 3339 timestamp".into(),
        })
}

/// The `/subscribe` body (PROTOCOL.md section 2) for `settings` at time `now`; `ops_no` and
/// `request_id` override the configured ones.
pub fn subscribe_payload(
    settings: &Settings,
    ops_no: Option<u8>,
    request_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Value, SubscribeError> {
    let o = &settings.onboarding;
    let ops_no = self::ops_no(settings, ops_no)?;
    let request_id = required(
        "onboarding.request_id (or --request-id)",
        request_id.unwrap_or(&o.request_id),
    )?;
    let signing = SigningKeyPair::from_base64(required(
        "identity.signing_private_key",
        settings.identity.active_private_key().unwrap_or(""),
    )?)
    .map_err(|e| SubscribeError::Invalid {
        key: "identity.signing_private_key",
        message: e.to_string(),
    })?;
    let encryption = EncryptionKeyPair::from_pkcs8_base64(required(
        "onboarding.encryption_private_key",
        &o.encryption_private_key,
    )?)
    .map_err(|e| SubscribeError::Invalid {
        key: "onboarding.encryption_private_key",
        message: e.to_string(),
    })?;
    if o.city_codes.is_empty() {
        return Err(SubscribeError::Missing("onboarding.city_codes"));
    }
    let valid_from = timestamp("onboarding.valid_from", &o.valid_from)?.unwrap_or(now);
    let valid_until = timestamp("onboarding.valid_until", &o.valid_until)?
        .unwrap_or(valid_from + chrono::Duration::days(365));
    if valid_until <= valid_from {
        return Err(SubscribeError::Invalid {
            key: "onboarding.valid_until",
            message: "must be after valid_from".into(),
        });
    }

    let network_participant: Vec<Value> = participants(settings, ops_no)
        .into_iter()
        .map(|(kind, url)| {
            json!({
                "subscriber_url": url,
                "domain": o.domain,
                "type": kind,
                "msn": false,
                "city_code": o.city_codes,
            })
        })
        .collect();

    let mut entity: Map<String, Value> = o
        .entity_details
        .iter()
        .map(|(k, v)| (k.clone(), toml_to_json(v)))
        .collect();
    entity.insert(
        "subscriber_id".into(),
        settings.identity.subscriber_id.clone().into(),
    );
    entity.insert(
        "unique_key_id".into(),
        settings.identity.unique_key_id.clone().into(),
    );
    entity.insert("callback_url".into(), o.callback_url.clone().into());
    entity.insert(
        "key_pair".into(),
        json!({
            "signing_public_key": signing.public_key_base64(),
            "encryption_public_key": encryption.public_key_der_base64(),
            "valid_from": ondc_timestamp(valid_from),
            "valid_until": ondc_timestamp(valid_until),
        }),
    );

    Ok(json!({
        "context": { "operation": { "ops_no": ops_no } },
        "message": {
            "request_id": request_id,
            "timestamp": ondc_timestamp(now),
            "entity": entity,
            "network_participant": network_participant,
        }
    }))
}

/// POSTs `payload` to `{registry}/subscribe`; returns the HTTP status and the body as text.
pub async fn send_subscribe(
    registry: &str,
    payload: &Value,
) -> Result<(u16, String), SubscribeError> {
    let url = format!("{}/subscribe", registry.trim_end_matches('/'));
    let transport = |source| SubscribeError::Transport {
        url: url.clone(),
        source,
    };
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(transport)?;
    let response = client
        .post(&url)
        .json(payload)
        .send()
        .await
        .map_err(transport)?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(transport)?;
    Ok((status, body))
}

fn toml_to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StoreSettings;

    fn settings() -> Settings {
        let keys = SigningKeyPair::generate().unwrap();
        let mut s = Settings::participant(
            "np.example",
            "uk-1",
            &keys,
            "127.0.0.1:0".into(),
            StoreSettings::default(),
        );
        s.seller.enabled = true;
        s.onboarding.request_id = "req-1".into();
        s.onboarding.encryption_private_key = EncryptionKeyPair::generate()
            .unwrap()
            .private_key_pkcs8_base64();
        s.onboarding.registry_encryption_public_key = "staging".into();
        s.onboarding.city_codes = vec!["std:080".into()];
        s
    }

    #[test]
    fn registry_urls_by_name_or_given() {
        assert_eq!(
            registry_url("preprod").unwrap(),
            "https://preprod.registry.ondc.org/ondc"
        );
        assert_eq!(
            registry_url("http://127.0.0.1:9/reg/").unwrap(),
            "http://127.0.0.1:9/reg"
        );
        assert!(registry_url("qa").is_err());
        assert!(registry_url("ftp://x.example").is_err());
    }

    #[test]
    fn payload_follows_the_roles_and_overrides() {
        let mut s = settings();
        let now = parse_timestamp("2026-01-02T03:04:05.678Z").unwrap();
        let p = subscribe_payload(&s, None, None, now).unwrap();
        assert_eq!(p["context"]["operation"]["ops_no"], 2);
        assert_eq!(p["message"]["request_id"], "req-1");
        assert_eq!(p["message"]["timestamp"], "2026-01-02T03:04:05.678Z");
        let kp = &p["message"]["entity"]["key_pair"];
        assert_eq!(kp["valid_from"], "2026-01-02T03:04:05.678Z");
        assert_eq!(kp["valid_until"], "2027-01-02T03:04:05.678Z");
        let np = p["message"]["network_participant"].as_array().unwrap();
        assert_eq!(np.len(), 1);
        assert_eq!(np[0]["type"], "sellerApp");
        assert_eq!(np[0]["subscriber_url"], s.seller.bpp_uri.as_str());

        s.onboarding.entity_details.insert(
            "gst".into(),
            toml::Value::Table(
                [(
                    "legal_entity_name".to_string(),
                    toml::Value::String("X".into()),
                )]
                .into_iter()
                .collect(),
            ),
        );
        s.onboarding.subscriber_url = "https://np.example/ondc".into();
        let p = subscribe_payload(&s, Some(4), Some("req-2"), now).unwrap();
        assert_eq!(p["context"]["operation"]["ops_no"], 4);
        assert_eq!(p["message"]["request_id"], "req-2");
        assert_eq!(p["message"]["entity"]["gst"]["legal_entity_name"], "X");
        let np = p["message"]["network_participant"].as_array().unwrap();
        let kinds: Vec<&str> = np.iter().map(|n| n["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["buyerApp", "sellerApp"]);
        assert!(
            np.iter()
                .all(|n| n["subscriber_url"] == "https://np.example/ondc")
        );

        assert!(matches!(
            subscribe_payload(&s, Some(3), None, now),
            Err(SubscribeError::Invalid { key: "ops_no", .. })
        ));
        s.onboarding.city_codes.clear();
        assert!(matches!(
            subscribe_payload(&s, None, None, now),
            Err(SubscribeError::Missing("onboarding.city_codes"))
        ));
    }

    #[test]
    fn on_subscribe_lives_under_the_callback_url() {
        assert_eq!(on_subscribe_path("/"), "/on_subscribe");
        assert_eq!(on_subscribe_path("/ondc/"), "/ondc/on_subscribe");
        assert_eq!(on_subscribe_path("/ondc"), "/ondc/on_subscribe");
    }
}

//! Subscriber records as registries return them: flat (`subscriber_id, ukId, signing_public_key,
//! encr_public_key, valid_from, valid_until, subscriber_url, type, domain, city, status`) or nested
//! (`unique_key_id`, `network_participant: [{subscriber_url, domain, type, city_code}]`). Both are
//! read into one shape; unknown keys are ignored.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::clock::parse_timestamp;

/// One subscriber key record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriberRecord {
    /// Subscriber id.
    pub subscriber_id: String,
    /// Unique key id.
    #[serde(rename = "ukId")]
    pub unique_key_id: String,
    /// Ed25519 public key, base64 raw 32 bytes.
    pub signing_public_key: String,
    /// X25519 public key, base64 DER.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub encr_public_key: Option<String>,
    /// Start of validity (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub valid_from: Option<String>,
    /// End of validity (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub valid_until: Option<String>,
    /// The participant's base URL.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub subscriber_url: Option<String>,
    /// BAP, BPP, BG...
    #[serde(rename = "type", skip_serializing_if = "Option::is_none", default)]
    pub kind: Option<String>,
    /// Domain, e.g. ONDC:RET11.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub domain: Option<String>,
    /// City code.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub city: Option<String>,
    /// Country.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub country: Option<String>,
    /// SUBSCRIBED, INITIATED, UNSUBSCRIBED...
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<String>,
}

fn text(v: &Value, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .map(str::to_owned)
}

impl SubscriberRecord {
    /// Reads one record of either shape; None when the identifying fields are missing.
    pub fn from_value(v: &Value) -> Option<Self> {
        let participant = v
            .get("network_participant")
            .and_then(Value::as_array)
            .and_then(|a| a.first());
        let from_participant = |keys: &[&str]| participant.and_then(|p| text(p, keys));
        Some(Self {
            subscriber_id: text(v, &["subscriber_id"])?,
            unique_key_id: text(v, &["ukId", "unique_key_id", "uk_id"])?,
            signing_public_key: text(v, &["signing_public_key"])?,
            encr_public_key: text(v, &["encr_public_key", "encryption_public_key"]),
            valid_from: text(v, &["valid_from"]),
            valid_until: text(v, &["valid_until"]),
            subscriber_url: text(v, &["subscriber_url"])
                .or_else(|| from_participant(&["subscriber_url"])),
            kind: text(v, &["type"]).or_else(|| from_participant(&["type"])),
            domain: text(v, &["domain"]).or_else(|| from_participant(&["domain"])),
            city: text(v, &["city"]).or_else(|| {
                participant
                    .and_then(|p| p.get("city_code"))
                    .and_then(Value::as_array)
                    .and_then(|a| a.first())
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            }),
            country: text(v, &["country"]),
            status: text(v, &["status"]),
        })
    }

    /// Reads a lookup response: a JSON array of records (unreadable entries skipped).
    pub fn parse_response(body: &[u8]) -> Option<Vec<Self>> {
        match serde_json::from_slice::<Value>(body).ok()? {
            Value::Array(items) => Some(items.iter().filter_map(Self::from_value).collect()),
            _ => None,
        }
    }

    /// Whether the record may be used at `now`: subscribed (or no status given) and within its
    /// validity window.
    pub fn usable_at(&self, now: DateTime<Utc>) -> bool {
        let subscribed = self
            .status
            .as_deref()
            .is_none_or(|s| s.eq_ignore_ascii_case("SUBSCRIBED"));
        let started = self
            .valid_from
            .as_deref()
            .and_then(parse_timestamp)
            .is_none_or(|t| t <= now);
        let not_ended = self.valid_until().is_none_or(|t| now <= t);
        subscribed && started && not_ended
    }

    /// End of validity, when given and readable.
    pub fn valid_until(&self) -> Option<DateTime<Utc>> {
        self.valid_until.as_deref().and_then(parse_timestamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_flat_and_nested_records() {
        let flat = json!([{"subscriber_id": "s.example", "ukId": "k1", "signing_public_key": "PK",
            "encr_public_key": "EK", "valid_from": "2024-01-01T00:00:00.000Z",
            "valid_until": "2030-01-01T00:00:00.000Z", "subscriber_url": "https://s.example/bpp",
            "type": "BPP", "domain": "ONDC:RET11", "city": "std:080", "status": "SUBSCRIBED"}]);
        let nested = json!([{"subscriber_id": "s.example", "unique_key_id": "k1",
            "signing_public_key": "PK", "status": "SUBSCRIBED",
            "network_participant": [{"subscriber_url": "/bpp", "domain": "ONDC:RET11",
                "type": "sellerApp", "city_code": ["std:080"]}]}]);
        let f = &SubscriberRecord::parse_response(flat.to_string().as_bytes()).unwrap()[0];
        let n = &SubscriberRecord::parse_response(nested.to_string().as_bytes()).unwrap()[0];
        assert_eq!(
            (f.unique_key_id.as_str(), n.unique_key_id.as_str()),
            ("k1", "k1")
        );
        assert_eq!(f.subscriber_url.as_deref(), Some("https://s.example/bpp"));
        assert_eq!(n.subscriber_url.as_deref(), Some("/bpp"));
        assert_eq!(n.city.as_deref(), Some("std:080"));
        assert_eq!(n.kind.as_deref(), Some("sellerApp"));
        assert!(SubscriberRecord::parse_response(b"{}").is_none());
        assert!(
            SubscriberRecord::parse_response(b"[{\"subscriber_id\":\"x\"}]")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn status_and_validity_window_decide_usability() {
        let now = parse_timestamp("2026-06-01T00:00:00.000Z").unwrap();
        let mut r = SubscriberRecord::from_value(&json!({"subscriber_id": "s", "ukId": "k",
            "signing_public_key": "PK"}))
        .unwrap();
        assert!(r.usable_at(now));
        r.valid_until = Some("2026-05-31T23:59:59.000Z".into());
        assert!(!r.usable_at(now));
        r.valid_until = Some("2027-01-01T00:00:00.000Z".into());
        r.valid_from = Some("2026-06-02T00:00:00.000Z".into());
        assert!(!r.usable_at(now));
        r.valid_from = None;
        r.status = Some("INITIATED".into());
        assert!(!r.usable_at(now));
        r.status = Some("subscribed".into());
        assert!(r.usable_at(now));
    }
}

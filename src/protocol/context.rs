//! The flat retail `context` block carried by `/rating` and `/on_rating`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which message a context belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// BAP to BPP.
    Rating,
    /// BPP to BAP, the asynchronous answer.
    OnRating,
}

impl Action {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Rating => "rating",
            Action::OnRating => "on_rating",
        }
    }
}

/// A complete context. Field order here is the order on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    /// `ONDC:RET10`..`ONDC:RET19`, `ONDC:RET1A`.
    pub domain: String,
    /// Always `IND`.
    pub country: String,
    /// `std:<code>`.
    pub city: String,
    /// `rating` or `on_rating`.
    pub action: String,
    /// `1.2.0`.
    pub core_version: String,
    /// Buyer-side subscriber id.
    pub bap_id: String,
    /// Buyer-side callback base URI.
    pub bap_uri: String,
    /// Seller-side subscriber id.
    pub bpp_id: String,
    /// Seller-side base URI.
    pub bpp_uri: String,
    /// The order's transaction id.
    pub transaction_id: String,
    /// Fresh per /rating; echoed by /on_rating.
    pub message_id: String,
    /// `YYYY-MM-DDTHH:MM:SS.sssZ`.
    pub timestamp: String,
    /// `PT30S`. Some sellers omit it on callbacks; it is then absent here too.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ttl: Option<String>,
}

/// A context field that is missing or not what this action requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ContextError {
    /// JSON path of the offending field, e.g. `context.bap_uri`.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl ContextError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        Self {
            path: format!("context.{field}"),
            message: message.into(),
        }
    }
}

impl Context {
    /// Where this context's `/rating` goes: `{bpp_uri}/rating`.
    pub fn rating_url(&self) -> String {
        format!("{}/rating", self.bpp_uri.trim_end_matches('/'))
    }

    /// Reads a received context tolerantly (unknown keys ignored, ttl optional) but requires every
    /// field a reply needs, as a non-empty string, and the expected action.
    pub fn from_value(value: Option<&Value>, expected: Action) -> Result<Self, ContextError> {
        Self::take(value.cloned(), expected)
    }

    /// [`Context::from_value`], moving the strings out of `value` instead of copying them (a
    /// received body's context, once its schema is checked).
    pub fn take(value: Option<Value>, expected: Action) -> Result<Self, ContextError> {
        let Some(Value::Object(mut obj)) = value else {
            return Err(ContextError {
                path: "context".into(),
                message: "must be an object".into(),
            });
        };
        let mut field = |name: &str| -> Result<String, ContextError> {
            match obj.remove(name) {
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
                Some(Value::String(_)) => Err(ContextError::new(name, "must not be empty")),
                Some(_) => Err(ContextError::new(name, "must be a string")),
                None => Err(ContextError::new(name, "is required")),
            }
        };
        let ctx = Context {
            domain: field("domain")?,
            country: field("country")?,
            city: field("city")?,
            action: field("action")?,
            core_version: field("core_version")?,
            bap_id: field("bap_id")?,
            bap_uri: field("bap_uri")?,
            bpp_id: field("bpp_id")?,
            bpp_uri: field("bpp_uri")?,
            transaction_id: field("transaction_id")?,
            message_id: field("message_id")?,
            timestamp: field("timestamp")?,
            ttl: match obj.remove("ttl") {
                None => None,
                Some(Value::String(s)) => Some(s),
                Some(_) => return Err(ContextError::new("ttl", "must be a string")),
            },
        };
        if ctx.action != expected.as_str() {
            return Err(ContextError::new(
                "action",
                format!("must be {:?}", expected.as_str()),
            ));
        }
        if crate::clock::parse_timestamp(&ctx.timestamp).is_none() {
            return Err(ContextError::new(
                "timestamp",
                "must be an RFC 3339 timestamp",
            ));
        }
        Ok(ctx)
    }
}

/// True when `id` looks like a URL rather than a subscriber id (ONDC ids are FQDN-like).
pub fn looks_like_url(id: &str) -> bool {
    id.contains("://")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        serde_json::from_str(include_str!("../../fixtures/ondc/rating.ret11.json")).unwrap()
    }

    #[test]
    fn reads_the_example_context() {
        let v = sample();
        let c = Context::from_value(v.get("context"), Action::Rating).unwrap();
        assert_eq!(c.bpp_id, "ondc-seller-preprod.chattybao.com/ondc");
        assert_eq!(c.ttl.as_deref(), Some("PT30S"));
    }

    #[test]
    fn names_the_missing_or_wrong_field() {
        let mut v = sample();
        v["context"].as_object_mut().unwrap().remove("bap_uri");
        let e = Context::from_value(v.get("context"), Action::Rating).unwrap_err();
        assert_eq!(e.path, "context.bap_uri");

        let mut v = sample();
        v["context"]["message_id"] = json!(7);
        let e = Context::from_value(v.get("context"), Action::Rating).unwrap_err();
        assert_eq!(e.path, "context.message_id");

        let v = sample();
        let e = Context::from_value(v.get("context"), Action::OnRating).unwrap_err();
        assert_eq!(e.path, "context.action");

        let e = Context::from_value(Some(&json!([])), Action::Rating).unwrap_err();
        assert_eq!(e.path, "context");
    }

    #[test]
    fn serialises_in_wire_order_without_nulls() {
        let v = sample();
        let mut c = Context::from_value(v.get("context"), Action::Rating).unwrap();
        c.ttl = None;
        let s = serde_json::to_string(&c).unwrap();
        assert!(s.starts_with(
            r#"{"domain":"ONDC:RET11","country":"IND","city":"std:0522","action":"rating""#
        ));
        assert!(!s.contains("null") && !s.contains("ttl"));
    }
}

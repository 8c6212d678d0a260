//! The JSON Schemas in `schemas/`, embedded and compiled once. The server checks inbound network
//! payloads against the tolerant schemas (so a peer learns the exact path of what it got wrong)
//! and, when `server.validate_outbound` is on (tests, debugging), what it sends against the
//! strict ones.

use jsonschema::{Registry, Validator};
use serde_json::Value;

/// Every schema file, by its path under `schemas/`.
pub const FILES: &[(&str, &str)] = &[
    (
        "ondc/context.schema.json",
        include_str!("../../schemas/ondc/context.schema.json"),
    ),
    (
        "ondc/ack.schema.json",
        include_str!("../../schemas/ondc/ack.schema.json"),
    ),
    (
        "ondc/rating.outbound.schema.json",
        include_str!("../../schemas/ondc/rating.outbound.schema.json"),
    ),
    (
        "ondc/rating.inbound.schema.json",
        include_str!("../../schemas/ondc/rating.inbound.schema.json"),
    ),
    (
        "ondc/on_rating.schema.json",
        include_str!("../../schemas/ondc/on_rating.schema.json"),
    ),
    (
        "ondc/on_rating.outbound.schema.json",
        include_str!("../../schemas/ondc/on_rating.outbound.schema.json"),
    ),
    (
        "buyer/rate-order.request.schema.json",
        include_str!("../../schemas/buyer/rate-order.request.schema.json"),
    ),
    (
        "buyer/rate-order.response.schema.json",
        include_str!("../../schemas/buyer/rate-order.response.schema.json"),
    ),
    (
        "buyer/rating.response.schema.json",
        include_str!("../../schemas/buyer/rating.response.schema.json"),
    ),
    (
        "buyer/error.schema.json",
        include_str!("../../schemas/buyer/error.schema.json"),
    ),
    (
        "buyer/order.schema.json",
        include_str!("../../schemas/buyer/order.schema.json"),
    ),
    (
        "buyer/feedback.request.schema.json",
        include_str!("../../schemas/buyer/feedback.request.schema.json"),
    ),
    (
        "buyer/feedback.response.schema.json",
        include_str!("../../schemas/buyer/feedback.response.schema.json"),
    ),
    (
        "buyer/feedback.rating.schema.json",
        include_str!("../../schemas/buyer/feedback.rating.schema.json"),
    ),
    (
        "buyer/feedback.error.schema.json",
        include_str!("../../schemas/buyer/feedback.error.schema.json"),
    ),
    (
        "buyer/listing-feedback.request.schema.json",
        include_str!("../../schemas/buyer/listing-feedback.request.schema.json"),
    ),
    (
        "buyer/listing-feedback.response.schema.json",
        include_str!("../../schemas/buyer/listing-feedback.response.schema.json"),
    ),
    (
        "buyer/listing-feedback.error.schema.json",
        include_str!("../../schemas/buyer/listing-feedback.error.schema.json"),
    ),
    (
        "buyer/user.schema.json",
        include_str!("../../schemas/buyer/user.schema.json"),
    ),
    (
        "buyer/notifications.schema.json",
        include_str!("../../schemas/buyer/notifications.schema.json"),
    ),
];

/// The first thing wrong with a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Dotted JSON path (`message.ratings[0].value`), empty for the root.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A compiled schema.
pub struct Schema {
    validator: Validator,
}

impl Schema {
    /// Ok, or the first violation (errors are reported in document order). A valid instance
    /// takes the validator's boolean walk only; the walk that collects every error (with its
    /// location) runs for an invalid one.
    pub fn check(&self, instance: &Value) -> Result<(), Violation> {
        if self.validator.is_valid(instance) {
            return Ok(());
        }
        match self.validator.iter_errors(instance).next() {
            None => Ok(()),
            Some(e) => Err(violation(&e)),
        }
    }

    /// Checks serialised bytes (what is about to be sent).
    pub fn check_bytes(&self, body: &[u8]) -> Result<(), Violation> {
        let value: Value = serde_json::from_slice(body).map_err(|e| Violation {
            path: String::new(),
            message: format!("not JSON: {e}"),
        })?;
        self.check(&value)
    }

    /// Every violation.
    pub fn violations(&self, instance: &Value) -> Vec<Violation> {
        self.validator
            .iter_errors(instance)
            .map(|e| violation(&e))
            .collect()
    }
}

/// The schemas the server uses, compiled once at start-up.
pub struct Schemas {
    /// /rating as a seller side accepts it.
    pub rating_inbound: Schema,
    /// /rating as this adapter sends it.
    pub rating_outbound: Schema,
    /// /on_rating as a buyer side accepts it.
    pub on_rating_inbound: Schema,
    /// /on_rating as this adapter sends it.
    pub on_rating_outbound: Schema,
    /// ACK / NACK.
    pub ack: Schema,
    /// Buyer API: rate-order request.
    pub rate_order_request: Schema,
    /// Buyer API: rate-order 200/202 body.
    pub rate_order_response: Schema,
    /// Buyer API: the stored rating.
    pub rating_response: Schema,
    /// Buyer and internal API errors.
    pub error: Schema,
    /// Internal orders API body.
    pub order: Schema,
    /// v2 feedback API: request body.
    pub feedback_request: Schema,
    /// v2 feedback API: `{"success":true}`.
    pub feedback_response: Schema,
    /// v2 feedback API: the read-back.
    pub feedback_rating: Schema,
    /// v2 feedback API: errors.
    pub feedback_error: Schema,
    /// Listing feedback API: request body.
    pub listing_feedback_request: Schema,
    /// Listing feedback API: the 201 and the read-back.
    pub listing_feedback_response: Schema,
    /// Listing feedback API: errors.
    pub listing_feedback_error: Schema,
    /// Internal users API body.
    pub user: Schema,
    /// The internal API over given-up notifications: a page, or one sent again.
    pub notifications: Schema,
}

/// Why the embedded schemas could not be compiled (a build defect caught by the tests).
#[derive(Debug, thiserror::Error)]
#[error("schema {file}: {message}")]
pub struct SchemaError {
    file: String,
    message: String,
}

fn parse(file: &str, text: &str) -> Result<Value, SchemaError> {
    serde_json::from_str(text).map_err(|e| SchemaError {
        file: file.into(),
        message: e.to_string(),
    })
}

impl Schemas {
    /// Compiles every schema (their `$ref`s resolve among the embedded files, never remotely).
    pub fn compile() -> Result<Self, SchemaError> {
        let mut docs = Vec::new();
        for (file, text) in FILES {
            let doc = parse(file, text)?;
            let id = doc
                .get("$id")
                .and_then(Value::as_str)
                .ok_or_else(|| SchemaError {
                    file: (*file).into(),
                    message: "no $id".into(),
                })?
                .to_owned();
            docs.push((*file, id, doc));
        }
        let mut builder = Registry::new();
        for (file, id, doc) in &docs {
            builder = builder
                .add(id.as_str(), doc.clone())
                .map_err(|e| SchemaError {
                    file: (*file).into(),
                    message: e.to_string(),
                })?;
        }
        let registry = builder.prepare().map_err(|e| SchemaError {
            file: "registry".into(),
            message: e.to_string(),
        })?;
        let get = |name: &str| -> Result<Schema, SchemaError> {
            let (file, _, doc) =
                docs.iter()
                    .find(|(f, _, _)| *f == name)
                    .ok_or_else(|| SchemaError {
                        file: name.into(),
                        message: "not embedded".into(),
                    })?;
            let validator = jsonschema::options()
                .with_registry(&registry)
                .build(doc)
                .map_err(|e| SchemaError {
                    file: (*file).into(),
                    message: e.to_string(),
                })?;
            Ok(Schema { validator })
        };
        Ok(Self {
            rating_inbound: get("ondc/rating.inbound.schema.json")?,
            rating_outbound: get("ondc/rating.outbound.schema.json")?,
            on_rating_inbound: get("ondc/on_rating.schema.json")?,
            on_rating_outbound: get("ondc/on_rating.outbound.schema.json")?,
            ack: get("ondc/ack.schema.json")?,
            rate_order_request: get("buyer/rate-order.request.schema.json")?,
            rate_order_response: get("buyer/rate-order.response.schema.json")?,
            rating_response: get("buyer/rating.response.schema.json")?,
            error: get("buyer/error.schema.json")?,
            order: get("buyer/order.schema.json")?,
            feedback_request: get("buyer/feedback.request.schema.json")?,
            feedback_response: get("buyer/feedback.response.schema.json")?,
            feedback_rating: get("buyer/feedback.rating.schema.json")?,
            feedback_error: get("buyer/feedback.error.schema.json")?,
            listing_feedback_request: get("buyer/listing-feedback.request.schema.json")?,
            listing_feedback_response: get("buyer/listing-feedback.response.schema.json")?,
            listing_feedback_error: get("buyer/listing-feedback.error.schema.json")?,
            user: get("buyer/user.schema.json")?,
            notifications: get("buyer/notifications.schema.json")?,
        })
    }
}

/// A missing required property is reported at the property's own path, which is what a peer
/// needs to fix (`context.bap_uri`, not `context`).
fn violation(e: &jsonschema::ValidationError<'_>) -> Violation {
    let mut path = dotted(&e.instance_path().to_string());
    if let jsonschema::error::ValidationErrorKind::Required { property } = e.kind()
        && let Some(name) = property.as_str()
    {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(name);
    }
    Violation {
        path,
        message: e.to_string(),
    }
}

/// `/message/ratings/0/value` -> `message.ratings[0].value`.
fn dotted(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schemas() -> Schemas {
        Schemas::compile().expect("embedded schemas compile")
    }

    fn example(name: &str) -> Value {
        let text = match name {
            "rating" => include_str!("../../fixtures/ondc/rating.ret11.json"),
            "on_rating" => include_str!("../../fixtures/ondc/on_rating.ret11.json"),
            _ => include_str!("../../fixtures/ondc/on_rating.mock-seller-variant.json"),
        };
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn the_ondc_examples_pass_the_tolerant_schemas() {
        let s = schemas();
        assert_eq!(s.rating_inbound.check(&example("rating")), Ok(()));
        assert_eq!(s.on_rating_inbound.check(&example("on_rating")), Ok(()));
        assert_eq!(s.on_rating_inbound.check(&example("mock")), Ok(()));
        // The example /rating is also in our strict outbound form.
        assert_eq!(s.rating_outbound.check(&example("rating")), Ok(()));
    }

    #[test]
    fn violations_name_the_path() {
        let s = schemas();
        let mut v = example("rating");
        v["message"]["ratings"][1]["value"] = json!("4.5");
        assert_eq!(
            s.rating_outbound.check(&v).unwrap_err().path,
            "message.ratings[1].value"
        );
        // Tolerant: numbers and single objects are fine; a missing id is not.
        v["message"]["ratings"][1]["value"] = json!(4);
        assert_eq!(s.rating_inbound.check(&v), Ok(()));
        v["message"] = json!({"rating_category": "order", "value": 5});
        assert_eq!(s.rating_inbound.check(&v).unwrap_err().path, "message.id");
        v["message"] = json!({"ratings": [{"rating_category": "Order", "id": "", "value": 5}]});
        assert_eq!(
            s.rating_inbound.check(&v).unwrap_err().path,
            "message.ratings[0].id"
        );
        let mut c = example("rating");
        c["context"].as_object_mut().unwrap().remove("bap_uri");
        assert_eq!(
            s.rating_inbound.check(&c).unwrap_err().path,
            "context.bap_uri"
        );
        assert!(
            s.rating_inbound
                .check(&c)
                .unwrap_err()
                .message
                .contains("bap_uri")
        );
        let mut t = example("rating");
        t["context"]["timestamp"] = json!("2024-05-15T08:00:00+00:00");
        assert_eq!(
            s.rating_outbound.check(&t).unwrap_err().path,
            "context.timestamp"
        );
    }

    #[test]
    fn ack_and_nack() {
        let s = schemas();
        assert_eq!(
            s.ack.check(&json!({"message":{"ack":{"status":"ACK"}}})),
            Ok(())
        );
        assert!(
            s.ack
                .check(&json!({"message":{"ack":{"status":"NACK"}}}))
                .is_err()
        );
        assert_eq!(
            s.ack.check(&json!({"message":{"ack":{"status":"NACK"}},"error":{"type":"POLICY-ERROR","code":"30016"}})),
            Ok(())
        );
    }

    #[test]
    fn pointer_to_dotted_path() {
        assert_eq!(dotted(""), "");
        assert_eq!(dotted("/context/bap_uri"), "context.bap_uri");
        assert_eq!(
            dotted("/message/ratings/0/value"),
            "message.ratings[0].value"
        );
    }
}

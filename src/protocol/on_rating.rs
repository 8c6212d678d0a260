//! The `/on_rating` message, in the standard form
//! `{"feedback_ack":true,"rating_ack":true,"feedback_form":{"form":{"url","mime_type","data"},"required":false}}`
//! and the variants buyer sides must accept: `{}` and `{"order_id":...,"feedback_form":{"form":{"url","mime_type"}}}`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::context::ContextError;

/// A feedback form's location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Form {
    /// Where the buyer fills the form.
    pub url: String,
    /// `text/html` or `application/xml`.
    pub mime_type: String,
    /// Form data; the standard form carries it, the mock-seller variant does not.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub data: Option<String>,
}

/// The feedback form block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackForm {
    /// The form itself.
    pub form: Form,
    /// Whether the buyer must fill it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub required: Option<bool>,
}

/// The `/on_rating` message; every field optional on receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct OnRatingMessage {
    /// Some sellers echo the order id.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub order_id: Option<String>,
    /// The seller took the feedback.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub feedback_ack: Option<bool>,
    /// The seller took the rating.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rating_ack: Option<bool>,
    /// Where the buyer can give more feedback.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub feedback_form: Option<FeedbackForm>,
}

impl OnRatingMessage {
    /// Reads a received message tolerantly; a present but malformed field is named.
    pub fn from_value(value: Option<&Value>) -> Result<Self, ContextError> {
        let Some(v @ Value::Object(obj)) = value else {
            return Err(ContextError {
                path: "message".into(),
                message: "must be an object".into(),
            });
        };
        if let Some(form) = obj.get("feedback_form").filter(|f| !f.is_null()) {
            let form = form.get("form");
            let url = form.and_then(|f| f.get("url"));
            if !matches!(url, Some(Value::String(s)) if !s.is_empty()) {
                return Err(ContextError {
                    path: "message.feedback_form.form.url".into(),
                    message: "must be a non-empty string".into(),
                });
            }
            if !matches!(
                form.and_then(|f| f.get("mime_type")),
                Some(Value::String(_))
            ) {
                return Err(ContextError {
                    path: "message.feedback_form.form.mime_type".into(),
                    message: "must be a string".into(),
                });
            }
        }
        // Read from the value in place: only the strings kept are copied, not the whole value.
        Self::deserialize(v).map_err(|e| ContextError {
            path: "message".into(),
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_standard_empty_and_mock_seller_variants() {
        let std: Value =
            serde_json::from_str(include_str!("../../fixtures/ondc/on_rating.ret11.json")).unwrap();
        let m = OnRatingMessage::from_value(std.get("message")).unwrap();
        assert_eq!(m.rating_ack, Some(true));

        let mock: Value = serde_json::from_str(include_str!(
            "../../fixtures/ondc/on_rating.mock-seller-variant.json"
        ))
        .unwrap();
        let m = OnRatingMessage::from_value(mock.get("message")).unwrap();
        assert_eq!(
            m.feedback_form.unwrap().form.url,
            "https://www.sellerapp.com/rating-capture"
        );

        assert_eq!(
            OnRatingMessage::from_value(Some(&json!({}))).unwrap(),
            OnRatingMessage::default()
        );
    }

    #[test]
    fn a_form_without_url_is_named() {
        let bad = json!({"feedback_form":{"form":{"mime_type":"text/html"}}});
        assert_eq!(
            OnRatingMessage::from_value(Some(&bad)).unwrap_err().path,
            "message.feedback_form.form.url"
        );
    }
}

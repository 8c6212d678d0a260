//! The `/rating` message: `{"ratings":[{"rating_category":"Order","id":"...","value":"5"}, ...]}`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::context::ContextError;

/// What a rating is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RatingCategory {
    /// The order as a whole.
    Order,
    /// The seller's store.
    Provider,
    /// One item of the order.
    Item,
    /// A fulfillment (delivery, pickup).
    Fulfillment,
    /// The delivery agent.
    Agent,
}

impl RatingCategory {
    /// Every category, in the order the reference buyer app sends them.
    pub const ALL: [RatingCategory; 5] = [
        RatingCategory::Order,
        RatingCategory::Provider,
        RatingCategory::Item,
        RatingCategory::Fulfillment,
        RatingCategory::Agent,
    ];

    /// The PascalCase wire name used when sending.
    pub fn as_str(self) -> &'static str {
        match self {
            RatingCategory::Order => "Order",
            RatingCategory::Provider => "Provider",
            RatingCategory::Item => "Item",
            RatingCategory::Fulfillment => "Fulfillment",
            RatingCategory::Agent => "Agent",
        }
    }

    /// Reads a category in any letter case.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// One rating as this adapter sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RatingEntry {
    /// PascalCase category.
    pub rating_category: RatingCategory,
    /// The rated object's id (order, provider, item, fulfillment or agent id).
    pub id: String,
    /// "1".."5".
    pub value: String,
    /// Answers that have no star value (the v2 feedback API's highlights and thank-you note).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub feedback_form: Vec<FeedbackAnswer>,
}

/// One `feedback_form` answer on a rating: `{id, parent_id, question, answer, answer_type}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackAnswer {
    /// This answer's id (`highlight.QUALITY_ITEMS`, `thank_you_note`).
    pub id: String,
    /// The question group it answers (`highlights`, `thank_you_note`).
    pub parent_id: String,
    /// The question, in words.
    pub question: String,
    /// The answer (the highlight's code, or the note's text).
    pub answer: String,
    /// `checkbox` or `text`.
    pub answer_type: String,
}

/// The outbound `/rating` message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RatingMessage {
    /// One entry per rated object.
    pub ratings: Vec<RatingEntry>,
}

/// One rating as received by a seller side: the category as sent (canonicalised when known),
/// the id, and the value as text whether it came as a string or a number. Value and category
/// checks are business rules answered in /on_rating, not reasons to refuse the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundRating {
    /// Category as received, PascalCase when it is a known one.
    pub rating_category: String,
    /// Rated object's id.
    pub id: String,
    /// Value as text.
    pub value: String,
    /// Optional feedback form answers, kept verbatim.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub feedback_form: Option<Value>,
    /// Optional feedback id.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub feedback_id: Option<String>,
}

/// Reads a received `/rating` message tolerantly: `{ratings:[...]}` or a single rating object;
/// `value` a string or a number; category in any case; unknown keys ignored.
pub fn parse_inbound(message: Option<&Value>) -> Result<Vec<InboundRating>, ContextError> {
    let err = |path: String, message: &str| ContextError {
        path,
        message: message.to_owned(),
    };
    let Some(Value::Object(obj)) = message else {
        return Err(err("message".into(), "must be an object"));
    };
    let (items, base): (Vec<&Value>, &str) = match obj.get("ratings") {
        Some(Value::Array(list)) if !list.is_empty() => (list.iter().collect(), "message.ratings"),
        Some(Value::Array(_)) => return Err(err("message.ratings".into(), "must not be empty")),
        Some(_) => return Err(err("message.ratings".into(), "must be an array")),
        None => (vec![message.expect("checked above")], "message"),
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let at = |field: &str| {
            if base == "message" {
                format!("message.{field}")
            } else {
                format!("{base}[{i}].{field}")
            }
        };
        let Value::Object(r) = item else {
            return Err(err(format!("{base}[{i}]"), "must be an object"));
        };
        let text = |field: &str| -> Result<String, ContextError> {
            match r.get(field) {
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
                Some(Value::Number(n)) if field == "value" => Ok(n.to_string()),
                Some(Value::String(_)) => Err(err(at(field), "must not be empty")),
                Some(_) => Err(err(at(field), "must be a string")),
                None => Err(err(at(field), "is required")),
            }
        };
        let category = text("rating_category")?;
        out.push(InboundRating {
            // A known category in its canonical spelling; the received string when it already
            // is, or is not a known one.
            rating_category: match RatingCategory::parse(&category) {
                Some(c) if c.as_str() != category => c.as_str().to_owned(),
                _ => category,
            },
            id: text("id")?,
            value: text("value")?,
            feedback_form: r.get("feedback_form").filter(|v| !v.is_null()).cloned(),
            feedback_id: r
                .get("feedback_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outbound_categories_are_pascal_case_and_values_strings() {
        let m = RatingMessage {
            ratings: vec![RatingEntry {
                rating_category: RatingCategory::Fulfillment,
                id: "F1".into(),
                value: "3".into(),
                feedback_form: Vec::new(),
            }],
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"ratings":[{"rating_category":"Fulfillment","id":"F1","value":"3"}]}"#
        );
    }

    #[test]
    fn reads_the_example_and_tolerant_variants() {
        let v: Value =
            serde_json::from_str(include_str!("../../fixtures/ondc/rating.ret11.json")).unwrap();
        let r = parse_inbound(v.get("message")).unwrap();
        assert_eq!(r.len(), 4);
        assert_eq!(r[0].rating_category, "Order");
        assert_eq!(r[0].value, "5");

        let single = json!({"rating_category":"provider","id":"P1","value":4,"extra":true});
        let r = parse_inbound(Some(&single)).unwrap();
        assert_eq!(r[0].rating_category, "Provider");
        assert_eq!(r[0].value, "4");

        let upper = json!({"ratings":[{"rating_category":"AGENT","id":"A","value":"2"}]});
        assert_eq!(
            parse_inbound(Some(&upper)).unwrap()[0].rating_category,
            "Agent"
        );
        let unknown = json!({"ratings":[{"rating_category":"Packaging","id":"A","value":"2"}]});
        assert_eq!(
            parse_inbound(Some(&unknown)).unwrap()[0].rating_category,
            "Packaging"
        );
    }

    #[test]
    fn names_the_bad_field() {
        let bad = json!({"ratings":[{"rating_category":"Order","id":"O"}]});
        assert_eq!(
            parse_inbound(Some(&bad)).unwrap_err().path,
            "message.ratings[0].value"
        );
        let bad = json!({"ratings":[]});
        assert_eq!(
            parse_inbound(Some(&bad)).unwrap_err().path,
            "message.ratings"
        );
        assert_eq!(parse_inbound(None).unwrap_err().path, "message");
        let bad = json!({"id":"O","value":"1"});
        assert_eq!(
            parse_inbound(Some(&bad)).unwrap_err().path,
            "message.rating_category"
        );
    }
}

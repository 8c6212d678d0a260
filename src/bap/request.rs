//! The buyer API's "Rate Order" body, read with every bad field reported at once, and its mapping
//! onto ONDC rating entries for a given order.

use serde_json::{Map, Value};

use crate::http::error::{ApiError, FieldError};
use crate::protocol::{RatingCategory, RatingEntry};
use crate::store::{ItemRating, Order, SubmittedRating};

const FIELDS: [&str; 6] = [
    "orderId",
    "orderRating",
    "providerRating",
    "agentRating",
    "fulfilmentRating",
    "itemRatings",
];

/// A parsed, shape-valid rating request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateOrder {
    /// The order to rate.
    pub order_id: String,
    /// The stars.
    pub rating: SubmittedRating,
}

/// Reads a stars value: a whole number 1..5 (`4.0` is 4; `4.5`, `"4"`, `0`, `6` are refused).
fn stars(v: &Value, field: &str, errors: &mut Vec<FieldError>) -> Option<u8> {
    let n = v.as_f64().filter(|_| v.is_number());
    match n {
        Some(n) if n.fract() == 0.0 && (1.0..=5.0).contains(&n) => Some(n as u8),
        _ => {
            errors.push(FieldError::new(field, "must be a whole number from 1 to 5"));
            None
        }
    }
}

fn optional_stars(
    obj: &Map<String, Value>,
    field: &str,
    errors: &mut Vec<FieldError>,
) -> Option<u8> {
    match obj.get(field) {
        None | Some(Value::Null) => None,
        Some(v) => stars(v, field, errors),
    }
}

impl RateOrder {
    /// Parses the JSON body, reporting every invalid field.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::new(
                crate::http::error::ApiCode::InvalidJson,
                format!("body is not valid JSON: {e}"),
            )
        })?;
        let Value::Object(obj) = value else {
            return Err(ApiError::new(
                crate::http::error::ApiCode::InvalidJson,
                "body must be a JSON object",
            ));
        };
        let mut errors = Vec::new();
        for key in obj.keys() {
            if !FIELDS.contains(&key.as_str()) {
                let hint = match key.as_str() {
                    "fulfillmentRating" => " (did you mean fulfilmentRating?)",
                    _ => "",
                };
                errors.push(FieldError::new(key, format!("unknown field{hint}")));
            }
        }
        let order_id = match obj.get("orderId") {
            Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 255 => Some(s.clone()),
            Some(Value::String(_)) => {
                errors.push(FieldError::new(
                    "orderId",
                    "must be a non-empty string of at most 255 characters",
                ));
                None
            }
            None | Some(Value::Null) => {
                errors.push(FieldError::new("orderId", "is required"));
                None
            }
            Some(_) => {
                errors.push(FieldError::new("orderId", "must be a string"));
                None
            }
        };
        let order_rating = match obj.get("orderRating") {
            None | Some(Value::Null) => {
                errors.push(FieldError::new("orderRating", "is required"));
                None
            }
            Some(v) => stars(v, "orderRating", &mut errors),
        };
        let provider_rating = optional_stars(&obj, "providerRating", &mut errors);
        let agent_rating = optional_stars(&obj, "agentRating", &mut errors);
        let fulfilment_rating = optional_stars(&obj, "fulfilmentRating", &mut errors);
        let mut item_ratings = Vec::new();
        match obj.get("itemRatings") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let at = |f: &str| format!("itemRatings[{i}].{f}");
                    let Value::Object(o) = item else {
                        errors.push(FieldError::new(
                            format!("itemRatings[{i}]"),
                            "must be an object",
                        ));
                        continue;
                    };
                    for key in o.keys() {
                        if key != "itemId" && key != "rating" {
                            errors.push(FieldError::new(at(key), "unknown field"));
                        }
                    }
                    let item_id = match o.get("itemId") {
                        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
                        Some(_) => {
                            errors
                                .push(FieldError::new(at("itemId"), "must be a non-empty string"));
                            None
                        }
                        None => {
                            errors.push(FieldError::new(at("itemId"), "is required"));
                            None
                        }
                    };
                    let rating = match o.get("rating") {
                        None | Some(Value::Null) => {
                            errors.push(FieldError::new(at("rating"), "is required"));
                            None
                        }
                        Some(v) => stars(v, &at("rating"), &mut errors),
                    };
                    if let (Some(item_id), Some(rating)) = (item_id, rating) {
                        if item_ratings
                            .iter()
                            .any(|r: &ItemRating| r.item_id == item_id)
                        {
                            errors.push(FieldError::new(at("itemId"), "duplicate item id"));
                        } else {
                            item_ratings.push(ItemRating { item_id, rating });
                        }
                    }
                }
            }
            Some(_) => errors.push(FieldError::new("itemRatings", "must be an array")),
        }
        match (order_id, order_rating) {
            (Some(order_id), Some(order_rating)) if errors.is_empty() => Ok(RateOrder {
                order_id,
                rating: SubmittedRating {
                    order_rating,
                    provider_rating,
                    agent_rating,
                    fulfilment_rating,
                    item_ratings,
                },
            }),
            _ => Err(ApiError::validation(errors)),
        }
    }

    /// Checks the request against the order (item ids known, categories present) and builds the
    /// ONDC rating entries in the reference buyer app's order.
    pub fn entries_for(&self, order: &Order) -> Result<Vec<RatingEntry>, ApiError> {
        let r = &self.rating;
        let mut errors = Vec::new();
        let entry = |c: RatingCategory, id: &str, v: u8| RatingEntry {
            rating_category: c,
            id: id.to_owned(),
            value: v.to_string(),
            feedback_form: Vec::new(),
        };
        let mut out = vec![entry(
            RatingCategory::Order,
            &order.order_id,
            r.order_rating,
        )];
        if let Some(v) = r.provider_rating {
            match &order.provider_id {
                Some(p) => out.push(entry(RatingCategory::Provider, p, v)),
                None => errors.push(FieldError::new(
                    "providerRating",
                    "this order has no provider to rate",
                )),
            }
        }
        for (i, item) in r.item_ratings.iter().enumerate() {
            if order.item_ids.contains(&item.item_id) {
                out.push(entry(RatingCategory::Item, &item.item_id, item.rating));
            } else {
                errors.push(FieldError::new(
                    format!("itemRatings[{i}].itemId"),
                    format!("item {:?} is not part of this order", item.item_id),
                ));
            }
        }
        if let Some(v) = r.fulfilment_rating {
            if order.fulfillment_ids.is_empty() {
                errors.push(FieldError::new(
                    "fulfilmentRating",
                    "this order has no fulfillment to rate",
                ));
            }
            for f in &order.fulfillment_ids {
                out.push(entry(RatingCategory::Fulfillment, f, v));
            }
        }
        if let Some(v) = r.agent_rating {
            match &order.agent_id {
                Some(a) => out.push(entry(RatingCategory::Agent, a, v)),
                None => errors.push(FieldError::new(
                    "agentRating",
                    "this order had no delivery agent to rate",
                )),
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(ApiError::validation(errors))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::error::ApiCode;
    use proptest::prelude::Strategy;

    fn fields(e: ApiError) -> Vec<String> {
        assert_eq!(e.code, ApiCode::ValidationFailed);
        e.details.into_iter().map(|d| d.field).collect()
    }

    #[test]
    fn reads_a_full_request() {
        let r = RateOrder::parse(
            br#"{"orderId":"O1","orderRating":5,"providerRating":4,"agentRating":4.0,
                "fulfilmentRating":3,"itemRatings":[{"itemId":"I1","rating":5}]}"#,
        )
        .unwrap();
        assert_eq!(r.order_id, "O1");
        assert_eq!(r.rating.agent_rating, Some(4));
        assert_eq!(r.rating.item_ratings[0].rating, 5);
    }

    #[test]
    fn every_bad_field_is_named() {
        let e = RateOrder::parse(
            br#"{"orderRating":0,"providerRating":4.5,"agentRating":"4","fulfillmentRating":3,
                "itemRatings":[{"itemId":"I1","rating":6},{"itemId":"I1","rating":2},{"itemId":"I1","rating":3},{"rating":1}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            fields(e),
            [
                "fulfillmentRating",
                "orderId",
                "orderRating",
                "providerRating",
                "agentRating",
                "itemRatings[0].rating",
                "itemRatings[2].itemId",
                "itemRatings[3].itemId"
            ]
        );
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_give_a_request_or_a_typed_error(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = RateOrder::parse(&body);
        }

        #[test]
        fn any_json_value_in_any_field_gives_a_request_or_a_typed_error(
            field in proptest::sample::select(FIELDS.to_vec()),
            value in proptest::prop_oneof![
                proptest::prelude::any::<i64>().prop_map(serde_json::Value::from),
                proptest::prelude::any::<f64>().prop_map(serde_json::Value::from),
                ".{0,8}".prop_map(serde_json::Value::from),
                proptest::prelude::Just(serde_json::json!([{"itemId": 1, "rating": null}])),
                proptest::prelude::Just(serde_json::json!({"nested": [1, 2]})),
            ],
        ) {
            let mut body = serde_json::json!({"orderId": "O", "orderRating": 3});
            body[field] = value;
            match RateOrder::parse(&serde_json::to_vec(&body).unwrap()) {
                Ok(r) => proptest::prop_assert!((1..=5).contains(&r.rating.order_rating)),
                Err(e) => proptest::prop_assert!(e.code == ApiCode::ValidationFailed && !e.details.is_empty()),
            }
        }
    }

    #[test]
    fn non_objects_and_non_json_are_invalid_json() {
        assert_eq!(
            RateOrder::parse(b"[1]").unwrap_err().code,
            ApiCode::InvalidJson
        );
        assert_eq!(
            RateOrder::parse(b"{").unwrap_err().code,
            ApiCode::InvalidJson
        );
    }
}

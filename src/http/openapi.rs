//! The OpenAPI document served at `GET /openapi.json`: `schemas/openapi.json` with its components
//! filled from the JSON Schemas in `schemas/` and the network paths moved to where this
//! configuration mounts them. A test checks it against the routes the server really has.

use serde_json::{Map, Value};

use crate::config::{Settings, uri_path};
use crate::protocol::schema::FILES;

const TEMPLATE: &str = include_str!("../../schemas/openapi.json");

/// Component name for each schema file.
const COMPONENTS: &[(&str, &str)] = &[
    ("RateOrderRequest", "buyer/rate-order.request.schema.json"),
    ("RateOrderResponse", "buyer/rate-order.response.schema.json"),
    ("RatingResponse", "buyer/rating.response.schema.json"),
    ("Error", "buyer/error.schema.json"),
    ("Order", "buyer/order.schema.json"),
    ("FeedbackRequest", "buyer/feedback.request.schema.json"),
    ("FeedbackResponse", "buyer/feedback.response.schema.json"),
    ("FeedbackRating", "buyer/feedback.rating.schema.json"),
    ("FeedbackError", "buyer/feedback.error.schema.json"),
    (
        "ListingFeedbackRequest",
        "buyer/listing-feedback.request.schema.json",
    ),
    (
        "ListingFeedbackResponse",
        "buyer/listing-feedback.response.schema.json",
    ),
    (
        "ListingFeedbackError",
        "buyer/listing-feedback.error.schema.json",
    ),
    ("User", "buyer/user.schema.json"),
    ("RatingInbound", "ondc/rating.inbound.schema.json"),
    ("RatingOutbound", "ondc/rating.outbound.schema.json"),
    ("OnRating", "ondc/on_rating.schema.json"),
    ("OnRatingOutbound", "ondc/on_rating.outbound.schema.json"),
    ("Ack", "ondc/ack.schema.json"),
    ("Context", "ondc/context.schema.json"),
];

/// The document for `settings`.
pub fn document(settings: &Settings) -> Value {
    // Both are embedded files checked by the tests, so parsing cannot fail at run time.
    let mut doc: Value = serde_json::from_str(TEMPLATE).expect("schemas/openapi.json is JSON");
    let mut schemas = Map::new();
    for (name, file) in COMPONENTS {
        if let Some((_, text)) = FILES.iter().find(|(f, _)| f == file) {
            let schema: Value = serde_json::from_str(text).expect("embedded schema is JSON");
            schemas.insert((*name).to_owned(), schema);
        }
    }
    doc["components"]["schemas"] = Value::Object(schemas);
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        let moves = [
            (
                "/bap/on_rating",
                format!("{}/on_rating", uri_path(&settings.buyer.bap_uri)),
            ),
            (
                "/bpp/rating",
                format!("{}/rating", uri_path(&settings.seller.bpp_uri)),
            ),
            (
                "/on_subscribe",
                super::onboarding::on_subscribe_path(&settings.onboarding.callback_url),
            ),
        ];
        for (default, configured) in moves {
            if default != configured
                && let Some(item) = paths.remove(default)
            {
                paths.insert(configured, item);
            }
        }
    }
    doc
}

/// Every component name, for the tests.
pub fn component_names() -> impl Iterator<Item = &'static str> {
    COMPONENTS.iter().map(|(n, _)| *n)
}

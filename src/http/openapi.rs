//! The OpenAPI document served at `GET /openapi.json`: `schemas/openapi.json` with its components
//! filled from the JSON Schemas in `schemas/`, the network paths moved to where this configuration
//! mounts them, and only the operations this configuration serves. A test checks it against the
//! routes the server really has.
//!
//! The schema files are JSON Schema resources of their own (`$id` URNs, references such as
//! `urn:ondc-rating:ondc:ack#/$defs/error` or `#/$defs/stars`). In the document every reference is
//! made a JSON pointer from the document's root (`#/components/schemas/Ack/$defs/error`) and the
//! `$id`s are dropped: OpenAPI 3.1 allows either, but client generators and API testers resolve
//! document pointers and many stop at a `$ref` that needs a schema's `$id`.

use std::collections::{BTreeSet, HashMap};

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
    ("Notifications", "buyer/notifications.schema.json"),
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
    let names: HashMap<String, String> = schemas
        .iter()
        .filter_map(|(name, s)| Some((s.get("$id")?.as_str()?.to_owned(), name.clone())))
        .collect();
    for (name, schema) in schemas.iter_mut() {
        if let Some(root) = schema.as_object_mut() {
            root.remove("$id");
            root.remove("$schema");
        }
        point_from_root(schema, name, &names);
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
        ];
        for (default, configured) in moves {
            if default != configured
                && let Some(item) = paths.remove(default)
            {
                paths.insert(configured, item);
            }
        }
        // `/on_subscribe` is served at each path a registry may call it at.
        if let Some(item) = paths.remove("/on_subscribe") {
            for path in super::onboarding::on_subscribe_paths(settings) {
                paths.insert(path, item.clone());
            }
        }
        // The operations of a disabled role or of onboarding left unconfigured are not served.
        let served: BTreeSet<(String, String)> = super::route_list(settings)
            .into_iter()
            .map(|(m, p)| (m.as_str().to_ascii_lowercase(), template(&p)))
            .collect();
        paths.retain(|path, item| {
            let shape = template(path);
            if let Some(ops) = item.as_object_mut() {
                ops.retain(|method, _| served.contains(&(method.clone(), shape.clone())));
                !ops.is_empty()
            } else {
                false
            }
        });
    }
    doc
}

/// A path with its parameters' names dropped: `/a/{orderId}` and `/a/{order_id}` are one route.
pub fn template(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if in_param => {}
            c => out.push(c),
        }
    }
    out
}

/// Makes every `$ref` under `v`, a part of component `home`, a pointer from the document's root:
/// `#/$defs/x` to `#/components/schemas/{home}/$defs/x`, and `{$id}#/$defs/x` to the same under
/// the component with that `$id`. A reference to a resource not among the components is left.
fn point_from_root(v: &mut Value, home: &str, names: &HashMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                match x {
                    Value::String(r) if k == "$ref" => {
                        let (base, fragment) = r.split_once('#').unwrap_or((r.as_str(), ""));
                        let target = match base {
                            "" => Some(home),
                            id => names.get(id).map(String::as_str),
                        };
                        if let Some(target) = target {
                            *r = format!("#/components/schemas/{target}{fragment}");
                        }
                    }
                    x => point_from_root(x, home, names),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| point_from_root(x, home, names)),
        _ => {}
    }
}

/// Every component name, for the tests.
pub fn component_names() -> impl Iterator<Item = &'static str> {
    COMPONENTS.iter().map(|(n, _)| *n)
}

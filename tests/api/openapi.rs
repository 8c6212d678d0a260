//! The OpenAPI document the server serves matches the server: the same routes, honest response
//! codes, and components that are the schema files in `schemas/`.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::helpers::*;
use ondc_rating::crypto::EncryptionKeyPair;

/// `/ret11/orders/{orderId}/rating` and `/ret11/orders/{order_id}/rating` are the same route.
fn normalise(path: &str) -> String {
    let mut out = String::new();
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

fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => out.push(r),
                    _ => refs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_matches_the_routes_and_the_schema_files() {
    let store = StoreFixture::new(Backend::Embedded);
    let registry = EncryptionKeyPair::generate().unwrap();
    let mine = EncryptionKeyPair::generate().unwrap();
    // Both roles and the onboarding endpoints: every route the server can have.
    let seller = Seller::start(&store, "s", vec![], |s| {
        s.buyer.enabled = true;
        s.buyer.bap_uri = s.seller.bpp_uri.replace("/bpp", "/bap");
        s.buyer.jwt_hs256_secret = JWT_SECRET.into();
        s.buyer.internal_token = INTERNAL.into();
        s.onboarding.request_id = "req-1".into();
        s.onboarding.encryption_private_key = mine.private_key_pkcs8_base64();
        s.onboarding.registry_encryption_public_key = registry.public_key_der_base64();
    })
    .await;
    let http = reqwest::Client::new();
    let doc: Value = http
        .get(format!("{}/openapi.json", seller.app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");

    // Components are the files in schemas/, verbatim.
    let components = doc["components"]["schemas"].as_object().unwrap();
    let names: BTreeSet<&str> = components.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = ondc_rating::http::openapi::component_names().collect();
    assert_eq!(names, expected);
    for (file, _) in ondc_rating::protocol::schema::FILES {
        let on_disk: Value = serde_json::from_str(
            &std::fs::read_to_string(format!("{}/schemas/{file}", env!("CARGO_MANIFEST_DIR")))
                .unwrap(),
        )
        .unwrap();
        assert!(
            components.values().any(|c| c == &on_disk),
            "{file} is not served as a component"
        );
    }
    // Every local $ref resolves.
    let mut all = Vec::new();
    refs(&doc, &mut all);
    // (Refs inside the embedded schemas resolve within their own $id resource.)
    for r in all.iter().filter(|r| r.starts_with("#/components/")) {
        assert!(doc.pointer(&r[1..]).is_some(), "dangling {r}");
    }

    // Documented operations == served routes.
    let paths = doc["paths"].as_object().unwrap();
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(p, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), normalise(p)))
        })
        .collect();
    let served: BTreeSet<(String, String)> = ondc_rating::http::route_list(&seller.app.settings)
        .into_iter()
        .map(|(m, p)| (m.to_string(), normalise(&p)))
        .collect();
    assert_eq!(documented, served);

    // Each operation, called without credentials or body, answers with a documented status and
    // never with the unknown-route 404.
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let url = format!(
                "{}{}",
                seller.app.base,
                path.replace('{', "x").replace('}', "")
            );
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = http.request(m, &url).send().await.unwrap();
            let status = r.status().as_u16().to_string();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            assert_ne!(
                body["error"]["code"], "not_found",
                "{method} {path} is not routed"
            );
            assert!(
                op["responses"].get(&status).is_some(),
                "{method} {path} answered {status}, not documented: {body}"
            );
        }
    }
}

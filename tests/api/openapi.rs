//! The OpenAPI document the server serves matches the server: the same routes, honest response
//! codes, and components that are the schema files in `schemas/`.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::helpers::*;
use ondc_rating::crypto::EncryptionKeyPair;
use ondc_rating::http::openapi::template as normalise;

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
    let doc = served_document(&seller).await;
    assert_eq!(doc["openapi"], "3.1.0");

    // The components are the schemas in schemas/, made parts of the document: no schema keeps an
    // `$id`, and every `$ref` anywhere is a pointer from the document's root that resolves, so a
    // tool that knows nothing of JSON Schema resources (client generators, API testers) follows
    // every one of them.
    let components = doc["components"]["schemas"].as_object().unwrap();
    let names: BTreeSet<&str> = components.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = ondc_rating::http::openapi::component_names().collect();
    assert_eq!(names, expected);
    assert!(
        !doc.to_string().contains("\"$id\""),
        "a component keeps its $id"
    );
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.iter().any(|r| r.contains("/$defs/")));
    for r in &all {
        assert!(
            r.starts_with("#/"),
            "{r} is not a pointer into the document"
        );
        assert!(doc.pointer(&r[1..]).is_some(), "dangling {r}");
    }
    // Validated with the document alone, each component judges as the server's own schema does,
    // references into other components (a seller's error inside a buyer error) included.
    let compiled = ondc_rating::protocol::schema::Schemas::compile().unwrap();
    let seller_error = json!({"type": "CONTEXT-ERROR", "code": "20001", "message": "bad"});
    let cases: Vec<(&str, &ondc_rating::protocol::schema::Schema, Value)> = vec![
        (
            "RateOrderRequest",
            &compiled.rate_order_request,
            json!({"orderId": "O1", "orderRating": 5, "providerRating": null}),
        ),
        (
            "RateOrderRequest",
            &compiled.rate_order_request,
            json!({"orderId": "O1", "orderRating": 6}),
        ),
        (
            "RateOrderRequest",
            &compiled.rate_order_request,
            json!({"orderId": "O1", "orderRating": 5, "itemRatings": [{"itemId": "I1", "rating": 0}]}),
        ),
        (
            "Error",
            &compiled.error,
            json!({"error": {"code": "seller_rejected", "message": "m", "sellerError": seller_error}}),
        ),
        (
            "Error",
            &compiled.error,
            json!({"error": {"code": "seller_rejected", "message": "m", "sellerError": {"code": 20001}}}),
        ),
        (
            "Error",
            &compiled.error,
            json!({"error": {"code": "method_not_allowed", "message": "m"}}),
        ),
        (
            "Ack",
            &compiled.ack,
            json!({"message": {"ack": {"status": "NACK"}}, "error": seller_error}),
        ),
        (
            "Ack",
            &compiled.ack,
            json!({"message": {"ack": {"status": "MAYBE"}}}),
        ),
    ];
    let mut verdicts = BTreeSet::new();
    for (name, own, instance) in &cases {
        let mut root = doc.clone();
        root["$ref"] = json!(format!("#/components/schemas/{name}"));
        let from_document = jsonschema::validator_for(&root)
            .unwrap_or_else(|e| panic!("{name} does not compile from the document: {e}"));
        let valid = own.check(instance).is_ok();
        assert_eq!(
            from_document.is_valid(instance),
            valid,
            "{name}: the document and the server judge {instance} apart"
        );
        verdicts.insert((*name, valid));
    }
    // Both verdicts were reached for each schema tried, so neither side accepts everything.
    assert_eq!(verdicts.len(), 6, "{verdicts:?}");

    // The order schema refuses what the internal orders API refuses, and takes what it takes.
    let mut root = doc.clone();
    root["$ref"] = json!("#/components/schemas/Order");
    let order_schema = jsonschema::validator_for(&root).unwrap();
    let order = |field: &str, value: Value| {
        let mut o = json!({"userId": "u", "state": "Completed", "domain": "ONDC:RET10",
            "city": "std:080", "transactionId": "t", "bppId": "seller.test",
            "bppUri": "http://127.0.0.1:8080/bpp", "itemIds": ["I1"]});
        o[field] = value;
        o
    };
    let bodies = [
        order("state", json!("Completed")),
        order("bppUri", json!("https://seller.test:443/ondc?x=1")),
        order("bppUri", json!("http://[::1]:8080/bpp")),
        order("bppUri", json!("http://")),
        order("bppUri", json!("http://[e..De9EA]/bpp")),
        order("bppUri", json!("http://1.2.3.256/bpp")),
        order("bppUri", json!("http://seller.test./bpp")),
        order("bppUri", json!("http://seller.test:65536/bpp")),
        order("bppUri", json!("ftp://seller.test/bpp")),
        order("userId", json!(" ")),
        order("transactionId", json!("\t")),
        order("itemIds", json!(["I1", " "])),
        order("bppId", json!("https://seller.test")),
        order("domain", json!("ONDC:RET20")),
        order("city", json!("std:abc")),
        order("city", json!("std:0522")),
    ];
    let mut verdicts = BTreeSet::new();
    for (n, body) in bodies.iter().enumerate() {
        let r = http
            .put(format!("{}/internal/orders/o-{n}", seller.app.base))
            .bearer_auth(INTERNAL)
            .json(body)
            .send()
            .await
            .unwrap();
        let taken = r.status() == 200;
        assert!(taken || r.status() == 400, "{body}: {}", r.status());
        assert_eq!(
            order_schema.is_valid(body),
            taken,
            "the order schema and the orders API judge {body} apart"
        );
        verdicts.insert(taken);
    }
    assert_eq!(verdicts.len(), 2);

    // Documented operations == served routes.
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(operations(&doc), served_routes(&seller));

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

/// The document `seller`'s server serves.
async fn served_document(seller: &Seller) -> Value {
    seller
        .http
        .get(format!("{}/openapi.json", seller.app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The (method, path template) pairs `seller`'s server routes.
fn served_routes(seller: &Seller) -> BTreeSet<(String, String)> {
    ondc_rating::http::route_list(&seller.app.settings)
        .into_iter()
        .map(|(m, p)| (m.to_string(), normalise(&p)))
        .collect()
}

/// The (method, path template) pairs of a served document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.to_uppercase(), normalise(p)))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seller_only_server_documents_only_what_it_serves() {
    let store = StoreFixture::new(Backend::Embedded);
    // The seller role alone, onboarding not configured.
    let seller = Seller::start(&store, "s", vec![], |_| {}).await;
    let doc = served_document(&seller).await;
    assert_eq!(operations(&doc), served_routes(&seller));
    for absent in [
        "/ret11/rating",
        "/bap/on_rating",
        "/on_subscribe",
        "/ondc-site-verification.html",
    ] {
        assert!(
            doc["paths"].get(absent).is_none(),
            "{absent} is documented but not served"
        );
    }
    assert!(doc["paths"].get("/bpp/rating").is_some());
    // What is not documented is not there: the buyer API's path is an unknown route.
    let r = seller
        .http
        .post(format!("{}/ret11/rating", seller.app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_path_called_with_another_method_is_refused_with_405_and_its_methods() {
    let store = StoreFixture::new(Backend::Embedded);
    let seller = Seller::start(&store, "s", vec![], |s| {
        s.buyer.enabled = true;
        s.buyer.bap_uri = s.seller.bpp_uri.replace("/bpp", "/bap");
        s.buyer.jwt_hs256_secret = JWT_SECRET.into();
        s.buyer.internal_token = INTERNAL.into();
    })
    .await;
    let doc = served_document(&seller).await;
    let mut tried = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let mut takes: BTreeSet<String> = item
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_uppercase())
            .collect();
        // A path read with GET is read with HEAD too.
        if takes.contains("GET") {
            takes.insert("HEAD".into());
        }
        let url = format!(
            "{}{}",
            seller.app.base,
            path.replace('{', "x").replace('}', "")
        );
        for method in ["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "TRACE"] {
            if takes.contains(method) {
                continue;
            }
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let r = seller.http.request(m, &url).send().await.unwrap();
            assert_eq!(r.status(), 405, "{method} {path}");
            let allow: BTreeSet<String> = r
                .headers()
                .get("allow")
                .unwrap_or_else(|| panic!("{method} {path}: no Allow"))
                .to_str()
                .unwrap()
                .split(", ")
                .map(str::to_owned)
                .collect();
            assert_eq!(allow, takes, "{method} {path}");
            if method != "HEAD" {
                let body: Value = r.json().await.unwrap();
                assert_eq!(
                    body["error"]["code"], "method_not_allowed",
                    "{method} {path}"
                );
            }
            tried += 1;
        }
    }
    assert!(tried > 60, "{tried}");
    // An unknown path is still unknown, whatever the method.
    for method in ["GET", "DELETE"] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = seller
            .http
            .request(m, format!("{}/ret11/nothing-here", seller.app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found");
    }
}

/// The raw answer to `request` sent on a fresh connection that the server closes after it.
async fn raw_exchange(base: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await.unwrap();
    String::from_utf8(answer).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_read_with_get_answers_head_with_its_status_and_headers_and_no_body() {
    let store = StoreFixture::new(Backend::Embedded);
    let request_id = "req-head".to_owned();
    let seller = Seller::start(&store, "s", vec![], move |s| {
        s.buyer.enabled = true;
        s.buyer.bap_uri = s.seller.bpp_uri.replace("/bpp", "/bap");
        s.buyer.jwt_hs256_secret = JWT_SECRET.into();
        s.buyer.internal_token = INTERNAL.into();
        s.onboarding.request_id = request_id;
    })
    .await;
    let doc = served_document(&seller).await;
    let mut read = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        if item.get("get").is_none() {
            continue;
        }
        let target = path.replace('{', "x").replace('}', "");
        let get = raw_exchange(
            &seller.app.base,
            &format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        )
        .await;
        let head = raw_exchange(
            &seller.app.base,
            &format!("HEAD {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        )
        .await;
        let status = |answer: &str| answer.lines().next().unwrap().to_owned();
        assert_eq!(status(&head), status(&get), "HEAD {path}");
        let (get_head, get_body) = get.split_once("\r\n\r\n").unwrap();
        let (head_head, head_body) = head.split_once("\r\n\r\n").unwrap();
        assert!(!get_body.is_empty(), "GET {path} has a body");
        assert_eq!(head_body, "", "HEAD {path} sent a body");
        let content_type = |h: &str| {
            h.lines()
                .find(|l| l.to_ascii_lowercase().starts_with("content-type:"))
                .map(str::to_owned)
        };
        assert_eq!(
            content_type(head_head),
            content_type(get_head),
            "HEAD {path}"
        );
        read += 1;
    }
    // The health, readiness, metrics, document and site verification endpoints, and the
    // buyer and internal reads.
    assert!(read >= 10, "{read}");
}

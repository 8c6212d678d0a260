//! The network endpoints: signatures checked on raw bytes, the right NACK for each refusal, and
//! idempotent handling of repeated messages.

use serde_json::{Value, json};

use crate::both_stores;
use crate::helpers::*;
use ondc_rating::crypto::sign_body;

/// A /rating body from `bap` to `seller`, as a buyer side would send it.
fn rating_body(bap: &Identity, bap_uri: &str, seller: &Seller, message_id: &str) -> Vec<u8> {
    rating_body_at(
        bap,
        bap_uri,
        &seller.identity.id,
        &format!("{}/bpp", seller.app.base),
        message_id,
        chrono::Utc::now(),
    )
}

fn assert_signature_nack(status: u16, body: &Value, code: &str) {
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body,
        &json!({"message": {"ack": {"status": "NACK"}},
                "error": {"type": "POLICY-ERROR", "code": code, "message": "Invalid Signature"}})
    );
}

async fn seller_refuses_bad_signatures(backend: Backend) {
    let store = StoreFixture::new(backend);
    let bap = Identity::new("buyer.test");
    let seller = Seller::start(&store, "seller", vec![bap.peer()], |_| {}).await;
    let url = seller.rating_url();
    let http = reqwest::Client::new();
    let body = rating_body(&bap, "http://127.0.0.1:9/bap", &seller, "m-1");

    // Tampered body: signed, then one byte changed.
    let header = bap.sign(&body);
    let mut tampered = body.clone();
    let pos = tampered.iter().position(|&b| b == b'5').unwrap();
    tampered[pos] = b'1';
    let r = http
        .post(&url)
        .header("authorization", &header)
        .header("content-type", "application/json")
        .body(tampered.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let realm = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert_eq!(
        realm,
        "Signature realm=\"seller.test\",headers=\"(created) (expires) digest\""
    );
    assert_signature_nack(401, &r.json().await.unwrap(), "30016");

    // Signed by a key the seller does not know for that keyId.
    let impostor = Identity {
        keys: ondc_rating::crypto::SigningKeyPair::generate().unwrap(),
        ..bap.clone()
    };
    let (s, b) = post_signed(&http, &url, &impostor, &body).await;
    assert_signature_nack(s, &b, "30016");

    // Expired: created and expires in the past.
    let t = now();
    let old = sign_body(&body, &bap.keys, &bap.id, &bap.ukid, t - 120, t - 60);
    let (s, b) = post_with_header(&http, &url, Some(&old), &body).await;
    assert_signature_nack(s, &b, "30016");

    // From the future, beyond the allowed skew.
    let future = sign_body(&body, &bap.keys, &bap.id, &bap.ukid, t + 60, t + 120);
    let (s, b) = post_with_header(&http, &url, Some(&future), &body).await;
    assert_signature_nack(s, &b, "30016");

    // Missing header, and a garbage one.
    let (s, b) = post_with_header(&http, &url, None, &body).await;
    assert_signature_nack(s, &b, "30016");
    let (s, b) = post_with_header(&http, &url, Some("Signature keyId=oops"), &body).await;
    assert_signature_nack(s, &b, "30016");

    // Validly signed by a known participant that is not the context's bap_id.
    let other = Identity::new("other-buyer.test");
    let seller2 = Seller::start(&store, "seller2", vec![bap.peer(), other.peer()], |_| {}).await;
    let body2 = rating_body(&bap, "http://127.0.0.1:9/bap", &seller2, "m-2");
    let (s, b) = post_signed(&http, &seller2.rating_url(), &other, &body2).await;
    assert_eq!(s, 401);
    assert_eq!(b["error"]["code"], "30016");

    // Nothing was recorded for any of them.
    assert_eq!(seller.received("buyer.test", "m-1").await.0, 404);
    assert_eq!(seller2.received("buyer.test", "m-2").await.0, 404);

    // The same body, correctly signed, is accepted.
    let (s, b) = post_signed(&http, &url, &bap, &body).await;
    assert_eq!(
        (s, b),
        (200, json!({"message": {"ack": {"status": "ACK"}}}))
    );
    assert_eq!(seller.received("buyer.test", "m-1").await.0, 200);
}
both_stores!(seller_refuses_bad_signatures);

/// `count` signed /ratings posted at once to `seller`; the one at `forged` (if any) carries a
/// signature over another body. Returns each answer's status, in order.
async fn burst(
    seller: &Seller,
    bap: &Identity,
    round: usize,
    count: usize,
    forged: Option<usize>,
) -> Vec<u16> {
    let http = reqwest::Client::new();
    let posts = (0..count).map(|i| {
        let body = rating_body(
            bap,
            "http://127.0.0.1:9/bap",
            seller,
            &format!("m-{round}-{i}"),
        );
        let header = if forged == Some(i) {
            bap.sign(&rating_body(
                bap,
                "http://127.0.0.1:9/bap",
                seller,
                "m-other",
            ))
        } else {
            bap.sign(&body)
        };
        let (http, url) = (http.clone(), seller.rating_url());
        async move { post_with_header(&http, &url, Some(&header), &body).await.0 }
    });
    futures_util::future::join_all(posts).await
}

/// Requests arriving together on one HTTP worker have their signatures checked in batches; a
/// forged signature among them fails its batch, is refused on its own, and costs none of the
/// genuine requests their ACK or their record. With batching off, each is checked alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_arriving_together_are_checked_in_batches_and_a_forged_one_is_refused_alone() {
    let store = StoreFixture::new(Backend::Embedded);
    let bap = Identity::new("buyer.test");
    let seller = Seller::start(&store, "seller", vec![bap.peer()], |s| s.server.workers = 1).await;

    let started = std::time::Instant::now();
    let statuses = burst(&seller, &bap, 0, 40, Some(17)).await;
    for (i, s) in statuses.iter().enumerate() {
        assert_eq!(*s, if i == 17 { 401 } else { 200 }, "request {i}");
    }
    // The forged signature failed its batch (or, had it arrived alone, was checked alone); right
    // after a failed batch the worker verifies singly. The batch failed after `started`, so a
    // burst done within SINGLY_FOR of it was verified wholly inside that window (a loaded
    // machine may take longer; the window itself is the batch module's unit test).
    let [alone, batch, rechecked] = checked(&seller).await;
    assert_eq!(alone + batch + rechecked, 40.0);
    assert!(rechecked > 0.0 || alone > 0.0);
    let all_acked = |statuses: Vec<u16>| statuses.iter().all(|s| *s == 200);
    assert!(all_acked(burst(&seller, &bap, 1, 8, None).await));
    if rechecked > 0.0 && started.elapsed() < ondc_rating::crypto::batch::SINGLY_FOR {
        let now = checked(&seller).await;
        assert_eq!(now[2], rechecked + 8.0, "{now:?}");
    }
    for i in (0..40).filter(|i| *i != 17) {
        assert_eq!(
            seller.received("buyer.test", &format!("m-0-{i}")).await.0,
            200,
            "m-0-{i}"
        );
    }
    assert_eq!(seller.received("buyer.test", "m-0-17").await.0, 404);

    // A second later, genuine bursts are checked in batches again (a few bursts, as the
    // client's timing decides what arrives together), and every request is acknowledged.
    tokio::time::sleep(ondc_rating::crypto::batch::SINGLY_FOR).await;
    let batched = checked(&seller).await[1];
    let mut round = 2;
    while checked(&seller).await[1] == batched {
        assert!(round <= 11, "no batch formed in {} bursts of 40", round - 2);
        assert!(all_acked(burst(&seller, &bap, round, 40, None).await));
        round += 1;
    }
    let [alone, batch, rechecked] = checked(&seller).await;
    assert_eq!(alone + batch + rechecked, 40.0 * round as f64 - 32.0);

    let plain = Seller::start(&store, "plain", vec![bap.peer()], |s| {
        s.server.workers = 1;
        s.identity.batch_verification = false;
    })
    .await;
    let statuses = burst(&plain, &bap, 0, 40, Some(3)).await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 39);
    assert_eq!(statuses[3], 401);
    assert_eq!(checked(&plain).await, [40.0, 0.0, 0.0]);
}

async fn seller_reads_tolerantly_and_nacks_what_it_cannot_accept(backend: Backend) {
    let store = StoreFixture::new(backend);
    let bap = Identity::new("buyer.test");
    let seller = Seller::start(&store, "seller", vec![bap.peer()], |_| {}).await;
    let http = reqwest::Client::new();
    let url = seller.rating_url();
    let base: Value =
        serde_json::from_slice(&rating_body(&bap, "http://127.0.0.1:9/bap", &seller, "m")).unwrap();

    // Tolerant: a single rating object, a numeric value, an upper-case category, extra keys.
    let mut v = base.clone();
    v["context"]["message_id"] = json!("m-tolerant");
    v["context"]["extra"] = json!("ignored");
    v["message"] = json!({"rating_category": "PROVIDER", "id": "P1", "value": 4, "x": 1});
    let (s, b) = post_signed(&http, &url, &bap, &serde_json::to_vec(&v).unwrap()).await;
    assert_eq!(s, 200, "{b}");
    let (_, rec) = seller.received("buyer.test", "m-tolerant").await;
    assert_eq!(
        rec["rating"]["ratings"],
        json!([{"rating_category": "Provider", "id": "P1", "value": "4"}])
    );

    // Refused with NACK 30000 and the path of the problem.
    type Mutation = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Mutation, &str, &str)> = vec![
        (
            Box::new(|v| {
                v["context"].as_object_mut().unwrap().remove("bap_uri");
            }),
            "30000",
            "context.bap_uri",
        ),
        (
            Box::new(|v| v["context"]["action"] = json!("search")),
            "30000",
            "context.action",
        ),
        (
            Box::new(|v| v["context"]["bpp_id"] = json!("someone-else.test")),
            "30000",
            "context.bpp_id",
        ),
        (
            Box::new(|v| v["message"] = json!({"ratings": []})),
            "30000",
            "message.ratings",
        ),
        (
            Box::new(|v| v["message"] = json!({"ratings": [{"id": "O", "value": "5"}]})),
            "30000",
            "message.ratings[0].rating_category",
        ),
        (
            Box::new(|v| v["context"]["timestamp"] = json!("2020-01-01T00:00:00.000Z")),
            "30022",
            "context.timestamp",
        ),
        (
            // 40 s old under a ttl of an hour: 30 s is the outer limit for a rating, whatever
            // ttl the peer names.
            Box::new(|v| {
                v["context"]["ttl"] = json!("PT1H");
                v["context"]["timestamp"] = json!(ondc_rating::clock::ondc_timestamp(
                    chrono::Utc::now() - chrono::Duration::seconds(40)
                ))
            }),
            "30022",
            "context.timestamp",
        ),
        (
            // Ten minutes ahead: beyond the 5 s clock skew allowed.
            Box::new(|v| {
                v["context"]["timestamp"] = json!(ondc_rating::clock::ondc_timestamp(
                    chrono::Utc::now() + chrono::Duration::minutes(10)
                ))
            }),
            "30022",
            "context.timestamp",
        ),
    ];
    // A context this seller cannot answer: its /on_rating would echo it and fail ONDC's checks.
    let context_cases: Vec<(Mutation, &str, &str)> = [
        ("context.domain", json!("nic2004:60212")),
        ("context.domain", json!("ONDC:RET1B")),
        ("context.country", json!("USA")),
        ("context.city", json!("*")),
        ("context.city", json!("Bengaluru")),
        ("context.core_version", json!("1.1.0")),
        ("context.bap_uri", json!("ftp://127.0.0.1/bap")),
    ]
    .into_iter()
    .map(|(path, value)| {
        let field = &path["context.".len()..];
        let m: Mutation = Box::new(move |v: &mut Value| v["context"][field] = value.clone());
        (m, "30000", path)
    })
    .collect();
    let schema_cases = cases.len();
    for (i, (mutate, code, path)) in cases.into_iter().chain(context_cases).enumerate() {
        let mut v = base.clone();
        v["context"]["message_id"] = json!(format!("m-bad-{i}"));
        mutate(&mut v);
        let (s, b) = post_signed(&http, &url, &bap, &serde_json::to_vec(&v).unwrap()).await;
        assert_eq!(s, 400, "{path}: {b}");
        assert_eq!(b["message"]["ack"]["status"], "NACK");
        assert_eq!(b["error"]["code"], code, "{b}");
        assert_eq!(b["error"]["path"], path, "{b}");
        if i >= schema_cases {
            assert_eq!(b["error"]["type"], "CONTEXT-ERROR", "{b}");
        }
        assert_eq!(
            seller.received("buyer.test", &format!("m-bad-{i}")).await.0,
            404
        );
    }
    // Signed but not JSON.
    let (s, b) = post_signed(&http, &url, &bap, b"not json").await;
    assert_eq!((s, b["error"]["code"].as_str()), (400, Some("30000")));
}
both_stores!(seller_reads_tolerantly_and_nacks_what_it_cannot_accept);

async fn a_public_seller_calls_back_only_on_the_buyers_own_domain(backend: Backend) {
    // A seller whose bpp_uri is public: a signed /rating cannot direct its /on_rating to a host
    // off the buyer's domain (loopback included); one on the domain gets its callback.
    let store = StoreFixture::new(backend);
    let on_domain = Identity::new("127.0.0.1");
    let elsewhere = Identity::new("buyer.test");
    let seller = Seller::start(
        &store,
        "seller",
        vec![on_domain.peer(), elsewhere.peer()],
        |s| s.seller.bpp_uri = "https://seller.test/bpp".into(),
    )
    .await;
    let callbacks = ScriptedBuyer::start().await;
    let loopback = callbacks.bap_uri();
    let port = loopback
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    let localhost = format!("http://localhost:{port}/bap");
    let http = reqwest::Client::new();
    let rate = |bap: &Identity, bap_uri: &str, bpp_uri: &str, id: &str| {
        let body = rating_body_at(bap, bap_uri, "seller.test", bpp_uri, id, chrono::Utc::now());
        let (http, url, bap) = (http.clone(), seller.rating_url(), bap.clone());
        async move { post_signed(&http, &url, &bap, &body).await }
    };
    let public = "https://seller.test/bpp";
    let on_loopback = seller.rating_url().replace("/rating", "");
    for (i, (bap_uri, bpp_uri, path)) in [
        (loopback.as_str(), public, "context.bap_uri"),
        (&localhost, public, "context.bap_uri"),
        (
            "https://buyer.test.evil.example/bap",
            public,
            "context.bap_uri",
        ),
        ("https://evilbuyer.test/bap", public, "context.bap_uri"),
        ("buyer.test/bap", public, "context.bap_uri"),
        ("https://buyer.test/bap", &on_loopback, "context.bpp_uri"),
        (
            "https://buyer.test/bap",
            "https://other.test/bpp",
            "context.bpp_uri",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("m-off-{i}");
        let (s, b) = rate(&elsewhere, bap_uri, bpp_uri, &id).await;
        assert_eq!(s, 400, "{bap_uri} {bpp_uri}: {b}");
        let error = (
            &b["error"]["code"],
            &b["error"]["type"],
            &b["error"]["path"],
        );
        let want = (&json!("30000"), &json!("CONTEXT-ERROR"), &json!(path));
        assert_eq!(error, want, "{bap_uri} {bpp_uri}: {b}");
        assert_eq!(seller.received("buyer.test", &id).await.0, 404, "{bap_uri}");
    }
    let (s, b) = rate(&on_domain, &loopback, public, "m-on").await;
    assert_eq!(s, 200, "{b}");
    let got = callbacks.wait_for(1).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        callbacks.requests().len(),
        1,
        "only the buyer on its domain is called back"
    );
    let on_rating: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(on_rating["context"]["message_id"], "m-on");
    assert_eq!(on_rating["context"]["bap_id"], "127.0.0.1");
}
both_stores!(a_public_seller_calls_back_only_on_the_buyers_own_domain);

/// A buyer answering the /on_rating with a redirect does not get the signed callback sent
/// elsewhere: the answer is a failure like any other that is not an ACK.
#[tokio::test]
async fn a_redirected_on_rating_is_not_followed() {
    let store = StoreFixture::new(Backend::Embedded);
    let bap = Identity::new("buyer.test");
    let seller = Seller::start(&store, "seller", vec![bap.peer()], |_| {}).await;
    let elsewhere = ScriptedBuyer::start().await;
    let target = format!("{}/on_rating", elsewhere.bap_uri());
    let redirecting = ScriptedBuyer::with(Script::Redirect(307, target)).await;
    let http = reqwest::Client::new();
    let body = rating_body(&bap, &redirecting.bap_uri(), &seller, "m-redirected");
    let (s, b) = post_signed(&http, &seller.rating_url(), &bap, &body).await;
    assert_eq!(s, 200, "{b}");
    let rec = seller.settled("m-redirected").await;
    assert_eq!(rec["onRating"], "failed", "{rec}");
    assert!(rec["lastError"].as_str().unwrap().contains("307"), "{rec}");
    assert_eq!(redirecting.requests().len(), 1);
    assert_eq!(elsewhere.requests().len(), 0, "the redirect was followed");
}

async fn repeated_rating_is_acknowledged_but_processed_once(backend: Backend) {
    // A real buyer side receives the seller's callbacks and counts them via its store: the
    // seller must call back once for two identical /rating messages.
    let store = StoreFixture::new(backend);
    let bap = Identity::new("buyer.test");
    let seller = Seller::start(&store, "seller", vec![bap.peer()], |_| {}).await;
    let callbacks = ScriptedBuyer::start().await;
    let http = reqwest::Client::new();
    let body = rating_body(&bap, &callbacks.bap_uri(), &seller, "m-dup");
    for _ in 0..2 {
        let (s, b) = post_signed(&http, &seller.rating_url(), &bap, &body).await;
        assert_eq!(
            (s, b),
            (200, json!({"message": {"ack": {"status": "ACK"}}}))
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let got = callbacks.requests();
    assert_eq!(
        got.len(),
        1,
        "one /on_rating for two identical /rating messages"
    );
    let rec = seller.settled("m-dup").await;
    assert_eq!(rec["attempts"], 1);
    assert_eq!(rec["onRating"], "sent");
}
both_stores!(repeated_rating_is_acknowledged_but_processed_once);

#[tokio::test]
async fn on_rating_is_signed_echoes_the_request_and_carries_the_form() {
    let store = StoreFixture::new(Backend::Embedded);
    let bap = Identity::new("buyer.test");
    let seller = Seller::start(&store, "seller", vec![bap.peer()], |s| {
        s.seller.feedback_form_url = "https://seller.test/f/{order_id}?t={transaction_id}".into();
    })
    .await;
    let callbacks = ScriptedBuyer::start().await;
    let http = reqwest::Client::new();
    let body = rating_body(&bap, &callbacks.bap_uri(), &seller, "m-echo");
    let sent: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        post_signed(&http, &seller.rating_url(), &bap, &body)
            .await
            .0,
        200
    );
    let cb = callbacks.wait_for(1).await.remove(0);

    // Signed by the seller over the exact bytes that arrived.
    let header = cb.authorization.expect("signed");
    let parsed = ondc_rating::crypto::verify_body(
        &header,
        &cb.body,
        &seller.identity.keys.verifying_key(),
        now(),
        5,
    )
    .expect("valid signature");
    assert_eq!(parsed.subscriber_id, "seller.test");

    let got: Value = serde_json::from_slice(&cb.body).unwrap();
    let (c, s) = (&got["context"], &sent["context"]);
    assert_eq!(c["action"], "on_rating");
    for k in [
        "domain",
        "country",
        "city",
        "core_version",
        "bap_id",
        "bap_uri",
        "bpp_id",
        "bpp_uri",
        "transaction_id",
        "message_id",
        "ttl",
    ] {
        assert_eq!(c[k], s[k], "{k}");
    }
    assert!(c["timestamp"].as_str().unwrap() > s["timestamp"].as_str().unwrap());
    assert_eq!(
        got["message"],
        json!({"feedback_ack": true, "rating_ack": true, "feedback_form": {"form": {
            "url": "https://seller.test/f/O-1?t=txn-1", "mime_type": "text/html",
            "data": "order_id=O-1"}, "required": false}})
    );
    // Wire order of the context is ONDC's, not alphabetical.
    let text = String::from_utf8(cb.body).unwrap();
    assert!(text.starts_with(r#"{"context":{"domain":"ONDC:RET11","country":"IND","city":"std:080","action":"on_rating""#), "{text}");
}

/// A seller that ACKs /rating and never calls back, and a buyer side that waits `wait_ms` for
/// callbacks and has alice's completed order O-1 with it.
async fn silent_seller_and_buyer(store: &StoreFixture, wait_ms: u64) -> (ScriptedSeller, Buyer) {
    let seller = ScriptedSeller::start(Script::AckSilently).await;
    let buyer = Buyer::start(store, "buyer", vec![seller.identity.peer()], |s| {
        s.buyer.callback_wait_ms = wait_ms;
    })
    .await;
    let order_json = order("alice", &seller.identity.id, &seller.bpp_uri());
    assert_eq!(buyer.put_order("O-1", &order_json).await.0, 200);
    (seller, buyer)
}

async fn buyer_side_refuses_bad_callbacks(backend: Backend) {
    let store = StoreFixture::new(backend);
    let (seller, buyer) = silent_seller_and_buyer(&store, 200).await;
    let (status, pending) = buyer
        .rate("alice", &json!({"orderId": "O-1", "orderRating": 5}))
        .await;
    assert_eq!(status, 202, "{pending}");
    let rating_ctx = pending["data"]["dto"]["context"].clone();
    let on_rating = |ctx: &Value| {
        let mut c = ctx.clone();
        c["action"] = json!("on_rating");
        c["timestamp"] = json!(ondc_rating::clock::ondc_timestamp(chrono::Utc::now()));
        serde_json::to_vec(
            &json!({"context": c, "message": {"feedback_ack": true, "rating_ack": true}}),
        )
        .unwrap()
    };
    let body = on_rating(&rating_ctx);
    let url = format!("{}/bap/on_rating", buyer.app.base);

    // Bad signatures: 401 with NACK 20001.
    let mut tampered = body.clone();
    let last = tampered.len() - 3;
    tampered[last] = b'x';
    let (s, b) = post_with_header(
        &buyer.http,
        &url,
        Some(&seller.identity.sign(&body)),
        &tampered,
    )
    .await;
    assert_signature_nack(s, &b, "20001");
    let stranger = Identity::new(&seller.identity.id);
    let (s, b) = buyer.on_rating(&stranger, &body).await;
    assert_signature_nack(s, &b, "20001");
    let t = now();
    let old = sign_body(
        &body,
        &seller.identity.keys,
        &seller.identity.id,
        "k1",
        t - 100,
        t - 40,
    );
    let (s, b) = post_with_header(&buyer.http, &url, Some(&old), &body).await;
    assert_signature_nack(s, &b, "20001");

    // No outstanding rating for that message_id: NACK 20008.
    let mut unknown = rating_ctx.clone();
    unknown["message_id"] = json!(uuid::Uuid::new_v4().to_string());
    let (s, b) = buyer
        .on_rating(&seller.identity, &on_rating(&unknown))
        .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["code"], "20008");

    // A context that does not echo the /rating's: NACK 20006, a CONTEXT-ERROR naming the field
    // (what `check` reports as pair.transaction_same, pair.same_domain_city and
    // pair.same_participants, and a country or core version the /rating did not carry).
    for (field, other) in [
        ("transaction_id", "another-transaction"),
        ("bap_id", "another-buyer.example"),
        ("domain", "ONDC:RET12"),
        ("country", "LKA"),
        ("city", "std:011"),
        ("core_version", "1.2.5"),
        ("bap_uri", "https://elsewhere.example/bap"),
        ("bpp_uri", "https://elsewhere.example/bpp"),
    ] {
        let mut wrong = rating_ctx.clone();
        assert_ne!(wrong[field], other);
        wrong[field] = json!(other);
        let (s, b) = buyer.on_rating(&seller.identity, &on_rating(&wrong)).await;
        let path = format!("context.{field}");
        assert_eq!(
            (s, b["error"]["code"].as_str(), b["error"]["path"].as_str()),
            (400, Some("20006"), Some(path.as_str())),
            "{b}"
        );
        assert_eq!(b["error"]["type"], "CONTEXT-ERROR", "{b}");
        assert_eq!(b["message"]["ack"]["status"], "NACK", "{b}");
    }
    // The uris are compared as sent: one with a slash added is another uri.
    let mut slashed = rating_ctx.clone();
    slashed["bap_uri"] = json!(format!("{}/", rating_ctx["bap_uri"].as_str().unwrap()));
    let (s, b) = buyer
        .on_rating(&seller.identity, &on_rating(&slashed))
        .await;
    assert_eq!(
        (s, b["error"]["path"].as_str()),
        (400, Some("context.bap_uri")),
        "{b}"
    );

    // None of those completed the rating.
    assert_eq!(
        buyer.rating_of("alice", "O-1").await.1["data"]["status"],
        "acknowledged"
    );

    // The genuine callback is accepted, twice over (second one ACKed, first one kept).
    assert_eq!(buyer.on_rating(&seller.identity, &body).await.0, 200);
    assert_eq!(buyer.on_rating(&seller.identity, &body).await.0, 200);
    assert_eq!(
        buyer.rating_of("alice", "O-1").await.1["data"]["status"],
        "completed"
    );
}
both_stores!(buyer_side_refuses_bad_callbacks);

/// A callback that reaches the instance whose request is still waiting for it is matched against
/// the /rating that request sent: a mismatched one is refused and leaves the request waiting, the
/// genuine one answers it with the callback's context and form, and a repeat is ACKed and changes
/// nothing.
async fn a_waiting_request_refuses_a_mismatched_callback_and_is_answered_by_the_genuine_one(
    backend: Backend,
) {
    let store = StoreFixture::new(backend);
    let (seller, buyer) = silent_seller_and_buyer(&store, 20_000).await;
    let request = json!({"orderId": "O-1", "orderRating": 4});
    let rating = buyer.rate("alice", &request);
    let seller_side = async {
        // The /rating as the seller got it, once the buyer has its ACK.
        let mut sent = None;
        for _ in 0..400 {
            if let Some(r) = seller.requests().first() {
                let status = buyer.rating_of("alice", "O-1").await.1["data"]["status"].clone();
                if status == "acknowledged" {
                    sent = Some(serde_json::from_slice::<Value>(&r.body).unwrap());
                    break;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        let sent = sent.expect("the /rating reached the seller and was acknowledged");
        let on_rating = |ctx: &Value, url: &str| {
            let mut c = ctx.clone();
            c["action"] = json!("on_rating");
            c["timestamp"] = json!(ondc_rating::clock::ondc_timestamp(chrono::Utc::now()));
            serde_json::to_vec(&json!({"context": c, "message": {"feedback_form": {
                "form": {"url": url, "mime_type": "text/html"}, "required": true}}}))
            .unwrap()
        };
        let mut wrong = sent["context"].clone();
        wrong["city"] = json!("std:011");
        let (s, b) = buyer
            .on_rating(
                &seller.identity,
                &on_rating(&wrong, "https://wrong.example/f"),
            )
            .await;
        assert_eq!(
            (s, b["error"]["code"].as_str(), b["error"]["path"].as_str()),
            (400, Some("20006"), Some("context.city")),
            "{b}"
        );
        assert_eq!(
            buyer.rating_of("alice", "O-1").await.1["data"]["status"],
            "acknowledged",
            "the refused callback completed nothing"
        );
        let genuine = on_rating(&sent["context"], "https://seller.example/f/O-1");
        let (s, b) = buyer.on_rating(&seller.identity, &genuine).await;
        assert_eq!(s, 200, "{b}");
        (sent, genuine)
    };
    let ((status, answer), (sent, genuine)) = tokio::join!(rating, seller_side);
    assert_eq!(status, 200, "{answer}");
    let dto = &answer["data"]["dto"];
    assert_eq!(answer["data"]["status"], "ACK");
    assert_eq!(dto["context"]["action"], "on_rating");
    assert_eq!(dto["context"]["message_id"], sent["context"]["message_id"]);
    assert_eq!(dto["context"]["bpp_id"], seller.identity.id.as_str());
    assert_eq!(dto["message"]["order_id"], "O-1");
    assert_eq!(
        dto["message"]["feedback_form"]["form"]["url"],
        "https://seller.example/f/O-1"
    );
    // A repeat of the genuine callback is ACKed; what was answered and stored stays.
    assert_eq!(buyer.on_rating(&seller.identity, &genuine).await.0, 200);
    let (_, read) = buyer.rating_of("alice", "O-1").await;
    assert_eq!(read["data"]["status"], "completed", "{read}");
    assert_eq!(
        read["data"]["feedbackForm"],
        json!({"url": "https://seller.example/f/O-1", "mime_type": "text/html", "required": true})
    );
}
both_stores!(a_waiting_request_refuses_a_mismatched_callback_and_is_answered_by_the_genuine_one);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_rating_is_retried_after_a_buyer_side_failure_and_not_after_a_nack() {
    let store = StoreFixture::new(Backend::Embedded);
    let bap = Identity::new("buyer.test");
    let seller = Seller::start(&store, "seller", vec![bap.peer()], |_| {}).await;
    let http = reqwest::Client::new();

    // The buyer side answers 503 twice, then ACKs: three attempts, the same bytes each time.
    let flaky = ScriptedBuyer::with(Script::FailFirst(2, 503)).await;
    let body = rating_body(&bap, &flaky.bap_uri(), &seller, "m-retry");
    assert_eq!(
        post_signed(&http, &seller.rating_url(), &bap, &body)
            .await
            .0,
        200
    );
    let rec = seller.settled("m-retry").await;
    assert_eq!(rec["onRating"], "sent");
    assert_eq!(rec["attempts"], 3);
    let got = flaky.wait_for(3).await;
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|c| c.body == got[0].body));

    // A NACK for the callback is final: one attempt, recorded as failed with the reason.
    let nack = r#"{"message":{"ack":{"status":"NACK"}},"error":{"type":"CORE-ERROR","code":"20008","message":"no such request"}}"#;
    let refusing = ScriptedBuyer::with(Script::Respond(400, nack.into())).await;
    let body = rating_body(&bap, &refusing.bap_uri(), &seller, "m-nacked");
    assert_eq!(
        post_signed(&http, &seller.rating_url(), &bap, &body)
            .await
            .0,
        200
    );
    let rec = seller.settled("m-nacked").await;
    assert_eq!(rec["onRating"], "failed");
    assert_eq!(rec["attempts"], 1);
    assert!(
        rec["lastError"].as_str().unwrap().contains("20008"),
        "{rec}"
    );
    assert_eq!(refusing.requests().len(), 1);
}

//! Registry onboarding: the site verification page and `/on_subscribe` on a real adapter over
//! loopback (this test plays the registry), and the `site-verification`, `challenge` and
//! `subscribe` commands of the binary.

use std::process::{Command, Output};

use ed25519_dalek::{Signature, Verifier};
use serde_json::{Value, json};

use ondc_rating::config::OnboardingSettings;
use ondc_rating::crypto::{EncryptionKeyPair, SigningKeyPair, b64_decode, encrypt_challenge};

use crate::helpers::{Backend, INTERNAL, JWT_SECRET, Recorder, Script, Seller, StoreFixture};

const BIN: &str = env!("CARGO_BIN_EXE_ondc-rating");

const SITE_PRIVATE: &str =
    "8pPXr0Y4iwG590D9h2XJ+LAk2vXiOAVS0If7ep1FAqd9AK2I1RKLvAju6cr4g2HLfkU9yee/AAsXX1/UmsuScg==";
const SITE_REQUEST_ID: &str = "27baa06d-f90a-486c-85e5-cc621b787f04";
const SITE_SIGNATURE: &str =
    "BcJeNC7OWGvLKsmdSKmn43O1WNrmT4zDsH3nkAsRTCEs6C7RQ9FVEEqC+dmhUYlCiRsjGKkybQ6N5j7O0mPkBw==";
const OWN_ENCRYPTION_PRIVATE: &str =
    "MC4CAQAwBQYDK2VuBCIEIKh1Dq7Fu82lqQdBQJTHTvBTxtD6hLconopqvVLVy81s";
const PREPROD_PUBLIC: &str = "MCowBQYDK2VuAyEAa9Wbpvd9SsrpOZFcynyt/TO3x0Yrqyys4NUGIvyxX2Q=";
const CHALLENGE: &str = "TaaRFx6fxSbFJO2Lp9Kbap1rZTjAAveAeASr19G7iXI8Meaz6Ok6B4C709pC3GpR";
const ANSWER: &str = "BCA53D77-A9F5-4C6B-829E-B5A93CC9BF43";

/// The signature in `<meta name='ondc-site-verification' content='...' />`.
fn meta_content(page: &str) -> &str {
    let start = page
        .find("<meta name='ondc-site-verification' content='")
        .unwrap_or_else(|| panic!("no verification meta tag in:\n{page}"))
        + "<meta name='ondc-site-verification' content='".len();
    let len = page[start..].find("' />").expect("meta tag closed");
    &page[start..start + len]
}

async fn post_json(http: &reqwest::Client, url: &str, body: &str) -> (u16, Value) {
    let r = http
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|h| h.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(ct.starts_with("application/json"), "{status}: {ct}");
    (status, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_site_verification_page_carries_the_request_id_signed_by_the_identity() {
    let store = StoreFixture::new(Backend::Embedded);
    let request_id = uuid::Uuid::new_v4().to_string();
    let rid = request_id.clone();
    let seller = Seller::start(&store, "seller", vec![], move |s| {
        s.onboarding.request_id = rid;
    })
    .await;

    let r = seller
        .http
        .get(format!("{}/ondc-site-verification.html", seller.app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/html"), "{ct}");
    let page = r.text().await.unwrap();
    let signature: [u8; 64] = b64_decode(meta_content(&page))
        .unwrap()
        .try_into()
        .expect("64-byte signature");
    seller
        .identity
        .keys
        .verifying_key()
        .verify(request_id.as_bytes(), &Signature::from_bytes(&signature))
        .expect("signature of the plain request_id by the identity's key");

    // Only the page is configured: /on_subscribe is the JSON 404.
    let (status, body) = post_json(
        &seller.http,
        &format!("{}/on_subscribe", seller.app.base),
        r#"{"subscriber_id":"seller.test","challenge":"AAAA"}"#,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_subscribe_answers_the_registrys_challenge_and_refuses_bad_ones() {
    let store = StoreFixture::new(Backend::Embedded);
    let registry = EncryptionKeyPair::generate().unwrap();
    let own = EncryptionKeyPair::generate().unwrap();
    let (own_private, registry_public) = (
        own.private_key_pkcs8_base64(),
        registry.public_key_der_base64(),
    );
    let seller = Seller::start(&store, "seller", vec![], move |s| {
        s.onboarding.encryption_private_key = own_private;
        s.onboarding.registry_encryption_public_key = registry_public;
    })
    .await;
    let url = format!("{}/on_subscribe", seller.app.base);

    // The registry encrypts a fresh secret for the adapter's public key.
    let secret = uuid::Uuid::new_v4().to_string();
    let challenge = encrypt_challenge(
        &registry.private_key_pkcs8_base64(),
        &own.public_key_der_base64(),
        &secret,
    )
    .unwrap();
    let body = json!({"subscriber_id": "seller.test", "challenge": challenge}).to_string();
    let (status, answer) = post_json(&seller.http, &url, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({ "answer": secret }));

    // A challenge encrypted for someone else's key does not decrypt.
    let stranger = EncryptionKeyPair::generate().unwrap();
    let foreign = encrypt_challenge(
        &registry.private_key_pkcs8_base64(),
        &stranger.public_key_der_base64(),
        &secret,
    )
    .unwrap();
    for bad in [foreign.as_str(), "not base64!", "AAAA", ""] {
        let body = json!({"subscriber_id": "seller.test", "challenge": bad}).to_string();
        let (status, err) = post_json(&seller.http, &url, &body).await;
        assert_eq!(status, 400, "{bad}: {err}");
        assert_eq!(err["error"]["code"], "invalid_challenge", "{bad}: {err}");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("challenge")
        );
    }

    // Malformed requests: typed 400s naming what is wrong.
    let (status, err) = post_json(&seller.http, &url, "{not json").await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );
    let (status, err) = post_json(&seller.http, &url, "[1,2]").await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("invalid_json"))
    );
    for (body, field) in [
        (json!({"subscriber_id": "seller.test"}), "challenge"),
        (
            json!({"subscriber_id": "seller.test", "challenge": 7}),
            "challenge",
        ),
        (json!({"challenge": challenge}), "subscriber_id"),
        (
            json!({"subscriber_id": "someone.else", "challenge": challenge}),
            "subscriber_id",
        ),
    ] {
        let (status, err) = post_json(&seller.http, &url, &body.to_string()).await;
        assert_eq!(status, 400, "{body}: {err}");
        assert_eq!(err["error"]["code"], "validation_failed", "{err}");
        assert_eq!(err["error"]["details"][0]["field"], field, "{err}");
    }

    // Only /on_subscribe is configured: the page is the JSON 404.
    let r = seller
        .http
        .get(format!("{}/ondc-site-verification.html", seller.app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_subscribe_is_served_under_the_callback_url_and_by_environment_name() {
    let store = StoreFixture::new(Backend::Embedded);
    let seller = Seller::start(&store, "seller", vec![], |s| {
        s.onboarding = OnboardingSettings {
            encryption_private_key: OWN_ENCRYPTION_PRIVATE.into(),
            registry_encryption_public_key: "preprod".into(),
            callback_url: "/ondc/".into(),
            ..OnboardingSettings::default()
        };
    })
    .await;
    // The published challenge, answered over HTTP with the key named by environment.
    let body = json!({"subscriber_id": "seller.test", "challenge": CHALLENGE}).to_string();
    let (status, answer) = post_json(
        &seller.http,
        &format!("{}/ondc/on_subscribe", seller.app.base),
        &body,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["answer"], ANSWER);
    // Also under the subscriber_url's path (the seller's bpp_uri, /bpp), for a registry that
    // calls {subscriber_url}/on_subscribe; nowhere else.
    let (status, answer) = post_json(
        &seller.http,
        &format!("{}/bpp/on_subscribe", seller.app.base),
        &body,
    )
    .await;
    assert_eq!(
        (status, &answer["answer"]),
        (200, &json!(ANSWER)),
        "{answer}"
    );
    for elsewhere in ["/on_subscribe", "/bap/on_subscribe"] {
        let (status, _) = post_json(
            &seller.http,
            &format!("{}{elsewhere}", seller.app.base),
            &body,
        )
        .await;
        assert_eq!(status, 404, "{elsewhere}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_subscribe_is_served_under_each_subscriber_url_it_subscribes_with() {
    let store = StoreFixture::new(Backend::Embedded);
    let challenge = |seller: &Seller, path: &'static str| {
        let http = seller.http.clone();
        let url = format!("{}{path}", seller.app.base);
        async move {
            let body = json!({"subscriber_id": "seller.test", "challenge": CHALLENGE});
            post_json(&http, &url, &body.to_string()).await
        }
    };
    // Both roles, the default callback_url: the root and both roles' paths.
    let both = Seller::start(&store, "both", vec![], |s| {
        s.buyer.enabled = true;
        s.buyer.bap_uri = s.seller.bpp_uri.replace("/bpp", "/bap");
        s.buyer.jwt_hs256_secret = JWT_SECRET.into();
        s.buyer.internal_token = INTERNAL.into();
        s.onboarding = OnboardingSettings {
            encryption_private_key: OWN_ENCRYPTION_PRIVATE.into(),
            registry_encryption_public_key: "preprod".into(),
            ..OnboardingSettings::default()
        };
    })
    .await;
    for path in ["/on_subscribe", "/bap/on_subscribe", "/bpp/on_subscribe"] {
        let (status, answer) = challenge(&both, path).await;
        assert_eq!(
            (status, &answer["answer"]),
            (200, &json!(ANSWER)),
            "{path}: {answer}"
        );
    }
    // A subscriber_url of its own replaces the roles' URIs.
    let own = Seller::start(&store, "own", vec![], |s| {
        s.onboarding = OnboardingSettings {
            encryption_private_key: OWN_ENCRYPTION_PRIVATE.into(),
            registry_encryption_public_key: "preprod".into(),
            subscriber_url: "https://seller.test/ondc/v1/".into(),
            ..OnboardingSettings::default()
        };
    })
    .await;
    for (path, served) in [
        ("/ondc/v1/on_subscribe", true),
        ("/on_subscribe", true),
        ("/bpp/on_subscribe", false),
    ] {
        let (status, answer) = challenge(&own, path).await;
        assert_eq!(status == 200, served, "{path}: {status} {answer}");
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn site_verification_command_reproduces_the_published_vector() {
    let out = run(&[
        "site-verification",
        "--private-key",
        SITE_PRIVATE,
        "--request-id",
        SITE_REQUEST_ID,
    ]);
    let page = stdout(&out);
    assert!(
        page.contains(&format!(
            "<meta name='ondc-site-verification' content='{SITE_SIGNATURE}' />"
        )),
        "{page}"
    );
}

#[test]
fn challenge_command_reproduces_the_published_vector() {
    for registry in [PREPROD_PUBLIC, "preprod"] {
        let out = run(&[
            "challenge",
            "--encryption-private-key",
            OWN_ENCRYPTION_PRIVATE,
            "--registry-public-key",
            registry,
            "--challenge",
            CHALLENGE,
        ]);
        assert_eq!(stdout(&out).trim(), ANSWER);
    }
    // The staging registry's key does not open a preprod challenge: a clear error, exit 2.
    let out = run(&[
        "challenge",
        "--encryption-private-key",
        OWN_ENCRYPTION_PRIVATE,
        "--registry-public-key",
        "staging",
        "--challenge",
        CHALLENGE,
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("padding"), "{err}");
}

/// The shipped default configuration with a signing key and an `[onboarding]` section.
fn onboarding_config(
    dir: &tempfile::TempDir,
    signing: &SigningKeyPair,
    encryption: &EncryptionKeyPair,
) -> String {
    let default = std::fs::read_to_string(format!(
        "{}/config/default.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let text = default.replace(
        "signing_private_key = \"\"",
        &format!("signing_private_key = \"{}\"", signing.private_key_base64()),
    );
    assert_ne!(
        text, default,
        "default.toml has an empty signing_private_key"
    );
    let text = format!(
        "{text}\n[onboarding]\nrequest_id = \"req-from-config\"\n\
         encryption_private_key = \"{}\"\nregistry_encryption_public_key = \"staging\"\n\
         city_codes = [\"std:080\", \"std:011\"]\n\
         [onboarding.entity_details]\ncountry = \"IND\"\n",
        encryption.private_key_pkcs8_base64()
    );
    let path = dir.path().join("onboarding.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn subscribe_dry_run_prints_the_payload_from_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let signing = SigningKeyPair::generate().unwrap();
    let encryption = EncryptionKeyPair::generate().unwrap();
    let config = onboarding_config(&dir, &signing, &encryption);

    let out = run(&[
        "subscribe",
        "--config",
        &config,
        "--env",
        "preprod",
        "--ops-no",
        "2",
        "--request-id",
        "req-flag",
        "--dry-run",
    ]);
    let payload: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(payload["context"]["operation"]["ops_no"], 2);
    let message = &payload["message"];
    assert_eq!(message["request_id"], "req-flag");
    let entity = &message["entity"];
    assert_eq!(entity["subscriber_id"], "ondc-rating.localhost");
    assert_eq!(entity["unique_key_id"], "dev-1");
    assert_eq!(entity["callback_url"], "/");
    assert_eq!(entity["country"], "IND");
    let key_pair = &entity["key_pair"];
    assert_eq!(key_pair["signing_public_key"], signing.public_key_base64());
    assert_eq!(
        key_pair["encryption_public_key"],
        encryption.public_key_der_base64()
    );
    assert!(
        key_pair["encryption_public_key"]
            .as_str()
            .unwrap()
            .starts_with("MCowBQYDK2VuAyEA")
    );
    let from =
        chrono::DateTime::parse_from_rfc3339(key_pair["valid_from"].as_str().unwrap()).unwrap();
    let until =
        chrono::DateTime::parse_from_rfc3339(key_pair["valid_until"].as_str().unwrap()).unwrap();
    assert!(until > from + chrono::Duration::days(360), "{key_pair}");
    assert!(chrono::DateTime::parse_from_rfc3339(message["timestamp"].as_str().unwrap()).is_ok());
    assert_eq!(
        message["network_participant"],
        json!([{
            "subscriber_url": "http://127.0.0.1:8080/bpp",
            "domain": "ONDC:RET11",
            "type": "sellerApp",
            "msn": false,
            "city_code": ["std:080", "std:011"],
        }])
    );

    // Without flags: the configured request_id, and both roles enabled means ops_no 4.
    let out = run(&[
        "subscribe",
        "--config",
        &config,
        "--env",
        "staging",
        "--dry-run",
    ]);
    let payload: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(payload["context"]["operation"]["ops_no"], 4);
    assert_eq!(payload["message"]["request_id"], "req-from-config");
    let kinds: Vec<&str> = payload["message"]["network_participant"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["buyerApp", "sellerApp"]);

    // An unknown environment and a disallowed ops_no are refused before anything is sent.
    let out = run(&["subscribe", "--config", &config, "--env", "qa", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--env"));
    let out = run(&[
        "subscribe",
        "--config",
        &config,
        "--env",
        "staging",
        "--ops-no",
        "3",
        "--dry-run",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ops_no"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_posts_to_the_registry_and_fails_on_a_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let signing = SigningKeyPair::generate().unwrap();
    let encryption = EncryptionKeyPair::generate().unwrap();
    let config = onboarding_config(&dir, &signing, &encryption);
    let subscribe = |registry: String| {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            run(&[
                "subscribe",
                "--config",
                &config,
                "--env",
                &registry,
                "--ops-no",
                "1",
            ])
        })
    };

    let ack = Recorder::start("/reg/subscribe", Script::AckSilently).await;
    let out = subscribe(format!("{}/reg/", ack.base)).await.unwrap();
    let text = stdout(&out);
    assert!(text.contains("/reg/subscribe -> 200"), "{text}");
    let sent = ack.wait_for(1).await;
    let body: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(body["context"]["operation"]["ops_no"], 1);
    assert_eq!(
        body["message"]["entity"]["key_pair"]["signing_public_key"],
        signing.public_key_base64()
    );
    assert_eq!(
        body["message"]["network_participant"][0]["type"],
        "buyerApp"
    );

    // The registry's refusals: an error status, or a NACK with 200. Both exit 1.
    let nack = r#"{"message":{"ack":{"status":"NACK"}},"error":{"type":"POLICY-ERROR","code":"132","message":"Domain verification is failed"}}"#;
    for script in [
        Script::Respond(400, nack.to_owned()),
        Script::Respond(200, nack.to_owned()),
    ] {
        let registry = Recorder::start("/subscribe", script).await;
        let out = subscribe(registry.base.clone()).await.unwrap();
        assert_eq!(out.status.code(), Some(1));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Domain verification is failed"), "{text}");
    }
}

//! The binary as a user runs it: `demo`, `serve --config`, `keygen`, `token`, and config errors.

use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use crate::helpers::{bind, now, wait_until_up};

const BIN: &str = env!("CARGO_BIN_EXE_ondc-rating");

fn repo_file(rel: &str) -> String {
    format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn demo_rates_once_refuses_the_second_and_exits_zero() {
    let out = Command::new(BIN).arg("demo").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("POST /ret11/rating -> 200 OK"), "{stdout}");
    assert!(stdout.contains("\"status\": \"ACK\""), "{stdout}");
    assert!(stdout.contains("\"action\": \"on_rating\""), "{stdout}");
    assert!(
        stdout.contains("POST /ret11/rating again -> 409 Conflict"),
        "{stdout}"
    );
    assert!(stdout.contains("already_rated"), "{stdout}");
}

struct Server(Child);

impl Server {
    /// `serve` with the default config on a free port, its embedded store in `dir` and its log
    /// in `dir/serve.log`, with extra environment; returns once it answers, with its base URL.
    async fn start(dir: &std::path::Path, env: &[(&str, &str)]) -> (Self, String) {
        let (l, port) = bind();
        drop(l);
        let base = format!("http://127.0.0.1:{port}");
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--config", &repo_file("config/default.toml")])
            .env("ONDC_RATING__SERVER__BIND", format!("127.0.0.1:{port}"))
            .env("ONDC_RATING__STORE__PATH", dir.join("s.redb"))
            .env("ONDC_RATING__STORE__BACKEND", "embedded")
            .env("ONDC_RATING__BUYER__BAP_URI", format!("{base}/bap"))
            .env("ONDC_RATING__SELLER__BPP_URI", format!("{base}/bpp"))
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("serve.log")).unwrap());
        let server = Self(cmd.spawn().unwrap());
        wait_until_up(&base).await;
        (server, base)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_the_default_config_rates_against_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, base) = Server::start(dir.path(), &[]).await;
    let http = reqwest::Client::new();

    let token = String::from_utf8(
        Command::new(BIN)
            .args([
                "token",
                "--user",
                "u1",
                "--config",
                &repo_file("config/default.toml"),
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let order = json!({"userId": "u1", "state": "Completed", "domain": "ONDC:RET10", "city": "std:011",
        "transactionId": "t-serve", "bppId": "ondc-rating.localhost", "bppUri": format!("{base}/bpp"),
        "itemIds": ["I1"], "fulfillmentIds": ["F1"]});
    let r = http
        .put(format!("{base}/internal/orders/O-serve"))
        .bearer_auth("dev-only-internal-token")
        .json(&order)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!("{base}/ret11/rating"))
        .bearer_auth(token.trim())
        .json(&json!({"orderId": "O-serve", "orderRating": 4, "itemRatings": [{"itemId": "I1", "rating": 5}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"]["status"], "ACK");
    assert_eq!(body["data"]["dto"]["context"]["domain"], "ONDC:RET10");
    assert_eq!(
        body["data"]["dto"]["message"]["feedback_form"]["form"]["url"],
        "https://seller.example/feedback/O-serve"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_warns_when_a_roles_uri_is_not_on_the_subscriber_ids_domain() {
    let log_of = |env: &'static [(&'static str, &'static str)]| async move {
        let dir = tempfile::tempdir().unwrap();
        let (server, _) = Server::start(dir.path(), env).await;
        drop(server);
        std::fs::read_to_string(dir.path().join("serve.log")).unwrap()
    };
    // ondc-rating.localhost (the default identity) with public URIs elsewhere: both warned of.
    let log = log_of(&[
        (
            "ONDC_RATING__BUYER__BAP_URI",
            "https://buyer.example.com/bap",
        ),
        (
            "ONDC_RATING__SELLER__BPP_URI",
            "https://seller.example.com/bpp",
        ),
    ])
    .await;
    for setting in ["buyer.bap_uri", "seller.bpp_uri"] {
        assert!(
            log.lines()
                .any(|l| l.contains("uri.on_id_domain") && l.contains(setting)),
            "{setting}: {log}"
        );
    }
    // On the subscriber id's domain, or on loopback (the default configuration, the demo):
    // nothing to warn of.
    for env in [
        &[
            ("ONDC_RATING__IDENTITY__SUBSCRIBER_ID", "example.com"),
            (
                "ONDC_RATING__BUYER__BAP_URI",
                "https://buyer.example.com/bap",
            ),
            ("ONDC_RATING__SELLER__BPP_URI", "https://example.com/bpp"),
        ][..],
        &[][..],
    ] {
        let log = log_of(env).await;
        assert!(!log.contains("uri.on_id_domain"), "{log}");
    }
}

#[test]
fn keygen_prints_usable_keys_in_ondc_encodings() {
    let out = Command::new(BIN).arg("keygen").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k} = \"")))
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or_else(|| panic!("{k} missing in:\n{text}"))
            .to_owned()
    };
    let private =
        ondc_rating::crypto::SigningKeyPair::from_base64(&get("signing_private_key")).unwrap();
    assert_eq!(private.public_key_base64(), get("signing_public_key"));
    assert!(get("encryption_public_key").starts_with("MCowBQYDK2VuAyEA"));
    assert!(get("encryption_private_key").starts_with("MC4CAQAwBQYDK2VuBCIEI"));
}

#[test]
fn a_bad_setting_stops_serve_with_the_key_named() {
    for (key, value) in [
        ("BUYER__CALLBACK_WAIT_MS", "60000"),
        ("SERVER__BACKGROUND_THREADS", "257"),
        ("SERVER__BACKGROUND_THREADS", "many"),
        ("SERVER__WORKERS", "257"),
    ] {
        let out = Command::new(BIN)
            .args(["serve", "--config", &repo_file("config/default.toml")])
            .env(format!("ONDC_RATING__{key}"), value)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{key}={value}");
        let err = String::from_utf8_lossy(&out.stderr);
        let named = key.to_ascii_lowercase().replace("__", ".");
        assert!(err.contains(&named), "{key}={value}: {err}");
    }
}

/// The runtime beside the HTTP workers has the threads `server.background_threads` asks for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_sizes_its_background_runtime_from_the_settings() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = Server::start(
        dir.path(),
        &[("ONDC_RATING__SERVER__BACKGROUND_THREADS", "3")],
    )
    .await;
    assert_eq!(threads_named(server.0.id(), "tokio-rt-worker"), 3);
}

/// The threads of process `pid` whose name (cut to 15 bytes by the kernel) is `name`.
fn threads_named(pid: u32, name: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
        .filter(|comm| comm.trim() == name)
        .count()
}

/// `server.workers` sets the number of HTTP worker threads (one per core without it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_the_http_workers_the_settings_ask_for() {
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = Server::start(dir.path(), &[("ONDC_RATING__SERVER__WORKERS", "3")]).await;
    // Each is "actix-server worker N".
    assert_eq!(threads_named(server.0.id(), "actix-server wo"), 3);
}

/// `token --user U` under the configuration (and environment) `env` sets.
fn cli_token(user: &str, env: &[(&str, &str)]) -> String {
    let out = Command::new(BIN)
        .args([
            "token",
            "--user",
            user,
            "--config",
            &repo_file("config/default.toml"),
        ])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_of_an_audience_takes_only_tokens_for_it_and_the_token_command_mints_them() {
    use ondc_rating::bap::auth::{Audience, Claims, mint_hs256_claims};
    const SECRET: &str = "dev-only-hs256-secret-change-me";
    let env = [
        (
            "ONDC_RATING__BUYER__JWT_AUDIENCE",
            "ratings.buyer.test, api.buyer.test",
        ),
        ("ONDC_RATING__BUYER__JWT_ISSUERS", "https://id.buyer.test"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let (_server, base) = Server::start(dir.path(), &env).await;
    let open_dir = tempfile::tempdir().unwrap();
    let (_open, open_base) = Server::start(open_dir.path(), &[]).await;
    let http = reqwest::Client::new();
    // Authentication passed when the read finds no rating (404); refused, 401 with the reason.
    let read = |base: String, token: String| {
        let http = http.clone();
        async move {
            let r = http
                .get(format!("{base}/ret11/orders/O-none/rating"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            (
                status,
                body["error"]["message"].as_str().unwrap_or("").to_owned(),
            )
        }
    };
    let claims = |aud: Option<Audience>, iss: Option<&str>| Claims {
        sub: Some("u1".into()),
        exp: Some(now() + 600),
        nbf: None,
        iat: Some(now()),
        aud,
        iss: iss.map(str::to_owned),
    };

    // The token command under the server's configuration names its audience and issuer.
    let minted = cli_token("u1", &env);
    assert_eq!(read(base.clone(), minted.clone()).await.0, 404);
    let second = mint_hs256_claims(
        SECRET,
        &claims(
            Some(Audience::Many(vec![
                "x.test".into(),
                "api.buyer.test".into(),
            ])),
            Some("https://id.buyer.test"),
        ),
    );
    assert_eq!(read(base.clone(), second).await.0, 404);
    // No audience, another audience, another issuer, no issuer: refused, the reason named.
    let one = |a: &str| Some(Audience::One(a.into()));
    let other = mint_hs256_claims(
        SECRET,
        &claims(one("payments.test"), Some("https://id.buyer.test")),
    );
    let refused = [
        (cli_token("u1", &[]), "audience"),
        (other.clone(), "audience"),
        (
            mint_hs256_claims(
                SECRET,
                &claims(one("ratings.buyer.test"), Some("https://evil.test")),
            ),
            "issuer",
        ),
        (
            mint_hs256_claims(SECRET, &claims(one("ratings.buyer.test"), None)),
            "issuer",
        ),
    ];
    for (token, reason) in refused {
        let (status, message) = read(base.clone(), token).await;
        assert_eq!((status, message.contains(reason)), (401, true), "{message}");
    }

    // A server of no audience takes tokens naming none, and refuses those minted for a service.
    assert_eq!(read(open_base.clone(), cli_token("u1", &[])).await.0, 404);
    let (status, message) = read(open_base.clone(), minted).await;
    assert_eq!(
        (status, message.contains("audience")),
        (401, true),
        "{message}"
    );
    assert_eq!(read(open_base, other).await.0, 401);
}

//! Test fixtures: real servers on loopback ports, a real redb file or a real Redis (a private
//! key prefix per test), fresh keys per participant, and a scripted seller for the misbehaviours
//! a real one cannot be configured into.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

use ondc_rating::bap::auth::mint_hs256;
use ondc_rating::clock::{SharedClock, SystemClock};
use ondc_rating::config::{
    BuyerSettings, PeerSettings, SellerSettings, Settings, StoreBackend, StoreSettings,
};
use ondc_rating::crypto::{SigningKeyPair, sign_body};
use ondc_rating::http::Application;

/// Which store a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Redis,
    /// A Redis Cluster (scripts/test.sh starts three masters on loopback).
    Cluster,
}

/// Runs an async test body once per backend named, each as a test of its own:
/// `store_tests!(name: embedded => Embedded, redis => Redis)`.
#[macro_export]
macro_rules! store_tests {
    ($name:ident: $($test:ident => $backend:ident),+) => {
        mod $name {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$name($crate::helpers::Backend::$backend).await
                }
            )+
        }
    };
}

/// Runs an async test body once per store that several instances share (Redis, Redis Cluster).
#[macro_export]
macro_rules! shared_stores {
    ($name:ident) => {
        $crate::store_tests!($name: redis => Redis, redis_cluster => Cluster);
    };
}

/// Runs an async test body once per store backend (redb, Redis, Redis Cluster).
#[macro_export]
macro_rules! both_stores {
    ($name:ident) => {
        $crate::store_tests!($name: embedded => Embedded, redis => Redis, redis_cluster => Cluster);
    };
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").expect(
        "REDIS_URL is not set: run the suite with scripts/test.sh, which starts a private redis-server",
    )
}

/// A connection to the Redis at `url`, for tests that set up or read its keys themselves.
pub async fn redis_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Runs `cmd`, which must succeed, on `redis`.
pub async fn redis_do(redis: &redis::aio::MultiplexedConnection, cmd: redis::Cmd) {
    cmd.query_async::<()>(&mut redis.clone()).await.unwrap()
}

/// The seed nodes of the test Redis Cluster.
pub fn redis_cluster_nodes() -> Vec<String> {
    std::env::var("REDIS_CLUSTER_NODES")
        .expect(
            "REDIS_CLUSTER_NODES is not set: run the suite with scripts/test.sh, which starts a private Redis Cluster",
        )
        .split(',')
        .map(str::to_owned)
        .collect()
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Where one test keeps its state: a temp dir for redb files and a unique Redis key prefix.
pub struct StoreFixture {
    pub backend: Backend,
    pub dir: tempfile::TempDir,
    pub prefix: String,
}

impl StoreFixture {
    pub fn new(backend: Backend) -> Arc<Self> {
        Arc::new(Self {
            backend,
            dir: tempfile::tempdir().expect("temp dir"),
            prefix: format!("test:{}:", uuid::Uuid::new_v4()),
        })
    }

    /// Settings for a store named `name` (a redb file, or a key prefix on the shared Redis).
    pub fn settings(&self, name: &str) -> StoreSettings {
        match self.backend {
            Backend::Embedded => StoreSettings {
                backend: StoreBackend::Embedded,
                path: self.dir.path().join(format!("{name}.redb")),
                ..StoreSettings::default()
            },
            Backend::Redis => StoreSettings {
                backend: StoreBackend::Redis,
                redis_url: redis_url(),
                key_prefix: format!("{}{name}:", self.prefix),
                ..StoreSettings::default()
            },
            Backend::Cluster => StoreSettings {
                backend: StoreBackend::Redis,
                // Not a server at all: everything must go to the cluster.
                redis_url: "redis://127.0.0.1:1/".into(),
                redis_cluster_nodes: redis_cluster_nodes(),
                key_prefix: format!("{}{name}:", self.prefix),
                ..StoreSettings::default()
            },
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.redb"))
    }
}

/// A network participant's identity.
#[derive(Clone)]
pub struct Identity {
    pub id: String,
    pub ukid: String,
    pub keys: SigningKeyPair,
}

impl Identity {
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            ukid: "k1".into(),
            keys: SigningKeyPair::generate().unwrap(),
        }
    }

    pub fn peer(&self) -> PeerSettings {
        PeerSettings {
            subscriber_id: self.id.clone(),
            unique_key_id: self.ukid.clone(),
            signing_public_key: self.keys.public_key_base64(),
        }
    }

    /// A header valid now for `body`.
    pub fn sign(&self, body: &[u8]) -> String {
        self.sign_at(body, now())
    }

    /// A header created at `t` (Unix seconds), valid for 60 s.
    pub fn sign_at(&self, body: &[u8], t: i64) -> String {
        sign_body(body, &self.keys, &self.id, &self.ukid, t, t + 60)
    }
}

pub fn bind() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

/// Settings with both roles off; callers switch on what they test.
/// Every adapter under test checks what it sends against the strict schemas.
pub fn settings_for(identity: &Identity, port: u16, store: StoreSettings) -> Settings {
    let mut s = Settings::participant(
        &identity.id,
        &identity.ukid,
        &identity.keys,
        format!("127.0.0.1:{port}"),
        store,
    );
    s.server.validate_outbound = true;
    s
}

/// The schemas in `schemas/`, compiled once per test process.
pub fn schemas() -> &'static ondc_rating::protocol::schema::Schemas {
    static SCHEMAS: std::sync::OnceLock<ondc_rating::protocol::schema::Schemas> =
        std::sync::OnceLock::new();
    SCHEMAS.get_or_init(|| ondc_rating::protocol::schema::Schemas::compile().unwrap())
}

/// Asserts a buyer API body matches its documented schema for that status.
pub fn assert_documented(
    status: u16,
    body: &Value,
    success: &ondc_rating::protocol::schema::Schema,
) {
    let schema = if status < 300 {
        success
    } else {
        &schemas().error
    };
    if let Err(v) = schema.check(body) {
        panic!("HTTP {status} body does not match its schema: {v}\n{body}");
    }
}

/// A running adapter.
pub struct TestApp {
    pub base: String,
    pub port: u16,
    pub settings: Settings,
    pub clock: SharedClock,
    handle: ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestApp {
    pub async fn start_clocked(
        settings: Settings,
        listener: TcpListener,
        clock: SharedClock,
    ) -> Self {
        settings.validate().expect("test settings are valid");
        let port = listener.local_addr().unwrap().port();
        let app = Application::with_listener(settings.clone(), listener, clock.clone())
            .await
            .expect("app starts");
        let handle = app.handle();
        let task = tokio::spawn(app.run_until_stopped());
        Self {
            base: format!("http://127.0.0.1:{port}"),
            port,
            settings,
            clock,
            handle,
            task,
        }
    }

    /// Stops the server and waits until it has stopped serving.
    pub async fn stop(self) -> (Settings, SharedClock) {
        self.handle.stop(true).await;
        let _ = self.task.await;
        (self.settings, self.clock)
    }

    /// Stops and starts again on the same port with the same settings (same store) and clock.
    pub async fn restart(self) -> Self {
        let port = self.port;
        let (settings, clock) = self.stop().await;
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("rebind same port");
        Self::start_clocked(settings, listener, clock).await
    }
}

/// Starts an adapter as `identity` on `store`'s store `name`, trusting `peers`, at `clock`:
/// `role` switches on its side given the port it serves on, then `tweak` has the last word.
async fn start_adapter(
    identity: &Identity,
    store: &StoreFixture,
    name: &str,
    peers: Vec<PeerSettings>,
    clock: SharedClock,
    role: impl FnOnce(&mut Settings, u16),
    tweak: impl FnOnce(&mut Settings),
) -> TestApp {
    let (listener, port) = bind();
    let mut s = settings_for(identity, port, store.settings(name));
    role(&mut s, port);
    s.peers = peers;
    tweak(&mut s);
    TestApp::start_clocked(s, listener, clock).await
}

pub const JWT_SECRET: &str = "integration-test-jwt-secret";
pub const INTERNAL: &str = "integration-internal-token";

/// A buyer-side adapter and a client for its APIs.
pub struct Buyer {
    pub app: TestApp,
    pub identity: Identity,
    pub http: reqwest::Client,
}

impl Buyer {
    pub async fn start(
        store: &StoreFixture,
        name: &str,
        peers: Vec<PeerSettings>,
        tweak: impl FnOnce(&mut Settings),
    ) -> Self {
        Self::start_as(Identity::new("buyer.test"), store, name, peers, tweak).await
    }

    pub async fn start_as(
        identity: Identity,
        store: &StoreFixture,
        name: &str,
        peers: Vec<PeerSettings>,
        tweak: impl FnOnce(&mut Settings),
    ) -> Self {
        let clock: SharedClock = Arc::new(SystemClock);
        Self::start_as_clocked(identity, store, name, peers, clock, tweak).await
    }

    /// A buyer side whose clock is `clock`.
    pub async fn start_as_clocked(
        identity: Identity,
        store: &StoreFixture,
        name: &str,
        peers: Vec<PeerSettings>,
        clock: SharedClock,
        tweak: impl FnOnce(&mut Settings),
    ) -> Self {
        let buyer = |s: &mut Settings, port: u16| {
            s.buyer = BuyerSettings {
                enabled: true,
                bap_uri: format!("http://127.0.0.1:{port}/bap"),
                callback_wait_ms: 5_000,
                send_attempts: 2,
                send_timeout_ms: 2_000,
                jwt_hs256_secret: JWT_SECRET.into(),
                internal_token: INTERNAL.into(),
                ..BuyerSettings::default()
            }
        };
        Self {
            app: start_adapter(&identity, store, name, peers, clock, buyer, tweak).await,
            identity,
            http: reqwest::Client::new(),
        }
    }

    pub fn token(user: &str) -> String {
        mint_hs256(JWT_SECRET, user, now(), 600)
    }

    pub async fn put_order(&self, order_id: &str, order: &Value) -> (u16, Value) {
        let r = self
            .http
            .put(format!("{}/internal/orders/{order_id}", self.app.base))
            .bearer_auth(INTERNAL)
            .json(order)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    pub async fn rate(&self, user: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/ret11/rating", self.app.base))
            .bearer_auth(Self::token(user))
            .json(body)
            .send()
            .await
            .unwrap();
        let (status, body) = (r.status().as_u16(), r.json().await.unwrap_or(Value::Null));
        assert_documented(status, &body, &schemas().rate_order_response);
        (status, body)
    }

    pub async fn rating_of(&self, user: &str, order_id: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}/ret11/orders/{order_id}/rating", self.app.base))
            .bearer_auth(Self::token(user))
            .send()
            .await
            .unwrap();
        let (status, body) = (r.status().as_u16(), r.json().await.unwrap_or(Value::Null));
        assert_documented(status, &body, &schemas().rating_response);
        (status, body)
    }

    /// Posts a signed /on_rating as `signer`.
    pub async fn on_rating(&self, signer: &Identity, body: &[u8]) -> (u16, Value) {
        post_signed(
            &self.http,
            &format!("{}/bap/on_rating", self.app.base),
            signer,
            body,
        )
        .await
    }
}

pub async fn post_signed(
    http: &reqwest::Client,
    url: &str,
    signer: &Identity,
    body: &[u8],
) -> (u16, Value) {
    post_with_header(http, url, Some(&signer.sign(body)), body).await
}

pub async fn post_with_header(
    http: &reqwest::Client,
    url: &str,
    header: Option<&str>,
    body: &[u8],
) -> (u16, Value) {
    let mut req = http
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(h) = header {
        req = req.header("authorization", h);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// A seller-side adapter.
pub struct Seller {
    pub app: TestApp,
    pub identity: Identity,
    pub http: reqwest::Client,
}

impl Seller {
    pub async fn start(
        store: &StoreFixture,
        name: &str,
        peers: Vec<PeerSettings>,
        tweak: impl FnOnce(&mut Settings),
    ) -> Self {
        Self::start_clocked(store, name, peers, Arc::new(SystemClock), tweak).await
    }

    pub async fn start_clocked(
        store: &StoreFixture,
        name: &str,
        peers: Vec<PeerSettings>,
        clock: SharedClock,
        tweak: impl FnOnce(&mut Settings),
    ) -> Self {
        Self::start_as(
            Identity::new("seller.test"),
            store,
            name,
            peers,
            clock,
            tweak,
        )
        .await
    }

    pub async fn start_as(
        identity: Identity,
        store: &StoreFixture,
        name: &str,
        peers: Vec<PeerSettings>,
        clock: SharedClock,
        tweak: impl FnOnce(&mut Settings),
    ) -> Self {
        let seller = |s: &mut Settings, port: u16| {
            s.seller = SellerSettings {
                enabled: true,
                bpp_uri: format!("http://127.0.0.1:{port}/bpp"),
                feedback_form_url: "https://seller.test/feedback/{order_id}".into(),
                internal_token: INTERNAL.into(),
                ..SellerSettings::default()
            }
        };
        Self {
            app: start_adapter(&identity, store, name, peers, clock, seller, tweak).await,
            identity,
            http: reqwest::Client::new(),
        }
    }

    pub fn rating_url(&self) -> String {
        format!("{}/bpp/rating", self.app.base)
    }

    /// Signs and posts to this seller a /rating from `bap` (answered at `bap_uri`), stamped now;
    /// the seller's status and answer.
    pub async fn rated_by(&self, bap: &Identity, bap_uri: &str, message_id: &str) -> (u16, Value) {
        let body = rating_body_at(
            bap,
            bap_uri,
            &self.identity.id,
            &format!("{}/bpp", self.app.base),
            message_id,
            chrono::Utc::now(),
        );
        post_signed(&self.http, &self.rating_url(), bap, &body).await
    }

    /// What the seller platform reads for a received rating.
    pub async fn received(&self, bap_id: &str, message_id: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!(
                "{}/internal/seller/ratings/{bap_id}/{message_id}",
                self.app.base
            ))
            .bearer_auth(INTERNAL)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// The seller platform's view of buyer.test's rating `message_id` once its /on_rating
    /// delivery is settled (no longer `pending`), polled for up to 7.5 s.
    pub async fn settled(&self, message_id: &str) -> Value {
        for _ in 0..300 {
            let (status, rec) = self.received("buyer.test", message_id).await;
            assert_eq!(status, 200, "{rec}");
            if rec["rating"]["onRating"] != "pending" {
                return rec["rating"].clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("on_rating delivery for {message_id} never settled");
    }

    /// The seller platform's answer to a received rating (`seller.on_rating = "platform"`),
    /// with `token` as its bearer token.
    pub async fn answer_as(
        &self,
        token: &str,
        bap_id: &str,
        message_id: &str,
        body: &str,
    ) -> (u16, Value) {
        let r = self
            .http
            .post(format!(
                "{}/internal/seller/ratings/{bap_id}/{message_id}/on_rating",
                self.app.base
            ))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// [`Seller::answer_as`] with the configured internal token.
    pub async fn answer(&self, bap_id: &str, message_id: &str, body: &str) -> (u16, Value) {
        self.answer_as(INTERNAL, bap_id, message_id, body).await
    }
}

/// A full order owned by `user`, sold by `bpp_id` at `bpp_uri`.
pub fn order(user: &str, bpp_id: &str, bpp_uri: &str) -> Value {
    json!({
        "userId": user,
        "state": "Completed",
        "domain": "ONDC:RET11",
        "city": "std:080",
        "transactionId": uuid::Uuid::new_v4().to_string(),
        "bppId": bpp_id,
        "bppUri": bpp_uri,
        "providerId": "P1",
        "itemIds": ["I1", "I2"],
        "fulfillmentIds": ["F1"],
        "agentId": "A1"
    })
}

pub fn full_rating(order_id: &str) -> Value {
    json!({
        "orderId": order_id,
        "orderRating": 5,
        "providerRating": 4,
        "agentRating": 3,
        "fulfilmentRating": 2,
        "itemRatings": [{"itemId": "I1", "rating": 5}, {"itemId": "I2", "rating": 1}]
    })
}

/// A buyer and a real seller adapter that trust each other.
pub struct Pair {
    pub buyer: Buyer,
    pub seller: Seller,
    pub store: Arc<StoreFixture>,
}

impl Pair {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// A pair whose buyer's settings are adjusted by `tweak_buyer`.
    pub async fn start_with(backend: Backend, tweak_buyer: impl FnOnce(&mut Settings)) -> Self {
        let store = StoreFixture::new(backend);
        let buyer_identity = Identity::new("buyer.test");
        let seller = Seller::start(&store, "seller", vec![buyer_identity.peer()], |_| {}).await;
        let buyer = Buyer::start_as(
            buyer_identity,
            &store,
            "buyer",
            vec![seller.identity.peer()],
            tweak_buyer,
        )
        .await;
        Self {
            buyer,
            seller,
            store,
        }
    }

    /// Registers a completed order for `user` sold by this pair's seller.
    pub async fn order(&self, order_id: &str, user: &str) -> Value {
        let o = order(
            user,
            &self.seller.identity.id,
            &format!("{}/bpp", self.seller.app.base),
        );
        let (status, body) = self.buyer.put_order(order_id, &o).await;
        assert_eq!(status, 200, "{body}");
        o
    }
}

/// What a scripted seller answers to /rating.
#[derive(Clone)]
pub enum Script {
    /// ACK and never call back.
    AckSilently,
    /// Answer with this status and body.
    Respond(u16, String),
    /// Answer the first `n` requests with this status and an error body, then ACK.
    FailFirst(usize, u16),
    /// Answer the first `n` requests with this status, then 200 with this body.
    FailFirstThen(usize, u16, String),
    /// Wait this many milliseconds, then ACK (a slow peer).
    AckAfter(u64),
    /// Hold the ACK until this is notified (each request takes one notification).
    AckWhen(Arc<tokio::sync::Notify>),
    /// Hold each request until this is notified, then answer the n-th with the n-th status and
    /// body (the last for every one after).
    RespondWhen(Arc<tokio::sync::Notify>, Vec<(u16, String)>),
    /// Answer with this redirect status and `Location`.
    Redirect(u16, String),
}

/// One request the scripted seller received.
#[derive(Clone, Debug)]
pub struct Captured {
    pub authorization: Option<String>,
    pub body: Vec<u8>,
    /// Every header, names lower-case.
    pub headers: Vec<(String, String)>,
}

impl Captured {
    /// The value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A small HTTP server of ours that records every POST to one path and answers by script.
pub struct Recorder {
    pub base: String,
    pub received: Arc<Mutex<Vec<Captured>>>,
}

impl Recorder {
    pub async fn start(path: &'static str, script: Script) -> Self {
        Self::start_on(bind().0, path, script).await
    }

    /// Serves on `listener` (a port a peer was given before anything listened on it).
    pub async fn start_on(listener: TcpListener, path: &'static str, script: Script) -> Self {
        let port = listener.local_addr().unwrap().port();
        let received: Arc<Mutex<Vec<Captured>>> = Arc::default();
        let rec = received.clone();
        let server = HttpServer::new(move || {
            let rec = rec.clone();
            let script = script.clone();
            App::new().route(
                path,
                web::post().to(move |req: HttpRequest, body: web::Bytes| {
                    let rec = rec.clone();
                    let script = script.clone();
                    async move {
                        let seen = {
                            let mut log = rec.lock().unwrap();
                            log.push(Captured {
                                authorization: req
                                    .headers()
                                    .get("authorization")
                                    .and_then(|h| h.to_str().ok())
                                    .map(str::to_owned),
                                body: body.to_vec(),
                                headers: req
                                    .headers()
                                    .iter()
                                    .map(|(n, v)| {
                                        (
                                            n.as_str().to_owned(),
                                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                        )
                                    })
                                    .collect(),
                            });
                            log.len()
                        };
                        let ack = r#"{"message":{"ack":{"status":"ACK"}}}"#.to_owned();
                        match &script {
                            Script::AckAfter(ms) => {
                                tokio::time::sleep(std::time::Duration::from_millis(*ms)).await
                            }
                            Script::AckWhen(go) | Script::RespondWhen(go, ..) => {
                                go.notified().await
                            }
                            _ => {}
                        }
                        let (status, body) = match script {
                            Script::AckSilently => (200, ack),
                            Script::Respond(status, body) => (status, body),
                            Script::RespondWhen(_, answers) => {
                                answers[(seen - 1).min(answers.len() - 1)].clone()
                            }
                            Script::FailFirst(n, status) if seen <= n => {
                                (status, "temporarily unavailable".to_owned())
                            }
                            Script::FailFirst(..) => (200, ack),
                            Script::FailFirstThen(n, status, _) if seen <= n => {
                                (status, "slow down".to_owned())
                            }
                            Script::FailFirstThen(_, _, body) => (200, body),
                            Script::AckAfter(_) | Script::AckWhen(_) => (200, ack),
                            Script::Redirect(status, ref location) => {
                                return HttpResponse::build(
                                    actix_web::http::StatusCode::from_u16(status).unwrap(),
                                )
                                .insert_header(("location", location.as_str()))
                                .finish();
                            }
                        };
                        HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                            .content_type("application/json")
                            .body(body)
                    }
                }),
            )
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        // Runs until the test's runtime ends.
        tokio::spawn(server);
        Self {
            base: format!("http://127.0.0.1:{port}"),
            received,
        }
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (bounded) until `n` requests arrived and returns them.
    pub async fn wait_for(&self, n: usize) -> Vec<Captured> {
        self.wait_for_within(n, std::time::Duration::from_secs(5))
            .await
    }

    /// [`Recorder::wait_for`], waiting up to `within`.
    pub async fn wait_for_within(&self, n: usize, within: std::time::Duration) -> Vec<Captured> {
        let step = std::time::Duration::from_millis(20);
        for _ in 0..within.as_millis() / step.as_millis() {
            if self.requests().len() >= n {
                break;
            }
            tokio::time::sleep(step).await;
        }
        let got = self.requests();
        assert!(got.len() >= n, "expected {n} requests, got {}", got.len());
        got
    }
}

/// A stand-in seller for misbehaviours: records every /rating and answers by script.
pub struct ScriptedSeller {
    pub identity: Identity,
    pub recorder: Recorder,
}

impl ScriptedSeller {
    pub async fn start(script: Script) -> Self {
        Self {
            identity: Identity::new("scripted-seller.test"),
            recorder: Recorder::start("/bpp/rating", script).await,
        }
    }

    pub fn bpp_uri(&self) -> String {
        format!("{}/bpp", self.recorder.base)
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.recorder.requests()
    }
}

/// A stand-in buyer side that records every /on_rating and answers by script (ACK by default).
pub struct ScriptedBuyer {
    pub recorder: Recorder,
}

impl ScriptedBuyer {
    pub async fn start() -> Self {
        Self::with(Script::AckSilently).await
    }

    pub async fn with(script: Script) -> Self {
        Self::on(bind().0, script).await
    }

    /// A buyer side serving on `listener`.
    pub async fn on(listener: TcpListener, script: Script) -> Self {
        Self {
            recorder: Recorder::start_on(listener, "/bap/on_rating", script).await,
        }
    }

    pub fn bap_uri(&self) -> String {
        format!("{}/bap", self.recorder.base)
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.recorder.requests()
    }

    pub async fn wait_for(&self, n: usize) -> Vec<Captured> {
        self.recorder.wait_for(n).await
    }
}

/// A loopback port with nothing listening.
pub fn dead_port() -> u16 {
    let (l, port) = bind();
    drop(l);
    port
}

/// The seller's /on_rating for the /rating whose context is `rating_context`, stamped now, with
/// the other members of `body` (its message, an error block).
pub fn callback_of(rating_context: &Value, body: Value) -> Vec<u8> {
    let mut ctx = rating_context.clone();
    ctx["action"] = json!("on_rating");
    ctx["timestamp"] = json!(ondc_rating::clock::ondc_timestamp(chrono::Utc::now()));
    let mut body = body;
    body["context"] = ctx;
    serde_json::to_vec(&body).unwrap()
}

/// A /rating body from `bap` to the seller `bpp_id` at `bpp_uri`, stamped `at`.
pub fn rating_body_at(
    bap: &Identity,
    bap_uri: &str,
    bpp_id: &str,
    bpp_uri: &str,
    message_id: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "context": {
            "domain": "ONDC:RET11", "country": "IND", "city": "std:080", "action": "rating",
            "core_version": "1.2.0", "bap_id": bap.id, "bap_uri": bap_uri,
            "bpp_id": bpp_id, "bpp_uri": bpp_uri,
            "transaction_id": "txn-1", "message_id": message_id,
            "timestamp": ondc_rating::clock::ondc_timestamp(at), "ttl": "PT30S"
        },
        "message": {"ratings": [{"rating_category": "Order", "id": "O-1", "value": "5"}]}
    }))
    .unwrap()
}

fn hmac_hex(secret: &str, message: &[u8]) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks a signed webhook request the way its receiver would (content type, a fresh timestamp,
/// `X-Ondc-Rating-Signature: sha256=HMAC-SHA256(secret, "<timestamp>." + body)`, which neither
/// the body alone nor another secret reproduces, and the idempotency key) and returns its body.
pub fn check_signed_webhook(c: &Captured, secret: &str, idempotency_key: &str) -> Value {
    assert_eq!(c.header("content-type"), Some("application/json"));
    let ts = c
        .header("x-ondc-rating-timestamp")
        .expect("timestamp header");
    let t: i64 = ts.parse().expect("unix seconds");
    assert!((now() - t).abs() <= 60, "timestamp {t} is not now");
    let mut signed = format!("{ts}.").into_bytes();
    signed.extend_from_slice(&c.body);
    let signature = c.header("x-ondc-rating-signature");
    assert_eq!(
        signature,
        Some(format!("sha256={}", hmac_hex(secret, &signed)).as_str()),
        "HMAC-SHA256 over \"<timestamp>.\" + body"
    );
    assert_ne!(
        signature,
        Some(format!("sha256={}", hmac_hex(secret, &c.body)).as_str())
    );
    assert_ne!(
        signature,
        Some(format!("sha256={}", hmac_hex("another-secret-entirely", &signed)).as_str())
    );
    assert_eq!(c.header("idempotency-key"), Some(idempotency_key));
    serde_json::from_slice(&c.body).unwrap()
}

/// The signatures checked so far by `how` (alone, batch, rechecked).
pub async fn checked(seller: &Seller) -> [f64; 3] {
    let text = metrics(&seller.app.base).await;
    ["alone", "batch", "rechecked"].map(|how| {
        sample(
            &text,
            &format!("ondc_rating_signatures_checked_total{{how=\"{how}\"}}"),
        )
        .unwrap()
    })
}

/// The server's `/metrics` text, after checking the content type.
pub async fn metrics(base: &str) -> String {
    let r = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    r.text().await.unwrap()
}

/// The value of one series, written exactly as exposed (`name{label="v",...}`); None when the
/// series is absent.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

/// The /on_rating a seller would send for the /rating `rating_body`: its context with the action
/// and a fresh timestamp, and a body with a feedback form at `form_url`.
pub fn callback_for(rating_body: &[u8], form_url: &str) -> (Value, Vec<u8>) {
    let rating: Value = serde_json::from_slice(rating_body).unwrap();
    let mut ctx = rating["context"].clone();
    ctx["action"] = json!("on_rating");
    ctx["timestamp"] = json!(ondc_rating::clock::ondc_timestamp(chrono::Utc::now()));
    let body = serde_json::to_vec(&json!({"context": ctx, "message": {
        "feedback_ack": true, "rating_ack": true,
        "feedback_form": {"form": {"url": form_url, "mime_type": "text/html", "data": "d"}}}}))
    .unwrap();
    (ctx, body)
}

/// Waits (bounded, about 5 s) until a server process at `base` answers `/healthz`.
pub async fn wait_until_up(base: &str) {
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("server at {base} did not come up");
}

/// A loopback server that accepts connections and never answers.
pub async fn black_hole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    base
}

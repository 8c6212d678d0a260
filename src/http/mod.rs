//! actix wiring: application state, routes for the enabled roles, body limits, health and
//! readiness, metrics (counted by a middleware), and the JSON 404. `Application::build` binds
//! first (port 0 in tests) so callers learn the port before the server runs.

pub mod backup;
pub mod body;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod network;
pub mod onboarding;
pub mod openapi;
pub mod outbound;
pub mod record;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::http::Method;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use futures_util::future::Either;

use crate::bap::auth::TokenVerifier;
use crate::bap::bridge::Waiters;
use crate::clock::{SharedClock, SystemClock};
use crate::config::{Settings, uri_path};
use crate::crypto::SigningKeyPair;
use crate::protocol::schema::Schemas;
use crate::registry::Registry;
use crate::store::{AnswerHolder, Store, StoreError};
use error::{ApiCode, ApiError};
use outbound::Outbound;

/// Everything a handler needs, shared by all workers.
pub struct AppState {
    /// Validated settings.
    pub settings: Arc<Settings>,
    /// The store.
    pub store: Store,
    /// The clock.
    pub clock: SharedClock,
    /// Peer signing keys.
    pub registry: Registry,
    /// Signed outbound requests.
    pub outbound: Outbound,
    /// Buyer requests waiting for /on_rating.
    pub waiters: Waiters,
    /// Buyer API token checks.
    pub tokens: TokenVerifier,
    /// The JSON Schemas, compiled once.
    pub schemas: Arc<Schemas>,
    /// Seller-side /on_rating deliveries still running.
    pub in_flight: InFlight,
    /// Per-seller bound on /rating requests in flight (`buyer.max_in_flight_per_seller`).
    pub seller_slots: SellerSlots,
    /// The runtime that outlives the HTTP workers: work that must finish after its request was
    /// answered runs here, because a worker's own runtime (and its tasks) ends with the worker
    /// when the server stops.
    pub background: tokio::runtime::Handle,
    /// Where network traffic is recorded (`server.record_dir`).
    pub traffic: Option<record::TrafficLog>,
    /// What `GET /metrics` reports.
    pub metrics: Arc<metrics::Metrics>,
    /// Held received ratings some work in this process is settling: the seller platform's answer
    /// (`seller.on_rating = "platform"`) being sent, or a webhook hand-off a restart took up again.
    pub answering: Holds,
    /// Turns for owed work taken up from a stopped process (`seller.resume_concurrency`);
    /// closed when the server stops, so no more is started.
    pub taking_up: Arc<tokio::sync::Semaphore>,
    /// Seller platform webhook requests that may be in flight (`seller.webhook_concurrency`).
    pub webhook_slots: tokio::sync::Semaphore,
    /// Feedback notifications that may be in flight, per channel (`buyer.notify_concurrency`).
    pub notify_slots: crate::bap::notify::Slots,
    /// Held while this process makes a backup of the store (one at a time).
    pub backing_up: tokio::sync::Mutex<()>,
}

/// Keys some work in this process holds, each with what holds it (`V`): the received ratings
/// being settled, by `bap_id|message_id` ([`AnswerHolder`]); the kept feedback notifications
/// being sent ([`crate::bap::notify`], `()`).
pub struct Holds<V = AnswerHolder>(Arc<std::sync::Mutex<std::collections::HashMap<String, V>>>);

impl<V> Clone for Holds<V> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<V> Default for Holds<V> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<V: Copy> Holds<V> {
    fn keys(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, V>> {
        // A map of strings cannot be left half-changed by a panic elsewhere.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds `key` for `by` until the guard is dropped, however the work ends; `Err` with what
    /// holds it when it is held.
    pub fn take(&self, key: String, by: V) -> Result<Held<V>, V> {
        use std::collections::hash_map::Entry;
        match self.keys().entry(key) {
            Entry::Occupied(held) => Err(*held.get()),
            Entry::Vacant(free) => {
                let key = free.key().clone();
                free.insert(by);
                Ok(Held {
                    holds: self.clone(),
                    key,
                })
            }
        }
    }
}

/// A key of [`Holds`], let go when dropped.
pub struct Held<V: Copy = AnswerHolder> {
    holds: Holds<V>,
    key: String,
}

impl<V: Copy> Drop for Held<V> {
    fn drop(&mut self) {
        self.holds.keys().remove(&self.key);
    }
}

/// One semaphore per seller, so a slow seller cannot take every outbound connection.
pub struct SellerSlots {
    per_seller: usize,
    slots: std::sync::Mutex<Slots>,
}

/// The semaphores by seller origin, and by each URL already seen (so a URL is parsed once, not
/// on every request).
#[derive(Default)]
struct Slots {
    by_origin: std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>,
    by_url: std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>,
}

impl SellerSlots {
    /// `per_seller` requests in flight to each seller.
    pub fn new(per_seller: usize) -> Self {
        Self {
            per_seller,
            slots: Default::default(),
        }
    }

    /// Waits up to `wait` for a slot to the seller at `url`; None when none freed up.
    pub async fn acquire(
        &self,
        url: &str,
        wait: std::time::Duration,
    ) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let semaphore = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            match slots.by_url.get(url) {
                Some(s) => s.clone(),
                None => {
                    let origin = reqwest::Url::parse(url)
                        .map(|u| u.origin().ascii_serialization())
                        .unwrap_or_else(|_| url.to_owned());
                    let s = slots
                        .by_origin
                        .entry(origin)
                        .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(self.per_seller)))
                        .clone();
                    slots.by_url.insert(url.to_owned(), s.clone());
                    s
                }
            }
        };
        tokio::time::timeout(wait, semaphore.acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
    }
}

/// Work still running after its request was answered (the /on_rating a seller side owes), so a
/// graceful shutdown can wait for it instead of dropping it.
#[derive(Clone, Default)]
pub struct InFlight {
    count: Arc<std::sync::atomic::AtomicUsize>,
    idle: Arc<tokio::sync::Notify>,
}

/// Marks one piece of in-flight work; dropping it marks the work done.
pub struct InFlightGuard(InFlight);

impl InFlight {
    /// Counts a piece of work until the guard is dropped.
    pub fn start(&self) -> InFlightGuard {
        self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlightGuard(self.clone())
    }

    /// How much work is running.
    pub fn len(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether none is running.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// At a stop: when work is running, says so (`what`, and how much) and waits for it, at
    /// most `limit`.
    pub async fn drain(&self, limit: std::time::Duration, what: &str) {
        if !self.is_empty() {
            tracing::info!(pending = self.len(), "waiting for {what}");
            self.wait_idle(limit).await;
        }
    }

    /// Waits until no work is running, or `limit` passes; true when idle.
    pub async fn wait_idle(&self, limit: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            // Register for the wake-up before checking, so a finish in between is not missed.
            let notified = self.idle.notified();
            if self.is_empty() {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.is_empty();
            }
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self
            .0
            .count
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst)
            == 1
        {
            self.0.idle.notify_waiters();
        }
    }
}

impl AppState {
    /// Records a network message when recording is on.
    pub fn record(
        &self,
        direction: record::Direction,
        action: crate::protocol::Action,
        url: &str,
        body: &[u8],
    ) {
        if let Some(log) = &self.traffic {
            log.record(direction, action, url, body);
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The listener could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(String, std::io::Error),
    /// The signing key is unusable.
    #[error("signing key: {0}")]
    Key(String),
    /// The traffic record file cannot be opened.
    #[error("cannot record traffic in {0}: {1}")]
    Record(String, std::io::Error),
    /// The embedded schemas do not compile (a build defect).
    #[error(transparent)]
    Schema(#[from] crate::protocol::schema::SchemaError),
}

/// Reads a request body up to `limit` bytes, into a buffer of its own size ([`body::collect`]).
pub async fn read_body<S, E>(
    headers: &actix_web::http::header::HeaderMap,
    payload: S,
    limit: usize,
) -> Result<web::Bytes, ApiError>
where
    S: futures_util::Stream<Item = Result<web::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    body::collect(headers, payload, limit)
        .await
        .map_err(|e| match e {
            body::BodyError::Read(e) => {
                ApiError::new(ApiCode::InvalidJson, format!("cannot read body: {e}"))
            }
            body::BodyError::TooLarge => ApiError::new(
                ApiCode::PayloadTooLarge,
                format!("body exceeds {limit} bytes"),
            ),
        })
}

/// A bound, ready-to-run server.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
    /// This instance's subscription to callbacks stored by other instances (Redis only).
    bridge: Option<tokio::task::JoinHandle<()>>,
    /// This instance's heartbeat, and its takeover of the owed work of instances whose heartbeat
    /// stopped (Redis only).
    keeper: Option<tokio::task::JoinHandle<()>>,
    /// The forgetting of received ratings past `seller.retention_days`, when set.
    sweeper: Option<tokio::task::JoinHandle<()>>,
    /// The sending of kept feedback notifications as they fall due (buyer side).
    notices: Option<tokio::task::JoinHandle<()>>,
    /// The backups made every `store.backup_every_secs`, when set.
    backups: Option<tokio::task::JoinHandle<()>>,
    in_flight: InFlight,
    notice_rounds: InFlight,
}

/// How often an instance sharing Redis looks for owed work of stopped instances to take over; it
/// renews its own heartbeat twice as often.
const TAKE_OVER_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Takes up the owed work a stopped process left ([`crate::bpp::sender::resume`]) and says so.
async fn take_over(state: &web::Data<AppState>) -> Result<(), StoreError> {
    let resumed = crate::bpp::sender::resume(state).await?;
    if resumed > 0 {
        tracing::warn!(
            resumed,
            "took up received ratings a stopped process left owing a webhook hand-off or /on_rating"
        );
    }
    Ok(())
}

impl Application {
    /// Opens the store and binds `settings.server.bind`.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let listener = bind_listener(&settings.server.bind, settings.server.backlog)
            .map_err(|e| StartError::Bind(settings.server.bind.clone(), e))?;
        Self::with_listener(settings, listener, Arc::new(SystemClock)).await
    }

    /// Opens the store and serves on an already-bound listener with the given clock.
    pub async fn with_listener(
        settings: Settings,
        listener: TcpListener,
        clock: SharedClock,
    ) -> Result<Self, StartError> {
        let keys = match settings.identity.active_private_key() {
            Some(private) => {
                SigningKeyPair::from_base64(private).map_err(|e| StartError::Key(e.to_string()))?
            }
            None => {
                let k = SigningKeyPair::generate().map_err(|e| StartError::Key(e.to_string()))?;
                tracing::warn!(
                    public_key = %k.public_key_base64(),
                    "no signing key configured; generated one for this run (development only)"
                );
                k
            }
        };
        warn_of_uris_off_the_identity(&settings);
        let schemas = Arc::new(Schemas::compile()?);
        let traffic = match &settings.server.record_dir {
            Some(dir) => Some(
                record::TrafficLog::open(dir, clock.clone())
                    .map_err(|e| StartError::Record(dir.display().to_string(), e))?,
            ),
            None => None,
        };
        let store = Store::open(&settings.store).await?;
        let outbound = Outbound::new(
            keys.clone(),
            settings.identity.subscriber_id.clone(),
            settings.identity.unique_key_id.clone(),
            settings.identity.signature_ttl_secs,
            clock.clone(),
        );
        let metrics = Arc::new(metrics::Metrics::default());
        let state = web::Data::new(AppState {
            registry: Registry::new(
                &settings,
                &keys,
                outbound.clone(),
                store.clone(),
                clock.clone(),
                metrics.clone(),
            ),
            metrics,
            outbound,
            tokens: TokenVerifier::new(
                &settings.buyer.jwt_hs256_secret,
                &settings.buyer.jwt_eddsa_public_keys,
            )
            .with_audience_and_issuers(&settings.buyer.jwt_audience, &settings.buyer.jwt_issuers),
            waiters: Waiters::default(),
            schemas,
            in_flight: InFlight::default(),
            seller_slots: SellerSlots::new(settings.buyer.max_in_flight_per_seller),
            background: tokio::runtime::Handle::current(),
            traffic,
            answering: Holds::default(),
            taking_up: Arc::new(tokio::sync::Semaphore::new(
                settings.seller.resume_concurrency,
            )),
            webhook_slots: tokio::sync::Semaphore::new(settings.seller.webhook_concurrency),
            notify_slots: crate::bap::notify::Slots::new(settings.buyer.notify_concurrency),
            backing_up: tokio::sync::Mutex::new(()),
            store,
            clock,
            settings: Arc::new(settings),
        });
        // Alive before anything is marked owed by this instance (Redis), then, before the first
        // request is served, what a stopped process left owed is taken over; it goes on beside
        // the requests, `seller.resume_concurrency` ratings at a time.
        let shared = match state.store.beat().await {
            Some(beat) => beat.map(|()| true)?,
            None => false,
        };
        take_over(&state).await?;
        let keeper = shared.then(|| {
            let state = state.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(TAKE_OVER_EVERY / 2);
                // A look for work to take over runs beside the heartbeat, never delaying it, and
                // never beside another look.
                let mut looking: Option<tokio::task::JoinHandle<()>> = None;
                for n in 0u64.. {
                    tick.tick().await;
                    if let Some(Err(e)) = state.store.beat().await {
                        tracing::warn!(error = %e, "could not renew this instance's heartbeat");
                    }
                    if n % 2 == 1 && looking.as_ref().is_none_or(|l| l.is_finished()) {
                        let state = state.clone();
                        looking = Some(tokio::spawn(async move {
                            if let Err(e) = take_over(&state).await {
                                tracing::warn!(error = %e, "could not look for owed work to take over");
                            }
                        }));
                    }
                }
            })
        });
        let seller = &state.settings.seller;
        let sweeper = (seller.enabled && seller.retention_days > 0)
            .then(|| tokio::spawn(crate::bpp::retention::forget_settled(state.clone())));
        // Feedback notifications kept undelivered (by a stopped process too) are sent as they
        // fall due.
        let notices = state
            .settings
            .buyer
            .enabled
            .then(|| tokio::spawn(crate::bap::notify::sweep(state.clone())));
        let backups = (state.settings.store.backup_every_secs > 0)
            .then(|| tokio::spawn(backup::schedule(state.clone())));
        let waiters = state.waiters.clone();
        let bridge = state
            .store
            .listen_for_callbacks(move |message_id| waiters.notify(message_id));
        let port = listener
            .local_addr()
            .map_err(|e| StartError::Bind("listener".into(), e))?
            .port();
        let data = state.clone();
        let methods = Arc::new(MethodsByPath::new(&state.settings));
        let server = HttpServer::new(move || {
            let methods = methods.clone();
            let metrics = data.metrics.clone();
            let settings = data.settings.clone();
            App::new()
                .app_data(data.clone())
                .wrap_fn(move |req, srv| {
                    let metrics = metrics.clone();
                    let answer = match limits::check_head(&req, &settings) {
                        Some(refused) => Either::Left(std::future::ready(Ok(req
                            .into_response(refused)
                            .map_into_boxed_body()))),
                        None => Either::Right(actix_web::dev::Service::call(srv, req)),
                    };
                    async move {
                        let res = answer.await?;
                        // The route template, never the raw path: label values stay bounded.
                        // Read after routing, which left the matched route on the request (read
                        // before it, every parameterised path is matched again).
                        let route = res.request().match_pattern();
                        metrics.record_response(route.as_deref(), res.response());
                        Ok(res)
                    }
                })
                .configure(|cfg| routes(cfg, &data.settings))
                .default_service(web::to(move |req: HttpRequest| {
                    std::future::ready(unrouted(&methods, &req))
                }))
        });
        let server = match state.settings.server.workers {
            0 => server,
            n => server.workers(n),
        };
        // With `server.http2`, HTTP/1.1 and cleartext HTTP/2 (prior knowledge) on the one port:
        // a buyer app on HTTP/2 shares one connection among all its waiting requests instead of
        // holding one connection (and its buffers) for each.
        let server = if state.settings.server.http2 {
            server.listen_auto_h2c(listener)
        } else {
            server.listen(listener)
        }
        .map_err(|e| StartError::Bind("listener".into(), e))?
        .shutdown_timeout(35)
        .run();
        Ok(Self {
            port,
            server,
            in_flight: state.in_flight.clone(),
            notice_rounds: state.notify_slots.rounds.clone(),
            state,
            bridge,
            keeper,
            sweeper,
            notices,
            backups,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle to stop the server.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// The shared state (for tests and the demo).
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Runs until stopped (SIGINT/SIGTERM or a handle).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        // Owed work taken up and not yet started stays marked, for the next process (or, with
        // Redis, another instance) to take up: none is started once a stop begins.
        let taking_up = self.state.taking_up.clone();
        let stop_taking_up = tokio::spawn(close_at_stop_signal(taking_up.clone()));
        drop(self.state);
        let result = self.server.await;
        stop_taking_up.abort();
        taking_up.close();
        // No feedback notification round starts from now on.
        if let Some(notices) = self.notices {
            notices.abort();
        }
        // The server has stopped accepting and answered what was in flight; /on_rating sends
        // still owed get until the end of their ttl (30 s) to finish, and notification rounds
        // under way their webhook budget (20 s), so that what they deliver is not sent again by
        // the next process.
        tokio::join!(
            self.in_flight.drain(
                std::time::Duration::from_secs(crate::protocol::RATING_TTL_SECS as u64 + 1),
                "/on_rating deliveries",
            ),
            self.notice_rounds.drain(
                crate::bap::notify::ROUND_DRAIN,
                "feedback notifications under way",
            ),
        );
        if let Some(keeper) = self.keeper {
            keeper.abort();
        }
        if let Some(sweeper) = self.sweeper {
            sweeper.abort();
        }
        if let Some(backups) = self.backups {
            backups.abort();
        }
        if let Some(bridge) = self.bridge {
            bridge.abort();
        }
        result
    }
}

/// Closes `turns` at the first SIGTERM or SIGINT (the signals the server stops at).
async fn close_at_stop_signal(turns: Arc<tokio::sync::Semaphore>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
    #[cfg(not(unix))]
    if tokio::signal::ctrl_c().await.is_err() {
        return;
    }
    turns.close();
}

/// Binds `addr` (its first address that binds, as `TcpListener::bind` tries them) and listens
/// with room for `backlog` connections waiting to be accepted; the standard library's
/// `TcpListener::bind` leaves 128, and a connection beyond them has its SYN dropped and waits for
/// the client's retry a second later. Like the standard library's, the socket reuses its address
/// (Unix) and is closed in the processes this one starts.
pub fn bind_listener(addr: &str, backlog: u32) -> std::io::Result<TcpListener> {
    use std::net::ToSocketAddrs;
    let mut last = None;
    for address in addr.to_socket_addrs()? {
        match listen_on(address, backlog) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the address resolves to nothing",
        )
    }))
}

fn listen_on(address: std::net::SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&address.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

/// Every route of the enabled roles: (method, path, handler). One table feeds both the server
/// and [`route_list`], which the OpenAPI test checks against the document.
///
/// actix-web tries routes in the order given and matches each path with a `{param}` by a regular
/// expression, so the three routes of a rating exchange (fixed paths) come first: a `/rating` or
/// `/on_rating` used to be tried against the nine parameterised paths before it, about 4 % of the
/// buyer side's CPU per round trip (docs/BENCHMARKS.md).
fn route_table(settings: &Settings) -> Vec<(Method, String, actix_web::Route)> {
    let route = |m: Method| match m {
        Method::GET => get_or_head(),
        m => web::method(m),
    };
    let (buyer, seller) = (settings.buyer.enabled, settings.seller.enabled);
    let mut t = Vec::new();
    if buyer {
        t.extend([
            (
                Method::POST,
                "/ret11/rating".to_owned(),
                route(Method::POST).service(crate::bap::api::rate_order_service()),
            ),
            (
                Method::POST,
                format!("{}/on_rating", uri_path(&settings.buyer.bap_uri)),
                route(Method::POST).to(crate::bap::callback::on_rating),
            ),
        ]);
    }
    if seller {
        t.push((
            Method::POST,
            format!("{}/rating", uri_path(&settings.seller.bpp_uri)),
            route(Method::POST).to(crate::bpp::receiver::rating),
        ));
    }
    t.extend([
        (
            Method::GET,
            "/healthz".to_owned(),
            route(Method::GET).to(healthz),
        ),
        (
            Method::GET,
            "/readyz".to_owned(),
            route(Method::GET).to(readyz),
        ),
        (
            Method::GET,
            "/openapi.json".to_owned(),
            route(Method::GET).to(openapi_json),
        ),
        (
            Method::GET,
            "/metrics".to_owned(),
            route(Method::GET).to(metrics_text),
        ),
        (
            Method::POST,
            "/internal/store/backup".to_owned(),
            route(Method::POST).to(backup::backup),
        ),
    ]);
    if buyer {
        t.extend([
            (
                Method::GET,
                "/ret11/orders/{order_id}/rating".to_owned(),
                route(Method::GET).to(crate::bap::api::get_rating),
            ),
            (
                Method::PUT,
                "/internal/orders/{order_id}".to_owned(),
                route(Method::PUT).to(crate::bap::orders::put_order),
            ),
            (
                Method::GET,
                "/internal/orders/{order_id}".to_owned(),
                route(Method::GET).to(crate::bap::orders::get_order),
            ),
            (
                Method::PUT,
                "/internal/users/{user_id}".to_owned(),
                route(Method::PUT).to(crate::bap::users::put_user),
            ),
            (
                Method::GET,
                "/internal/users/{user_id}".to_owned(),
                route(Method::GET).to(crate::bap::users::get_user),
            ),
            (
                Method::POST,
                "/v2/feedback/users/{user_id}/orders/{order_id}/rating".to_owned(),
                route(Method::POST).to(crate::bap::feedback::put_feedback),
            ),
            (
                Method::GET,
                "/v2/feedback/users/{user_id}/orders/{order_id}/rating".to_owned(),
                route(Method::GET).to(crate::bap::feedback::get_feedback),
            ),
            (
                Method::POST,
                "/v2/listings/{listing_id}/feedback".to_owned(),
                route(Method::POST).to(crate::bap::listing::post_feedback),
            ),
            (
                Method::GET,
                "/v2/listings/{listing_id}/feedback/{user_id}".to_owned(),
                route(Method::GET).to(crate::bap::listing::get_feedback),
            ),
            (
                Method::GET,
                "/internal/notifications/kept".to_owned(),
                route(Method::GET).to(crate::bap::notices::list_kept),
            ),
            (
                Method::GET,
                "/internal/notifications/given-up".to_owned(),
                route(Method::GET).to(crate::bap::notices::list),
            ),
            (
                Method::POST,
                "/internal/notifications/given-up/{id}/send".to_owned(),
                route(Method::POST).to(crate::bap::notices::send),
            ),
            (
                Method::DELETE,
                "/internal/notifications/given-up/{id}".to_owned(),
                route(Method::DELETE).to(crate::bap::notices::dismiss),
            ),
        ]);
    }
    if seller {
        t.push((
            Method::GET,
            "/internal/seller/ratings".to_owned(),
            route(Method::GET).to(crate::bpp::receiver::list_received),
        ));
        t.push((
            Method::GET,
            "/internal/seller/ratings/{bap_id}/{message_id}".to_owned(),
            route(Method::GET).to(crate::bpp::receiver::get_received),
        ));
        t.push((
            Method::POST,
            "/internal/seller/ratings/{bap_id}/{message_id}/on_rating".to_owned(),
            route(Method::POST).to(crate::bpp::receiver::answer_received),
        ));
    }
    t
}

/// The `limit` of a listing's page: 1 to 1000, 100 when not given.
pub(crate) fn page_limit(limit: Option<&str>) -> Result<usize, ApiError> {
    match limit.map(str::parse::<usize>) {
        None => Ok(100),
        Some(Ok(n)) if (1..=1000).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::new(
            ApiCode::ValidationFailed,
            "limit: a whole number between 1 and 1000",
        )),
    }
}

/// Every (method, path) this configuration serves, onboarding endpoints included.
pub fn route_list(settings: &Settings) -> Vec<(Method, String)> {
    let mut list: Vec<(Method, String)> = route_table(settings)
        .into_iter()
        .map(|(m, p, _)| (m, p))
        .collect();
    list.extend(onboarding::paths(settings));
    list
}

fn routes(cfg: &mut web::ServiceConfig, settings: &Settings) {
    for (_, path, route) in route_table(settings) {
        cfg.route(&path, route);
    }
    onboarding::configure(cfg, settings);
}

async fn openapi_json(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(openapi::document(&state.settings))
}

/// Warns at start-up when a role's URI does not sit on `identity.subscriber_id`'s domain: every
/// context this server sends would then fail ONDC's `uri.on_id_domain` check (the `check`
/// command's rule of that name). A URI off the public network (loopback, a private address, a
/// container name: see [`crate::checker::rules::is_private_uri`]) is a development set-up no
/// network peer can reach, the demo's and the default configuration's: nothing to warn of.
fn warn_of_uris_off_the_identity(settings: &Settings) {
    let private = crate::checker::rules::is_private_uri;
    let id = serde_json::Value::String(settings.identity.subscriber_id.clone());
    let mut ctx = serde_json::Map::new();
    if settings.buyer.enabled && !private(&settings.buyer.bap_uri) {
        ctx.insert("bap_id".into(), id.clone());
        ctx.insert("bap_uri".into(), settings.buyer.bap_uri.clone().into());
    }
    if settings.seller.enabled && !private(&settings.seller.bpp_uri) {
        ctx.insert("bpp_id".into(), id);
        ctx.insert("bpp_uri".into(), settings.seller.bpp_uri.clone().into());
    }
    let mut findings = Vec::new();
    crate::checker::rules::uri_on_id_domain(&ctx, &mut findings);
    for f in findings {
        let setting = match f.path.as_str() {
            "context.bap_uri" => "buyer.bap_uri",
            _ => "seller.bpp_uri",
        };
        tracing::warn!(
            rule = f.rule,
            setting,
            "{}: every context this server sends would fail ONDC's checks",
            f.message
        );
    }
}

/// A route for GET that answers HEAD too, as RFC 9110 asks of every server (section 9.1): the
/// same status and headers, and actix-web leaves the body out (a load balancer's `HEAD /healthz`,
/// say). The documentation and [`route_list`] name only GET.
pub(crate) fn get_or_head() -> actix_web::Route {
    use actix_web::guard;
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// The methods each served path takes, as its `Allow` value, for the answer to a request that
/// matched no route.
struct MethodsByPath(
    Vec<(
        actix_web::dev::ResourceDef,
        actix_web::http::header::HeaderValue,
    )>,
);

impl MethodsByPath {
    fn new(settings: &Settings) -> Self {
        let mut by_path: Vec<(String, Vec<Method>)> = Vec::new();
        for (method, path) in route_list(settings) {
            match by_path.iter_mut().find(|(p, _)| *p == path) {
                Some((_, methods)) => methods.push(method),
                None => by_path.push((path, vec![method])),
            }
        }
        for (_, methods) in &mut by_path {
            if methods.contains(&Method::GET) {
                methods.push(Method::HEAD);
            }
        }
        Self(
            by_path
                .into_iter()
                .map(|(path, methods)| {
                    let allow: Vec<&str> = methods.iter().map(Method::as_str).collect();
                    let allow = actix_web::http::header::HeaderValue::from_str(&allow.join(", "))
                        .expect("method names are header-safe");
                    (actix_web::dev::ResourceDef::new(path), allow)
                })
                .collect(),
        )
    }
}

/// A request no route took: 405 with `Allow` when its path is served with other methods (RFC 9110
/// section 15.5.6), otherwise 404. Only requests that missed every route come here, so the routes
/// themselves are matched as before.
fn unrouted(methods: &MethodsByPath, req: &HttpRequest) -> Result<HttpResponse, ApiError> {
    let path = req.path();
    match methods.0.iter().find(|(def, _)| def.is_match(path)) {
        Some((_, allow)) => {
            let refused = ApiError::new(
                ApiCode::MethodNotAllowed,
                format!(
                    "{path} takes {}, not {}",
                    allow.to_str().unwrap_or_default(),
                    req.method()
                ),
            );
            let mut res = actix_web::ResponseError::error_response(&refused);
            res.headers_mut()
                .insert(actix_web::http::header::ALLOW, allow.clone());
            Ok(res)
        }
        None => Err(ApiError::new(ApiCode::NotFound, "no such endpoint")),
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

async fn metrics_text(state: web::Data<AppState>) -> HttpResponse {
    let mut text = state.metrics.render();
    metrics::gauge(
        &mut text,
        "ondc_rating_waiting_requests",
        "Buyer requests waiting for their /on_rating (at most buyer.max_waiting).",
        state.waiters.len() as u64,
    );
    HttpResponse::Ok()
        .content_type(metrics::CONTENT_TYPE)
        .body(text)
}

/// Ready when the store answers and, with `registry.url` set, the registry does (any HTTP
/// answer); otherwise 503 naming the dependency that is down.
async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.store.ping().await?;
    if let Some(Err(reason)) = state.registry.probe().await {
        return Err(ApiError::new(
            ApiCode::RegistryUnavailable,
            format!("the registry cannot be reached: {reason}"),
        ));
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;
    use std::time::Duration;

    /// How many of `tries` connections to `listener`, made one after another while nothing
    /// accepts, are established (each given `wait`); stops at the first that is not. The
    /// connections are held open until the count is returned.
    fn established(listener: &TcpListener, tries: usize, wait: Duration) -> usize {
        let address = listener.local_addr().unwrap();
        let mut held = Vec::new();
        for _ in 0..tries {
            match TcpStream::connect_timeout(&address, wait) {
                Ok(stream) => held.push(stream),
                Err(_) => break,
            }
        }
        held.len()
    }

    /// A burst of new connections larger than the standard library's backlog waits to be
    /// accepted instead of having its SYNs dropped (a second's wait each for their clients).
    #[test]
    fn a_burst_of_connections_waits_in_the_configured_backlog() {
        let wait = Duration::from_millis(300);
        let ours = bind_listener("127.0.0.1:0", crate::config::DEFAULT_BACKLOG).unwrap();
        assert_eq!(established(&ours, 400, wait), 400);
        // The standard library's: the kernel holds the backlog and one more, then drops SYNs.
        let std_bound = TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(established(&std_bound, 400, wait), 129);
        let small = bind_listener("127.0.0.1:0", 16).unwrap();
        assert_eq!(established(&small, 400, wait), 17);
    }

    #[test]
    fn an_address_that_cannot_be_bound_is_an_error() {
        let taken = bind_listener("127.0.0.1:0", 16).unwrap();
        let address = taken.local_addr().unwrap().to_string();
        let e = bind_listener(&address, 16).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
        assert!(bind_listener("not an address", 16).is_err());
    }
}

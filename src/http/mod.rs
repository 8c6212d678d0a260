//! actix wiring: application state, routes for the enabled roles, body limits, health, and the
//! JSON 404. `Application::build` binds first (port 0 in tests) so callers learn the port before
//! the server runs.

pub mod error;
pub mod network;
pub mod onboarding;
pub mod outbound;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpResponse, HttpServer, web};

use crate::bap::auth::TokenVerifier;
use crate::bap::bridge::Waiters;
use crate::clock::{SharedClock, SystemClock};
use crate::config::{Settings, uri_path};
use crate::crypto::SigningKeyPair;
use crate::protocol::schema::Schemas;
use crate::registry::Registry;
use crate::store::{Store, StoreError};
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
    /// The embedded schemas do not compile (a build defect).
    #[error(transparent)]
    Schema(#[from] crate::protocol::schema::SchemaError),
}

/// Reads a request body up to `limit` bytes.
pub async fn read_body(payload: web::Payload, limit: usize) -> Result<web::Bytes, ApiError> {
    match payload.to_bytes_limited(limit).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => Err(ApiError::new(
            ApiCode::InvalidJson,
            format!("cannot read body: {e}"),
        )),
        Err(_) => Err(ApiError::new(
            ApiCode::PayloadTooLarge,
            format!("body exceeds {limit} bytes"),
        )),
    }
}

/// A bound, ready-to-run server.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
}

impl Application {
    /// Opens the store and binds `settings.server.bind`.
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let listener = TcpListener::bind(&settings.server.bind)
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
        let schemas = Arc::new(Schemas::compile()?);
        let store = Store::open(&settings.store).await?;
        let outbound = Outbound::new(
            keys.clone(),
            settings.identity.subscriber_id.clone(),
            settings.identity.unique_key_id.clone(),
            settings.identity.signature_ttl_secs,
            clock.clone(),
        );
        let state = web::Data::new(AppState {
            registry: Registry::new(
                &settings,
                &keys,
                outbound.clone(),
                store.clone(),
                clock.clone(),
            ),
            outbound,
            tokens: TokenVerifier::new(
                &settings.buyer.jwt_hs256_secret,
                &settings.buyer.jwt_eddsa_public_keys,
            ),
            waiters: Waiters::default(),
            schemas,
            store,
            clock,
            settings: Arc::new(settings),
        });
        let port = listener
            .local_addr()
            .map_err(|e| StartError::Bind("listener".into(), e))?
            .port();
        let data = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .configure(|cfg| routes(cfg, &data.settings))
                .default_service(web::to(not_found))
        })
        .listen(listener)
        .map_err(|e| StartError::Bind("listener".into(), e))?
        .shutdown_timeout(35)
        .run();
        Ok(Self {
            port,
            server,
            state,
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
        drop(self.state);
        self.server.await
    }
}

fn routes(cfg: &mut web::ServiceConfig, settings: &Settings) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
    if settings.buyer.enabled {
        cfg.route("/ret11/rating", web::post().to(crate::bap::api::rate_order))
            .route(
                "/ret11/orders/{order_id}/rating",
                web::get().to(crate::bap::api::get_rating),
            )
            .route(
                "/internal/orders/{order_id}",
                web::put().to(crate::bap::orders::put_order),
            )
            .route(
                "/internal/orders/{order_id}",
                web::get().to(crate::bap::orders::get_order),
            )
            .route(
                &format!("{}/on_rating", uri_path(&settings.buyer.bap_uri)),
                web::post().to(crate::bap::callback::on_rating),
            );
    }
    if settings.seller.enabled {
        cfg.route(
            &format!("{}/rating", uri_path(&settings.seller.bpp_uri)),
            web::post().to(crate::bpp::receiver::rating),
        )
        .route(
            "/internal/seller/ratings/{bap_id}/{message_id}",
            web::get().to(crate::bpp::receiver::get_received),
        );
    }
    onboarding::configure(cfg, settings);
}

async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(ApiCode::NotFound, "no such endpoint"))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.store.ping().await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })))
}

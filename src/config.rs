//! Typed settings, loaded and validated in one place.
//!
//! Layers, later wins: built-in defaults, the TOML file, then environment variables named
//! `ONDC_RATING__SECTION__KEY` (for example `ONDC_RATING__STORE__BACKEND=redis`), and `REDIS_URL`
//! for `store.redis_url`. Validation happens here, at start-up, so a bad setting stops the process
//! with a message instead of surfacing as a runtime error later.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::crypto::{
    ChallengeKey, SigningKeyPair, registry_encryption_public_key, verifying_key_from_base64,
};

/// Everything the server needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Listener.
    #[serde(default)]
    pub server: ServerSettings,
    /// Who this adapter is on the network.
    pub identity: IdentitySettings,
    /// Where state lives.
    #[serde(default)]
    pub store: StoreSettings,
    /// Buyer side (BAP role).
    #[serde(default)]
    pub buyer: BuyerSettings,
    /// Seller side (BPP role).
    #[serde(default)]
    pub seller: SellerSettings,
    /// Where peers' signing keys come from besides `[[peers]]`.
    #[serde(default)]
    pub registry: RegistrySettings,
    /// Registry onboarding: site verification, `/on_subscribe`, the `/subscribe` payload.
    #[serde(default)]
    pub onboarding: OnboardingSettings,
    /// Network participants whose signatures are trusted, with their keys.
    #[serde(default)]
    pub peers: Vec<PeerSettings>,
}

/// Listener settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address to bind, e.g. `127.0.0.1:8080`.
    pub bind: String,
    /// Largest accepted request body, bytes.
    pub max_body_bytes: usize,
    /// Largest accepted request head (request line and header fields), bytes; beyond it, 431.
    pub max_header_bytes: usize,
    /// Log level: error, warn, info, debug, trace.
    pub log_level: String,
    /// Log line format: `text` (human-readable) or `json` (one object per line, with the fields
    /// of the span the line was logged in under `span`).
    pub log_format: LogFormat,
    /// Check every outbound /rating and /on_rating against the strict schemas before sending
    /// (tests, debugging); a violation is refused instead of sent.
    pub validate_outbound: bool,
    /// When set, every network message sent or received is appended to
    /// `record_dir/traffic.ndjson` (the format `ondc-rating check` reads).
    pub record_dir: Option<PathBuf>,
    /// Also serve cleartext HTTP/2 with prior knowledge (h2c) on the same port, told apart from
    /// HTTP/1.1 by the connection's first bytes. Off by default: actix-web sets none of the
    /// HTTP/2 limits, so an HTTP/2 request head may reach the h2 library's 16 MiB before
    /// `max_header_bytes` is checked; turn it on for buyer apps behind a trusted network.
    pub http2: bool,
    /// Worker threads of the runtime beside the HTTP workers: it sends the /on_rating of a
    /// seller platform's own answer call, keeps the Redis callback subscription, and finishes a
    /// seller delivery that a graceful stop took from its HTTP worker (a /rating's webhook and
    /// /on_rating otherwise run on the worker that took it). 0: a quarter of the cores, at least
    /// one. One thread beside two HTTP workers took 12 % (embedded) to 21 % (Redis) less CPU per
    /// round trip at peak than two (docs/BENCHMARKS.md).
    pub background_threads: usize,
    /// HTTP worker threads (each a single-threaded runtime with its own connections). 0: one per
    /// core. Fewer suit an adapter that shares its cores with other busy processes.
    pub workers: usize,
    /// Connections the kernel holds for the listening socket until a worker accepts them (the
    /// `listen` backlog; the kernel caps it at `net.core.somaxconn`). A connection beyond it has
    /// its SYN dropped and the client retries a second later: 128 (the standard library's) let
    /// a burst of 256 new connections wait 1 s (docs/BENCHMARKS.md).
    pub backlog: u32,
}

/// The most `server.background_threads` a configuration may ask for.
pub const MAX_BACKGROUND_THREADS: usize = 256;

/// The most `server.workers` a configuration may ask for.
pub const MAX_WORKERS: usize = 256;

/// `server.backlog` unless configured: actix-web's own for the sockets it binds.
pub const DEFAULT_BACKLOG: u32 = 1024;

/// The largest `server.backlog` (Linux's own bound on `net.core.somaxconn`).
pub const MAX_BACKLOG: u32 = 65_535;

impl ServerSettings {
    /// `background_threads`, with 0 resolved from the machine's cores.
    pub fn background_worker_threads(&self) -> usize {
        match self.background_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| (n.get() / 4).max(1)),
            n => n,
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            max_body_bytes: 64 * 1024,
            max_header_bytes: 16 * 1024,
            log_level: "info".into(),
            log_format: LogFormat::Text,
            validate_outbound: false,
            record_dir: None,
            http2: false,
            background_threads: 0,
            workers: 0,
            backlog: DEFAULT_BACKLOG,
        }
    }
}

/// How log lines are written (`server.log_format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(format!("{s:?} is not a log format: text or json")),
        }
    }
}

/// This participant's identity.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySettings {
    /// Subscriber id registered with ONDC (FQDN-like, never a URL).
    pub subscriber_id: String,
    /// The registry's unique key id for the signing key.
    pub unique_key_id: String,
    /// Ed25519 private key, base64 of a 32-byte seed or 64-byte seed||public. Empty: a key is
    /// generated at start (development only; peers cannot know it ahead of time).
    #[serde(default)]
    pub signing_private_key: String,
    /// Signature validity we emit (`expires - created`), seconds.
    #[serde(default = "default_signature_ttl")]
    pub signature_ttl_secs: i64,
    /// Tolerance for a peer's clock running ahead, seconds.
    #[serde(default = "default_skew")]
    pub clock_skew_secs: i64,
    /// Verify the signatures of requests arriving together in batches (about a third of the
    /// CPU per signature at eight); false verifies each alone with the strict rule. A batch
    /// also accepts a signature whose R its key's holder gave a small-order component, which the
    /// strict rule refuses (src/crypto/batch.rs).
    #[serde(default = "default_true")]
    pub batch_verification: bool,
    /// Several own keys, for rotation, each registered under its own unique key id: the one
    /// named by `unique_key_id` signs, the others stay configured so that switching keys is a
    /// one-line change. When used, `signing_private_key` stays empty.
    #[serde(default)]
    pub keys: Vec<OwnKey>,
}

/// One of this participant's signing keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnKey {
    /// Its unique key id in the registry.
    pub unique_key_id: String,
    /// Ed25519 private key, base64 (32-byte seed or 64-byte seed||public).
    pub signing_private_key: String,
}

impl IdentitySettings {
    /// The private key that signs (base64): the `keys` entry named by `unique_key_id`, else
    /// `signing_private_key`; None when neither is configured.
    pub fn active_private_key(&self) -> Option<&str> {
        let key = if self.keys.is_empty() {
            Some(self.signing_private_key.as_str())
        } else {
            self.keys
                .iter()
                .find(|k| k.unique_key_id == self.unique_key_id)
                .map(|k| k.signing_private_key.as_str())
        };
        key.filter(|k| !k.is_empty())
    }
}

fn default_signature_ttl() -> i64 {
    60
}

fn default_true() -> bool {
    true
}

fn default_skew() -> i64 {
    5
}

/// Which store backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// A redb file on this machine.
    Embedded,
    /// A Redis server shared by several instances.
    Redis,
}

/// Store settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// embedded or redis.
    pub backend: StoreBackend,
    /// redb file path (embedded).
    pub path: PathBuf,
    /// Memory redb may keep as its page cache, MiB (embedded); the rest is read through the OS.
    pub cache_mib: usize,
    /// Redis URL (redis).
    pub redis_url: String,
    /// Redis Cluster seed nodes (`redis://host:port/` each; a list, or one comma-separated
    /// string from the environment). When set, the redis backend talks to that cluster and
    /// `redis_url` is not used.
    #[serde(deserialize_with = "list_or_csv")]
    pub redis_cluster_nodes: Vec<String>,
    /// Prefix of every Redis key, so several deployments (or tests) share one server.
    pub key_prefix: String,
    /// Where `POST /internal/store/backup` writes copies of the embedded store (created when
    /// missing). Empty: no backups.
    pub backup_dir: PathBuf,
    /// A backup is also made this often, in seconds, by the adapter itself (0: only on request).
    pub backup_every_secs: u64,
    /// After each backup, only this many of the newest are kept in `backup_dir`; the older
    /// `ondc-rating-*.redb` files there are removed (0: every one is kept).
    pub backup_keep: u32,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Embedded,
            path: "data/ondc-rating.redb".into(),
            cache_mib: 32,
            redis_url: "redis://127.0.0.1:6379/".into(),
            redis_cluster_nodes: Vec::new(),
            key_prefix: "ondc-rating:".into(),
            backup_dir: PathBuf::new(),
            backup_every_secs: 0,
            backup_keep: 0,
        }
    }
}

/// Buyer side (BAP).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuyerSettings {
    /// Serve the buyer API and receive /on_rating.
    pub enabled: bool,
    /// Base URI peers call back (`{bap_uri}/on_rating`); its path is where /on_rating is served.
    pub bap_uri: String,
    /// How long a buyer request waits for /on_rating before answering 202, milliseconds (at most
    /// the 30 s ttl).
    pub callback_wait_ms: u64,
    /// How long after the seller's ACK a waiting request records the `acknowledged` status,
    /// milliseconds (0: at once). An /on_rating that comes sooner makes the write needless: the
    /// stored callback is what makes the rating read as completed. Until it is written, and
    /// after a crash before it, the rating reads as `pending`.
    pub acknowledged_write_delay_ms: u64,
    /// Buyer requests that may wait for their /on_rating at once on this instance; beyond it a
    /// new rating is refused with 503 `too_busy` and `Retry-After`, before anything is claimed.
    pub max_waiting: usize,
    /// /rating requests in flight to one seller (by bpp_uri) at once; a request that cannot get
    /// a slot within `send_timeout_ms` is not sent (502, claim released).
    pub max_in_flight_per_seller: usize,
    /// Attempts to deliver /rating when the seller cannot be reached (transport errors only).
    pub send_attempts: u32,
    /// Timeout of one /rating attempt, milliseconds.
    pub send_timeout_ms: u64,
    /// HS256 secret for buyer API bearer tokens (empty: HS256 off).
    pub jwt_hs256_secret: String,
    /// Ed25519 public keys (base64, raw 32 bytes) accepted for EdDSA bearer tokens.
    pub jwt_eddsa_public_keys: Vec<String>,
    /// The audiences this server answers to: a bearer token must name one of them in `aud`.
    /// Empty: tokens naming any audience are refused (they are for another service, RFC 7519
    /// section 4.1.3), tokens naming none are taken. In the environment, a comma-separated list.
    #[serde(deserialize_with = "list_or_csv")]
    pub jwt_audience: Vec<String>,
    /// The issuers whose tokens are taken (`iss`); empty: any. In the environment, a
    /// comma-separated list.
    #[serde(deserialize_with = "list_or_csv")]
    pub jwt_issuers: Vec<String>,
    /// Bearer token for the internal orders API.
    pub internal_token: String,
    /// Told when v2 feedback is recorded, and when the seller's /on_rating refuses it: a signed
    /// `feedback.recorded` or `feedback.refused` event is POSTed here (signed like the seller
    /// platform webhook). Empty: no webhook.
    pub notify_webhook_url: String,
    /// HMAC secret of `notify_webhook_url` (at least 16 bytes when it is set).
    pub notify_webhook_secret: String,
    /// `host:port` of a local SMTP relay (plain SMTP, no TLS, no auth) that mails each recorded,
    /// and each refused, v2 feedback to `notify_email_to`. Empty: no email.
    pub notify_smtp: String,
    /// Sender address of the notification email.
    pub notify_email_from: String,
    /// Recipient address of the notification email.
    pub notify_email_to: String,
    /// Notifications in flight at once, at most, per channel: webhook requests and SMTP
    /// sessions. The others wait their turn (a webhook attempt within its budget, an email up to
    /// a minute), so a burst of feedback reaches the platform and the relay this many at a time.
    pub notify_concurrency: usize,
    /// A notification not delivered (the receiver down, the relay refusing) is kept in the store
    /// and tried again, across restarts, for this many hours after it was first due; then given
    /// up. 0: one round of attempts only, nothing tried again later.
    pub notify_retry_hours: u32,
    /// The wait before the first retry round; each further one waits twice as long as the last,
    /// up to an hour.
    pub notify_retry_after_ms: u64,
    /// A notification given up (refused by the receiver, or still undelivered after
    /// `notify_retry_hours`) is kept this many days, listed at `GET
    /// /internal/notifications/given-up` and sent again on request; then forgotten. 0: not
    /// kept (only logged and counted).
    pub notify_given_up_days: u32,
}

impl Default for BuyerSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            bap_uri: "http://127.0.0.1:8080/bap".into(),
            callback_wait_ms: 5_000,
            acknowledged_write_delay_ms: 1_000,
            max_waiting: 1024,
            max_in_flight_per_seller: 64,
            send_attempts: 3,
            send_timeout_ms: 5_000,
            jwt_hs256_secret: String::new(),
            jwt_eddsa_public_keys: Vec::new(),
            jwt_audience: Vec::new(),
            jwt_issuers: Vec::new(),
            internal_token: String::new(),
            notify_webhook_url: String::new(),
            notify_webhook_secret: String::new(),
            notify_smtp: String::new(),
            notify_email_from: String::new(),
            notify_email_to: String::new(),
            notify_concurrency: 16,
            notify_retry_hours: 24,
            notify_retry_after_ms: 30_000,
            notify_given_up_days: 30,
        }
    }
}

impl BuyerSettings {
    fn validate_notifications(&self) -> Result<(), ConfigError> {
        if !self.notify_webhook_url.is_empty() {
            check_uri("buyer.notify_webhook_url", &self.notify_webhook_url)?;
            if self.notify_webhook_secret.len() < 16 {
                return Err(invalid(
                    "buyer.notify_webhook_secret",
                    "must be at least 16 bytes when buyer.notify_webhook_url is set",
                ));
            }
        }
        if !(1..=1024).contains(&self.notify_concurrency) {
            return Err(invalid(
                "buyer.notify_concurrency",
                "must be between 1 and 1024",
            ));
        }
        if self.notify_retry_hours > 720 {
            return Err(invalid(
                "buyer.notify_retry_hours",
                "must be between 0 and 720 (30 days)",
            ));
        }
        if !(100..=3_600_000).contains(&self.notify_retry_after_ms) {
            return Err(invalid(
                "buyer.notify_retry_after_ms",
                "must be between 100 and 3600000 (an hour)",
            ));
        }
        if self.notify_given_up_days > 3650 {
            return Err(invalid(
                "buyer.notify_given_up_days",
                "must be between 0 and 3650 (ten years)",
            ));
        }
        if !self.notify_smtp.is_empty() {
            let port = self
                .notify_smtp
                .rsplit_once(':')
                .map(|(h, p)| (h, p.parse::<u16>()));
            if !matches!(port, Some((h, Ok(p))) if !h.is_empty() && p != 0) {
                return Err(invalid("buyer.notify_smtp", "must be host:port"));
            }
            for (key, addr) in [
                ("buyer.notify_email_from", &self.notify_email_from),
                ("buyer.notify_email_to", &self.notify_email_to),
            ] {
                let bad = |c: char| c.is_whitespace() || c.is_control() || "<>".contains(c);
                if !addr.contains('@') || addr.contains(bad) {
                    return Err(invalid(
                        key,
                        "must be one email address when buyer.notify_smtp is set",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Seller side (BPP).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SellerSettings {
    /// Receive /rating and send /on_rating.
    pub enabled: bool,
    /// Base URI buyers send to (`{bpp_uri}/rating`); its path is where /rating is served.
    pub bpp_uri: String,
    /// Feedback form URL sent in /on_rating; `{order_id}`, `{transaction_id}` and `{message_id}`
    /// are replaced. Empty: no feedback form.
    pub feedback_form_url: String,
    /// `text/html` or `application/xml`.
    pub feedback_form_mime_type: String,
    /// Form data sent with the URL (same placeholders).
    pub feedback_form_data: String,
    /// Whether the buyer must fill the form.
    pub feedback_form_required: bool,
    /// Timeout of one /on_rating attempt, milliseconds. Retries continue until the ttl runs out.
    pub send_timeout_ms: u64,
    /// Internal token for the seller platform's read API.
    pub internal_token: String,
    /// Rating categories this seller takes (any case; default all five). A /rating rating
    /// anything else is answered with error 50003 in /on_rating. In the environment, a
    /// comma-separated list.
    #[serde(deserialize_with = "list_or_csv")]
    pub accepted_categories: Vec<String>,
    /// Accept decimal values within 1..5 ("4.5"); off: only whole numbers, else error 30015.
    pub allow_decimal_values: bool,
    /// Take a /rating whose `bap_uri` or `bpp_uri` is not on its id's domain, and send the
    /// `/on_rating` to that `bap_uri` all the same: for test set-ups (`mock-seller` sets it), not
    /// for a seller on the network, where any signed request could then direct the callback to
    /// any host. Off: such a /rating gets NACK 30000 (a seller whose own `bpp_uri` is off the
    /// public network, a development set-up, still takes uris off it).
    pub allow_uris_off_domain: bool,
    /// The seller platform's webhook: every new /rating that passes the checks is POSTed there,
    /// signed with `webhook_secret`. Empty: no webhook, the configured form is always used.
    pub webhook_url: String,
    /// HMAC-SHA256 key for the webhook's `X-Ondc-Rating-Signature` (at least 16 bytes).
    pub webhook_secret: String,
    /// Time allowed for the webhook, all attempts included, milliseconds; the /on_rating goes
    /// out after it (with the fallback form) whatever the webhook does.
    pub webhook_timeout_ms: u64,
    /// Attempts on transport errors, 5xx and 429, within `webhook_timeout_ms`.
    pub webhook_attempts: u32,
    /// Webhook requests in flight at once, at most: a hand-off that finds them all taken waits
    /// for one within its budget (`webhook_timeout_ms`), and falls back to the configured form
    /// when none frees in time. A burst of ratings reaches a slow platform this many at a time,
    /// not one connection per rating.
    pub webhook_concurrency: usize,
    /// Who sends the `/on_rating` of a rating that passed the checks: the adapter, at once
    /// (`auto`), or the seller platform, through
    /// `POST /internal/seller/ratings/{bap_id}/{message_id}/on_rating` within the ttl
    /// (`platform`).
    pub on_rating: OnRatingMode,
    /// Received ratings whose owed work (a webhook hand-off, an `/on_rating`) is taken up from a
    /// stopped process at once, at most: after a restart or a takeover the rest wait their turn,
    /// so a backlog reaches the seller platform and the buyers at this concurrency, not all at
    /// once.
    pub resume_concurrency: usize,
    /// Days a received rating is kept once its `/on_rating` was sent or given up (`settledAt`);
    /// then it is forgotten: the read-back answers 404 and a /rating with its message_id again
    /// is taken as new. 0: kept for ever. Ratings that owe work or are held for the seller
    /// platform's answer are never forgotten.
    pub retention_days: u32,
    /// How often the ratings past `retention_days` are looked for, milliseconds.
    pub retention_sweep_ms: u64,
}

/// `seller.on_rating`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnRatingMode {
    /// After the checks (and the webhook, when configured), the adapter sends it.
    #[default]
    Auto,
    /// The seller platform answers each rating that passed the checks; the adapter sends the
    /// `/on_rating` when it does. Ratings the checks refuse are still answered at once.
    Platform,
}

impl std::str::FromStr for OnRatingMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "platform" => Ok(Self::Platform),
            _ => Err(format!("{s:?} is not an on_rating mode: auto or platform")),
        }
    }
}

impl Default for SellerSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            bpp_uri: "http://127.0.0.1:8080/bpp".into(),
            feedback_form_url: String::new(),
            feedback_form_mime_type: "text/html".into(),
            feedback_form_data: "order_id={order_id}".into(),
            feedback_form_required: false,
            send_timeout_ms: 5_000,
            internal_token: String::new(),
            accepted_categories: crate::protocol::RatingCategory::ALL
                .iter()
                .map(|c| c.as_str().to_owned())
                .collect(),
            allow_decimal_values: false,
            allow_uris_off_domain: false,
            webhook_url: String::new(),
            webhook_secret: String::new(),
            webhook_timeout_ms: 5_000,
            webhook_attempts: 3,
            webhook_concurrency: 64,
            on_rating: OnRatingMode::Auto,
            resume_concurrency: 32,
            retention_days: 0,
            retention_sweep_ms: 60_000,
        }
    }
}

/// A list, or (from an environment variable) one comma-separated string.
fn list_or_csv<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrCsv {
        List(Vec<String>),
        Csv(String),
    }
    Ok(match ListOrCsv::deserialize(d)? {
        ListOrCsv::List(l) => l,
        ListOrCsv::Csv(s) => s
            .split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

impl SellerSettings {
    /// The longest webhook budget: the /on_rating still needs time within the 30 s ttl.
    pub const MAX_WEBHOOK_TIMEOUT_MS: u64 = 20_000;

    /// The accepted categories, canonical (PascalCase).
    pub fn accepted(&self) -> Vec<crate::protocol::RatingCategory> {
        self.accepted_categories
            .iter()
            .filter_map(|c| crate::protocol::RatingCategory::parse(c))
            .collect()
    }

    fn validate_business(&self) -> Result<(), ConfigError> {
        if self.accepted_categories.is_empty() {
            return Err(invalid(
                "seller.accepted_categories",
                "must name at least one of Order, Provider, Item, Fulfillment, Agent",
            ));
        }
        for (i, c) in self.accepted_categories.iter().enumerate() {
            if crate::protocol::RatingCategory::parse(c).is_none() {
                return Err(invalid(
                    &format!("seller.accepted_categories[{i}]"),
                    format!("{c:?} is not one of Order, Provider, Item, Fulfillment, Agent"),
                ));
            }
        }
        if !self.webhook_url.is_empty() {
            check_uri("seller.webhook_url", &self.webhook_url)?;
            if self.webhook_secret.len() < 16 {
                return Err(invalid(
                    "seller.webhook_secret",
                    "must be at least 16 bytes when seller.webhook_url is set",
                ));
            }
        }
        if !(100..=Self::MAX_WEBHOOK_TIMEOUT_MS).contains(&self.webhook_timeout_ms) {
            return Err(invalid(
                "seller.webhook_timeout_ms",
                "must be between 100 and 20000 (the /on_rating must still go out within the 30 s ttl)",
            ));
        }
        if !(1..=10).contains(&self.webhook_attempts) {
            return Err(invalid(
                "seller.webhook_attempts",
                "must be between 1 and 10",
            ));
        }
        if !(1..=4096).contains(&self.webhook_concurrency) {
            return Err(invalid(
                "seller.webhook_concurrency",
                "must be between 1 and 4096",
            ));
        }
        if !(1..=4096).contains(&self.resume_concurrency) {
            return Err(invalid(
                "seller.resume_concurrency",
                "must be between 1 and 4096",
            ));
        }
        if self.retention_days > 36_500 {
            return Err(invalid(
                "seller.retention_days",
                "must be at most 36500 (0 keeps ratings for ever)",
            ));
        }
        if !(10..=86_400_000).contains(&self.retention_sweep_ms) {
            return Err(invalid(
                "seller.retention_sweep_ms",
                "must be between 10 and 86400000",
            ));
        }
        Ok(())
    }
}

/// Which registry lookup API to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LookupApi {
    /// `POST /v2.0/lookup`, signed by this participant over the exact body.
    V2,
    /// The legacy unsigned `POST /lookup`.
    Legacy,
}

/// The ONDC registry and the key cache in front of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrySettings {
    /// Registry base URL (e.g. the staging registry); empty: only `[[peers]]` are trusted.
    pub url: String,
    /// v2 (signed) or legacy.
    pub lookup: LookupApi,
    /// How long a found key is cached (never past its valid_until), seconds.
    pub cache_ttl_secs: u64,
    /// How long "no such key" is cached, seconds.
    pub miss_ttl_secs: u64,
    /// Keys kept in process memory (in front of the shared store).
    pub cache_capacity: usize,
    /// A cached key that fails to verify is looked up again (the peer may have rotated it), but
    /// not more often than this, seconds.
    pub refresh_interval_secs: u64,
    /// Timeout of one lookup, milliseconds.
    pub timeout_ms: u64,
    /// Attempts per lookup on transport errors, 5xx and 429.
    pub attempts: u32,
    /// Require the signer to be context.bap_id on /rating and context.bpp_id on /on_rating.
    pub check_signer_matches_context: bool,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            lookup: LookupApi::V2,
            cache_ttl_secs: 3600,
            miss_ttl_secs: 30,
            cache_capacity: 10_000,
            refresh_interval_secs: 10,
            timeout_ms: 3_000,
            attempts: 3,
            check_signer_matches_context: true,
        }
    }
}

/// A trusted peer's signing key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSettings {
    /// Its subscriber id.
    pub subscriber_id: String,
    /// Its unique key id.
    pub unique_key_id: String,
    /// Its Ed25519 public key, base64 raw 32 bytes.
    pub signing_public_key: String,
}

/// Registry onboarding: what the server serves to the registry (the site verification page,
/// `/on_subscribe`) and what `ondc-rating subscribe` sends to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnboardingSettings {
    /// The request_id of the `/subscribe` call; its signature is served at
    /// `/ondc-site-verification.html`. Empty: the page is not served.
    pub request_id: String,
    /// This participant's X25519 private key, base64 PKCS#8. Empty: `/on_subscribe` is not served.
    pub encryption_private_key: String,
    /// The registry's X25519 public key, base64 SubjectPublicKeyInfo, or one of the names
    /// `staging`, `preprod`, `prod` for the ONDC registries' published keys.
    pub registry_encryption_public_key: String,
    /// `/subscribe` operation: 1 buyer app, 2 seller app, 4 both. Absent: from the enabled roles.
    pub ops_no: Option<u8>,
    /// Path under `https://{subscriber_id}` where the registry calls `/on_subscribe`.
    pub callback_url: String,
    /// City codes served (`std:080`, or `*` for all).
    pub city_codes: Vec<String>,
    /// The ONDC domain subscribed to.
    pub domain: String,
    /// `subscriber_url` of every network participant entry. Empty: `buyer.bap_uri` for the buyer
    /// app entry and `seller.bpp_uri` for the seller app entry.
    pub subscriber_url: String,
    /// Key validity start, RFC 3339. Empty: the time of the `/subscribe` call.
    pub valid_from: String,
    /// Key validity end, RFC 3339. Empty: one year after `valid_from`.
    pub valid_until: String,
    /// Further `entity` fields of the `/subscribe` message (gst, pan, name_of_authorised_signatory,
    /// email_id, mobile_no, country, ...), copied as given.
    pub entity_details: toml::Table,
}

impl Default for OnboardingSettings {
    fn default() -> Self {
        Self {
            request_id: String::new(),
            encryption_private_key: String::new(),
            registry_encryption_public_key: String::new(),
            ops_no: None,
            callback_url: "/".into(),
            city_codes: Vec::new(),
            domain: "ONDC:RET11".into(),
            subscriber_url: String::new(),
            valid_from: String::new(),
            valid_until: String::new(),
            entity_details: toml::Table::new(),
        }
    }
}

impl OnboardingSettings {
    /// The registry's encryption public key, environment names resolved.
    pub fn registry_public_key(&self) -> &str {
        registry_encryption_public_key(&self.registry_encryption_public_key)
    }

    fn validate(&self, identity: &IdentitySettings) -> Result<(), ConfigError> {
        if !self.request_id.is_empty() {
            if self.request_id.trim() != self.request_id || self.request_id.len() > 256 {
                return Err(invalid(
                    "onboarding.request_id",
                    "must have no surrounding whitespace and at most 256 characters",
                ));
            }
            if identity.active_private_key().is_none() {
                return Err(invalid(
                    "identity.signing_private_key",
                    "must be set to serve the site verification page (the registry checks it \
                     against the signing key it was given)",
                ));
            }
        }
        if !self.encryption_private_key.is_empty() {
            if self.registry_encryption_public_key.trim().is_empty() {
                return Err(invalid(
                    "onboarding.registry_encryption_public_key",
                    "must be set (base64 SPKI, or staging, preprod, prod) to answer /on_subscribe",
                ));
            }
            crate::crypto::EncryptionKeyPair::from_pkcs8_base64(&self.encryption_private_key)
                .map_err(|e| invalid("onboarding.encryption_private_key", e.to_string()))?;
            ChallengeKey::from_base64(&self.encryption_private_key, self.registry_public_key())
                .map_err(|e| invalid("onboarding.registry_encryption_public_key", e.to_string()))?;
        } else if !self.registry_encryption_public_key.is_empty() {
            crate::crypto::encryption_public_key_from_base64(self.registry_public_key())
                .map_err(|e| invalid("onboarding.registry_encryption_public_key", e.to_string()))?;
        }
        if let Some(n) = self.ops_no
            && !matches!(n, 1 | 2 | 4)
        {
            return Err(invalid(
                "onboarding.ops_no",
                "must be 1 (buyer app), 2 (seller app) or 4 (both)",
            ));
        }
        if !self.callback_url.starts_with('/')
            || self.callback_url.contains(char::is_whitespace)
            || self.callback_url.contains(['?', '#'])
        {
            return Err(invalid(
                "onboarding.callback_url",
                "must be a path starting with '/'",
            ));
        }
        if self
            .city_codes
            .iter()
            .any(|c| c.is_empty() || c.contains(char::is_whitespace))
        {
            return Err(invalid(
                "onboarding.city_codes",
                "each must be a city code such as std:080, or *",
            ));
        }
        if self.domain.trim().is_empty() {
            return Err(invalid("onboarding.domain", "must not be empty"));
        }
        if !self.subscriber_url.is_empty() {
            check_uri("onboarding.subscriber_url", &self.subscriber_url)?;
        }
        for computed in ["subscriber_id", "unique_key_id", "callback_url", "key_pair"] {
            if self.entity_details.contains_key(computed) {
                return Err(invalid(
                    &format!("onboarding.entity_details.{computed}"),
                    "is filled in from the other settings; remove it",
                ));
            }
        }
        let mut times = [None, None];
        for (slot, (key, v)) in times.iter_mut().zip([
            ("onboarding.valid_from", &self.valid_from),
            ("onboarding.valid_until", &self.valid_until),
        ]) {
            if !v.is_empty() {
                *slot = Some(
                    crate::clock::parse_timestamp(v)
                        .ok_or_else(|| invalid(key, "must be an RFC 3339 timestamp"))?,
                );
            }
        }
        if let [Some(from), Some(until)] = times
            && from >= until
        {
            return Err(invalid(
                "onboarding.valid_until",
                "must be after onboarding.valid_from",
            ));
        }
        Ok(())
    }
}

/// Why settings were refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown keys.
    #[error("invalid configuration: {0}")]
    Parse(String),
    /// A value is out of range or inconsistent.
    #[error("invalid setting {key}: {message}")]
    Invalid {
        /// Dotted key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

const ENV_PREFIX: &str = "ONDC_RATING__";

impl Settings {
    /// A participant built in code (the demo, tests): signing as `subscriber_id|unique_key_id`
    /// with `keys`, listening on `bind`, both roles off until the caller enables them.
    pub fn participant(
        subscriber_id: &str,
        unique_key_id: &str,
        keys: &SigningKeyPair,
        bind: String,
        store: StoreSettings,
    ) -> Self {
        Self {
            server: ServerSettings {
                bind,
                log_level: "warn".into(),
                ..ServerSettings::default()
            },
            identity: IdentitySettings {
                subscriber_id: subscriber_id.into(),
                unique_key_id: unique_key_id.into(),
                signing_private_key: keys.private_key_base64(),
                signature_ttl_secs: default_signature_ttl(),
                clock_skew_secs: default_skew(),
                batch_verification: true,
                keys: vec![],
            },
            store,
            buyer: BuyerSettings {
                enabled: false,
                ..BuyerSettings::default()
            },
            seller: SellerSettings {
                enabled: false,
                ..SellerSettings::default()
            },
            registry: RegistrySettings::default(),
            onboarding: OnboardingSettings::default(),
            peers: vec![],
        }
    }

    /// This participant as a peer entry, for another participant's `[[peers]]`.
    pub fn as_peer(&self, keys: &SigningKeyPair) -> PeerSettings {
        PeerSettings {
            subscriber_id: self.identity.subscriber_id.clone(),
            unique_key_id: self.identity.unique_key_id.clone(),
            signing_public_key: keys.public_key_base64(),
        }
    }

    /// Loads a file, applies the process environment, and validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_with_env(&text, std::env::vars())
    }

    /// Parses TOML text, applies the given environment, and validates.
    pub fn from_toml_with_env(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut doc: toml::Table = text
            .parse()
            .map_err(|e| ConfigError::Parse(format!("{e}")))?;
        for (name, value) in env {
            if name == "REDIS_URL" {
                set_path(
                    &mut doc,
                    &["store", "redis_url"],
                    toml::Value::String(value),
                );
            } else if let Some(rest) = name.strip_prefix(ENV_PREFIX) {
                let parts: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
                let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
                set_path(&mut doc, &refs, scalar(&value));
            }
        }
        let settings: Settings = toml::Value::Table(doc)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks ranges and consistency.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let id = &self.identity;
        if id.subscriber_id.trim().is_empty() || id.subscriber_id.contains("://") {
            return Err(invalid(
                "identity.subscriber_id",
                "must be a subscriber id (FQDN-like), not empty and not a URL",
            ));
        }
        if id.subscriber_id.contains('|') || id.unique_key_id.contains('|') {
            return Err(invalid("identity", "ids must not contain '|'"));
        }
        if id.unique_key_id.trim().is_empty() {
            return Err(invalid("identity.unique_key_id", "must not be empty"));
        }
        if !id.signing_private_key.is_empty() {
            SigningKeyPair::from_base64(&id.signing_private_key)
                .map_err(|e| invalid("identity.signing_private_key", e.to_string()))?;
        }
        if !id.keys.is_empty() {
            if !id.signing_private_key.is_empty() {
                return Err(invalid(
                    "identity.signing_private_key",
                    "leave empty when identity.keys lists the keys",
                ));
            }
            for (i, k) in id.keys.iter().enumerate() {
                let at = format!("identity.keys[{i}]");
                if k.unique_key_id.trim().is_empty() || k.unique_key_id.contains('|') {
                    return Err(invalid(&at, "unique_key_id must be non-empty without '|'"));
                }
                if id.keys[..i]
                    .iter()
                    .any(|o| o.unique_key_id == k.unique_key_id)
                {
                    return Err(invalid(&at, "unique_key_id appears twice"));
                }
                SigningKeyPair::from_base64(&k.signing_private_key)
                    .map_err(|e| invalid(&format!("{at}.signing_private_key"), e.to_string()))?;
            }
            if id.active_private_key().is_none() {
                return Err(invalid(
                    "identity.unique_key_id",
                    "must name one of identity.keys (the active signing key)",
                ));
            }
        }
        if !(30..=3600).contains(&id.signature_ttl_secs) {
            return Err(invalid(
                "identity.signature_ttl_secs",
                "must be between 30 and 3600",
            ));
        }
        if !(0..=300).contains(&id.clock_skew_secs) {
            return Err(invalid(
                "identity.clock_skew_secs",
                "must be between 0 and 300",
            ));
        }
        if !(1..=65536).contains(&self.store.cache_mib) {
            return Err(invalid("store.cache_mib", "must be between 1 and 65536"));
        }
        if self.store.backup_every_secs > 0 {
            if self.store.backup_every_secs > 7 * 86_400 {
                return Err(invalid(
                    "store.backup_every_secs",
                    "must be between 0 and 604800 (a week)",
                ));
            }
            if self.store.backup_dir.as_os_str().is_empty() {
                return Err(invalid(
                    "store.backup_every_secs",
                    "needs store.backup_dir, where the backups go",
                ));
            }
            if self.store.backend != StoreBackend::Embedded {
                return Err(invalid(
                    "store.backup_every_secs",
                    "backs up the embedded store only (Redis keeps its own persistence)",
                ));
            }
        }
        for (i, node) in self.store.redis_cluster_nodes.iter().enumerate() {
            if !(node.starts_with("redis://") || node.starts_with("rediss://")) {
                return Err(invalid(
                    &format!("store.redis_cluster_nodes[{i}]"),
                    "must be a redis:// or rediss:// URL",
                ));
            }
        }
        if self.server.max_body_bytes < 1024 {
            return Err(invalid("server.max_body_bytes", "must be at least 1024"));
        }
        let ceiling = crate::http::limits::MAX_HEADER_BYTES_CEILING;
        if !(1024..=ceiling).contains(&self.server.max_header_bytes) {
            return Err(invalid(
                "server.max_header_bytes",
                format!("must be between 1024 and {ceiling}"),
            ));
        }
        if self.server.background_threads > MAX_BACKGROUND_THREADS {
            return Err(invalid(
                "server.background_threads",
                format!("must be at most {MAX_BACKGROUND_THREADS} (0: from the cores)"),
            ));
        }
        if self.server.workers > MAX_WORKERS {
            return Err(invalid(
                "server.workers",
                format!("must be at most {MAX_WORKERS} (0: one per core)"),
            ));
        }
        if !(1..=MAX_BACKLOG).contains(&self.server.backlog) {
            return Err(invalid(
                "server.backlog",
                format!("must be between 1 and {MAX_BACKLOG}"),
            ));
        }
        if self.buyer.enabled {
            check_uri("buyer.bap_uri", &self.buyer.bap_uri)?;
            if self.buyer.callback_wait_ms > 30_000 {
                return Err(invalid(
                    "buyer.callback_wait_ms",
                    "must not exceed the 30 s rating ttl",
                ));
            }
            if self.buyer.acknowledged_write_delay_ms > 30_000 {
                return Err(invalid(
                    "buyer.acknowledged_write_delay_ms",
                    "must not exceed the 30 s rating ttl",
                ));
            }
            if self.buyer.max_waiting == 0 {
                return Err(invalid("buyer.max_waiting", "must be at least 1"));
            }
            if self.buyer.max_in_flight_per_seller == 0 {
                return Err(invalid(
                    "buyer.max_in_flight_per_seller",
                    "must be at least 1",
                ));
            }
            if !(1..=10).contains(&self.buyer.send_attempts) {
                return Err(invalid("buyer.send_attempts", "must be between 1 and 10"));
            }
            if self.buyer.jwt_hs256_secret.is_empty() && self.buyer.jwt_eddsa_public_keys.is_empty()
            {
                return Err(invalid(
                    "buyer.jwt_hs256_secret",
                    "set an HS256 secret or EdDSA public keys so buyer tokens can be checked",
                ));
            }
            for (key, list) in [
                ("buyer.jwt_audience", &self.buyer.jwt_audience),
                ("buyer.jwt_issuers", &self.buyer.jwt_issuers),
            ] {
                if list.iter().any(|v| v.trim().is_empty()) {
                    return Err(invalid(key, "entries must not be blank"));
                }
            }
            if !self.buyer.jwt_hs256_secret.is_empty() && self.buyer.jwt_hs256_secret.len() < 16 {
                return Err(invalid(
                    "buyer.jwt_hs256_secret",
                    "must be at least 16 bytes",
                ));
            }
            for k in &self.buyer.jwt_eddsa_public_keys {
                verifying_key_from_base64(k)
                    .map_err(|e| invalid("buyer.jwt_eddsa_public_keys", e.to_string()))?;
            }
            if self.buyer.internal_token.len() < 16 {
                return Err(invalid(
                    "buyer.internal_token",
                    "must be at least 16 characters",
                ));
            }
            self.buyer.validate_notifications()?;
        }
        if self.seller.enabled {
            check_uri("seller.bpp_uri", &self.seller.bpp_uri)?;
            if !self.seller.feedback_form_url.is_empty() {
                check_uri("seller.feedback_form_url", &self.seller.feedback_form_url)?;
            }
            if !matches!(
                self.seller.feedback_form_mime_type.as_str(),
                "text/html" | "application/xml"
            ) {
                return Err(invalid(
                    "seller.feedback_form_mime_type",
                    "must be text/html or application/xml",
                ));
            }
            self.seller.validate_business()?;
        }
        if !self.registry.url.is_empty() {
            check_uri("registry.url", &self.registry.url)?;
        }
        if !(1..=10).contains(&self.registry.attempts) {
            return Err(invalid("registry.attempts", "must be between 1 and 10"));
        }
        if self.registry.cache_capacity == 0 {
            return Err(invalid("registry.cache_capacity", "must be at least 1"));
        }
        if !self.buyer.enabled && !self.seller.enabled {
            return Err(invalid("buyer.enabled", "enable at least one role"));
        }
        self.onboarding.validate(&self.identity)?;
        for (i, p) in self.peers.iter().enumerate() {
            verifying_key_from_base64(&p.signing_public_key)
                .map_err(|e| invalid(&format!("peers[{i}].signing_public_key"), e.to_string()))?;
            if p.subscriber_id.is_empty() || p.unique_key_id.is_empty() {
                return Err(invalid(&format!("peers[{i}]"), "ids must not be empty"));
            }
        }
        Ok(())
    }
}

fn check_uri(key: &str, uri: &str) -> Result<(), ConfigError> {
    let parsed = reqwest::Url::parse(uri).map_err(|e| invalid(key, e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(invalid(key, "must be an http(s) URL"));
    }
    Ok(())
}

/// The path part of a base URI without its trailing slash ("" for the root).
pub fn uri_path(uri: &str) -> String {
    reqwest::Url::parse(uri)
        .map(|u| u.path().trim_end_matches('/').to_owned())
        .unwrap_or_default()
}

fn scalar(raw: &str) -> toml::Value {
    if let Ok(b) = raw.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    toml::Value::String(raw.to_owned())
}

fn set_path(doc: &mut toml::Table, path: &[&str], value: toml::Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut table = doc;
    for p in parents {
        let entry = table
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        table = entry.as_table_mut().expect("just made a table");
    }
    table.insert(last.to_string(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: &str = include_str!("../config/default.toml");

    #[test]
    fn shipped_default_is_valid_and_embedded() {
        let s = Settings::from_toml_with_env(DEFAULT, []).unwrap();
        assert_eq!(s.store.backend, StoreBackend::Embedded);
        assert!(s.buyer.enabled && s.seller.enabled);
        assert!(s.server.bind.starts_with("127.0.0.1:"));
    }

    #[test]
    fn background_threads_default_to_a_quarter_of_the_cores_and_are_bounded() {
        let mut s = Settings::from_toml_with_env(DEFAULT, []).unwrap();
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(s.server.background_threads, 0);
        assert_eq!(s.server.background_worker_threads(), (cores / 4).max(1));
        s.server.background_threads = 3;
        assert_eq!(s.server.background_worker_threads(), 3);
        let env = [(
            "ONDC_RATING__SERVER__BACKGROUND_THREADS".to_string(),
            (MAX_BACKGROUND_THREADS + 1).to_string(),
        )];
        let e = Settings::from_toml_with_env(DEFAULT, env).unwrap_err();
        assert!(e.to_string().contains("server.background_threads"), "{e}");
    }

    #[test]
    fn the_listen_backlog_defaults_above_a_burst_and_is_bounded() {
        let s = Settings::from_toml_with_env(DEFAULT, []).unwrap();
        assert_eq!(s.server.backlog, DEFAULT_BACKLOG);
        for bad in ["0", "65536", "-1"] {
            let env = [("ONDC_RATING__SERVER__BACKLOG".to_string(), bad.to_string())];
            let e = Settings::from_toml_with_env(DEFAULT, env).unwrap_err();
            assert!(e.to_string().contains("backlog"), "{bad}: {e}");
        }
        let env = [(
            "ONDC_RATING__SERVER__BACKLOG".to_string(),
            "4096".to_string(),
        )];
        let s = Settings::from_toml_with_env(DEFAULT, env).unwrap();
        assert_eq!(s.server.backlog, 4096);
    }

    #[test]
    fn environment_overrides_the_file() {
        let env = [
            (
                "ONDC_RATING__STORE__BACKEND".to_string(),
                "redis".to_string(),
            ),
            (
                "REDIS_URL".to_string(),
                "redis://127.0.0.1:7000/".to_string(),
            ),
            (
                "ONDC_RATING__BUYER__CALLBACK_WAIT_MS".to_string(),
                "1500".to_string(),
            ),
            (
                "ONDC_RATING__STORE__REDIS_CLUSTER_NODES".to_string(),
                "redis://127.0.0.1:7001/, redis://127.0.0.1:7002/".to_string(),
            ),
        ];
        let s = Settings::from_toml_with_env(DEFAULT, env).unwrap();
        assert_eq!(s.store.backend, StoreBackend::Redis);
        assert_eq!(s.store.redis_url, "redis://127.0.0.1:7000/");
        assert_eq!(s.buyer.callback_wait_ms, 1500);
        assert_eq!(
            s.store.redis_cluster_nodes,
            ["redis://127.0.0.1:7001/", "redis://127.0.0.1:7002/"]
        );
    }

    #[test]
    fn refuses_bad_values_with_the_key_named() {
        let cases = [
            (
                "ONDC_RATING__BUYER__CALLBACK_WAIT_MS",
                "31000",
                "buyer.callback_wait_ms",
            ),
            (
                "ONDC_RATING__IDENTITY__SUBSCRIBER_ID",
                "https://x.example",
                "identity.subscriber_id",
            ),
            (
                "ONDC_RATING__IDENTITY__SIGNING_PRIVATE_KEY",
                "AAAA",
                "identity.signing_private_key",
            ),
            (
                "ONDC_RATING__SELLER__BPP_URI",
                "not a url",
                "seller.bpp_uri",
            ),
            (
                "ONDC_RATING__SERVER__LOG_FORMAT",
                "xml",
                "server.log_format",
            ),
            (
                "ONDC_RATING__STORE__REDIS_CLUSTER_NODES",
                "redis://127.0.0.1:7001/,127.0.0.1:7002",
                "store.redis_cluster_nodes[1]",
            ),
        ];
        for (k, v, key) in cases {
            let err = Settings::from_toml_with_env(DEFAULT, [(k.to_string(), v.to_string())])
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{err}");
        }
        let err = Settings::from_toml_with_env(&format!("{DEFAULT}\n[oops]\n"), [])
            .unwrap_err()
            .to_string();
        assert!(err.contains("oops"), "{err}");
    }

    #[test]
    fn the_active_key_is_the_one_unique_key_id_names() {
        let k1 = SigningKeyPair::generate().unwrap().private_key_base64();
        let k2 = SigningKeyPair::generate().unwrap().private_key_base64();
        let with_keys = |active: &str, own: &str| {
            DEFAULT
                .replace(
                    "unique_key_id = \"dev-1\"",
                    &format!("unique_key_id = \"{active}\""),
                )
                .replace("signing_private_key = \"\"", own)
                + &format!(
                    "\n[[identity.keys]]\nunique_key_id = \"k1\"\nsigning_private_key = \"{k1}\"\n\
                     [[identity.keys]]\nunique_key_id = \"k2\"\nsigning_private_key = \"{k2}\"\n"
                )
        };
        let s = Settings::from_toml_with_env(&with_keys("k2", ""), []).unwrap();
        assert_eq!(s.identity.active_private_key(), Some(k2.as_str()));
        let s = Settings::from_toml_with_env(&with_keys("k1", ""), []).unwrap();
        assert_eq!(s.identity.active_private_key(), Some(k1.as_str()));
        let err = Settings::from_toml_with_env(&with_keys("k3", ""), []).unwrap_err();
        assert!(err.to_string().contains("identity.unique_key_id"), "{err}");
        let both = format!("signing_private_key = \"{k1}\"");
        let err = Settings::from_toml_with_env(&with_keys("k1", &both), []).unwrap_err();
        assert!(err.to_string().contains("leave empty"), "{err}");
    }

    #[test]
    fn seller_business_settings_are_checked() {
        let s = Settings::from_toml_with_env(DEFAULT, []).unwrap();
        assert_eq!(s.seller.accepted().len(), 5);
        assert!(!s.seller.allow_decimal_values);
        assert_eq!(s.seller.on_rating, OnRatingMode::Auto);
        let env = |k: &str, v: &str| [(format!("ONDC_RATING__SELLER__{k}"), v.to_string())];
        let s = Settings::from_toml_with_env(DEFAULT, env("ON_RATING", "platform")).unwrap();
        assert_eq!(s.seller.on_rating, OnRatingMode::Platform);
        let s = Settings::from_toml_with_env(DEFAULT, env("ACCEPTED_CATEGORIES", "order, ITEM"))
            .unwrap();
        assert_eq!(
            s.seller.accepted(),
            [
                crate::protocol::RatingCategory::Order,
                crate::protocol::RatingCategory::Item
            ]
        );
        let cases = [
            (
                "ACCEPTED_CATEGORIES",
                "Order,Packaging",
                "seller.accepted_categories[1]",
            ),
            ("ACCEPTED_CATEGORIES", "", "seller.accepted_categories"),
            ("WEBHOOK_URL", "ftp://x", "seller.webhook_url"),
            (
                "WEBHOOK_URL",
                "https://platform.example/hook",
                "seller.webhook_secret",
            ),
            ("WEBHOOK_TIMEOUT_MS", "25000", "seller.webhook_timeout_ms"),
            ("WEBHOOK_ATTEMPTS", "0", "seller.webhook_attempts"),
            ("WEBHOOK_CONCURRENCY", "0", "seller.webhook_concurrency"),
            ("WEBHOOK_CONCURRENCY", "4097", "seller.webhook_concurrency"),
            ("RESUME_CONCURRENCY", "0", "seller.resume_concurrency"),
            ("RETENTION_DAYS", "36501", "seller.retention_days"),
            ("RETENTION_DAYS", "-1", "seller.retention_days"),
            ("RETENTION_SWEEP_MS", "5", "seller.retention_sweep_ms"),
            ("ON_RATING", "later", "seller.on_rating"),
        ];
        for (k, v, key) in cases {
            let err = Settings::from_toml_with_env(DEFAULT, env(k, v))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{k}={v}: {err}");
        }
    }

    #[test]
    fn notification_settings_are_checked() {
        let env = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (format!("ONDC_RATING__BUYER__{k}"), v.to_string()))
                .collect::<Vec<_>>()
        };
        let ok = [
            ("NOTIFY_WEBHOOK_URL", "https://platform.example/events"),
            ("NOTIFY_WEBHOOK_SECRET", "sixteen-bytes-at-least"),
            ("NOTIFY_SMTP", "127.0.0.1:2525"),
            ("NOTIFY_EMAIL_FROM", "ratings@buyer.example"),
            ("NOTIFY_EMAIL_TO", "support@seller.example"),
        ];
        let s = Settings::from_toml_with_env(DEFAULT, env(&ok)).unwrap();
        assert_eq!(s.buyer.notify_smtp, "127.0.0.1:2525");
        let cases = [
            (
                ("NOTIFY_WEBHOOK_URL", "ftp://x"),
                "buyer.notify_webhook_url",
            ),
            (
                ("NOTIFY_WEBHOOK_SECRET", "short"),
                "buyer.notify_webhook_secret",
            ),
            (("NOTIFY_SMTP", "localhost"), "buyer.notify_smtp"),
            (("NOTIFY_SMTP", "localhost:0"), "buyer.notify_smtp"),
            (("NOTIFY_EMAIL_FROM", "nobody"), "buyer.notify_email_from"),
            (
                ("NOTIFY_EMAIL_TO", "a@b.example\r\nRCPT TO:<c@d>"),
                "buyer.notify_email_to",
            ),
            (("NOTIFY_CONCURRENCY", "0"), "buyer.notify_concurrency"),
            (("NOTIFY_CONCURRENCY", "1025"), "buyer.notify_concurrency"),
            (("NOTIFY_RETRY_HOURS", "721"), "buyer.notify_retry_hours"),
            (
                ("NOTIFY_RETRY_AFTER_MS", "99"),
                "buyer.notify_retry_after_ms",
            ),
            (
                ("NOTIFY_RETRY_AFTER_MS", "3600001"),
                "buyer.notify_retry_after_ms",
            ),
            (
                ("NOTIFY_GIVEN_UP_DAYS", "3651"),
                "buyer.notify_given_up_days",
            ),
        ];
        for ((k, v), key) in cases {
            let mut pairs = ok.to_vec();
            pairs.retain(|(o, _)| *o != k);
            pairs.push((k, v));
            let err = Settings::from_toml_with_env(DEFAULT, env(&pairs))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{k}={v}: {err}");
        }
    }

    #[test]
    fn scheduled_backups_need_the_embedded_store_and_a_directory() {
        let env = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (format!("ONDC_RATING__STORE__{k}"), v.to_string()))
                .collect::<Vec<_>>()
        };
        let ok = [("BACKUP_DIR", "backups"), ("BACKUP_EVERY_SECS", "3600")];
        let s = Settings::from_toml_with_env(DEFAULT, env(&ok)).unwrap();
        assert_eq!(s.store.backup_every_secs, 3600);
        assert_eq!(s.store.backup_keep, 0, "every backup kept unless told");
        for (pairs, why) in [
            (
                &[("BACKUP_EVERY_SECS", "3600")][..],
                "needs store.backup_dir",
            ),
            (
                &[("BACKUP_DIR", "b"), ("BACKUP_EVERY_SECS", "604801")][..],
                "a week",
            ),
            (
                &[
                    ("BACKUP_DIR", "b"),
                    ("BACKUP_EVERY_SECS", "60"),
                    ("BACKEND", "redis"),
                ][..],
                "embedded store only",
            ),
        ] {
            let err = Settings::from_toml_with_env(DEFAULT, env(pairs))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("store.backup_every_secs") && err.contains(why),
                "{err}"
            );
        }
    }

    #[test]
    fn uri_path_is_the_mount_point() {
        assert_eq!(uri_path("http://127.0.0.1:8080/bap/"), "/bap");
        assert_eq!(uri_path("https://seller.example"), "");
    }

    const ENCRYPTION_PRIVATE: &str =
        "MC4CAQAwBQYDK2VuBCIEIKh1Dq7Fu82lqQdBQJTHTvBTxtD6hLconopqvVLVy81s";
    const SIGNING_PRIVATE: &str =
        "8pPXr0Y4iwG590D9h2XJ+LAk2vXiOAVS0If7ep1FAqd9AK2I1RKLvAju6cr4g2HLfkU9yee/AAsXX1/UmsuScg==";

    fn with_onboarding(section: &str) -> Result<Settings, ConfigError> {
        let text = DEFAULT.replace(
            "signing_private_key = \"\"",
            &format!("signing_private_key = \"{SIGNING_PRIVATE}\""),
        );
        Settings::from_toml_with_env(&format!("{text}\n[onboarding]\n{section}\n"), [])
    }

    #[test]
    fn onboarding_is_off_by_default_and_reads_a_full_section() {
        let s = Settings::from_toml_with_env(DEFAULT, []).unwrap();
        assert!(s.onboarding.request_id.is_empty());
        assert!(s.onboarding.encryption_private_key.is_empty());
        assert_eq!(s.onboarding.callback_url, "/");

        let s = with_onboarding(&format!(
            "request_id = \"r-1\"\nencryption_private_key = \"{ENCRYPTION_PRIVATE}\"\n\
             registry_encryption_public_key = \"preprod\"\nops_no = 2\n\
             city_codes = [\"std:080\", \"*\"]\nvalid_from = \"2026-01-01T00:00:00.000Z\"\n\
             [onboarding.entity_details]\ncountry = \"IND\"\n"
        ))
        .unwrap();
        assert_eq!(s.onboarding.ops_no, Some(2));
        assert_eq!(
            s.onboarding.registry_public_key(),
            "MCowBQYDK2VuAyEAa9Wbpvd9SsrpOZFcynyt/TO3x0Yrqyys4NUGIvyxX2Q="
        );
        assert_eq!(s.onboarding.entity_details["country"].as_str(), Some("IND"));
    }

    #[test]
    fn refuses_bad_onboarding_settings_with_the_key_named() {
        let key = format!("encryption_private_key = \"{ENCRYPTION_PRIVATE}\"\n");
        let cases = [
            (key.clone(), "onboarding.registry_encryption_public_key"),
            (
                format!("{key}registry_encryption_public_key = \"qa\""),
                "onboarding.registry_encryption_public_key",
            ),
            (
                "encryption_private_key = \"AAAA\"\nregistry_encryption_public_key = \"prod\""
                    .into(),
                "onboarding.encryption_private_key",
            ),
            ("ops_no = 3".into(), "onboarding.ops_no"),
            ("callback_url = \"ondc\"".into(), "onboarding.callback_url"),
            ("city_codes = [\"std 080\"]".into(), "onboarding.city_codes"),
            (
                "subscriber_url = \"np.example\"".into(),
                "onboarding.subscriber_url",
            ),
            (
                "valid_until = \"tomorrow\"".into(),
                "onboarding.valid_until",
            ),
            (
                "valid_from = \"2026-02-01T00:00:00Z\"\nvalid_until = \"2026-01-01T00:00:00Z\""
                    .into(),
                "onboarding.valid_until",
            ),
            ("request_id = \" r \"".into(), "onboarding.request_id"),
            (
                "[onboarding.entity_details]\nkey_pair = \"x\"".into(),
                "onboarding.entity_details.key_pair",
            ),
            ("colour = \"red\"".into(), "colour"),
        ];
        for (section, key) in cases {
            let err = with_onboarding(&section).unwrap_err().to_string();
            assert!(err.contains(key), "{section}: {err}");
        }
        // The site verification page must be signed by the registered key, not a generated one.
        let err = Settings::from_toml_with_env(
            &format!("{DEFAULT}\n[onboarding]\nrequest_id = \"r-1\"\n"),
            [],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("identity.signing_private_key"), "{err}");
    }
}

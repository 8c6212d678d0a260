//! Finding a network participant's signing key by (subscriber_id, unique_key_id).
//!
//! Order: static `[[peers]]` (and this process's own key), then the ONDC registry behind two cache
//! levels: process memory (bounded, single-flight per key, so a burst for one unknown key makes one
//! registry call) in front of the shared store (Redis or redb), so instances share what one of them
//! looked up. A found key is cached for `cache_ttl_secs` but never past its `valid_until`; a miss
//! only for `miss_ttl_secs`. Registry errors, timeouts and 429s get a bounded retry and then an
//! error the caller turns into a NACK, never a 500.

mod record;
pub mod server;

pub use record::SubscriberRecord;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::clock::SharedClock;
use crate::config::{LookupApi, RegistrySettings, Settings};
use crate::crypto::{SigningKeyPair, verifying_key_from_base64};
use crate::http::metrics::{CacheResult, Metrics, RetryTarget};
use crate::http::outbound::Outbound;
use crate::store::Store;

/// Where a key came from; a cached key that fails verification is looked up again once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// `[[peers]]` or our own key.
    Static,
    /// A cache level.
    Cache,
    /// The registry, just now.
    Registry,
}

/// A key and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct FoundKey {
    /// The Ed25519 key.
    pub key: VerifyingKey,
    /// Its source.
    pub source: KeySource,
}

/// The registry could not answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("registry unavailable: {0}")]
pub struct LookupError(pub String);

/// A cached lookup result, shared between instances through the store.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Cached {
    #[serde(with = "opt_key")]
    key: Option<VerifyingKey>,
    /// Unix milliseconds after which the entry is stale.
    expires_at: i64,
    /// Unix milliseconds when the registry was asked.
    fetched_at: i64,
}

mod opt_key {
    use ed25519_dalek::VerifyingKey;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(k: &Option<VerifyingKey>, s: S) -> Result<S::Ok, S::Error> {
        match k {
            Some(k) => s.serialize_some(&crate::crypto::b64_encode(k.to_bytes())),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<VerifyingKey>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| crate::crypto::verifying_key_from_base64(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

struct Remote {
    settings: RegistrySettings,
    /// `registry.url`, for the readiness probe.
    base: String,
    url: String,
    outbound: Outbound,
    store: Store,
    clock: SharedClock,
    memory: Mutex<HashMap<String, Cached>>,
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    calls: AtomicU64,
    metrics: Arc<Metrics>,
}

/// Signing keys of network participants.
#[derive(Clone)]
pub struct Registry {
    statics: Arc<HashMap<(String, String), VerifyingKey>>,
    remote: Option<Arc<Remote>>,
}

impl Registry {
    /// Static peers plus our own key; the registry too when `registry.url` is set.
    pub fn new(
        settings: &Settings,
        own: &SigningKeyPair,
        outbound: Outbound,
        store: Store,
        clock: SharedClock,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mut keys = HashMap::new();
        for p in &settings.peers {
            // validate() already checked every key decodes.
            if let Ok(k) = verifying_key_from_base64(&p.signing_public_key) {
                keys.insert((p.subscriber_id.clone(), p.unique_key_id.clone()), k);
            }
        }
        keys.insert(
            (
                settings.identity.subscriber_id.clone(),
                settings.identity.unique_key_id.clone(),
            ),
            own.verifying_key(),
        );
        let remote = (!settings.registry.url.is_empty()).then(|| {
            let base = settings.registry.url.trim_end_matches('/');
            let url = match settings.registry.lookup {
                LookupApi::V2 => format!("{base}/v2.0/lookup"),
                LookupApi::Legacy => format!("{base}/lookup"),
            };
            Arc::new(Remote {
                settings: settings.registry.clone(),
                base: base.to_owned(),
                url,
                outbound,
                store,
                clock,
                memory: Mutex::default(),
                flights: Mutex::default(),
                calls: AtomicU64::new(0),
                metrics,
            })
        });
        Self {
            statics: Arc::new(keys),
            remote,
        }
    }

    /// The key for `(subscriber_id, unique_key_id)`, from the first level that has it.
    pub async fn lookup(
        &self,
        subscriber_id: &str,
        unique_key_id: &str,
    ) -> Result<Option<FoundKey>, LookupError> {
        self.find(subscriber_id, unique_key_id, false).await
    }

    /// Asks the registry again, skipping the caches (after a cached key failed to verify: the
    /// peer may have rotated it). Concurrent refreshes of one key make one registry call.
    pub async fn refresh(
        &self,
        subscriber_id: &str,
        unique_key_id: &str,
    ) -> Result<Option<FoundKey>, LookupError> {
        self.find(subscriber_id, unique_key_id, true).await
    }

    /// None without `registry.url`; otherwise whether the registry answers at all (any HTTP
    /// status counts), within the lookup timeout and at most 2 s.
    pub async fn probe(&self) -> Option<Result<(), String>> {
        let remote = self.remote.as_ref()?;
        let timeout = Duration::from_millis(remote.settings.timeout_ms.min(2_000));
        Some(
            remote
                .outbound
                .reachable(&remote.base, timeout)
                .await
                .map(drop),
        )
    }

    /// How many registry calls this process made (lookups, not cache hits).
    pub fn registry_calls(&self) -> u64 {
        self.remote
            .as_ref()
            .map_or(0, |r| r.calls.load(Ordering::Relaxed))
    }

    async fn find(
        &self,
        subscriber_id: &str,
        unique_key_id: &str,
        fresh: bool,
    ) -> Result<Option<FoundKey>, LookupError> {
        if let Some(k) = self
            .statics
            .get(&(subscriber_id.to_owned(), unique_key_id.to_owned()))
        {
            return Ok(Some(FoundKey {
                key: *k,
                source: KeySource::Static,
            }));
        }
        let Some(remote) = &self.remote else {
            return Ok(None);
        };
        remote.find(subscriber_id, unique_key_id, fresh).await
    }
}

fn found(c: &Cached, source: KeySource) -> Option<FoundKey> {
    c.key.map(|key| FoundKey { key, source })
}

impl Remote {
    fn cache_key(sub: &str, ukid: &str) -> String {
        format!("{sub}|{ukid}")
    }

    fn remembered(&self, key: &str) -> Option<Cached> {
        let now = self.clock.now().timestamp_millis();
        let memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        memory.get(key).filter(|c| c.expires_at > now).copied()
    }

    fn remember(&self, key: &str, c: Cached) {
        let now = self.clock.now().timestamp_millis();
        let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        if memory.len() >= self.settings.cache_capacity && !memory.contains_key(key) {
            memory.retain(|_, v| v.expires_at > now);
            if memory.len() >= self.settings.cache_capacity {
                // Still full of live entries: drop the one closest to expiry.
                if let Some(victim) = memory
                    .iter()
                    .min_by_key(|(_, v)| v.expires_at)
                    .map(|(k, _)| k.clone())
                {
                    memory.remove(&victim);
                }
            }
        }
        memory.insert(key.to_owned(), c);
    }

    async fn find(
        &self,
        sub: &str,
        ukid: &str,
        fresh: bool,
    ) -> Result<Option<FoundKey>, LookupError> {
        let key = Self::cache_key(sub, ukid);
        let asked_at = self.clock.now().timestamp_millis();
        if !fresh && let Some(c) = self.remembered(&key) {
            self.metrics.registry_cache(CacheResult::HitMemory);
            return Ok(found(&c, KeySource::Cache));
        }
        // One flight per key: whoever holds the lock asks, the rest read what it cached.
        let flight = {
            let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            flights.entry(key.clone()).or_default().clone()
        };
        let _guard = flight.lock().await;
        if let Some(c) = self.remembered(&key) {
            // A refresh is skipped when another caller just did one, and when the entry is
            // younger than refresh_interval_secs: a stream of badly signed requests must not
            // turn into a stream of registry calls.
            let min_age = (self.settings.refresh_interval_secs as i64).saturating_mul(1000);
            if !fresh || c.fetched_at >= asked_at || asked_at - c.fetched_at < min_age {
                self.metrics.registry_cache(CacheResult::HitMemory);
                return Ok(found(&c, KeySource::Cache));
            }
        }
        if !fresh {
            match self.store.get_cached_key(&key).await {
                Ok(Some(bytes)) => {
                    if let Ok(c) = serde_json::from_slice::<Cached>(&bytes)
                        && c.expires_at > asked_at
                    {
                        self.remember(&key, c);
                        self.metrics.registry_cache(CacheResult::HitStore);
                        return Ok(found(&c, KeySource::Cache));
                    }
                }
                Ok(None) => {}
                // The shared cache is an optimisation: without it, ask the registry.
                Err(e) => tracing::warn!(error = %e, "key cache unavailable"),
            }
        }
        self.metrics.registry_cache(CacheResult::Lookup);
        let record = self.ask_registry(sub, ukid).await?;
        let now = self.clock.now();
        let now_ms = now.timestamp_millis();
        let key_bytes = record.as_ref().and_then(|r| {
            verifying_key_from_base64(&r.signing_public_key)
                .inspect_err(|e| tracing::warn!(sub, ukid, error = %e, "registry key unusable"))
                .ok()
        });
        if key_bytes.is_none() {
            self.metrics.registry_cache(CacheResult::Miss);
        }
        let ttl_ms = match (&key_bytes, record.as_ref().and_then(|r| r.valid_until())) {
            (Some(_), until) => {
                let ttl = i64::try_from(self.settings.cache_ttl_secs)
                    .unwrap_or(i64::MAX / 2_000)
                    .saturating_mul(1000);
                until.map_or(ttl, |u| ttl.min((u - now).num_milliseconds()))
            }
            (None, _) => (self.settings.miss_ttl_secs as i64).saturating_mul(1000),
        }
        .max(0);
        let c = Cached {
            key: key_bytes,
            expires_at: now_ms.saturating_add(ttl_ms),
            fetched_at: now_ms,
        };
        if ttl_ms > 0 {
            self.remember(&key, c);
            let bytes = serde_json::to_vec(&c).expect("cache entry serialises");
            if let Err(e) = self
                .store
                .put_cached_key(&key, bytes, Duration::from_millis(ttl_ms as u64))
                .await
            {
                tracing::warn!(error = %e, "could not share a looked-up key");
            }
        }
        Ok(found(&c, KeySource::Registry))
    }

    /// One lookup with bounded retries; Ok(None) when the registry has no usable record.
    async fn ask_registry(
        &self,
        sub: &str,
        ukid: &str,
    ) -> Result<Option<SubscriberRecord>, LookupError> {
        let body = actix_web::web::Bytes::from(
            serde_json::to_vec(&serde_json::json!({
                "country": crate::protocol::COUNTRY,
                "subscriber_id": sub,
                "ukId": ukid,
            }))
            .expect("lookup body serialises"),
        );
        let auth = match self.settings.lookup {
            LookupApi::V2 => Some(self.outbound.authorization(&body)),
            LookupApi::Legacy => None,
        };
        let timeout = Duration::from_millis(self.settings.timeout_ms);
        let mut last = String::new();
        for attempt in 0..self.settings.attempts {
            if attempt > 0 {
                self.metrics.retry(RetryTarget::Registry);
                tokio::time::sleep(Duration::from_millis(100 << (attempt - 1).min(4))).await;
            }
            self.calls.fetch_add(1, Ordering::Relaxed);
            let answer = self
                .outbound
                .post_raw(&self.url, body.clone(), auth.as_deref(), timeout)
                .await;
            match answer {
                Err(e) => last = e.to_string(),
                Ok(a) if a.status == 429 || a.status >= 500 => {
                    last = format!("HTTP {}", a.status);
                    if let Some(wait) = a.retry_after {
                        tokio::time::sleep(wait.min(Duration::from_secs(2))).await;
                    }
                }
                Ok(a) if a.status == 404 => return Ok(None),
                Ok(a) if (200..300).contains(&a.status) => {
                    let records = SubscriberRecord::parse_response(&a.body).ok_or_else(|| {
                        LookupError("lookup answer is not a JSON array of records".into())
                    })?;
                    let now = self.clock.now();
                    return Ok(records.into_iter().find(|r| {
                        r.subscriber_id == sub && r.unique_key_id == ukid && r.usable_at(now)
                    }));
                }
                Ok(a) => {
                    return Err(LookupError(format!(
                        "lookup refused: HTTP {} {}",
                        a.status,
                        String::from_utf8_lossy(&a.body[..a.body.len().min(200)])
                    )));
                }
            }
            tracing::warn!(attempt = attempt + 1, error = %last, sub, ukid, "registry lookup failed");
        }
        Err(LookupError(last))
    }
}

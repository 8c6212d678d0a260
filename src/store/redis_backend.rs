//! The Redis backend. Keys are `{prefix}{space}:{key}`, so several deployments or test runs share
//! one server. The claim is a Lua script: Redis runs it atomically, so of any number of concurrent
//! claims on one order, across any number of instances, exactly one wins.

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use std::time::Duration;

use super::{Space, StoreError};

/// Claim script. KEYS[1] rating key, KEYS[2] message index key; ARGV[1] record, ARGV[2] order id.
/// Returns the existing record when the order is taken (a record whose status is not "failed"),
/// nil when the claim was written.
const CLAIM: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, rec = pcall(cjson.decode, cur)
  if not (ok and type(rec) == 'table' and rec['status'] == 'failed') then
    return cur
  end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
return false
"#;

/// A Redis-backed store.
#[derive(Clone)]
pub struct RedisStore {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    claim: redis::Script,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl RedisStore {
    /// Connects; fails when the server does not answer.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        // Short timeouts: while Redis is down, buyer requests must fail fast rather than hang.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2);
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(unavailable)?;
        Ok(Self {
            client,
            conn,
            prefix: prefix.to_owned(),
            claim: redis::Script::new(CLAIM),
        })
    }

    /// The pub/sub channel that carries "a callback was stored for message_id" between instances.
    fn callback_channel(&self) -> String {
        format!("{}callbacks", self.prefix)
    }

    /// Tells every instance that the callback for `message_id` is stored.
    pub(super) async fn announce_callback(&self, message_id: &str) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        redis::cmd("PUBLISH")
            .arg(self.callback_channel())
            .arg(message_id)
            .query_async::<i64>(&mut c)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    /// Calls `on_announce` with every announced message_id until the returned task is dropped or
    /// aborted. One subscription per instance (not one per waiting request); it reconnects with
    /// backoff after Redis goes away. Announcements made while it is disconnected are lost, which
    /// is why a waiting request also reads the store at its deadline.
    pub(super) fn listen_for_callbacks(
        &self,
        on_announce: impl Fn(&str) + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        use futures_util::StreamExt;
        let client = self.client.clone();
        let channel = self.callback_channel();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            loop {
                match client.get_async_pubsub().await {
                    Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                        Ok(()) => {
                            delay = Duration::from_millis(100);
                            let mut messages = pubsub.into_on_message();
                            while let Some(msg) = messages.next().await {
                                if let Ok(id) = std::str::from_utf8(msg.get_payload_bytes()) {
                                    on_announce(id);
                                }
                            }
                            tracing::warn!("callback channel closed; resubscribing");
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot subscribe to callbacks"),
                    },
                    Err(e) => tracing::warn!(error = %e, "cannot connect for callbacks"),
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        })
    }

    fn key(&self, space: Space, key: &str) -> String {
        format!("{}{}:{}", self.prefix, space.name(), key)
    }

    pub(super) async fn get(&self, space: Space, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut c = self.conn.clone();
        c.get(self.key(space, key)).await.map_err(unavailable)
    }

    pub(super) async fn put(
        &self,
        space: Space,
        key: &str,
        value: Vec<u8>,
    ) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        c.set(self.key(space, key), value)
            .await
            .map_err(unavailable)
    }

    pub(super) async fn put_expiring(
        &self,
        space: Space,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        redis::cmd("SET")
            .arg(self.key(space, key))
            .arg(value)
            .arg("PX")
            .arg(ms)
            .query_async(&mut c)
            .await
            .map_err(unavailable)
    }

    pub(super) async fn delete(&self, space: Space, key: &str) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        c.del::<_, ()>(self.key(space, key))
            .await
            .map_err(unavailable)
    }

    pub(super) async fn put_new(
        &self,
        space: Space,
        key: &str,
        value: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn.clone();
        c.set_nx(self.key(space, key), value)
            .await
            .map_err(unavailable)
    }

    pub(super) async fn claim(
        &self,
        order_id: &str,
        record: Vec<u8>,
        message_id: &str,
        index_value: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let mut c = self.conn.clone();
        self.claim
            .key(self.key(Space::Ratings, order_id))
            .key(self.key(Space::Messages, message_id))
            .arg(record)
            .arg(index_value)
            .invoke_async(&mut c)
            .await
            .map_err(unavailable)
    }
}

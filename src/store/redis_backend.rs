//! The Redis backend, on one server or a Redis Cluster. Keys are `{prefix}{space}:{key}`, so
//! several deployments or test runs share one keyspace.
//!
//! Every command touches one key, so nothing needs keys to share a cluster slot (no hash tags).
//! The one-time claim is a Lua script on the rating key alone: Redis runs it atomically, so of any
//! number of concurrent claims on one order, across any number of instances, exactly one wins.
//! The message index (message_id -> order_id, which finds the rating an /on_rating answers) is
//! written just before the claim, so a claim never exists without its index; an index whose claim
//! lost is removed again, and one left by a crash points at a rating with another message_id,
//! which the callback path refuses.
//!
//! Received ratings owing work (a webhook hand-off, an /on_rating) are marked in a sorted set of
//! the instance doing the work, `{prefix}owed:{instance}`, as `{bap_id}|{message_id}`: the
//! instance is a random id it keeps alive with a key, `{prefix}alive:{instance}`, that expires
//! ([`ALIVE_FOR`]) unless renewed, and lists in the set `{prefix}owing` at every renewal. The mark
//! goes in just before the record (and out again at once when the record was refused as a repeat)
//! and comes out just after the record that settles it; a mark left on a settled record (the
//! instance stopped in between) is dropped by whoever takes it over. Another instance takes over
//! the marks of a listed instance whose key has expired, reading that instance's set only (the
//! living instances' marks are never read): it adds its own mark and removes the old one, and
//! only the taker whose removal removed it goes on (the others remove theirs). An instance left
//! with no marks is struck off the list, and listed again by whoever finds it alive just after.
//! An instance whose last renewal is older than half of [`ALIVE_FOR`] (it was paused, or Redis
//! was away) renews before it marks, so every mark is made while its key is alive.
//!
//! Callback announcements use pub/sub: on a cluster, PUBLISH reaches subscribers on every node,
//! so each instance subscribes on one node (the next seed when that one goes away).
//!
//! Connections: each HTTP worker thread opens one of its own on its first command and sends its
//! requests' commands on it, so that a command and its answer stay on the worker's thread (the
//! shared connection, driven by the background runtime, cost two thread wake-ups per command);
//! the background runtime, and a worker until its own is open, use the shared one. A worker's
//! connection lives as long as its thread.

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use std::time::Duration;

use super::{Space, StoreError};

/// Claim script. KEYS[1] rating key; ARGV[1] record. Returns the existing record when the order
/// is taken (a record whose status is not "failed"), nil when the claim was written.
const CLAIM: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, rec = pcall(cjson.decode, cur)
  if not (ok and type(rec) == 'table' and rec['status'] == 'failed') then
    return cur
  end
end
redis.call('SET', KEYS[1], ARGV[1])
return false
"#;

/// Compare-and-set. KEYS[1] the key; ARGV[1] the value it must hold, ARGV[2] its new value.
/// Returns 1 when it held ARGV[1] and now holds ARGV[2], else 0.
const REPLACE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

/// Compare-and-delete. KEYS[1] the key; ARGV[1] the value it must hold. Returns 1 when it held
/// ARGV[1] and is gone, else 0.
const FORGET: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;

/// One server (a connection manager that reconnects) or a cluster (a connection that follows
/// the slot map and its changes).
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// How a connection like the shared one is opened again, for an HTTP worker's own.
#[derive(Clone)]
enum Opener {
    Single(redis::Client, redis::aio::ConnectionManagerConfig),
    Cluster(redis::cluster::ClusterClient),
}

impl Opener {
    async fn open(&self) -> Result<Conn, redis::RedisError> {
        Ok(match self {
            Opener::Single(client, config) => Conn::Single(
                client
                    .get_connection_manager_with_config(config.clone())
                    .await?,
            ),
            Opener::Cluster(client) => Conn::Cluster(client.get_async_connection().await?),
        })
    }
}

/// A worker thread's own connection of a store, opened in [`RedisStore::lost`]'s epoch given,
/// or the note that it is being opened.
enum Local {
    Opening,
    Ready(Conn, u64),
}

thread_local! {
    /// The connections opened on this thread, by [`RedisStore::id`]: an HTTP worker (a
    /// current-thread runtime) sends its commands on its own connection, whose driver task runs
    /// on the same thread, so a command wakes no other thread.
    static LOCAL: std::cell::RefCell<std::collections::HashMap<u64, Local>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// A Redis-backed store.
#[derive(Clone)]
pub struct RedisStore {
    /// Where the callback subscription connects: the server, or each cluster seed in turn.
    subscribe_to: Vec<redis::Client>,
    /// The connection of the background runtime, and of any thread while its own is opening.
    conn: Conn,
    /// Opens a worker thread's own connection.
    opener: Opener,
    /// Tells this store's connections apart from other stores' in [`LOCAL`].
    id: u64,
    /// Counts the connection failures any of this store's connections met (see [`Self::lost`]).
    epoch: std::sync::Arc<std::sync::atomic::AtomicU64>,
    prefix: String,
    claim: redis::Script,
    replace: redis::Script,
    forget: redis::Script,
    /// This process's id among the instances sharing the keyspace (see the module docs).
    instance: String,
    /// When this instance's last heartbeat that was stored began, in milliseconds since
    /// [`since_start`]'s origin; 0 before the first.
    beaten_at: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// What a write does to its key's mark in `{prefix}owed` (see the module docs).
#[derive(Debug, Clone, Copy)]
pub(super) enum Owed {
    /// Marks it owed by this instance, before the write.
    Mark,
    /// Removes this instance's mark, after the write.
    Unmark,
    /// Leaves the marks as they are.
    Keep,
}

/// Connect and response timeout of every Redis call.
const TIMEOUT: Duration = Duration::from_secs(2);

/// How long an instance counts as alive after its last heartbeat ([`RedisStore::beat`]).
pub(super) const ALIVE_FOR: Duration = Duration::from_secs(5);

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl RedisStore {
    /// Connects to one server; fails when it does not answer.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        // Short timeouts: while Redis is down, buyer requests must fail fast rather than hang.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(2);
        let opener = Opener::Single(client.clone(), config);
        let conn = opener.open().await.map_err(unavailable)?;
        Ok(Self::with(vec![client], conn, opener, prefix))
    }

    /// Connects to a Redis Cluster through its seed nodes; fails when none answers.
    pub async fn connect_cluster(nodes: &[String], prefix: &str) -> Result<Self, StoreError> {
        let seeds = nodes
            .iter()
            .map(|n| redis::Client::open(n.as_str()).map_err(unavailable))
            .collect::<Result<Vec<_>, _>>()?;
        let cluster = redis::cluster::ClusterClientBuilder::new(nodes.iter().map(String::as_str))
            .connection_timeout(TIMEOUT)
            .response_timeout(TIMEOUT)
            .retries(2)
            .build()
            .map_err(unavailable)?;
        let opener = Opener::Cluster(cluster);
        let conn = opener.open().await.map_err(unavailable)?;
        Ok(Self::with(seeds, conn, opener, prefix))
    }

    fn with(subscribe_to: Vec<redis::Client>, conn: Conn, opener: Opener, prefix: &str) -> Self {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Self {
            subscribe_to,
            conn,
            opener,
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            epoch: Default::default(),
            prefix: prefix.to_owned(),
            claim: redis::Script::new(CLAIM),
            replace: redis::Script::new(REPLACE),
            forget: redis::Script::new(FORGET),
            instance: uuid::Uuid::new_v4().simple().to_string(),
            beaten_at: Default::default(),
        }
    }

    /// The connection a command from this thread goes out on. On a current-thread runtime (an
    /// HTTP worker) that is the thread's own, opened in the background on first use (the shared
    /// one serves until it is ready, and again if opening it failed); elsewhere the shared one,
    /// whose driver runs on the background runtime. A worker's connection opened before the
    /// last connection failure any connection of this store met is put aside and opened anew:
    /// one that sat idle through a Redis outage would fail its first command after it, on every
    /// worker; the shared one, which reconnects as before, serves meanwhile.
    fn conn(&self) -> Conn {
        if !super::on_worker_thread() {
            return self.conn.clone();
        }
        let epoch = self.epoch.load(std::sync::atomic::Ordering::Relaxed);
        // The thread's own connection, or none usable yet and whether this call starts opening it.
        let (own, start_opening) = LOCAL.with(|local| {
            let mut local = local.borrow_mut();
            match local.get(&self.id) {
                Some(Local::Ready(c, opened)) if *opened == epoch => (Some(c.clone()), false),
                Some(Local::Opening) => (None, false),
                _ => {
                    local.insert(self.id, Local::Opening);
                    (None, true)
                }
            }
        });
        if let Some(own) = own {
            return own;
        }
        if start_opening {
            let (id, opener) = (self.id, self.opener.clone());
            // A current-thread runtime runs the task on this thread: its LOCAL is this one.
            tokio::spawn(async move {
                let opened = opener.open().await;
                LOCAL.with(|local| {
                    let mut local = local.borrow_mut();
                    match opened {
                        Ok(c) => local.insert(id, Local::Ready(c, epoch)),
                        Err(e) => {
                            tracing::warn!(
                                error = %e,
                                "cannot open a worker's Redis connection; the shared one serves it"
                            );
                            local.remove(&id)
                        }
                    }
                });
            });
        }
        self.conn.clone()
    }

    /// The store error for a failed command; a failure of the connection itself (not an answer
    /// of the server's) starts a new epoch, which retires the workers' own connections.
    fn lost(&self, e: redis::RedisError) -> StoreError {
        if e.is_io_error()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_timeout()
            || e.is_unrecoverable_error()
        {
            self.epoch
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        unavailable(e)
    }

    /// The pub/sub channel that carries "a callback was stored for message_id" between instances.
    fn callback_channel(&self) -> String {
        format!("{}callbacks", self.prefix)
    }

    /// Tells every instance that the callback for `message_id` is stored.
    pub(super) async fn announce_callback(&self, message_id: &str) -> Result<(), StoreError> {
        let mut c = self.conn();
        redis::cmd("PUBLISH")
            .arg(self.callback_channel())
            .arg(message_id)
            .query_async::<i64>(&mut c)
            .await
            .map(|_| ())
            .map_err(|e| self.lost(e))
    }

    /// Calls `on_announce` with every announced message_id until the returned task is dropped or
    /// aborted. One subscription per instance (not one per waiting request); it reconnects with
    /// backoff after Redis goes away (on a cluster, to the next seed node). Announcements made while it is disconnected are lost, which
    /// is why a waiting request also reads the store at its deadline.
    pub(super) fn listen_for_callbacks(
        &self,
        on_announce: impl Fn(&str) + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        use futures_util::StreamExt;
        let seeds = self.subscribe_to.clone();
        let channel = self.callback_channel();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            for client in seeds.iter().cycle() {
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
        let mut c = self.conn();
        c.get(self.key(space, key)).await.map_err(|e| self.lost(e))
    }

    pub(super) async fn put(
        &self,
        space: Space,
        key: &str,
        value: Vec<u8>,
    ) -> Result<(), StoreError> {
        let mut c = self.conn();
        c.set(self.key(space, key), value)
            .await
            .map_err(|e| self.lost(e))
    }

    pub(super) async fn put_expiring(
        &self,
        space: Space,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.set_px(space, key, value, ttl, false).await.map(drop)
    }

    /// SET NX with an expiry: true when the key was absent and is now set.
    pub(super) async fn put_new_expiring(
        &self,
        space: Space,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.set_px(space, key, value, ttl, true).await
    }

    /// `SET key value [NX] PX ttl`: true when the value was set (always, without NX).
    async fn set_px(
        &self,
        space: Space,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
        only_new: bool,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn();
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(space, key)).arg(value);
        if only_new {
            cmd.arg("NX");
        }
        let set: Option<String> = cmd
            .arg("PX")
            .arg(ms)
            .query_async(&mut c)
            .await
            .map_err(|e| self.lost(e))?;
        Ok(set.is_some())
    }

    pub(super) async fn delete(&self, space: Space, key: &str) -> Result<(), StoreError> {
        let mut c = self.conn();
        c.del::<_, ()>(self.key(space, key))
            .await
            .map_err(|e| self.lost(e))
    }

    pub(super) async fn put_new(
        &self,
        space: Space,
        key: &str,
        value: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn();
        c.set_nx(self.key(space, key), value)
            .await
            .map_err(|e| self.lost(e))
    }

    /// Puts `value` at `key` if the key holds exactly `expect` (true when it did), atomically.
    pub(super) async fn replace(
        &self,
        space: Space,
        key: &str,
        expect: &[u8],
        value: &[u8],
    ) -> Result<bool, StoreError> {
        let mut c = self.conn();
        let replaced: i64 = self
            .replace
            .key(self.key(space, key))
            .arg(expect)
            .arg(value)
            .invoke_async(&mut c)
            .await
            .map_err(|e| self.lost(e))?;
        Ok(replaced == 1)
    }

    /// Writes the message index, then runs the claim; removes the index again when the claim
    /// lost (best effort: a leftover index is harmless, see the module docs).
    pub(super) async fn claim(
        &self,
        order_id: &str,
        record: &[u8],
        message_id: &str,
        index_value: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let index = self.key(Space::Messages, message_id);
        let rating = self.key(Space::Ratings, order_id);
        let mut c = self.conn();
        // The script's own invocation (EVALSHA, loading the script on NOSCRIPT), built only
        // where it runs: it copies the record.
        let claim = || {
            let mut invocation = self.claim.key(&rating);
            invocation.arg(record);
            invocation
        };
        let existing: Option<Vec<u8>> = match c {
            // One round trip: a server runs a pipeline's commands in order, so the index is
            // written before the claim runs. A server that does not have the script yet
            // (started afresh, or its scripts flushed) answers NOSCRIPT after writing the
            // index; the invocation then loads it and runs the claim.
            Conn::Single(_) => {
                let mut pipe = redis::pipe();
                pipe.set(&index, index_value)
                    .ignore()
                    .cmd("EVALSHA")
                    .arg(self.claim.get_hash())
                    .arg(1)
                    .arg(&rating)
                    .arg(record);
                match pipe.query_async::<(Option<Vec<u8>>,)>(&mut c).await {
                    Ok((existing,)) => existing,
                    Err(e)
                        if e.kind()
                            == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                    {
                        claim()
                            .invoke_async(&mut c)
                            .await
                            .map_err(|e| self.lost(e))?
                    }
                    Err(e) => return Err(self.lost(e)),
                }
            }
            // On a cluster the two keys may live on different nodes: the index first, then the
            // claim, each acknowledged.
            Conn::Cluster(_) => {
                c.set::<_, _, ()>(&index, index_value)
                    .await
                    .map_err(|e| self.lost(e))?;
                claim()
                    .invoke_async(&mut c)
                    .await
                    .map_err(|e| self.lost(e))?
            }
        };
        if existing.is_some()
            && let Err(e) = c.del::<_, ()>(&index).await
        {
            tracing::warn!(error = %e, "could not remove the index of a lost claim");
        }
        Ok(existing)
    }

    /// The sorted set of `instance`'s marks.
    fn owed_of(&self, instance: &str) -> String {
        self.key(Space::Owed, instance)
    }

    /// The set of the instances that may hold marks.
    fn owing_key(&self) -> String {
        format!("{}owing", self.prefix)
    }

    /// Lists `entry` among the ratings awaiting the platform's answer; true when it was not.
    pub(super) async fn list_awaiting(&self, entry: &str) -> Result<bool, StoreError> {
        let mut c = self.conn();
        let added: i64 = c
            .zadd(self.list_key(Space::Awaiting), entry, 0)
            .await
            .map_err(|e| self.lost(e))?;
        Ok(added == 1)
    }

    /// Removes `entry` from the ratings awaiting the platform's answer.
    pub(super) async fn unlist_awaiting(&self, entry: &str) -> Result<(), StoreError> {
        self.unlist(Space::Awaiting, entry).await
    }

    /// The sorted set of a list in lexical order, every member scored 0: of received ratings
    /// ([`Space::Awaiting`], [`Space::Arrived`]), of kept notifications ([`Space::Notices`]), of
    /// given-up ones ([`Space::GivenUp`]).
    fn list_key(&self, list: Space) -> String {
        format!("{}{}", self.prefix, list.name())
    }

    /// Removes `entry` from `list`.
    pub(super) async fn unlist(&self, list: Space, entry: &str) -> Result<(), StoreError> {
        let mut c = self.conn();
        c.zrem::<_, _, ()>(self.list_key(list), entry)
            .await
            .map_err(|e| self.lost(e))
    }

    /// Up to `limit` entries of `list` after `after` (from the first without it), in order.
    pub(super) async fn listed_after(
        &self,
        list: Space,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let from = after.map_or_else(|| "-".to_owned(), |a| format!("({a}"));
        self.first_in_range("ZRANGEBYLEX", self.list_key(list), &from, "+", limit)
            .await
    }

    /// The first `limit` members of the sorted set `key` from `min` to `max`, as `range` (a
    /// `ZRANGEBYLEX` or `ZRANGEBYSCORE`) reads them.
    async fn first_in_range(
        &self,
        range: &str,
        key: String,
        min: &str,
        max: &str,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut c = self.conn();
        range_command(range, &key, min, max, limit)
            .query_async(&mut c)
            .await
            .map_err(|e| self.lost(e))
    }

    /// The sorted set of the kept notifications' keys, scored by when each is due (Unix ms).
    fn notices_due_key(&self) -> String {
        format!("{}notices_due", self.prefix)
    }

    /// Indexes `key` as due at `due_ms` and in the listing of kept notifications, then keeps
    /// `value` at it ([`RedisStore::in_order`]).
    pub(super) async fn put_notice(
        &self,
        key: &str,
        value: Vec<u8>,
        due_ms: i64,
    ) -> Result<(), StoreError> {
        let mut due = redis::cmd("ZADD");
        due.arg(self.notices_due_key()).arg(due_ms).arg(key);
        let mut listed = redis::cmd("ZADD");
        listed.arg(self.list_key(Space::Notices)).arg(0).arg(key);
        let mut set = redis::cmd("SET");
        set.arg(self.key(Space::Notices, key)).arg(value);
        self.in_order(vec![due, listed, set]).await.map(drop)
    }

    /// Up to `limit` keys of the notifications due at `now_ms`, earliest first, and how many
    /// are indexed in all.
    pub(super) async fn due_notices(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<(Vec<String>, u64), StoreError> {
        let now = now_ms.to_string();
        self.first_counted("ZRANGEBYSCORE", self.notices_due_key(), "-inf", &now, limit)
            .await
    }

    /// [`RedisStore::first_in_range`], and how many members the set has, in one round trip.
    async fn first_counted(
        &self,
        range: &str,
        key: String,
        min: &str,
        max: &str,
        limit: usize,
    ) -> Result<(Vec<String>, u64), StoreError> {
        let mut c = self.conn();
        redis::pipe()
            .add_command(range_command(range, &key, min, max, limit))
            .zcard(&key)
            .query_async(&mut c)
            .await
            .map_err(|e| self.lost(e))
    }

    /// Unindexes `key` (its due time, its listing), then removes its value
    /// ([`RedisStore::in_order`]).
    pub(super) async fn remove_notice(&self, key: &str) -> Result<(), StoreError> {
        let mut due = redis::cmd("ZREM");
        due.arg(self.notices_due_key()).arg(key);
        let mut listed = redis::cmd("ZREM");
        listed.arg(self.list_key(Space::Notices)).arg(key);
        let mut del = redis::cmd("DEL");
        del.arg(self.key(Space::Notices, key));
        self.in_order(vec![due, listed, del]).await.map(drop)
    }

    /// Keeps `value` as the given-up notification `entry` (its list entry, then its value), then
    /// removes the kept notification `key`: a stop between the two leaves both, and the kept one
    /// is sent again (given up again under another entry, or delivered), never lost; an entry
    /// left without its value is dropped when listed.
    pub(super) async fn give_up_notice(
        &self,
        key: &str,
        entry: &str,
        value: Vec<u8>,
    ) -> Result<(), StoreError> {
        let mut c = self.conn();
        c.zadd::<_, _, _, ()>(self.list_key(Space::GivenUp), entry, 0)
            .await
            .map_err(|e| self.lost(e))?;
        self.put(Space::GivenUp, entry, value).await?;
        self.remove_notice(key).await
    }

    /// Keeps `value` as the notification `key` due at `due_ms`, then removes the given-up `entry`
    /// (its value, then its list entry): true when it was still there. Two instances doing it at
    /// once both keep the same notification under the same key; one removes the entry.
    pub(super) async fn revive_notice(
        &self,
        entry: &str,
        key: &str,
        value: Vec<u8>,
        due_ms: i64,
    ) -> Result<bool, StoreError> {
        self.put_notice(key, value, due_ms).await?;
        let mut c = self.conn();
        let removed: i64 = c
            .del(self.key(Space::GivenUp, entry))
            .await
            .map_err(|e| self.lost(e))?;
        self.unlist(Space::GivenUp, entry).await?;
        Ok(removed == 1)
    }

    /// The first `limit` entries of the given-up notifications, in order, and how many are
    /// listed, in one round trip.
    pub(super) async fn first_given_up(
        &self,
        limit: usize,
    ) -> Result<(Vec<String>, u64), StoreError> {
        let key = self.list_key(Space::GivenUp);
        self.first_counted("ZRANGEBYLEX", key, "-", "+", limit)
            .await
    }

    /// Removes the given-up notification `entry`: its value, then its list entry.
    pub(super) async fn forget_given_up(&self, entry: &str) -> Result<(), StoreError> {
        self.delete(Space::GivenUp, entry).await?;
        self.unlist(Space::GivenUp, entry).await
    }

    /// The sorted set of the received ratings settled, their entries scored by the time they
    /// settled in milliseconds.
    fn settled_key(&self) -> String {
        format!("{}{}", self.prefix, Space::Settled.name())
    }

    /// Lists `entry` (`{ms}|{key}`) among the settled received ratings.
    pub(super) async fn index_settled(&self, entry: &str) -> Result<(), StoreError> {
        let mut c = self.conn();
        c.zadd::<_, _, _, ()>(self.settled_key(), entry, entry_ms(entry))
            .await
            .map_err(|e| self.lost(e))
    }

    /// Up to `limit` entries of the settled received ratings that settled before `cutoff_ms`,
    /// oldest first.
    pub(super) async fn settled_before(
        &self,
        cutoff_ms: i64,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let before = format!("({cutoff_ms}");
        self.first_in_range("ZRANGEBYSCORE", self.settled_key(), "-inf", &before, limit)
            .await
    }

    /// Given `due` (the bytes it must hold, its arrival entry), removes the received rating at
    /// `key` when it holds exactly those bytes (true when it did), then its arrival entry; then,
    /// either way, the settled entry `entry`.
    pub(super) async fn forget_settled(
        &self,
        key: &str,
        due: Option<(Vec<u8>, String)>,
        entry: &str,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn();
        let mut gone = false;
        if let Some((expect, arrived)) = due {
            let removed: i64 = self
                .forget
                .key(self.key(Space::Received, key))
                .arg(expect)
                .invoke_async(&mut c)
                .await
                .map_err(|e| self.lost(e))?;
            gone = removed == 1;
            if gone {
                self.unlist(Space::Arrived, &arrived).await?;
            }
        }
        c.zrem::<_, _, ()>(self.settled_key(), entry)
            .await
            .map_err(|e| self.lost(e))?;
        Ok(gone)
    }

    /// Says this instance is alive for [`ALIVE_FOR`] more, and lists it among the instances
    /// whose marks are looked at.
    pub(super) async fn beat(&self) -> Result<(), StoreError> {
        let began = since_start();
        self.put_expiring(Space::Alive, &self.instance, b"1".to_vec(), ALIVE_FOR)
            .await?;
        let mut c = self.conn();
        c.sadd::<_, _, ()>(self.owing_key(), &self.instance)
            .await
            .map_err(|e| self.lost(e))?;
        self.beaten_at
            .fetch_max(began, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Renews this instance's heartbeat when its last one may be close to expiring, so a mark
    /// made next is made while it is alive and listed.
    async fn alive_for_a_mark(&self) -> Result<(), StoreError> {
        let last = self.beaten_at.load(std::sync::atomic::Ordering::Relaxed);
        if last == 0 || since_start().saturating_sub(last) >= ALIVE_FOR.as_millis() as u64 / 2 {
            self.beat().await?;
        }
        Ok(())
    }

    /// Puts `value` at `key` (with `put_new`, unless it is there: true when it was not), marked
    /// owed by this instance first ([`Owed::Mark`]) or unmarked after ([`Owed::Unmark`]), and
    /// with `settled` listed among the settled ratings after. A mark added for a put that
    /// `put_new` refused (a repeat) is removed again.
    pub(super) async fn put_marked(
        &self,
        space: Space,
        key: &str,
        value: Vec<u8>,
        owed: Owed,
        put_new: bool,
        settled: Option<&str>,
    ) -> Result<bool, StoreError> {
        let (done, _) = self
            .write_marked(space, key, value, owed, put_new, (&[], ""), settled)
            .await?;
        Ok(done)
    }

    /// Puts `value` at `key` unless it is there, as [`Self::put_marked`] does, with `entry`
    /// listed in each of `lists` ([`Space::Arrived`], [`Space::Awaiting`]) first; whether it
    /// was put, and the lists `entry` was added to by this call (the caller unlists it from them
    /// when the put was refused).
    pub(super) async fn put_listed(
        &self,
        space: Space,
        key: &str,
        value: Vec<u8>,
        owed: Owed,
        lists: &[Space],
        entry: &str,
    ) -> Result<(bool, Vec<Space>), StoreError> {
        self.write_marked(space, key, value, owed, true, (lists, entry), None)
            .await
    }

    /// Runs `cmds` in their order, their replies in the same order: one pipelined round trip on
    /// one server (which runs a pipeline's commands in order); on a cluster, where their keys
    /// may live on different nodes, one after the other.
    async fn in_order(&self, cmds: Vec<redis::Cmd>) -> Result<Vec<redis::Value>, StoreError> {
        let mut c = self.conn();
        let lost = |e| self.lost(e);
        match &c {
            Conn::Single(_) => {
                let mut pipe = redis::pipe();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                pipe.query_async(&mut c).await.map_err(lost)
            }
            Conn::Cluster(_) => {
                let mut replies = Vec::with_capacity(cmds.len());
                for cmd in cmds {
                    replies.push(cmd.query_async(&mut c).await.map_err(lost)?);
                }
                Ok(replies)
            }
        }
    }

    /// The write of [`Self::put_marked`] and [`Self::put_listed`]: the marks and lists that go
    /// first (the owed mark, the entry in each list), the `SET`, the ones that go after (the unmark, the
    /// settled entry). One round trip on one server, which runs a pipeline's commands in order;
    /// on a cluster, where the keys may live on different nodes, one after the other.
    #[allow(clippy::too_many_arguments)]
    async fn write_marked(
        &self,
        space: Space,
        key: &str,
        value: Vec<u8>,
        owed: Owed,
        put_new: bool,
        (lists, entry): (&[Space], &str),
        settled: Option<&str>,
    ) -> Result<(bool, Vec<Space>), StoreError> {
        let owed_key = self.owed_of(&self.instance);
        if matches!(owed, Owed::Mark) {
            self.alive_for_a_mark().await?;
        }
        let mut cmds = Vec::with_capacity(5);
        let marked_at = matches!(owed, Owed::Mark).then(|| {
            let mut mark = redis::cmd("ZADD");
            mark.arg(&owed_key).arg(now_ms()).arg(key);
            cmds.push(mark);
            cmds.len() - 1
        });
        let listed_from = cmds.len();
        for list in lists {
            let mut zadd = redis::cmd("ZADD");
            zadd.arg(self.list_key(*list)).arg(0).arg(entry);
            cmds.push(zadd);
        }
        let mut set = redis::cmd("SET");
        set.arg(self.key(space, key)).arg(value);
        if put_new {
            set.arg("NX");
        }
        let set_at = cmds.len();
        cmds.push(set);
        if matches!(owed, Owed::Unmark) {
            let mut unmark = redis::cmd("ZREM");
            unmark.arg(&owed_key).arg(key);
            cmds.push(unmark);
        }
        if let Some(entry) = settled {
            let mut index = redis::cmd("ZADD");
            index
                .arg(self.settled_key())
                .arg(entry_ms(entry))
                .arg(entry);
            cmds.push(index);
        }
        let replies = self.in_order(cmds).await?;
        let done = !matches!(replies.get(set_at), Some(redis::Value::Nil) | None);
        let added = |at: Option<usize>| {
            at.is_some_and(|i| matches!(replies.get(i), Some(redis::Value::Int(1))))
        };
        if added(marked_at) && !done {
            self.unmark(key).await?;
        }
        let listed = (lists.iter().enumerate())
            .filter(|(i, _)| added(Some(listed_from + i)))
            .map(|(_, list)| *list)
            .collect();
        Ok((done, listed))
    }

    /// Takes over the marks of listed instances no longer alive, each as one atomic removal that
    /// only one taker wins; returns the keys taken, now marked by this instance. A chunk of marks
    /// costs three round trips, not two per mark: this instance marks the whole chunk as its own
    /// (before any removal, so a crash in between leaves them marked here, never nowhere), removes
    /// each from the stopped instance's set in one pipeline, and unmarks the ones another taker
    /// removed first.
    pub(super) async fn take_over_owed(&self) -> Result<Vec<String>, StoreError> {
        /// Marks read at once from a stopped instance's set.
        const CHUNK: isize = 512;
        self.alive_for_a_mark().await?;
        let mut c = self.conn();
        let lost = |e| self.lost(e);
        let listed: Vec<String> = c.smembers(self.owing_key()).await.map_err(lost)?;
        let mine = self.owed_of(&self.instance);
        let mut taken = Vec::new();
        for owner in listed.iter().filter(|o| **o != self.instance) {
            let alive = self.key(Space::Alive, owner);
            if c.exists::<_, bool>(&alive).await.map_err(lost)? {
                continue;
            }
            let theirs = self.owed_of(owner);
            loop {
                let keys: Vec<String> = c.zrange(&theirs, 0, CHUNK - 1).await.map_err(lost)?;
                if keys.is_empty() {
                    break;
                }
                let now = now_ms();
                let mut ours = redis::cmd("ZADD");
                ours.arg(&mine);
                for key in &keys {
                    ours.arg(now).arg(key);
                }
                ours.query_async::<()>(&mut c).await.map_err(lost)?;
                let mut removal = redis::pipe();
                for key in &keys {
                    removal.cmd("ZREM").arg(&theirs).arg(key);
                }
                let removed: Vec<i64> = removal.query_async(&mut c).await.map_err(lost)?;
                let mut lost_to_another = redis::cmd("ZREM");
                lost_to_another.arg(&mine);
                let mut others = 0;
                for (key, removed) in keys.into_iter().zip(removed) {
                    if removed == 1 {
                        taken.push(key);
                    } else {
                        lost_to_another.arg(key);
                        others += 1;
                    }
                }
                if others > 0 {
                    lost_to_another
                        .query_async::<()>(&mut c)
                        .await
                        .map_err(lost)?;
                }
            }
            // Nothing left to take: struck off, unless it came back meanwhile (its renewal may
            // have listed it again just before the removal).
            c.srem::<_, _, ()>(self.owing_key(), owner)
                .await
                .map_err(lost)?;
            if c.exists::<_, bool>(&alive).await.map_err(lost)? {
                c.sadd::<_, _, ()>(self.owing_key(), owner)
                    .await
                    .map_err(lost)?;
            }
        }
        Ok(taken)
    }

    /// Removes this instance's mark on `key` (a taken-over key whose record no longer owes work).
    pub(super) async fn unmark(&self, key: &str) -> Result<(), StoreError> {
        let mut c = self.conn();
        c.zrem::<_, _, ()>(self.owed_of(&self.instance), key)
            .await
            .map_err(|e| self.lost(e))
    }
}

/// Milliseconds since the first call in this process, plus one (never 0).
/// `{range} key min max LIMIT 0 limit`: the first `limit` members of a sorted set, `range`
/// being `ZRANGEBYLEX` or `ZRANGEBYSCORE`.
fn range_command(range: &str, key: &str, min: &str, max: &str, limit: usize) -> redis::Cmd {
    let mut cmd = redis::cmd(range);
    cmd.arg(key)
        .arg(min)
        .arg(max)
        .arg("LIMIT")
        .arg(0)
        .arg(limit);
    cmd
}

fn since_start() -> u64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    ORIGIN
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
        + 1
}

/// The milliseconds an index entry `{ms}|...` names (0 when none).
fn entry_ms(entry: &str) -> i64 {
    entry
        .split_once('|')
        .and_then(|(ms, _)| ms.parse().ok())
        .unwrap_or(0)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

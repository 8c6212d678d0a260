//! One store, two backends chosen at start-up: an embedded redb file (the default, one machine)
//! and Redis (several instances). Both give the same guarantees: the one-time rating claim is
//! atomic (a redb write transaction; a Lua script in Redis), and every write is durable in the
//! backend's terms before the caller acknowledges anything.
//!
//! A backend enum rather than a trait object: the set is closed, dispatch is a match, and the
//! async methods need no boxing.

pub mod backup;
mod embedded;
pub mod records;
mod redis_backend;

pub use embedded::{EmbeddedStore, Queued};
pub use records::*;
use redis_backend::Owed;
pub use redis_backend::RedisStore;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{StoreBackend, StoreSettings};

/// Whether the caller runs on a current-thread runtime: an HTTP worker, whose tasks never leave
/// its thread (the background runtime is a multi-thread one).
pub fn on_worker_thread() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread)
}

/// A storage failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or failed to write.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The embedded database file is held by another process (or a server still shutting down).
    #[error("store file {0} is in use by another process")]
    Locked(String),
    /// A stored value could not be decoded.
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
}

/// Keyspaces. Each is a redb table, or a key prefix in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    /// order_id -> [`Order`].
    Orders,
    /// order_id -> [`RatingRecord`] (the one-time claim).
    Ratings,
    /// message_id -> order_id.
    Messages,
    /// message_id -> [`CallbackRecord`].
    Callbacks,
    /// `bap_id|message_id` -> [`ReceivedRating`] (seller side).
    Received,
    /// `subscriber_id|unique_key_id` -> a registry lookup result, with its own expiry.
    Keys,
    /// user_id -> [`User`] (the buyer app's users and their active flag).
    Users,
    /// feedback key (user and order) -> [`FeedbackRecord`], the latest v2 feedback.
    Feedback,
    /// message_id -> [`FeedbackSent`]: each /rating the v2 feedback API sent, so its
    /// /on_rating can be matched.
    FeedbackMessages,
    /// feedback key (user and listing) -> [`ListingFeedbackRecord`]: the one-time listing
    /// feedback slot.
    ListingFeedback,
    /// `bap_id|message_id` -> a marker, expiring, while one instance sends the seller platform's
    /// `/on_rating` for that received rating (Redis only: one process holds an embedded file).
    Answering,
    /// instance id -> a marker, expiring, renewed while the instance runs (Redis only: see
    /// `redis_backend` on owed work).
    Alive,
    /// `bap_id|message_id` -> nothing: the received ratings this adapter still owes work on (a
    /// webhook hand-off, its `/on_rating`), set and cleared in the commit of each write of the
    /// rating (the embedded table; Redis keeps one sorted set of them by instance, see
    /// `redis_backend`).
    Owed,
    /// `{received ms, 13 digits}|{bap_id}|{message_id}` -> nothing: the received ratings held for
    /// the seller platform's answer (`onRating: "awaiting"`), in the order they arrived
    /// ([`Store::awaiting`]); set and cleared in the commit of each write of the rating (Redis:
    /// one sorted set of them, read in lexical order).
    Awaiting,
    /// `{received ms, 13 digits}|{bap_id}|{message_id}` -> nothing: every received rating, in
    /// the order they arrived ([`Store::listed`]); set in the commit that inserts it, cleared in
    /// the one that forgets it (Redis: one sorted set of them, read in lexical order).
    Arrived,
    /// `{settled ms, 13 digits}|{bap_id}|{message_id}` -> nothing: the received ratings whose
    /// `/on_rating` was sent or given up, in the order they settled, for `seller.retention_days`
    /// ([`Store::forget_settled`]); set in the commit of the settling write (Redis: one sorted
    /// set of them, scored by the time).
    Settled,
    /// `{message_id}|{event}|{channel}` -> a buyer-side notification not yet delivered on that
    /// channel ([`crate::bap::notify`]), with when its next attempt is due; removed once it is
    /// delivered or given up (Redis also indexes them by due time in one sorted set).
    Notices,
    /// The same keys -> a marker, expiring, while one instance sends that notification (Redis
    /// only: one process holds an embedded file).
    NoticeClaims,
    /// `{given up ms, 13 digits}|{notice key}` -> a notification given up, kept for
    /// `buyer.notify_given_up_days` in the order they were given up, until sent again on request
    /// (Redis: one sorted set of the entries, read in lexical order, beside their values).
    GivenUp,
}

impl Space {
    /// Table name / key infix.
    pub fn name(self) -> &'static str {
        match self {
            Space::Orders => "orders",
            Space::Ratings => "ratings",
            Space::Messages => "messages",
            Space::Callbacks => "callbacks",
            Space::Received => "received",
            Space::Keys => "keys",
            Space::Users => "users",
            Space::Feedback => "feedback",
            Space::FeedbackMessages => "feedback_messages",
            Space::ListingFeedback => "listing_feedback",
            Space::Answering => "answering",
            Space::Alive => "alive",
            Space::Owed => "owed",
            Space::Awaiting => "awaiting",
            Space::Arrived => "arrived",
            Space::Settled => "settled",
            Space::Notices => "notices",
            Space::NoticeClaims => "notice_claims",
            Space::GivenUp => "given_up",
        }
    }
}

/// The outcome of claiming an order's rating.
#[derive(Debug)]
pub enum Claim {
    /// This caller holds the claim.
    Won,
    /// Someone rated this order already.
    Taken {
        /// Their record.
        record: Box<RatingRecord>,
        /// Its bytes as stored (what [`Store::replace_rating`] compares).
        stored: Vec<u8>,
    },
}

/// The store handle; cheap to clone.
#[derive(Clone)]
pub enum Store {
    /// redb file.
    Embedded(EmbeddedStore),
    /// Redis server (boxed: its connection handles are much larger than the redb handle).
    Redis(Box<RedisStore>),
}

impl Store {
    /// Opens the backend the settings choose.
    pub async fn open(settings: &StoreSettings) -> Result<Self, StoreError> {
        match settings.backend {
            StoreBackend::Embedded => {
                // A previous server on the same file may still be releasing it (a restart):
                // wait a bounded time for its lock rather than failing at once.
                let mut tries = 0;
                loop {
                    match EmbeddedStore::open(&settings.path, settings.cache_mib << 20) {
                        Err(StoreError::Locked(_)) if tries < 50 => {
                            tries += 1;
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                        other => return other.map(Store::Embedded),
                    }
                }
            }
            StoreBackend::Redis if !settings.redis_cluster_nodes.is_empty() => {
                Ok(Store::Redis(Box::new(
                    RedisStore::connect_cluster(
                        &settings.redis_cluster_nodes,
                        &settings.key_prefix,
                    )
                    .await?,
                )))
            }
            StoreBackend::Redis => Ok(Store::Redis(Box::new(
                RedisStore::connect(&settings.redis_url, &settings.key_prefix).await?,
            ))),
        }
    }

    async fn get_raw(&self, space: Space, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Store::Embedded(s) => s.get(space, key).await,
            Store::Redis(s) => s.get(space, key).await,
        }
    }

    async fn put_raw(&self, space: Space, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s.put(space, key, value, embedded::NO_MARKS).await,
            Store::Redis(s) => s.put(space, key, value).await,
        }
    }

    async fn put_new_raw(
        &self,
        space: Space,
        key: &str,
        value: Vec<u8>,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Embedded(s) => s.put_new(space, key, value, embedded::NO_MARKS).await,
            Store::Redis(s) => s.put_new(space, key, value).await,
        }
    }

    async fn delete_raw(&self, space: Space, key: &str) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s.delete(space, key).await,
            Store::Redis(s) => s.delete(space, key).await,
        }
    }

    async fn get<T: DeserializeOwned>(
        &self,
        space: Space,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        self.get_raw(space, key)
            .await?
            .map(|b| decode(space, key, &b))
            .transpose()
    }

    /// Stores or replaces an order.
    pub async fn put_order(&self, order: &Order) -> Result<(), StoreError> {
        self.put_raw(Space::Orders, &order.order_id, encode(order))
            .await
    }

    /// An order by id.
    pub async fn get_order(&self, order_id: &str) -> Result<Option<Order>, StoreError> {
        self.get(Space::Orders, order_id).await
    }

    /// Takes the one-time claim on `record.order_id`: succeeds when the order has no rating or
    /// only a failed one. The record's message_id is indexed in the same transaction (redb) or
    /// just before the atomic claim (Redis), so a claim is never without its index.
    ///
    /// `encoded` is the record as [`crate::protocol::to_json`] writes it, which the caller keeps
    /// too (serialised once, not once for the store and once for itself).
    pub async fn claim_rating(
        &self,
        record: &RatingRecord,
        encoded: &[u8],
    ) -> Result<Claim, StoreError> {
        debug_assert_eq!(
            encoded,
            encode(record).as_slice(),
            "the record's own encoding"
        );
        let existing = match self {
            Store::Embedded(s) => {
                s.claim(
                    &record.order_id,
                    encoded.to_vec(),
                    record.message_id(),
                    &record.order_id,
                )
                .await?
            }
            Store::Redis(s) => {
                s.claim(
                    &record.order_id,
                    encoded,
                    record.message_id(),
                    &record.order_id,
                )
                .await?
            }
        };
        match existing {
            None => Ok(Claim::Won),
            Some(bytes) => Ok(Claim::Taken {
                record: Box::new(decode(Space::Ratings, &record.order_id, &bytes)?),
                stored: bytes,
            }),
        }
    }

    /// Replaces the rating record stored as `stored` with `record`, atomically, unless it changed
    /// since it was read (true when replaced): of several callers that read the same record, one
    /// replaces it. The message index is not touched: `record` keeps its message_id. Every write
    /// of a claimed record goes through here (a request writes only the record it wrote itself),
    /// and callbacks are stored apart ([`Store::put_callback`]).
    pub async fn replace_rating(
        &self,
        record: &RatingRecord,
        stored: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let key = &record.order_id;
        match self {
            Store::Embedded(s) => s.replace(Space::Ratings, key, stored, encode(record)).await,
            Store::Redis(s) => {
                s.replace(Space::Ratings, key, &stored, &encode(record))
                    .await
            }
        }
    }

    /// An order's rating record.
    pub async fn get_rating(&self, order_id: &str) -> Result<Option<RatingRecord>, StoreError> {
        self.get(Space::Ratings, order_id).await
    }

    /// The order a /rating message_id belongs to.
    pub async fn order_for_message(&self, message_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .get_raw(Space::Messages, message_id)
            .await?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// Stores a callback unless one is stored for that message_id already; true when stored.
    pub async fn put_callback(&self, cb: &CallbackRecord) -> Result<bool, StoreError> {
        self.put_new_raw(Space::Callbacks, &cb.context.message_id, encode(cb))
            .await
    }

    /// The callback for a message_id.
    pub async fn get_callback(
        &self,
        message_id: &str,
    ) -> Result<Option<CallbackRecord>, StoreError> {
        self.get(Space::Callbacks, message_id).await
    }

    /// Records a received /rating unless the same (bap_id, message_id) was recorded; true when new.
    /// The embedded store indexes it as owed in the same commit when it owes work
    /// ([`ReceivedRating::owes_work`]).
    pub async fn insert_received(&self, r: &ReceivedRating) -> Result<bool, StoreError> {
        let key = received_key(&r.context.bap_id, &r.context.message_id);
        match self {
            Store::Embedded(s) => {
                let mut marks = marks(r, false);
                marks[3] = Some(embedded::Mark {
                    space: Space::Arrived,
                    set: true,
                    key: Some(arrival_entry(r)),
                });
                s.put_new(Space::Received, &key, encode(r), marks).await
            }
            Store::Redis(s) => {
                // Listed before the record, in the same round trip (and unlisted again when it
                // was a repeat), as owed work is marked: a stored record is never unlisted.
                let entry = arrival_entry(r);
                let lists: &[Space] = if r.on_rating == DeliveryStatus::Awaiting {
                    &[Space::Arrived, Space::Awaiting]
                } else {
                    &[Space::Arrived]
                };
                let owed = if r.owes_work() {
                    Owed::Mark
                } else {
                    Owed::Keep
                };
                let (inserted, added) = s
                    .put_listed(Space::Received, &key, encode(r), owed, lists, &entry)
                    .await?;
                if !inserted {
                    for list in added {
                        s.unlist(list, &entry).await?;
                    }
                }
                Ok(inserted)
            }
        }
    }

    /// Updates a received /rating's delivery state (and, embedded, whether it is owed). A rating
    /// held for the seller platform's answer stays listed as such ([`Store::awaiting`]).
    pub async fn put_received(&self, r: &ReceivedRating) -> Result<(), StoreError> {
        self.write_received(r, false).await
    }

    /// [`Store::put_received`] for a rating held for the seller platform's answer that is held no
    /// more (answered, or given up): it leaves the list of those awaiting an answer.
    pub async fn settle_received(&self, r: &ReceivedRating) -> Result<(), StoreError> {
        self.write_received(r, true).await
    }

    async fn write_received(&self, r: &ReceivedRating, settled: bool) -> Result<(), StoreError> {
        let key = received_key(&r.context.bap_id, &r.context.message_id);
        let s = match self {
            Store::Embedded(s) => {
                return s
                    .put(Space::Received, &key, encode(r), marks(r, settled))
                    .await;
            }
            Store::Redis(s) => s,
        };
        let entry = settled_entry(r);
        if r.owes_work() {
            // Still owed: its mark is there already.
            s.put(Space::Received, &key, encode(r)).await?;
            if let Some(entry) = &entry {
                s.index_settled(entry).await?;
            }
        } else {
            s.put_marked(
                Space::Received,
                &key,
                encode(r),
                Owed::Unmark,
                false,
                entry.as_deref(),
            )
            .await?;
        }
        if r.on_rating == DeliveryStatus::Awaiting {
            s.list_awaiting(&arrival_entry(r)).await?;
        } else if settled {
            s.unlist_awaiting(&arrival_entry(r)).await?;
        }
        Ok(())
    }

    /// Up to `limit` received ratings of `list` ([`Space::Arrived`]: every one;
    /// [`Space::Awaiting`]: those held for the seller platform's answer), in the order they
    /// arrived, from the one after the list entry `after`; with the entry of the last one looked
    /// at when the list may go on. Entries whose rating is listed no more are skipped (and, with
    /// Redis, where a crash may leave one behind, removed).
    pub async fn listed(
        &self,
        list: Space,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<ReceivedRating>, Option<String>), StoreError> {
        debug_assert!(matches!(list, Space::Arrived | Space::Awaiting));
        let (entries, next) = self.page_of(list, after, limit).await?;
        let mut held = Vec::with_capacity(entries.len());
        for entry in entries {
            let Some((_, key)) = entry.split_once('|') else {
                continue;
            };
            match self.get::<ReceivedRating>(Space::Received, key).await {
                Ok(Some(r))
                    if match list {
                        Space::Awaiting => r.on_rating == DeliveryStatus::Awaiting,
                        _ => arrival_entry(&r) == entry,
                    } =>
                {
                    held.push(r)
                }
                // Held no more, or a repeat's arrival: the crash of an instance between the
                // record's write and the entry's removal.
                Ok(Some(_)) => {
                    if let Store::Redis(s) = self {
                        s.unlist(list, &entry).await?;
                    }
                }
                // Not written yet (its insert is under way), or, once older than any insert
                // could take, left by a crash before it was (Redis: removed).
                Ok(None) => {
                    if let Store::Redis(s) = self
                        && entry_age(&entry) > ABANDONED_AFTER
                    {
                        s.unlist(list, &entry).await?;
                    }
                }
                Err(StoreError::Corrupt(e)) => {
                    tracing::error!(error = %e, "a listed received rating cannot be read");
                }
                Err(e) => return Err(e),
            }
        }
        Ok((held, next))
    }

    /// Up to `limit` entries of the list `list` in key order, from the one after `after` (a
    /// redb table's keys; with Redis, a sorted set read in lexical order), and the last of them
    /// when the list may go on (a full page).
    async fn page_of(
        &self,
        list: Space,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>), StoreError> {
        let entries = match self {
            Store::Embedded(s) => s.keys_after(list, after, limit).await?,
            Store::Redis(s) => s.listed_after(list, after, limit).await?,
        };
        let next = (entries.len() == limit)
            .then(|| entries.last().cloned())
            .flatten();
        Ok((entries, next))
    }

    /// Forgets received ratings settled (their `/on_rating` sent or given up) before `cutoff`:
    /// looks at up to `limit` entries of [`Space::Settled`], oldest first, and removes each
    /// with its record, when that record is still the one it was written with (a rating a
    /// repeat reopened since owes work again, or settled later, under a later entry: only the
    /// entry goes). Returns how many entries were looked at (fewer than `limit`: no more are
    /// due) and how many records went.
    pub async fn forget_settled(
        &self,
        cutoff: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<(usize, usize), StoreError> {
        let cutoff_ms = cutoff.timestamp_millis().max(0);
        let entries = match self {
            Store::Embedded(s) => {
                let bound = format!("{cutoff_ms:013}|");
                let mut entries = s.keys_after(Space::Settled, None, limit).await?;
                entries.retain(|e| e.as_str() < bound.as_str());
                entries
            }
            Store::Redis(s) => s.settled_before(cutoff_ms, limit).await?,
        };
        // All at once: the embedded store commits them as one group, Redis pipelines them.
        let forgetting = entries.iter().map(|entry| self.forget_entry(entry));
        let mut forgotten = 0;
        for gone in futures_util::future::join_all(forgetting).await {
            forgotten += usize::from(gone?);
        }
        Ok((entries.len(), forgotten))
    }

    /// Removes the settled entry `entry`, and the received rating it names with its arrival when
    /// that is still the record as it was settled under it (true when it went).
    async fn forget_entry(&self, entry: &str) -> Result<bool, StoreError> {
        let key = entry.split_once('|').map_or("", |(_, key)| key);
        let stored = self.get_raw(Space::Received, key).await?;
        let due = stored.and_then(|bytes| {
            match decode::<ReceivedRating>(Space::Received, key, &bytes) {
                Ok(r) if settled_entry(&r).as_deref() == Some(entry) => {
                    Some((bytes, arrival_entry(&r)))
                }
                Ok(_) => None,
                Err(e) => {
                    tracing::error!(error = %e, "a settled received rating cannot be read; kept");
                    None
                }
            }
        });
        match self {
            Store::Embedded(s) => s.forget(key, due, entry).await,
            Store::Redis(s) => s.forget_settled(key, due, entry).await,
        }
    }

    /// Stores a settled received /rating that owes work again (its answer goes out once more,
    /// [`crate::bpp::sender::answer_repeat`]), marked owed by this instance first.
    pub async fn reopen_received(&self, r: &ReceivedRating) -> Result<(), StoreError> {
        debug_assert!(r.owes_work(), "reopened to owe work");
        let key = received_key(&r.context.bap_id, &r.context.message_id);
        match self {
            Store::Embedded(s) => {
                s.put(Space::Received, &key, encode(r), marks(r, false))
                    .await
            }
            Store::Redis(s) => s
                .put_marked(Space::Received, &key, encode(r), Owed::Mark, false, None)
                .await
                .map(drop),
        }
    }

    /// The keys of the received ratings a stopped process left owing work (a webhook hand-off,
    /// an `/on_rating`), now this process's to finish, each to be read with
    /// [`Store::owed_received`] when its turn comes. Embedded: every one marked (a process owns
    /// its file, so what it finds marked at start was cut short; call it then only). Redis: the
    /// ones marked by instances whose heartbeat ([`Store::beat`]) has lapsed, each taken over
    /// by exactly one instance and now marked by this one.
    pub async fn take_over_owed(&self) -> Result<Vec<String>, StoreError> {
        match self {
            Store::Embedded(s) => s.keys(Space::Owed).await,
            Store::Redis(s) => s.take_over_owed().await,
        }
    }

    /// The received rating under `key` (one [`Store::take_over_owed`] gave) when it still owes
    /// work; None when it no longer does (Redis: this instance's mark on it is dropped) or when
    /// its record cannot be read, which is logged and left marked: one unreadable record does
    /// not hold up the others.
    pub async fn owed_received(&self, key: &str) -> Result<Option<ReceivedRating>, StoreError> {
        match self.get::<ReceivedRating>(Space::Received, key).await {
            Err(StoreError::Corrupt(e)) => {
                tracing::error!(error = %e, "an owed received rating cannot be read; left");
                Ok(None)
            }
            Ok(Some(r)) if r.owes_work() => Ok(Some(r)),
            Ok(_) => self.unmark_received(key).await.map(|()| None),
            Err(e) => Err(e),
        }
    }

    /// Drops this instance's mark on the received rating under `key` (Redis: one taken over and
    /// then found settled or left to the platform's answer); the embedded store's marks follow
    /// the record's writes only.
    pub async fn unmark_received(&self, key: &str) -> Result<(), StoreError> {
        match self {
            Store::Embedded(_) => Ok(()),
            Store::Redis(s) => s.unmark(key).await,
        }
    }

    /// Tells the instances sharing Redis that this one is alive (and will finish the work it
    /// marked owed) for the next few seconds; None for the embedded store, which has no others.
    pub async fn beat(&self) -> Option<Result<(), StoreError>> {
        match self {
            Store::Embedded(_) => None,
            Store::Redis(s) => Some(s.beat().await),
        }
    }

    /// Queues a received /rating's delivery state behind every write already queued, without
    /// waiting for its commit; `hold` is dropped once it has landed or failed. Only the embedded
    /// store queues its writes: with Redis, `hold` comes back and the caller runs
    /// [`Store::put_received`].
    pub fn queue_received<H: Send + 'static>(
        &self,
        r: &ReceivedRating,
        hold: H,
    ) -> Result<Queued, H> {
        match self {
            Store::Embedded(s) => Ok(s.put_queued(
                Space::Received,
                &received_key(&r.context.bap_id, &r.context.message_id),
                encode(r),
                marks(r, false),
                Box::new(hold),
            )),
            Store::Redis(_) => Err(hold),
        }
    }

    /// Takes the right to settle a held received rating (send the seller platform's
    /// `/on_rating`, or make again a hand-off a restart took up) for `holder`, for at most
    /// `hold`; `Err` with what holds it when another instance does (a holder that cannot be read
    /// counts as an answer). With the embedded store, one process owns the file and its own
    /// bookkeeping suffices: always taken.
    pub async fn claim_answer(
        &self,
        bap_id: &str,
        message_id: &str,
        hold: std::time::Duration,
        holder: AnswerHolder,
    ) -> Result<Result<(), AnswerHolder>, StoreError> {
        let Store::Redis(s) = self else {
            return Ok(Ok(()));
        };
        let key = received_key(bap_id, message_id);
        let tag = holder.tag();
        if s.put_new_expiring(Space::Answering, &key, tag.to_vec(), hold)
            .await?
        {
            return Ok(Ok(()));
        }
        let held_by = s.get(Space::Answering, &key).await?;
        Ok(Err(match held_by.as_deref() {
            Some(t) if t == AnswerHolder::HandOff.tag() => AnswerHolder::HandOff,
            Some(t) if t == AnswerHolder::Repeat.tag() => AnswerHolder::Repeat,
            _ => AnswerHolder::Answer,
        }))
    }

    /// Gives up what [`Store::claim_answer`] took.
    pub async fn release_answer(&self, bap_id: &str, message_id: &str) -> Result<(), StoreError> {
        match self {
            Store::Embedded(_) => Ok(()),
            Store::Redis(s) => {
                s.delete(Space::Answering, &received_key(bap_id, message_id))
                    .await
            }
        }
    }

    /// A received /rating.
    pub async fn get_received(
        &self,
        bap_id: &str,
        message_id: &str,
    ) -> Result<Option<ReceivedRating>, StoreError> {
        self.get(Space::Received, &received_key(bap_id, message_id))
            .await
    }

    /// Tells other instances the callback for `message_id` is stored (Redis pub/sub); the
    /// embedded store has a single instance, so there is no one to tell.
    pub async fn announce_callback(&self, message_id: &str) -> Result<(), StoreError> {
        match self {
            Store::Embedded(_) => Ok(()),
            Store::Redis(s) => s.announce_callback(message_id).await,
        }
    }

    /// With Redis, starts this instance's one subscription to callback announcements, calling
    /// `on_announce` for each; None for the embedded store.
    pub fn listen_for_callbacks(
        &self,
        on_announce: impl Fn(&str) + Send + 'static,
    ) -> Option<tokio::task::JoinHandle<()>> {
        match self {
            Store::Embedded(_) => None,
            Store::Redis(s) => Some(s.listen_for_callbacks(on_announce)),
        }
    }

    /// A cached registry answer (the caller checks its expiry).
    pub async fn get_cached_key(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_raw(Space::Keys, key).await
    }

    /// Caches a registry answer for `ttl` (Redis expires it; the embedded store keeps it and the
    /// caller's expiry check ignores it once stale).
    pub async fn put_cached_key(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: std::time::Duration,
    ) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s.put(Space::Keys, key, value, embedded::NO_MARKS).await,
            Store::Redis(s) => s.put_expiring(Space::Keys, key, value, ttl).await,
        }
    }

    /// Stores or replaces a user.
    pub async fn put_user(&self, user: &User) -> Result<(), StoreError> {
        self.put_raw(Space::Users, &user.user_id, encode(user))
            .await
    }

    /// A user by id.
    pub async fn get_user(&self, user_id: &str) -> Result<Option<User>, StoreError> {
        self.get(Space::Users, user_id).await
    }

    /// Indexes a v2 feedback /rating by its message_id (written before it is sent).
    pub async fn put_feedback_sent(&self, sent: &FeedbackSent) -> Result<(), StoreError> {
        self.put_raw(
            Space::FeedbackMessages,
            &sent.context.message_id,
            encode(sent),
        )
        .await
    }

    /// The v2 feedback /rating sent with this message_id.
    pub async fn get_feedback_sent(
        &self,
        message_id: &str,
    ) -> Result<Option<FeedbackSent>, StoreError> {
        self.get(Space::FeedbackMessages, message_id).await
    }

    /// Stores or replaces the latest v2 feedback of a user on an order.
    pub async fn put_feedback(&self, record: &FeedbackRecord) -> Result<(), StoreError> {
        self.put_raw(
            Space::Feedback,
            &feedback_key(&record.user_id, &record.order_id),
            encode(record),
        )
        .await
    }

    /// The latest v2 feedback of a user on an order.
    pub async fn get_feedback(
        &self,
        user_id: &str,
        order_id: &str,
    ) -> Result<Option<FeedbackRecord>, StoreError> {
        self.get(Space::Feedback, &feedback_key(user_id, order_id))
            .await
    }

    /// Takes the one-time listing feedback slot of `(record.user_id, record.listing_id)`
    /// atomically; false when it is taken already.
    pub async fn claim_listing_feedback(
        &self,
        record: &ListingFeedbackRecord,
    ) -> Result<bool, StoreError> {
        self.put_new_raw(
            Space::ListingFeedback,
            &feedback_key(&record.user_id, &record.listing_id),
            encode(record),
        )
        .await
    }

    /// Replaces a listing feedback record (only the slot's holder calls this).
    pub async fn put_listing_feedback(
        &self,
        record: &ListingFeedbackRecord,
    ) -> Result<(), StoreError> {
        self.put_raw(
            Space::ListingFeedback,
            &feedback_key(&record.user_id, &record.listing_id),
            encode(record),
        )
        .await
    }

    /// Frees a listing feedback slot (its /rating surely did not reach the seller).
    pub async fn release_listing_feedback(
        &self,
        user_id: &str,
        listing_id: &str,
    ) -> Result<(), StoreError> {
        self.delete_raw(Space::ListingFeedback, &feedback_key(user_id, listing_id))
            .await
    }

    /// A user's feedback on a listing.
    pub async fn get_listing_feedback(
        &self,
        user_id: &str,
        listing_id: &str,
    ) -> Result<Option<ListingFeedbackRecord>, StoreError> {
        self.get(Space::ListingFeedback, &feedback_key(user_id, listing_id))
            .await
    }

    /// Keeps a buyer-side notification not yet delivered, `value` at `key`, due at `due_ms`
    /// (Unix ms), under the caller's [`Store::claim_notice`]. The embedded store keeps the due
    /// time in the value only; Redis also indexes the key by it, index first (an entry a stopped
    /// process left without its value is removed by the next sweep that claims it).
    pub async fn put_notice(
        &self,
        key: &str,
        value: Vec<u8>,
        due_ms: i64,
    ) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s.put(Space::Notices, key, value, embedded::NO_MARKS).await,
            Store::Redis(s) => s.put_notice(key, value, due_ms).await,
        }
    }

    /// Up to `limit` keys of the notifications due at `now_ms`, and how many are kept in all:
    /// with Redis, earliest first, by its index; embedded, in key order, by `due_of` (when a
    /// kept value is due; None for one that cannot be read, listed so that it is dealt with).
    pub async fn due_notices(
        &self,
        now_ms: i64,
        limit: usize,
        due_of: fn(&[u8]) -> Option<i64>,
    ) -> Result<(Vec<String>, u64), StoreError> {
        match self {
            Store::Embedded(s) => {
                s.keys_where(Space::Notices, limit, |v| {
                    due_of(v).is_none_or(|due| due <= now_ms)
                })
                .await
            }
            Store::Redis(s) => s.due_notices(now_ms, limit).await,
        }
    }

    /// A kept notification.
    pub async fn get_notice(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_raw(Space::Notices, key).await
    }

    /// Removes a kept notification (Redis: its index entry first, then its value).
    pub async fn remove_notice(&self, key: &str) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s.delete(Space::Notices, key).await,
            Store::Redis(s) => s.remove_notice(key).await,
        }
    }

    /// Keeps the notification `key` among those given up, as `value` under `entry` (`{given up
    /// ms, 13 digits}|{key}`), in place of the kept one: in one commit embedded; with Redis the
    /// given-up one first, so a stop between the two leaves the kept one to be sent again.
    pub async fn give_up_notice(
        &self,
        key: &str,
        entry: &str,
        value: Vec<u8>,
    ) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s
                .relocate((Space::Notices, key), (Space::GivenUp, entry), value, true)
                .await
                .map(drop),
            Store::Redis(s) => s.give_up_notice(key, entry, value).await,
        }
    }

    /// Up to `limit` notifications of `list`, from the one after the key `after`, in key order:
    /// [`Space::GivenUp`], those given up, oldest first (an entry without a value, with Redis
    /// being written or left by a stop, is skipped: the retention removes it); [`Space::Notices`],
    /// those kept to be sent (with Redis, one kept by a version without this listing is listed
    /// from its next failed round). Each key with its value; with the key of the last one looked
    /// at when the list may go on.
    pub async fn notices(
        &self,
        list: Space,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<(String, Vec<u8>)>, Option<String>), StoreError> {
        debug_assert!(matches!(list, Space::GivenUp | Space::Notices));
        let (entries, next) = self.page_of(list, after, limit).await?;
        // All at once: Redis pipelines them on the one connection.
        let reads = entries.iter().map(|e| self.get_raw(list, e));
        let values = futures_util::future::join_all(reads).await;
        let mut listed = Vec::with_capacity(entries.len());
        for (entry, value) in entries.into_iter().zip(values) {
            if let Some(value) = value? {
                listed.push((entry, value));
            }
        }
        Ok((listed, next))
    }

    /// The given-up notification `entry`.
    pub async fn get_given_up(&self, entry: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_raw(Space::GivenUp, entry).await
    }

    /// Keeps `value` as the notification `key`, due at `due_ms`, in place of the given-up
    /// `entry`: true when `entry` was still there (embedded: in one commit, and only then;
    /// Redis: see `RedisStore::revive_notice`).
    pub async fn revive_notice(
        &self,
        entry: &str,
        key: &str,
        value: Vec<u8>,
        due_ms: i64,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Embedded(s) => {
                s.relocate((Space::GivenUp, entry), (Space::Notices, key), value, false)
                    .await
            }
            Store::Redis(s) => s.revive_notice(entry, key, value, due_ms).await,
        }
    }

    /// Forgets the notifications given up before `cutoff_ms` (Unix ms), at most `limit`, oldest
    /// first; how many went (fewer than `limit`: no more are due), and how many are kept then.
    pub async fn forget_given_up(
        &self,
        cutoff_ms: i64,
        limit: usize,
    ) -> Result<(usize, u64), StoreError> {
        let bound = format!("{:013}|", cutoff_ms.max(0));
        let (mut entries, kept) = match self {
            Store::Embedded(s) => s.keys_where(Space::GivenUp, limit, |_| true).await?,
            Store::Redis(s) => s.first_given_up(limit).await?,
        };
        entries.retain(|e| e.as_str() < bound.as_str());
        let forgetting = entries.iter().map(|entry| self.forget_one_given_up(entry));
        for gone in futures_util::future::join_all(forgetting).await {
            gone?;
        }
        Ok((entries.len(), kept.saturating_sub(entries.len() as u64)))
    }

    /// Forgets the given-up notification `entry` (Redis: its value, then its list entry).
    async fn forget_one_given_up(&self, entry: &str) -> Result<(), StoreError> {
        match self {
            Store::Embedded(s) => s.delete(Space::GivenUp, entry).await,
            Store::Redis(s) => s.forget_given_up(entry).await,
        }
    }

    /// Forgets the given-up notification `entry` on request, not to be sent; false when it is
    /// not kept (two asking at once may both be told it was).
    pub async fn dismiss_given_up(&self, entry: &str) -> Result<bool, StoreError> {
        if self.get_raw(Space::GivenUp, entry).await?.is_none() {
            return Ok(false);
        }
        self.forget_one_given_up(entry).await?;
        Ok(true)
    }

    /// Takes the right to send the notification `key` for at most `lease`; false when another
    /// instance holds it. With the embedded store, one process owns the file and its own
    /// bookkeeping suffices: always taken.
    pub async fn claim_notice(
        &self,
        key: &str,
        lease: std::time::Duration,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Embedded(_) => Ok(true),
            Store::Redis(s) => {
                s.put_new_expiring(Space::NoticeClaims, key, b"1".to_vec(), lease)
                    .await
            }
        }
    }

    /// Gives up what [`Store::claim_notice`] took.
    pub async fn release_notice(&self, key: &str) -> Result<(), StoreError> {
        match self {
            Store::Embedded(_) => Ok(()),
            Store::Redis(s) => s.delete(Space::NoticeClaims, key).await,
        }
    }

    /// Copies the embedded store, as it is now, into a new file at `path` ([`backup`]); None
    /// with Redis, which keeps its own persistence.
    pub async fn backup(
        &self,
        path: &std::path::Path,
    ) -> Option<Result<backup::Backup, backup::BackupError>> {
        match self {
            Store::Embedded(s) => Some(s.backup(path).await),
            Store::Redis(_) => None,
        }
    }

    /// Checks the backend answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.get_raw(Space::Orders, "\u{0}ping").await.map(|_| ())
    }
}

/// Whether a stored rating record may be claimed again (its exchange failed).
pub(crate) fn is_reclaimable(bytes: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Status {
        status: String,
    }
    serde_json::from_slice::<Status>(bytes).is_ok_and(|s| s.status == "failed")
}

/// What holds the right to settle a held received rating ([`Store::claim_answer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerHolder {
    /// The seller platform's answer, its `/on_rating` being sent.
    Answer,
    /// A webhook hand-off a restart took up again, which settles the verdict an answer reads.
    HandOff,
    /// A buyer's repeat opening a new window for the answer (the record takes its context).
    Repeat,
}

impl AnswerHolder {
    /// How the claim's key in Redis names it.
    fn tag(self) -> &'static [u8] {
        match self {
            AnswerHolder::Answer => b"1",
            AnswerHolder::HandOff => b"hand-off",
            AnswerHolder::Repeat => b"repeat",
        }
    }
}

/// The marks a write of `r` sets or clears: [`Space::Owed`], as `r` owes work or not;
/// [`Space::Awaiting`], set while `r` is held for the seller platform's answer, cleared when
/// `settled` (the write that ends the hold); and [`Space::Settled`], set once its `/on_rating`
/// was sent or given up (an entry of an earlier settling is left to
/// [`Store::forget_settled`], which tells it from the record's own).
fn marks(r: &ReceivedRating, settled: bool) -> embedded::Marks {
    let owed = embedded::Mark {
        space: Space::Owed,
        set: r.owes_work(),
        key: None,
    };
    let held = r.on_rating == DeliveryStatus::Awaiting;
    let awaiting = (held || settled).then(|| embedded::Mark {
        space: Space::Awaiting,
        set: held,
        key: Some(arrival_entry(r)),
    });
    let ended = settled_entry(r).map(|entry| embedded::Mark {
        space: Space::Settled,
        set: true,
        key: Some(entry),
    });
    [Some(owed), awaiting, ended, None]
}

/// `r`'s entry in [`Space::Settled`] once its `/on_rating` was sent or given up: the time it
/// settled in milliseconds, 13 digits (entries sort in the order ratings settled), then its key.
fn settled_entry(r: &ReceivedRating) -> Option<String> {
    if !matches!(r.on_rating, DeliveryStatus::Sent | DeliveryStatus::Failed) {
        return None;
    }
    let at = crate::clock::parse_timestamp(r.settled_at.as_deref()?)?;
    Some(format!(
        "{:013}|{}",
        at.timestamp_millis().max(0),
        received_key(&r.context.bap_id, &r.context.message_id)
    ))
}

/// How old an entry of [`Space::Awaiting`] or [`Space::Arrived`] without its record must be to
/// count as left by a crash: far longer than the two writes of an insert take.
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// The time since the arrival an entry of [`Space::Awaiting`] names (zero when it names none
/// readable, or one to come).
fn entry_age(entry: &str) -> std::time::Duration {
    let arrived = entry
        .split_once('|')
        .and_then(|(ms, _)| ms.parse::<u64>().ok())
        .map(|ms| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms));
    arrived
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
        .unwrap_or_default()
}

/// `r`'s entry in [`Space::Arrived`] and [`Space::Awaiting`]: its arrival in milliseconds, 13
/// digits (so entries sort in the order ratings arrived), then its key.
fn arrival_entry(r: &ReceivedRating) -> String {
    let ms = crate::clock::parse_timestamp(&r.received_at)
        .map(|t| t.timestamp_millis().max(0))
        .unwrap_or(0);
    format!(
        "{ms:013}|{}",
        received_key(&r.context.bap_id, &r.context.message_id)
    )
}

/// A received rating's key, `bap_id|message_id`: in the store, and in a process's registry of
/// the ones some work holds.
pub fn received_key(bap_id: &str, message_id: &str) -> String {
    format!("{bap_id}|{message_id}")
}

/// `{len(user_id)}:{user_id}|{order_id}`: the length prefix keeps ids containing `|` apart.
fn feedback_key(user_id: &str, order_id: &str) -> String {
    format!("{}:{user_id}|{order_id}", user_id.len())
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail (string keys, no non-finite floats).
    crate::protocol::to_json(v).expect("records serialise")
}

fn decode<T: DeserializeOwned>(space: Space, key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt(format!("{}/{key}: {e}", space.name())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a restart takes up: every marked rating that still owes work, past one that cannot
    /// be read (which does not fail the start); a rating settled since is no longer marked.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn owed_ratings_are_taken_up_past_an_unreadable_one() {
        let dir = tempfile::tempdir().unwrap();
        let settings = StoreSettings {
            path: dir.path().join("o.redb"),
            ..StoreSettings::default()
        };
        let store = Store::open(&settings).await.unwrap();
        let mut owing = crate::perf::sample_received();
        owing.on_rating = DeliveryStatus::Pending;
        let mut settled = owing.clone();
        settled.context.message_id = "settled".into();
        assert!(store.insert_received(&owing).await.unwrap());
        assert!(store.insert_received(&settled).await.unwrap());
        settled.on_rating = DeliveryStatus::Sent;
        store.put_received(&settled).await.unwrap();
        let Store::Embedded(s) = &store else {
            unreachable!("the default store is embedded")
        };
        // A marked key whose record is not JSON.
        let mark = [
            Some(embedded::Mark {
                space: Space::Owed,
                set: true,
                key: None,
            }),
            None,
            None,
            None,
        ];
        s.put(Space::Received, "buyer|broken", b"{".to_vec(), mark)
            .await
            .unwrap();
        let mut owed = Vec::new();
        for key in store.take_over_owed().await.unwrap() {
            if let Some(r) = store.owed_received(&key).await.unwrap() {
                owed.push(r.context.message_id);
            }
        }
        assert_eq!(owed, [owing.context.message_id]);
    }
}

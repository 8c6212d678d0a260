//! The embedded backend: one redb file.
//!
//! Writes go through one writer thread that commits them in groups: it takes every write queued
//! while the previous commit was being made durable, applies them in arrival order inside one
//! write transaction and commits once, so one fsync covers the whole group. Each caller gets its
//! answer only after that commit returned, so every write is durable before its call returns,
//! as with one transaction per write. Applied in order inside one transaction, the claim's
//! read-check-write still sees every earlier write, so of concurrent claims on one order exactly
//! one wins. Reads run on the calling task's thread and see committed data only: a redb read
//! transaction never waits for the writer (each sees the last commit), and its pages come from
//! redb's bounded cache or the OS page cache. Handing each read to tokio's blocking pool instead
//! cost a thread switch per read, a third of the buyer side's CPU per rating (docs/BENCHMARKS.md).
//! A write whose caller need not wait (the seller's record of how its /on_rating went) is queued
//! and left: being in the one queue orders it after every earlier write and before every later
//! one, and what the caller hands along (its in-flight guard) is dropped once it is committed. No
//! task runs it and no thread is woken for its answer (measured on the buyer side's status
//! writes, two thirds of its context switches).
//!
//! A failed write of the file (the disk full, an I/O error) latches redb: every later write
//! fails until the database is opened again. The writer then opens it again itself, retrying with
//! backoff until the file can be written, so the store comes back once the disk does, without a
//! restart; meanwhile every call fails with [`StoreError::Unavailable`] and changes nothing (the
//! failed group was not committed), and reads fail too, so readiness reports the store down.
//! The writes nobody waits for (the seller's delivery records) are not dropped, neither those of
//! the failed group nor those queued while the file is opened again: they are made first once
//! it is open, in the order they were queued, so a delivery record the failure cut short lands
//! without a restart (a caller that waits gets the failure and decides for itself).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use tokio::sync::oneshot;

use super::{Space, StoreError};
pub(super) fn table(space: Space) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(space.name())
}

/// Every table the file holds.
pub(super) const ALL: [Space; 16] = [
    Space::Orders,
    Space::Ratings,
    Space::Messages,
    Space::Callbacks,
    Space::Received,
    Space::Keys,
    Space::Users,
    Space::Feedback,
    Space::FeedbackMessages,
    Space::ListingFeedback,
    Space::Owed,
    Space::Awaiting,
    Space::Arrived,
    Space::Settled,
    Space::Notices,
    Space::GivenUp,
];

/// The most writes one commit takes.
const MAX_GROUP: usize = 512;

/// A redb-backed store.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Slot>,
    writer: mpsc::Sender<Job>,
}

/// The open database, or none while the writer opens it again after an I/O failure.
struct Slot {
    db: RwLock<Option<Arc<Database>>>,
    path: PathBuf,
    cache_bytes: usize,
}

impl Slot {
    /// The database, unless it is being opened again.
    fn current(&self) -> Result<Arc<Database>, StoreError> {
        self.db
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| unavailable("the store's file is being opened again after a failure"))
    }

    fn set(&self, db: Option<Arc<Database>>) -> Option<Arc<Database>> {
        std::mem::replace(&mut *self.db.write().unwrap_or_else(|p| p.into_inner()), db)
    }
}

/// A key set or cleared in `space` together with a write of a record, in its transaction: an
/// index of the records in some state (owing work, [`Space::Owed`]; held for the seller
/// platform's answer, [`Space::Awaiting`]; settled, [`Space::Settled`]) or of all of them in
/// order ([`Space::Arrived`]), never out of step with them.
#[derive(Debug, Clone)]
pub struct Mark {
    /// The index.
    pub space: Space,
    /// Set (the record is in the state) or cleared.
    pub set: bool,
    /// The index's key, when it is not the record's own.
    pub key: Option<String>,
}

/// The marks one write sets or clears.
pub type Marks = [Option<Mark>; 4];

/// No marks.
pub const NO_MARKS: Marks = [None, None, None, None];

/// One write, as the writer thread applies it.
enum Write {
    Put {
        space: Space,
        key: String,
        value: Vec<u8>,
        mark: Marks,
    },
    Delete {
        space: Space,
        key: String,
    },
    PutNew {
        space: Space,
        key: String,
        value: Vec<u8>,
        mark: Marks,
    },
    /// Puts `value` at `key` if the key holds exactly `expect`.
    Replace {
        space: Space,
        key: String,
        expect: Vec<u8>,
        value: Vec<u8>,
    },
    Claim {
        order_id: String,
        record: Vec<u8>,
        message_id: String,
        index_value: String,
    },
    /// Removes the entry `entry` of [`Space::Settled`]; with `due` (the bytes the received
    /// rating at `key` must hold, its entry in [`Space::Arrived`]), that rating and its arrival
    /// too if it holds exactly those bytes.
    Forget {
        key: String,
        due: Option<(Vec<u8>, String)>,
        entry: String,
    },
    /// Removes `from` and puts `value` at `to`, if `from` is there or `always`.
    Move {
        from: (Space, String),
        to: (Space, String),
        value: Vec<u8>,
        always: bool,
    },
}

/// What a write found: nothing to tell, whether a new key went in, or the live record a claim
/// lost to.
enum Outcome {
    Done,
    Inserted(bool),
    Claimed(Option<Vec<u8>>),
}

struct Job {
    write: Write,
    reply: oneshot::Sender<Result<Outcome, StoreError>>,
    /// Dropped once the write's group is committed (or failed): what a caller that does not
    /// wait for the answer needs kept until then.
    hold: Option<Box<dyn Send>>,
}

impl Job {
    /// Queued and left ([`EmbeddedStore::put_queued`]): nobody waits for its answer, so a
    /// failure would go unseen; its hold is what marks it.
    fn left(&self) -> bool {
        self.hold.is_some()
    }
}

/// A write queued without waiting for its commit (see [`EmbeddedStore::put_queued`]).
pub struct Queued(oneshot::Receiver<Result<Outcome, StoreError>>);

impl Queued {
    /// Waits until the write is committed; Err when it failed.
    pub async fn landed(self) -> Result<(), StoreError> {
        self.0
            .await
            .map_err(|_| unavailable("the store's writer has stopped"))?
            .map(|_| ())
    }
}

/// Sets or clears, for the record at `key`, each mark of `marks` in the index it names (only
/// those it sets, with `sets_only`).
fn apply_marks(
    tx: &WriteTransaction,
    key: &str,
    marks: &Marks,
    sets_only: bool,
) -> Result<(), StoreError> {
    for mark in marks.iter().flatten().filter(|m| m.set || !sets_only) {
        let key = mark.key.as_deref().unwrap_or(key);
        let mut t = tx.open_table(table(mark.space)).map_err(unavailable)?;
        if mark.set {
            t.insert(key, &[][..]).map_err(unavailable)?;
        } else {
            t.remove(key).map_err(unavailable)?;
        }
    }
    Ok(())
}

/// Applies one write inside the group's transaction (by reference: a failed group keeps the
/// writes it must make again).
fn apply(tx: &WriteTransaction, write: &Write) -> Result<Outcome, StoreError> {
    match write {
        Write::Put {
            space,
            key,
            value,
            mark,
        } => {
            let mut t = tx.open_table(table(*space)).map_err(unavailable)?;
            t.insert(key.as_str(), value.as_slice())
                .map_err(unavailable)?;
            drop(t);
            apply_marks(tx, key, mark, false)?;
            Ok(Outcome::Done)
        }
        Write::Delete { space, key } => {
            let mut t = tx.open_table(table(*space)).map_err(unavailable)?;
            t.remove(key.as_str()).map_err(unavailable)?;
            Ok(Outcome::Done)
        }
        Write::PutNew {
            space,
            key,
            value,
            mark,
        } => {
            let mut t = tx.open_table(table(*space)).map_err(unavailable)?;
            if t.get(key.as_str()).map_err(unavailable)?.is_some() {
                return Ok(Outcome::Inserted(false));
            }
            t.insert(key.as_str(), value.as_slice())
                .map_err(unavailable)?;
            drop(t);
            // A new key has no mark to clear.
            apply_marks(tx, key, mark, true)?;
            Ok(Outcome::Inserted(true))
        }
        Write::Replace {
            space,
            key,
            expect,
            value,
        } => {
            let mut t = tx.open_table(table(*space)).map_err(unavailable)?;
            let holds = t
                .get(key.as_str())
                .map_err(unavailable)?
                .is_some_and(|v| v.value() == expect.as_slice());
            if holds {
                t.insert(key.as_str(), value.as_slice())
                    .map_err(unavailable)?;
            }
            Ok(Outcome::Inserted(holds))
        }
        Write::Claim {
            order_id,
            record,
            message_id,
            index_value,
        } => {
            let mut ratings = tx.open_table(table(Space::Ratings)).map_err(unavailable)?;
            let existing = ratings
                .get(order_id.as_str())
                .map_err(unavailable)?
                .map(|v| v.value().to_vec());
            if let Some(bytes) = existing
                && !super::is_reclaimable(&bytes)
            {
                return Ok(Outcome::Claimed(Some(bytes)));
            }
            ratings
                .insert(order_id.as_str(), record.as_slice())
                .map_err(unavailable)?;
            let mut messages = tx.open_table(table(Space::Messages)).map_err(unavailable)?;
            messages
                .insert(message_id.as_str(), index_value.as_bytes())
                .map_err(unavailable)?;
            Ok(Outcome::Claimed(None))
        }
        Write::Forget { key, due, entry } => {
            let mut t = tx.open_table(table(Space::Received)).map_err(unavailable)?;
            let holds = match &due {
                Some((expect, _)) => t
                    .get(key.as_str())
                    .map_err(unavailable)?
                    .is_some_and(|v| v.value() == expect.as_slice()),
                None => false,
            };
            if holds {
                t.remove(key.as_str()).map_err(unavailable)?;
            }
            drop(t);
            let mut t = tx.open_table(table(Space::Settled)).map_err(unavailable)?;
            t.remove(entry.as_str()).map_err(unavailable)?;
            drop(t);
            if let Some((_, arrived)) = due.as_ref().filter(|_| holds) {
                let mut t = tx.open_table(table(Space::Arrived)).map_err(unavailable)?;
                t.remove(arrived.as_str()).map_err(unavailable)?;
            }
            Ok(Outcome::Inserted(holds))
        }
        Write::Move {
            from,
            to,
            value,
            always,
        } => {
            let mut t = tx.open_table(table(from.0)).map_err(unavailable)?;
            let there = t.remove(from.1.as_str()).map_err(unavailable)?.is_some();
            drop(t);
            if there || *always {
                let mut t = tx.open_table(table(to.0)).map_err(unavailable)?;
                t.insert(to.1.as_str(), value.as_slice())
                    .map_err(unavailable)?;
            }
            Ok(Outcome::Inserted(there))
        }
    }
}

/// Commits one group: every write in order, one commit; each job answered after the commit. A
/// storage failure fails the whole group (nothing of it is committed): the writes with a caller
/// waiting are answered with it, and the failure comes back with the others (queued and left,
/// [`EmbeddedStore::put_queued`]), unanswered and still holding what they hold.
fn commit_group(db: &Database, group: Vec<Job>) -> Result<(), (StoreError, Vec<Job>)> {
    let result = db.begin_write().map_err(unavailable).and_then(|tx| {
        let mut outcomes = Vec::with_capacity(group.len());
        for job in &group {
            outcomes.push(apply(&tx, &job.write)?);
        }
        tx.commit().map_err(unavailable)?;
        Ok(outcomes)
    });
    match result {
        Ok(outcomes) => {
            let mut holds = Vec::new();
            for (job, outcome) in group.into_iter().zip(outcomes) {
                let _ = job.reply.send(Ok(outcome));
                holds.extend(job.hold);
            }
            drop(holds);
            Ok(())
        }
        Err(e) => {
            tracing::warn!(error = %e, "embedded store write failed");
            let (left, waited): (Vec<Job>, Vec<Job>) = group.into_iter().partition(Job::left);
            fail_group(waited, &e);
            Err((e, left))
        }
    }
}

/// The writer thread: waits for a write, takes whatever else is queued, commits the group.
/// After a group that failed on a database redb has latched failed, opens it again
/// ([`reopen`]) and then makes first, as a group of their own, the writes nobody waits for of
/// the failed group and of the time it took. Ends when every handle to the store is gone.
fn writer_loop(slot: Arc<Slot>, jobs: mpsc::Receiver<Job>) {
    let mut carried = Vec::new();
    loop {
        let group = if carried.is_empty() {
            let Ok(first) = jobs.recv() else {
                return;
            };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match jobs.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            group
        } else {
            std::mem::take(&mut carried)
        };
        let db = match slot.current() {
            Ok(db) => db,
            Err(e) => {
                fail_group(group, &e);
                continue;
            }
        };
        if let Err((e, left)) = commit_group(&db, group) {
            if latched(&db) {
                drop(db);
                carried = left;
                if !reopen(&slot, &jobs, &mut carried) {
                    return;
                }
            } else {
                fail_group(left, &e);
            }
        }
    }
}

/// Whether redb refuses every write of `db` after an I/O failure (it must be opened again).
fn latched(db: &Database) -> bool {
    matches!(
        db.begin_write(),
        Err(redb::TransactionError::Storage(
            redb::StorageError::PreviousIo | redb::StorageError::Io(_)
        ))
    )
}

/// Opens the database again after an I/O failure: takes it out of the slot (calls fail at once
/// meanwhile), waits for the reads still holding it, then opens the file with backoff (100 ms
/// doubling to 2 s) until it opens. The writes that come meanwhile are answered with the
/// failure, but for those nobody waits for, which join `carried` (to be made once it is open).
/// False when every handle to the store went away first.
fn reopen(slot: &Slot, jobs: &mpsc::Receiver<Job>, carried: &mut Vec<Job>) -> bool {
    tracing::error!("the store's file failed to write; opening it again");
    if let Some(mut old) = slot.set(None) {
        // Reads hold it for the length of one read transaction; redb lets go of the file's
        // lock only once the last holder drops it.
        for _ in 0..5_000 {
            match Arc::try_unwrap(old) {
                Ok(db) => {
                    drop(db);
                    break;
                }
                Err(held) => {
                    old = held;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    let mut pause = Duration::from_millis(100);
    let mut failures = 0u32;
    loop {
        match open_file(&slot.path, slot.cache_bytes) {
            Ok(db) => {
                slot.set(Some(Arc::new(db)));
                tracing::warn!(failures, "the store's file is open again");
                return true;
            }
            Err(e) => {
                if failures.is_multiple_of(30) {
                    tracing::warn!(error = %e, failures, "the store's file cannot be opened again yet; retrying");
                }
                failures += 1;
            }
        }
        let until = std::time::Instant::now() + pause;
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match jobs.recv_timeout(left) {
                // Nobody waits for it: made once the file is open again, after the others.
                Ok(job) if job.left() => carried.push(job),
                Ok(job) => fail_group(
                    vec![job],
                    &unavailable("the store's file is being opened again after a failure"),
                ),
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(mpsc::RecvTimeoutError::Disconnected) => return false,
            }
        }
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// Answers every write of `group` with `e` (nothing of it is applied).
fn fail_group(group: Vec<Job>, e: &StoreError) {
    for job in group {
        let _ = job.reply.send(Err(e.clone()));
    }
}

/// Opens (creating if needed, repairing after a crash or a failed write) the database file and
/// its tables.
fn open_file(path: &Path, cache_bytes: usize) -> Result<Database, StoreError> {
    let db = Database::builder()
        .set_cache_size(cache_bytes)
        .create(path)
        .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                StoreError::Locked(path.display().to_string())
            }
            e => unavailable(format!("{}: {e}", path.display())),
        })?;
    let tx = db.begin_write().map_err(unavailable)?;
    for space in ALL {
        tx.open_table(table(space)).map_err(unavailable)?;
    }
    tx.commit().map_err(unavailable)?;
    Ok(db)
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl EmbeddedStore {
    /// Opens (creating if needed) the database file and its tables, with a page cache of at
    /// most `cache_bytes` (memory stays bounded however large the file grows).
    pub fn open(path: &Path, cache_bytes: usize) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| unavailable(format!("{}: {e}", dir.display())))?;
        }
        let db = open_file(path, cache_bytes)?;
        let db = Arc::new(Slot {
            db: RwLock::new(Some(Arc::new(db))),
            path: path.to_owned(),
            cache_bytes,
        });
        let (writer, jobs) = mpsc::channel();
        let for_writer = db.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer_loop(for_writer, jobs))
            .map_err(unavailable)?;
        Ok(Self { db, writer })
    }

    /// Queues a write for the writer thread; the receiver gets its outcome after its group's
    /// commit (or at once, an error, when the writer has stopped). `hold` is dropped with the job.
    fn queue(
        &self,
        write: Write,
        hold: Option<Box<dyn Send>>,
    ) -> oneshot::Receiver<Result<Outcome, StoreError>> {
        let (reply, answer) = oneshot::channel();
        if let Err(mpsc::SendError(job)) = self.writer.send(Job { write, reply, hold }) {
            let _ = job
                .reply
                .send(Err(unavailable("the store's writer has stopped")));
        }
        answer
    }

    /// Queues a write for the writer thread and waits for its group's commit.
    async fn write(&self, write: Write) -> Result<Outcome, StoreError> {
        self.queue(write, None)
            .await
            .map_err(|_| unavailable("the store's writer has stopped"))?
    }

    /// Queues a put behind every write already queued and returns at once: the writer applies
    /// writes in the order they were queued, so a later write of the same key lands after it
    /// without waiting for it. `hold` is dropped when the put's group is committed or failed.
    pub(super) fn put_queued(
        &self,
        space: Space,
        key: &str,
        value: Vec<u8>,
        mark: Marks,
        hold: Box<dyn Send>,
    ) -> Queued {
        let key = key.to_owned();
        let write = Write::Put {
            space,
            key,
            value,
            mark,
        };
        Queued(self.queue(write, Some(hold)))
    }

    /// Copies the whole store, as it is now, into a new file at `path` (see [`super::backup`]);
    /// run on tokio's blocking pool, beside the writes and reads it does not hold up.
    pub(super) async fn backup(
        &self,
        path: &Path,
    ) -> Result<super::backup::Backup, super::backup::BackupError> {
        let db = self.db.current()?;
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || super::backup::copy(&db, &path))
            .await
            .map_err(|e| super::backup::BackupError::Write(format!("the backup stopped: {e}")))?
    }

    /// Every key of `space`, in order (for the small index tables).
    pub(super) async fn keys(&self, space: Space) -> Result<Vec<String>, StoreError> {
        let tx = self.db.current()?.begin_read().map_err(unavailable)?;
        let t = tx.open_table(table(space)).map_err(unavailable)?;
        let mut keys = Vec::new();
        for entry in t.iter().map_err(unavailable)? {
            let (key, _) = entry.map_err(unavailable)?;
            keys.push(key.value().to_owned());
        }
        Ok(keys)
    }

    /// Up to `limit` keys of `space` whose value passes `keep`, in order, and how many keys
    /// `space` holds, read in one transaction.
    pub(super) async fn keys_where(
        &self,
        space: Space,
        limit: usize,
        keep: impl Fn(&[u8]) -> bool,
    ) -> Result<(Vec<String>, u64), StoreError> {
        use redb::ReadableTableMetadata;
        let tx = self.db.current()?.begin_read().map_err(unavailable)?;
        let t = tx.open_table(table(space)).map_err(unavailable)?;
        let all = t.len().map_err(unavailable)?;
        let mut keys = Vec::new();
        for entry in t.iter().map_err(unavailable)? {
            let (key, value) = entry.map_err(unavailable)?;
            if keep(value.value()) {
                keys.push(key.value().to_owned());
                if keys.len() == limit {
                    break;
                }
            }
        }
        Ok((keys, all))
    }

    /// Up to `limit` keys of `space` after `after` (from the first without it), in order.
    pub(super) async fn keys_after(
        &self,
        space: Space,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        use std::ops::Bound;
        let tx = self.db.current()?.begin_read().map_err(unavailable)?;
        let t = tx.open_table(table(space)).map_err(unavailable)?;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut keys = Vec::new();
        for entry in t
            .range::<&str>((from, Bound::Unbounded))
            .map_err(unavailable)?
            .take(limit)
        {
            let (key, _) = entry.map_err(unavailable)?;
            keys.push(key.value().to_owned());
        }
        Ok(keys)
    }

    pub(super) async fn get(&self, space: Space, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.current()?.begin_read().map_err(unavailable)?;
        let t = tx.open_table(table(space)).map_err(unavailable)?;
        Ok(t.get(key).map_err(unavailable)?.map(|v| v.value().to_vec()))
    }

    /// Puts `value` at `key`, setting or clearing `mark` in the same commit.
    pub(super) async fn put(
        &self,
        space: Space,
        key: &str,
        value: Vec<u8>,
        mark: Marks,
    ) -> Result<(), StoreError> {
        let key = key.to_owned();
        let write = Write::Put {
            space,
            key,
            value,
            mark,
        };
        self.write(write).await.map(|_| ())
    }

    pub(super) async fn delete(&self, space: Space, key: &str) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.write(Write::Delete { space, key }).await.map(|_| ())
    }

    /// Puts `value` at `key` unless the key is there (true when it was not), setting or clearing
    /// `mark` in the same commit when it puts.
    pub(super) async fn put_new(
        &self,
        space: Space,
        key: &str,
        value: Vec<u8>,
        mark: Marks,
    ) -> Result<bool, StoreError> {
        let key = key.to_owned();
        let write = Write::PutNew {
            space,
            key,
            value,
            mark,
        };
        match self.write(write).await? {
            Outcome::Inserted(inserted) => Ok(inserted),
            _ => Err(unavailable("unexpected answer from the store's writer")),
        }
    }

    /// Puts `value` at `key` if the key holds exactly `expect` (true when it did).
    pub(super) async fn replace(
        &self,
        space: Space,
        key: &str,
        expect: Vec<u8>,
        value: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let write = Write::Replace {
            space,
            key: key.to_owned(),
            expect,
            value,
        };
        match self.write(write).await? {
            Outcome::Inserted(replaced) => Ok(replaced),
            _ => Err(unavailable("unexpected answer from the store's writer")),
        }
    }

    /// Removes `entry` from [`Space::Settled`], and with it, given `due` (the bytes it must
    /// hold, its arrival entry), the received rating at `key` and its arrival when it holds
    /// exactly those bytes (true when it did and is gone); in one commit.
    pub(super) async fn forget(
        &self,
        key: &str,
        due: Option<(Vec<u8>, String)>,
        entry: &str,
    ) -> Result<bool, StoreError> {
        let write = Write::Forget {
            key: key.to_owned(),
            due,
            entry: entry.to_owned(),
        };
        match self.write(write).await? {
            Outcome::Inserted(forgotten) => Ok(forgotten),
            _ => Err(unavailable("unexpected answer from the store's writer")),
        }
    }

    /// Removes `from` and puts `value` at `to` in one commit, if `from` is there or `always`
    /// (true when `from` was there).
    pub(super) async fn relocate(
        &self,
        from: (Space, &str),
        to: (Space, &str),
        value: Vec<u8>,
        always: bool,
    ) -> Result<bool, StoreError> {
        let write = Write::Move {
            from: (from.0, from.1.to_owned()),
            to: (to.0, to.1.to_owned()),
            value,
            always,
        };
        match self.write(write).await? {
            Outcome::Inserted(moved) => Ok(moved),
            _ => Err(unavailable("unexpected answer from the store's writer")),
        }
    }

    /// Claims `order_id` unless it holds a live (not failed) record; returns that record's bytes
    /// when it does. Indexes `message_id -> order_id` in the same transaction.
    pub(super) async fn claim(
        &self,
        order_id: &str,
        record: Vec<u8>,
        message_id: &str,
        index_value: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let write = Write::Claim {
            order_id: order_id.to_owned(),
            record,
            message_id: message_id.to_owned(),
            index_value: index_value.to_owned(),
        };
        match self.write(write).await? {
            Outcome::Claimed(existing) => Ok(existing),
            _ => Err(unavailable("unexpected answer from the store's writer")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: usize) -> Vec<u8> {
        format!(r#"{{"status":"acknowledged","n":{n}}}"#).into_bytes()
    }

    /// Drops `store` and opens its file again (the writer thread lets go of the file once every
    /// handle is gone).
    fn reopen(store: EmbeddedStore, path: &Path) -> EmbeddedStore {
        drop(store);
        loop {
            match EmbeddedStore::open(path, 1 << 20) {
                Err(StoreError::Locked(_)) => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                other => break other.unwrap(),
            }
        }
    }

    fn n_of(bytes: &[u8]) -> usize {
        let v: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        v["n"].as_u64().unwrap() as usize
    }

    /// Puts queued without waiting land in the order they were queued, and each one's hold is
    /// dropped only once its commit is visible; a write queued after them lands after them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_puts_land_in_order_and_release_their_holds_after_commit() {
        struct Hold(tokio::sync::mpsc::UnboundedSender<usize>, usize);
        impl Drop for Hold {
            fn drop(&mut self) {
                let _ = self.0.send(self.1);
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.redb");
        let store = EmbeddedStore::open(&path, 1 << 20).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut queued = Vec::new();
        for n in 0..100 {
            queued.push(store.put_queued(
                Space::Ratings,
                "O-1",
                record(n),
                NO_MARKS,
                Box::new(Hold(tx.clone(), n)),
            ));
        }
        drop(tx);
        // Nobody waits for the first 99; every hold still comes back, each after its commit.
        let mut released = Vec::new();
        while let Some(n) = rx.recv().await {
            let stored = store.get(Space::Ratings, "O-1").await.unwrap().unwrap();
            assert!(n_of(&stored) >= n, "hold {n} released before its commit");
            released.push(n);
        }
        released.sort_unstable();
        assert_eq!(released, (0..100).collect::<Vec<_>>());
        // A waited write queued now lands after all of them.
        store
            .put(Space::Ratings, "O-1", record(500), NO_MARKS)
            .await
            .unwrap();
        for q in queued {
            q.landed().await.unwrap();
        }
        assert_eq!(
            store.get(Space::Ratings, "O-1").await.unwrap(),
            Some(record(500))
        );
        let store = reopen(store, &path);
        assert_eq!(
            store.get(Space::Ratings, "O-1").await.unwrap(),
            Some(record(500))
        );
    }

    /// Many writes at once (grouped into few commits): claims on one order have one winner,
    /// every other write is applied, and all of it is on disk when the file is opened again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_are_each_applied_once_and_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = EmbeddedStore::open(&path, 1 << 20).unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..200 {
            let s = store.clone();
            tasks.spawn(async move {
                if n % 2 == 0 {
                    let won = s
                        .claim("O-1", record(n), &format!("m-{n}"), "O-1")
                        .await
                        .unwrap()
                        .is_none();
                    (n, won, false)
                } else {
                    let fresh = s
                        .put_new(Space::Received, &format!("k-{n}"), record(n), NO_MARKS)
                        .await
                        .unwrap();
                    // The same key again: already there.
                    let again = s
                        .put_new(Space::Received, &format!("k-{n}"), record(0), NO_MARKS)
                        .await
                        .unwrap();
                    (n, fresh && !again, true)
                }
            });
        }
        let mut winners = Vec::new();
        while let Some(r) = tasks.join_next().await {
            let (n, ok, is_put) = r.unwrap();
            if is_put {
                assert!(ok, "put_new {n}: first inserts, second refuses");
            } else if ok {
                winners.push(n);
            }
        }
        assert_eq!(winners.len(), 1, "{winners:?}");
        let winner = winners[0];
        let store = reopen(store, &path);
        assert_eq!(
            store.get(Space::Ratings, "O-1").await.unwrap(),
            Some(record(winner))
        );
        assert_eq!(
            store
                .get(Space::Messages, &format!("m-{winner}"))
                .await
                .unwrap(),
            Some(b"O-1".to_vec())
        );
        for n in (1..200).step_by(2) {
            assert_eq!(
                store.get(Space::Received, &format!("k-{n}")).await.unwrap(),
                Some(record(n)),
                "k-{n}"
            );
        }
        // Deletes go through the same writer.
        store.delete(Space::Received, "k-1").await.unwrap();
        assert_eq!(store.get(Space::Received, "k-1").await.unwrap(), None);
    }

    /// A mark is set or cleared in the commit of its record's write, and only when that write
    /// lands: a repeated insert leaves it alone. The index survives a reopen.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn marks_follow_their_records_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.redb");
        let store = EmbeddedStore::open(&path, 1 << 20).unwrap();
        let owes = |set| {
            [
                Some(Mark {
                    space: Space::Owed,
                    set,
                    key: None,
                }),
                None,
                None,
                None,
            ]
        };
        for k in ["a", "b", "c"] {
            let fresh = store
                .put_new(Space::Received, k, record(1), owes(true))
                .await
                .unwrap();
            assert!(fresh);
        }
        assert_eq!(store.keys(Space::Owed).await.unwrap(), ["a", "b", "c"]);
        // "b" settled, "c" settled by a queued write; "a" inserted again (refused) clears nothing.
        store
            .put(Space::Received, "b", record(2), owes(false))
            .await
            .unwrap();
        struct Nothing;
        store
            .put_queued(
                Space::Received,
                "c",
                record(2),
                owes(false),
                Box::new(Nothing),
            )
            .landed()
            .await
            .unwrap();
        let fresh = store
            .put_new(Space::Received, "a", record(3), owes(false))
            .await
            .unwrap();
        assert!(!fresh);
        assert_eq!(store.keys(Space::Owed).await.unwrap(), ["a"]);
        let store = reopen(store, &path);
        assert_eq!(store.keys(Space::Owed).await.unwrap(), ["a"]);
        assert_eq!(
            store.get(Space::Received, "b").await.unwrap(),
            Some(record(2))
        );
    }
}

//! The embedded backend: one redb file. redb serialises write transactions, so the claim's
//! read-check-write is atomic without further locking; every commit is durable (fsync) before the
//! call returns. redb calls block, so they run on tokio's blocking pool.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Space, StoreError};

fn table(space: Space) -> TableDefinition<'static, &'static str, &'static [u8]> {
    TableDefinition::new(space.name())
}

const ALL: [Space; 10] = [
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
];

/// A redb-backed store.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl EmbeddedStore {
    /// Opens (creating if needed) the database file and its tables.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| unavailable(format!("{}: {e}", dir.display())))?;
        }
        let db = Database::create(path).map_err(|e| match e {
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
        Ok(Self { db: Arc::new(db) })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(unavailable)?
    }

    pub(super) async fn get(&self, space: Space, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_owned();
        self.blocking(move |db| {
            let tx = db.begin_read().map_err(unavailable)?;
            let t = tx.open_table(table(space)).map_err(unavailable)?;
            Ok(t.get(key.as_str())
                .map_err(unavailable)?
                .map(|v| v.value().to_vec()))
        })
        .await
    }

    pub(super) async fn put(
        &self,
        space: Space,
        key: &str,
        value: Vec<u8>,
    ) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(unavailable)?;
            {
                let mut t = tx.open_table(table(space)).map_err(unavailable)?;
                t.insert(key.as_str(), value.as_slice())
                    .map_err(unavailable)?;
            }
            tx.commit().map_err(unavailable)
        })
        .await
    }

    pub(super) async fn delete(&self, space: Space, key: &str) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(unavailable)?;
            {
                let mut t = tx.open_table(table(space)).map_err(unavailable)?;
                t.remove(key.as_str()).map_err(unavailable)?;
            }
            tx.commit().map_err(unavailable)
        })
        .await
    }

    pub(super) async fn put_new(
        &self,
        space: Space,
        key: &str,
        value: Vec<u8>,
    ) -> Result<bool, StoreError> {
        let key = key.to_owned();
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(unavailable)?;
            {
                let mut t = tx.open_table(table(space)).map_err(unavailable)?;
                if t.get(key.as_str()).map_err(unavailable)?.is_some() {
                    return Ok(false);
                }
                t.insert(key.as_str(), value.as_slice())
                    .map_err(unavailable)?;
            }
            tx.commit().map_err(unavailable)?;
            Ok(true)
        })
        .await
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
        let (order_id, message_id, index_value) = (
            order_id.to_owned(),
            message_id.to_owned(),
            index_value.to_owned(),
        );
        self.blocking(move |db| {
            let tx = db.begin_write().map_err(unavailable)?;
            {
                let mut ratings = tx.open_table(table(Space::Ratings)).map_err(unavailable)?;
                let existing = ratings
                    .get(order_id.as_str())
                    .map_err(unavailable)?
                    .map(|v| v.value().to_vec());
                if let Some(bytes) = existing
                    && !super::is_reclaimable(&bytes)
                {
                    return Ok(Some(bytes));
                }
                ratings
                    .insert(order_id.as_str(), record.as_slice())
                    .map_err(unavailable)?;
                let mut messages = tx.open_table(table(Space::Messages)).map_err(unavailable)?;
                messages
                    .insert(message_id.as_str(), index_value.as_bytes())
                    .map_err(unavailable)?;
            }
            tx.commit().map_err(unavailable)?;
            Ok(None)
        })
        .await
    }
}

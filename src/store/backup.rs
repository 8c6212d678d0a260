//! Online backups of the embedded store: a copy of every table as one read transaction sees it
//! (a point in time: redb's reads see the last commit and never wait for the writer, so the
//! adapter keeps serving meanwhile), written into a new redb file beside the others in
//! `store.backup_dir`. The copy is written under a hidden `.partial` name and renamed into place
//! once it is on disk (its file and its directory synced), so a backup that is listed is whole;
//! one that fails leaves nothing behind. Restoring is the adapter opening that file as its store
//! (README, "Backups").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable};

use super::embedded::{ALL, table};
use super::{Space, StoreError};

/// Entries copied per commit of the new file, at most.
const BATCH_ENTRIES: usize = 10_000;
/// Bytes of keys and values copied per commit of the new file, at most (a commit holds its
/// pages in memory until it is written).
const BATCH_BYTES: usize = 8 << 20;
/// The new file's page cache (redb's default is a GiB).
const BACKUP_CACHE: usize = 16 << 20;

/// What a backup wrote.
#[derive(Debug, Clone)]
pub struct Backup {
    /// Its file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// The entries copied, per table.
    pub tables: BTreeMap<&'static str, u64>,
}

/// Why a backup was not made.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The copy could not be written (the directory, the disk).
    #[error("{0}")]
    Write(String),
}

fn write_error(path: &Path, e: impl std::fmt::Display) -> BackupError {
    BackupError::Write(format!("{}: {e}", path.display()))
}

/// Copies every table of `db`, as one read transaction sees it, into a new file at `path` (which
/// must not exist), through a `.partial` file renamed into place once synced. Blocking.
pub fn copy(db: &Database, path: &Path) -> Result<Backup, BackupError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| write_error(dir, e))?;
    if path.exists() {
        return Err(write_error(path, "exists already"));
    }
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let partial = dir.join(format!(".{name}.partial"));
    let written = write_copy(db, &partial).and_then(|tables| {
        sync(&partial)?;
        std::fs::rename(&partial, path).map_err(|e| write_error(path, e))?;
        sync(dir)?;
        Ok(tables)
    });
    match written {
        Ok(tables) => {
            let bytes = std::fs::metadata(path)
                .map_err(|e| write_error(path, e))?
                .len();
            Ok(Backup {
                path: path.to_owned(),
                bytes,
                tables,
            })
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

fn sync(path: &Path) -> Result<(), BackupError> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| write_error(path, e))
}

/// The copy itself, into a fresh database at `partial`.
fn write_copy(db: &Database, partial: &Path) -> Result<BTreeMap<&'static str, u64>, BackupError> {
    let _ = std::fs::remove_file(partial);
    // A small cache: the copy is written once and never read back.
    let out = Database::builder()
        .set_cache_size(BACKUP_CACHE)
        .create(partial)
        .map_err(|e| write_error(partial, e))?;
    let read = db.begin_read().map_err(unavailable)?;
    let mut tables = BTreeMap::new();
    for space in ALL {
        let copied = copy_table(&read, &out, space, partial)?;
        tables.insert(space.name(), copied);
    }
    Ok(tables)
}

/// Copies the table of `space` in commits of at most [`BATCH_ENTRIES`] entries and
/// [`BATCH_BYTES`]; how many entries it held. The table is made even when empty.
fn copy_table(
    read: &redb::ReadTransaction,
    out: &Database,
    space: Space,
    partial: &Path,
) -> Result<u64, BackupError> {
    let source = read.open_table(table(space)).map_err(unavailable)?;
    let mut entries = source.iter().map_err(unavailable)?.peekable();
    let mut copied = 0u64;
    loop {
        let tx = out.begin_write().map_err(|e| write_error(partial, e))?;
        {
            let mut target = tx
                .open_table(table(space))
                .map_err(|e| write_error(partial, e))?;
            let (mut n, mut bytes) = (0, 0);
            while n < BATCH_ENTRIES && bytes < BATCH_BYTES {
                let Some(entry) = entries.next() else { break };
                let (key, value) = entry.map_err(unavailable)?;
                let (key, value) = (key.value(), value.value());
                target
                    .insert(key, value)
                    .map_err(|e| write_error(partial, e))?;
                (n, bytes) = (n + 1, bytes + key.len() + value.len());
            }
            copied += n as u64;
        }
        tx.commit().map_err(|e| write_error(partial, e))?;
        if entries.peek().is_none() {
            return Ok(copied);
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> BackupError {
    BackupError::Store(StoreError::Unavailable(e.to_string()))
}

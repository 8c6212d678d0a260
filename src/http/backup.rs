//! `POST /internal/store/backup`: a copy of the embedded store, made while the adapter serves,
//! into `store.backup_dir` ([`crate::store::backup`]); and the same every
//! `store.backup_every_secs`, keeping the newest `store.backup_keep`. Either role's internal
//! token is taken (the store is both roles'). With Redis there is nothing to do here: Redis
//! keeps its own persistence (RDB snapshots, the AOF), and its backups are made there.

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::AppState;
use super::error::{ApiCode, ApiError};
use crate::bap::orders::check_internal;
use crate::store::backup::BackupError;

/// The request carries the internal token of a role this server plays.
fn check_either_token(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    let s = &state.settings;
    let tokens = [
        (s.buyer.enabled, &s.buyer.internal_token),
        (s.seller.enabled, &s.seller.internal_token),
    ];
    if tokens
        .iter()
        .any(|(on, token)| *on && check_internal(req, token).is_ok())
    {
        Ok(())
    } else {
        Err(ApiError::new(
            ApiCode::Unauthorized,
            "invalid internal token",
        ))
    }
}

/// The backup's file name: `ondc-rating-{UTC time to the millisecond}.redb`, so that the names
/// sort in the order the backups were made.
fn file_name(now: chrono::DateTime<chrono::Utc>) -> String {
    format!("ondc-rating-{}.redb", now.format("%Y%m%dT%H%M%S%3fZ"))
}

/// Makes a backup; 201 with its file, size and the entries of each table.
pub async fn backup(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    check_either_token(&state, &req)?;
    if state.settings.store.backup_dir.as_os_str().is_empty() {
        return Err(ApiError::new(
            ApiCode::BackupUnavailable,
            "store.backup_dir is not set: no backups are made",
        ));
    }
    let Ok(_one_at_a_time) = state.backing_up.try_lock() else {
        return Err(ApiError::new(
            ApiCode::BackupInProgress,
            "a backup is being made; ask again once it is done",
        ));
    };
    let (b, took_ms) = make(&state).await?;
    Ok(HttpResponse::Created().json(json!({
        "backup": {
            "file": b.path.file_name().unwrap_or_default().to_string_lossy(),
            "path": b.path.display().to_string(),
            "bytes": b.bytes,
            "tables": b.tables,
            "tookMs": took_ms,
        }
    })))
}

/// One backup into `store.backup_dir` (the caller holds [`AppState::backing_up`]), then the
/// pruning to `store.backup_keep`; counted and logged either way. The backup, and the
/// milliseconds it took.
async fn make(state: &AppState) -> Result<(crate::store::backup::Backup, u64), ApiError> {
    let started = std::time::Instant::now();
    let dir = &state.settings.store.backup_dir;
    let path = dir.join(file_name(state.clock.now()));
    let made = state.store.backup(&path).await.ok_or_else(|| {
        ApiError::new(
            ApiCode::BackupUnavailable,
            "the Redis store is backed up by Redis itself (RDB snapshots, the AOF)",
        )
    })?;
    state.metrics.backup(made.is_ok());
    match made {
        Ok(b) => {
            let took_ms = started.elapsed().as_millis() as u64;
            tracing::info!(path = %b.path.display(), bytes = b.bytes, took_ms, "store backed up");
            let keep = state.settings.store.backup_keep as usize;
            if keep > 0 {
                prune(dir, keep);
            }
            Ok((b, took_ms))
        }
        Err(BackupError::Store(e)) => {
            tracing::error!(error = %e, "store backup failed");
            Err(e.into())
        }
        Err(BackupError::Write(e)) => {
            tracing::error!(error = %e, "store backup failed");
            Err(ApiError::new(
                ApiCode::BackupFailed,
                format!("the backup could not be written: {e}"),
            ))
        }
    }
}

/// Removes from `dir` the backups older than the newest `keep` (their names sort by time), and
/// any `.partial` file a stopped process left (under the backup lock, none is being written).
fn prune(dir: &std::path::Path, keep: usize) {
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    let mut backups = Vec::new();
    for entry in read.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".ondc-rating-") && name.ends_with(".partial") {
            remove(&entry.path());
        } else if name.starts_with("ondc-rating-") && name.ends_with(".redb") {
            backups.push(name);
        }
    }
    backups.sort();
    let old = backups.len().saturating_sub(keep);
    for name in &backups[..old] {
        remove(&dir.join(name));
    }
}

fn remove(path: &std::path::Path) {
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!(path = %path.display(), "old backup removed"),
        Err(e) => {
            tracing::warn!(error = %e, path = %path.display(), "could not remove an old backup")
        }
    }
}

/// Makes a backup every `store.backup_every_secs`, the first that long after the start; one
/// asked for meanwhile through the API is not doubled (the schedule skips that turn).
pub async fn schedule(state: web::Data<AppState>) {
    let every = std::time::Duration::from_secs(state.settings.store.backup_every_secs);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match state.backing_up.try_lock() {
            // Logged and counted in `make`.
            Ok(_one_at_a_time) => drop(make(&state).await),
            Err(_) => tracing::info!("a backup is being made already: this turn is skipped"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_names_sort_in_time_order() {
        let t = chrono::DateTime::from_timestamp_millis(1_765_161_600_007).unwrap();
        assert_eq!(file_name(t), "ondc-rating-20251208T024000007Z.redb");
        let later = t + chrono::Duration::milliseconds(993);
        assert!(file_name(t) < file_name(later));
    }
}

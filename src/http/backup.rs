//! `POST /internal/store/backup`: a copy of the embedded store, made while the adapter serves,
//! into `store.backup_dir` ([`crate::store::backup`]). Either role's internal token is taken (the
//! store is both roles'). With Redis there is nothing to do here: Redis keeps its own
//! persistence (RDB snapshots, the AOF), and its backups are made there.

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
    let dir = &state.settings.store.backup_dir;
    if dir.as_os_str().is_empty() {
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
    let started = std::time::Instant::now();
    let path = dir.join(file_name(state.clock.now()));
    let made = state.store.backup(&path).await.ok_or_else(|| {
        ApiError::new(
            ApiCode::BackupUnavailable,
            "the Redis store is backed up by Redis itself (RDB snapshots, the AOF)",
        )
    })?;
    match made {
        Ok(b) => {
            let took_ms = started.elapsed().as_millis() as u64;
            let file = b.path.file_name().unwrap_or_default().to_string_lossy();
            tracing::info!(path = %b.path.display(), bytes = b.bytes, took_ms, "store backed up");
            Ok(HttpResponse::Created().json(json!({
                "backup": {
                    "file": file,
                    "path": b.path.display().to_string(),
                    "bytes": b.bytes,
                    "tables": b.tables,
                    "tookMs": took_ms,
                }
            })))
        }
        Err(BackupError::Store(e)) => Err(e.into()),
        Err(BackupError::Write(e)) => {
            tracing::error!(error = %e, "store backup failed");
            Err(ApiError::new(
                ApiCode::BackupFailed,
                format!("the backup could not be written: {e}"),
            ))
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

//! Forgetting received ratings: with `seller.retention_days` set, a received rating is removed
//! that many days after its `/on_rating` was sent or given up (`settledAt`), so the store holds
//! what is still of use (ratings owing work, held for the platform's answer, or recently
//! settled) and not every rating ever received. One task per process looks every
//! `seller.retention_sweep_ms`; instances sharing Redis each look, and a removal is a
//! compare-and-delete of the record as it was settled, so two of them, or a repeat that reopens
//! the rating meanwhile, never remove a record the entry no longer describes.

use std::time::Duration;

use actix_web::web;

use crate::http::AppState;

/// Entries of the settled index looked at in one step; each step's forgetting is a group of
/// compare-and-deletes, then the next.
const STEP: usize = 256;

/// Runs for as long as the server: every `seller.retention_sweep_ms`, forgets the received
/// ratings settled more than `seller.retention_days` ago (by the injected clock). A store that
/// fails is tried again at the next tick.
pub async fn forget_settled(state: web::Data<AppState>) {
    let seller = &state.settings.seller;
    let keep = chrono::Duration::days(i64::from(seller.retention_days));
    let mut tick = tokio::time::interval(Duration::from_millis(seller.retention_sweep_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let cutoff = state.clock.now() - keep;
        let mut forgotten = 0;
        loop {
            match state.store.forget_settled(cutoff, STEP).await {
                Ok((looked_at, gone)) => {
                    forgotten += gone;
                    state.metrics.received_forgotten(gone);
                    if looked_at < STEP {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not forget settled received ratings; retried later");
                    break;
                }
            }
        }
        if forgotten > 0 {
            tracing::info!(
                forgotten,
                retention_days = seller.retention_days,
                "received ratings past their retention forgotten"
            );
        }
    }
}

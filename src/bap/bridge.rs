//! Wakes a buyer request waiting for its /on_rating.
//!
//! The callback is always stored before anyone is woken, and the waiter reads the store after
//! waking or at its deadline, so the notification carries no data and a missed one (the callback
//! landed on another instance) costs only latency, never the result.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Waiting requests by /rating message_id.
#[derive(Clone, Default)]
pub struct Waiters {
    // A std mutex: held only for a map insert/remove, never across an await.
    inner: Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>,
}

/// A registration; dropping it unregisters.
pub struct Waiter {
    waiters: Waiters,
    message_id: String,
    rx: Option<oneshot::Receiver<()>>,
}

impl Waiters {
    /// Registers interest in `message_id`. Register before sending /rating so that a fast
    /// callback cannot slip between the send and the wait.
    pub fn register(&self, message_id: &str) -> Waiter {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(message_id.to_owned(), tx);
        Waiter {
            waiters: self.clone(),
            message_id: message_id.to_owned(),
            rx: Some(rx),
        }
    }

    /// Wakes the request waiting on `message_id` in this process, if any.
    pub fn notify(&self, message_id: &str) {
        if let Some(tx) = self.lock().remove(message_id) {
            let _ = tx.send(());
        }
    }

    /// How many requests are waiting.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<()>>> {
        // A poisoned map is still a valid map: a panic elsewhere cannot corrupt a HashMap insert.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Waiter {
    /// Waits until notified or `timeout` passes; true when notified.
    pub async fn wait(&mut self, timeout: std::time::Duration) -> bool {
        match self.rx.take() {
            Some(rx) => matches!(tokio::time::timeout(timeout, rx).await, Ok(Ok(()))),
            None => false,
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.waiters.lock().remove(&self.message_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn notify_wakes_and_drop_unregisters() {
        let w = Waiters::default();
        let mut a = w.register("m1");
        w.notify("m1");
        assert!(a.wait(Duration::from_secs(1)).await);
        let mut b = w.register("m2");
        assert!(!b.wait(Duration::from_millis(20)).await);
        drop(b);
        drop(a);
        assert!(w.is_empty());
    }
}

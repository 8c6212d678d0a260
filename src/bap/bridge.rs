//! Wakes a buyer request waiting for its /on_rating.
//!
//! The callback is always stored before anyone is woken. When it reaches the process whose
//! request waits for it (one instance, or the instance that sent the /rating), it is matched
//! against the /rating that request keeps and handed to it, so neither side reads the store back.
//! When it lands on another instance, that instance matches it against the store, stores it and
//! announces it; the announcement carries no data, and the woken request reads the store, as it
//! does at its deadline, so a missed announcement costs only latency, never the result.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::protocol::Context;
use crate::store::CallbackRecord;

/// What is read of the record a waiting request holds (its JSON, as given to [`Waiter::holds`]),
/// borrowed from it: no string of the record's two dozen is copied. Its order, and the fields of
/// its /rating's context that a callback is matched against and an answer carries.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SentRecord<'a> {
    /// The rated order.
    #[serde(borrow)]
    pub(crate) order_id: Cow<'a, str>,
    /// The /rating's context, as far as it is read.
    #[serde(borrow)]
    pub(crate) context: SentContext<'a>,
}

impl<'a> SentRecord<'a> {
    /// Reads a held record's JSON.
    pub(crate) fn read(held: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(held)
    }
}

/// The /rating context's fields a callback is matched against, and its ttl.
#[derive(serde::Deserialize)]
pub(crate) struct SentContext<'a> {
    #[serde(borrow)]
    pub(crate) transaction_id: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) bpp_id: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) bap_id: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) bap_uri: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) bpp_uri: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) domain: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) country: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) city: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) core_version: Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) timestamp: Cow<'a, str>,
    #[serde(borrow, default)]
    pub(crate) ttl: Option<Cow<'a, str>>,
}

impl SentContext<'_> {
    /// The same fields of a stored record's context, taken from it.
    pub(crate) fn owned(c: Context) -> Self {
        Self {
            transaction_id: c.transaction_id.into(),
            bpp_id: c.bpp_id.into(),
            bap_id: c.bap_id.into(),
            bap_uri: c.bap_uri.into(),
            bpp_uri: c.bpp_uri.into(),
            domain: c.domain.into(),
            country: c.country.into(),
            city: c.city.into(),
            core_version: c.core_version.into(),
            timestamp: c.timestamp.into(),
            ttl: c.ttl.map(Cow::Owned),
        }
    }
}

/// What ended a request's wait.
pub enum Woken {
    /// Its /on_rating reached this process and was stored: here it is.
    Callback(Box<CallbackRecord>),
    /// An /on_rating for it was stored (on another instance, or a repeat here): read the store.
    Told,
    /// Its deadline passed: read the store.
    Deadline,
}

/// One waiting request: how to wake it and, from just before its /rating is sent, that /rating's
/// record as the request keeps it (shared, not copied).
struct Entry {
    tx: oneshot::Sender<Option<Box<CallbackRecord>>>,
    sent: Option<Arc<[u8]>>,
}

/// Waiting requests by /rating message_id.
#[derive(Clone, Default)]
pub struct Waiters {
    // A std mutex: held only for a map insert, lookup or remove, never across an await.
    inner: Arc<Mutex<HashMap<String, Entry>>>,
}

/// A registration; dropping it unregisters.
pub struct Waiter {
    waiters: Waiters,
    message_id: String,
    rx: Option<oneshot::Receiver<Option<Box<CallbackRecord>>>>,
}

impl Waiters {
    /// Registers interest in `message_id`. Register before sending /rating so that a fast
    /// callback cannot slip between the send and the wait.
    pub fn register(&self, message_id: &str) -> Waiter {
        let (tx, rx) = oneshot::channel();
        self.lock()
            .insert(message_id.to_owned(), Entry { tx, sent: None });
        Waiter {
            waiters: self.clone(),
            message_id: message_id.to_owned(),
            rx: Some(rx),
        }
    }

    /// The record of the /rating that a request in this process sent or is sending, as it was
    /// given to [`Waiter::holds`]; None when no request here waits on `message_id` or its
    /// /rating is not claimed yet. A callback may come before the /rating's ACK is processed (a
    /// fast seller, a busy worker): it is handed over all the same, and the request finds it
    /// once the ACK is in.
    pub fn sent(&self, message_id: &str) -> Option<Arc<[u8]>> {
        self.lock().get(message_id).and_then(|e| e.sent.clone())
    }

    /// Hands a stored callback to the request in this process waiting on its message_id; false
    /// when none waits (any more).
    pub fn deliver(&self, cb: Box<CallbackRecord>) -> bool {
        let entry = self.lock().remove(cb.context.message_id.as_str());
        match entry {
            Some(e) => e.tx.send(Some(cb)).is_ok(),
            None => false,
        }
    }

    /// Tells the request waiting on `message_id` in this process, if any, that a callback for
    /// it was stored.
    pub fn notify(&self, message_id: &str) {
        if let Some(e) = self.lock().remove(message_id) {
            let _ = e.tx.send(None);
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A poisoned map is still a valid map: a panic elsewhere cannot corrupt a HashMap insert.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Waiter {
    /// Records the claimed /rating this request is about to send (its record's JSON), so that
    /// its callback arriving here, before or after the ACK, is matched against it rather than
    /// against the store.
    pub fn holds(&self, sent: Arc<[u8]>) {
        if let Some(e) = self.waiters.lock().get_mut(&self.message_id) {
            e.sent = Some(sent);
        }
    }

    /// The /rating message_id this waiter waits on.
    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    /// Waits until woken or `timeout` passes.
    pub async fn wait(&mut self, timeout: std::time::Duration) -> Woken {
        self.wait_at_most(timeout).await.unwrap_or(Woken::Deadline)
    }

    /// Waits until woken or `timeout` passes; None when it passed, and the request may wait
    /// again.
    pub async fn wait_at_most(&mut self, timeout: std::time::Duration) -> Option<Woken> {
        let Some(rx) = self.rx.as_mut() else {
            return Some(Woken::Deadline);
        };
        let woken = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Some(cb))) => Woken::Callback(cb),
            Ok(Ok(None)) => Woken::Told,
            Ok(Err(_)) => Woken::Deadline,
            Err(_) => return None,
        };
        self.rx = None;
        Some(woken)
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

    fn callback(message_id: &str) -> Box<CallbackRecord> {
        let mut cb: CallbackRecord = serde_json::from_value(serde_json::json!({
            "context": {
                "domain": "ONDC:RET11", "country": "IND", "city": "std:080",
                "action": "on_rating", "core_version": "1.2.0",
                "bap_id": "b", "bap_uri": "http://b", "bpp_id": "s", "bpp_uri": "http://s",
                "transaction_id": "t", "message_id": "", "timestamp": "2026-12-02T00:00:00.000Z"
            },
            "message": {},
            "receivedAt": "2026-12-02T00:00:00.000Z"
        }))
        .expect("a callback record");
        cb.context.message_id = message_id.into();
        Box::new(cb)
    }

    #[tokio::test]
    async fn a_delivered_callback_reaches_its_waiter_and_drop_unregisters() {
        let w = Waiters::default();
        let mut a = w.register("m1");
        assert!(w.sent("m1").is_none(), "nothing held yet");
        a.holds(Arc::from(&b"{}"[..]));
        assert_eq!(w.sent("m1").as_deref(), Some(&b"{}"[..]));
        assert!(w.deliver(callback("m1")));
        match a.wait(Duration::from_secs(1)).await {
            Woken::Callback(cb) => assert_eq!(cb.context.message_id, "m1"),
            _ => panic!("the callback itself should wake the waiter"),
        }
        assert!(!w.deliver(callback("m1")), "delivered once");
        let mut b = w.register("m2");
        w.notify("m2");
        assert!(matches!(b.wait(Duration::from_secs(1)).await, Woken::Told));
        let mut c = w.register("m3");
        assert!(matches!(
            c.wait(Duration::from_millis(20)).await,
            Woken::Deadline
        ));
        // A wait that times out can be waited again, and still gets what comes after it.
        let mut d = w.register("m4");
        assert!(d.wait_at_most(Duration::from_millis(20)).await.is_none());
        assert!(w.deliver(callback("m4")));
        match d.wait(Duration::from_secs(1)).await {
            Woken::Callback(cb) => assert_eq!(cb.context.message_id, "m4"),
            _ => panic!("the callback should reach the second wait"),
        }
        drop((a, b, c, d));
        assert!(w.is_empty());
    }
}

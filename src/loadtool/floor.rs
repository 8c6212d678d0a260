//! The crypto floor: how many round trips per second two cores could do if a round trip were
//! only its four signature operations (the buyer side signs /rating, the seller side verifies it,
//! signs /on_rating, the buyer side verifies that; each with its BLAKE2b-512 body digest), and how
//! many single verifications per second two cores do.
//!
//! Kept apart from the rest of the load tool so that a shared measurement in the library can
//! replace [`measure`] without touching the callers.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::crypto::{SigningKeyPair, sign_body, verify_body};

/// Signature-only rates, per second, over `threads` threads.
#[derive(Debug, Clone, Copy)]
pub struct Floor {
    /// Round trips (2 signs + 2 verifies) per second.
    pub round_trips_per_sec: f64,
    /// /rating verifications per second.
    pub verifies_per_sec: f64,
    /// Threads used.
    pub threads: usize,
}

/// A /rating and an /on_rating body of the size the adapters exchange in a round trip.
pub fn representative_bodies() -> (Vec<u8>, Vec<u8>) {
    let context = |action: &str| {
        json!({"domain": "ONDC:RET11", "country": "IND", "city": "std:080", "action": action,
            "core_version": "1.2.0", "bap_id": "buyer.bench", "bap_uri": "http://127.0.0.1:9/bap",
            "bpp_id": "seller.bench", "bpp_uri": "http://127.0.0.1:9/bpp",
            "transaction_id": "2a3b6c7d-8e9f-4a0b-9c1d-2e3f4a5b6c7d",
            "message_id": "7f6e5d4c-3b2a-4190-8f7e-6d5c4b3a2910",
            "timestamp": "2026-01-01T10:00:00.123Z", "ttl": "PT30S"})
    };
    let rating = json!({"context": context("rating"), "message": {"ratings": [
        {"rating_category": "Order", "id": "bench-order-000001", "value": "5"},
        {"rating_category": "Provider", "id": "provider-1", "value": "4"},
        {"rating_category": "Item", "id": "item-1", "value": "5"},
        {"rating_category": "Item", "id": "item-2", "value": "3"},
        {"rating_category": "Fulfillment", "id": "fulfillment-1", "value": "4"},
        {"rating_category": "Agent", "id": "agent-1", "value": "5"}]}});
    let on_rating = json!({"context": context("on_rating"), "message": {
        "order_id": "bench-order-000001",
        "feedback_form": {"form": {"url": "http://127.0.0.1:9/feedback/bench-order-000001",
            "mime_type": "text/html"}, "required": false}}});
    (
        serde_json::to_vec(&rating).expect("serialises"),
        serde_json::to_vec(&on_rating).expect("serialises"),
    )
}

fn per_thread<F: Fn() + Sync>(threads: usize, for_: Duration, op: F) -> f64 {
    let started = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let t = Instant::now();
                    let mut n = 0u64;
                    while t.elapsed() < for_ {
                        for _ in 0..16 {
                            op();
                        }
                        n += 16;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    total as f64 / started.elapsed().as_secs_f64()
}

/// Measures both rates on `threads` threads, `for_` each (blocking).
pub fn measure(threads: usize, for_: Duration) -> Result<Floor, String> {
    let buyer = SigningKeyPair::generate().map_err(|e| e.to_string())?;
    let seller = SigningKeyPair::generate().map_err(|e| e.to_string())?;
    let (buyer_pub, seller_pub) = (buyer.verifying_key(), seller.verifying_key());
    let (rating, on_rating) = representative_bodies();
    let now = chrono::Utc::now().timestamp();
    let round_trip = || {
        let h = sign_body(&rating, &buyer, "buyer.bench", "k1", now, now + 60);
        let ok1 = verify_body(&h, &rating, &buyer_pub, now, 5).is_ok();
        let h = sign_body(&on_rating, &seller, "seller.bench", "k1", now, now + 60);
        let ok2 = verify_body(&h, &on_rating, &seller_pub, now, 5).is_ok();
        assert!(ok1 && ok2, "signatures made here verify");
    };
    round_trip();
    let round_trips_per_sec = per_thread(threads, for_, round_trip);
    let header = sign_body(&rating, &buyer, "buyer.bench", "k1", now, now + 60);
    let verify = || {
        let ok = verify_body(&header, &rating, &buyer_pub, now, 5).is_ok();
        assert!(ok, "a signature made here verifies");
    };
    let verifies_per_sec = per_thread(threads, for_, verify);
    Ok(Floor {
        round_trips_per_sec,
        verifies_per_sec,
        threads,
    })
}

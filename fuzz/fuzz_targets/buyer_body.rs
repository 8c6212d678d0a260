//! The buyer API's `POST /ret11/rating` body, as the handler reads it: the shape checks
//! (`RateOrder::parse`), then the mapping onto ONDC ratings for a known order.
//!
//! Input: the raw body.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use ondc_rating::bap::request::RateOrder;
use ondc_rating::http::error::ApiCode;
use ondc_rating::protocol::RatingCategory;
use ondc_rating::store::Order;

/// Two orders: one with everything to rate, one with only the order itself.
static ORDERS: LazyLock<[Order; 2]> = LazyLock::new(|| {
    let full = Order {
        order_id: "O1".into(),
        user_id: "user-1".into(),
        state: "Completed".into(),
        domain: "ONDC:RET11".into(),
        city: "std:080".into(),
        transaction_id: "467a775f-35aa-4ee3-8022-c54ed917912b".into(),
        bpp_id: "seller.example.com".into(),
        bpp_uri: "https://seller.example.com/bpp".into(),
        provider_id: Some("P1".into()),
        item_ids: vec!["I1".into(), "I2".into()],
        fulfillment_ids: vec!["F1".into(), "F2".into()],
        agent_id: Some("A1".into()),
    };
    let bare = Order {
        provider_id: None,
        item_ids: Vec::new(),
        fulfillment_ids: Vec::new(),
        agent_id: None,
        ..full.clone()
    };
    [full, bare]
});

fuzz_target!(|data: &[u8]| {
    let request = match RateOrder::parse(data) {
        Ok(r) => r,
        Err(e) => {
            // Not JSON / not an object, or every bad field named.
            match e.code {
                ApiCode::InvalidJson => assert!(e.details.is_empty()),
                ApiCode::ValidationFailed => assert!(!e.details.is_empty()),
                other => panic!("unexpected code {other:?}"),
            }
            return;
        }
    };
    let r = &request.rating;
    assert!(!request.order_id.trim().is_empty() && request.order_id.len() <= 255);
    let stars = [r.provider_rating, r.agent_rating, r.fulfilment_rating];
    for s in stars.into_iter().flatten().chain([r.order_rating]) {
        assert!((1..=5).contains(&s));
    }
    for (i, item) in r.item_ratings.iter().enumerate() {
        assert!((1..=5).contains(&item.rating));
        assert!(
            !r.item_ratings[..i]
                .iter()
                .any(|o| o.item_id == item.item_id)
        );
    }

    for order in ORDERS.iter() {
        match request.entries_for(order) {
            Ok(entries) => {
                // The Order rating first, then the others, every value a star count.
                assert_eq!(entries[0].rating_category, RatingCategory::Order);
                assert_eq!(entries[0].id, order.order_id);
                assert_eq!(entries[0].value, r.order_rating.to_string());
                for e in &entries {
                    assert!(matches!(e.value.as_str(), "1" | "2" | "3" | "4" | "5"));
                }
                let items = entries
                    .iter()
                    .filter(|e| e.rating_category == RatingCategory::Item)
                    .count();
                assert_eq!(items, r.item_ratings.len());
            }
            Err(e) => {
                assert_eq!(e.code, ApiCode::ValidationFailed);
                assert!(!e.details.is_empty());
            }
        }
    }
});

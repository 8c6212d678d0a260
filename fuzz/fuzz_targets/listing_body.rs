//! The listing feedback API's body (`POST /v2/listings/{listing}/feedback`), as the handler
//! reads it for either role, and the ONDC rating it becomes.
//!
//! Input: the raw body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ondc_rating::bap::listing::{
    DETAILED_FIELDS, DETAILED_MAX, FEEDBACK_MAX_CHARS, RATINGS, parse, rating_entry,
};
use ondc_rating::protocol::RatingCategory;

fuzz_target!(|data: &[u8]| {
    // The shipper's body (detailed scores taken) and the provider's (ignored).
    for (take_detailed, role) in [(true, "shipper"), (false, "provider")] {
        let s = match parse(data, take_detailed) {
            Ok(s) => s,
            Err(e) => {
                assert_eq!(e.status.as_u16(), 400);
                assert!(matches!(e.code, 40000 | 40001 | 40006), "code {}", e.code);
                assert!(e.code == 40000 || !e.errors.is_empty());
                assert!(!e.message.is_empty());
                continue;
            }
        };
        assert!(RATINGS.iter().any(|(r, _)| *r == s.rating));
        if !take_detailed {
            assert!(s.detailed.is_empty());
        }
        for (field, n) in &s.detailed {
            assert!(DETAILED_FIELDS.contains(&field.as_str()) && u64::from(*n) <= DETAILED_MAX);
        }
        if let Some(f) = &s.feedback {
            assert!(!f.is_empty() && f.trim() == f && f.chars().count() <= FEEDBACK_MAX_CHARS);
        }
        let entry = rating_entry("L-1", role, &s);
        assert_eq!(entry.rating_category, RatingCategory::Order);
        assert!(matches!(entry.value.as_str(), "1" | "3" | "5"));
        assert_eq!(
            entry.feedback_form.len(),
            1 + usize::from(s.feedback.is_some()) + s.detailed.len()
        );
    }
});

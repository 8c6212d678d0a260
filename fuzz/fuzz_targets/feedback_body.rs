//! The v2 feedback API's body (`POST /v2/feedback/users/{user}/orders/{order}/rating`), as the
//! handler reads it, and the ONDC rating it becomes.
//!
//! Input: the raw body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ondc_rating::bap::feedback::{HIGHLIGHTS, NOTE_MAX_CHARS, RATING_VALUES, parse, rating_entry};
use ondc_rating::protocol::RatingCategory;

fuzz_target!(|data: &[u8]| {
    let s = match parse(data) {
        Ok(s) => s,
        Err(errors) => {
            assert!(!errors.is_empty(), "a refusal names at least one error");
            for e in &errors {
                assert!(e.error_code.is_some() && e.error_meta.is_object());
            }
            return;
        }
    };
    assert!(RATING_VALUES.contains(&s.rating_value.as_str()));
    for (i, h) in s.highlights.iter().enumerate() {
        assert!(HIGHLIGHTS.contains(&h.as_str()));
        assert!(
            !s.highlights[..i].contains(h),
            "highlights are deduplicated"
        );
    }
    if let Some(note) = &s.thank_you_note {
        assert!(!note.is_empty() && note.trim() == note && note.chars().count() <= NOTE_MAX_CHARS);
    }
    let entry = rating_entry("O1", &s);
    assert_eq!(entry.rating_category, RatingCategory::Order);
    assert!(matches!(entry.value.as_str(), "1" | "2" | "3" | "4" | "5"));
    assert_eq!(
        entry.feedback_form.len(),
        s.highlights.len() + usize::from(s.thank_you_note.is_some())
    );
    for a in &entry.feedback_form {
        assert!(!a.answer.trim().is_empty(), "ONDC answers are never blank");
    }
});

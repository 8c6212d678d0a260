//! A buyer side's `POST /on_rating` body once its signature verified, through the same steps as
//! the server: one JSON parse, the tolerant schema and the context (`accept_inbound`), then the
//! message and the error block as the callback handler reads them.
//!
//! Input: the raw body.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use ondc_rating::clock::parse_timestamp;
use ondc_rating::http::network::check_inbound;
use ondc_rating::protocol::schema::Schemas;
use ondc_rating::protocol::{Action, NetworkError, OnRatingMessage};
use serde_json::Value;

static SCHEMAS: LazyLock<Schemas> =
    LazyLock::new(|| Schemas::compile().expect("embedded schemas compile"));

fuzz_target!(|data: &[u8]| {
    let Ok(mut json) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let context = match check_inbound(&mut json, &SCHEMAS.on_rating_inbound, Action::OnRating) {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.message.is_empty(), "a refusal says why");
            return;
        }
    };
    assert_eq!(context.action, "on_rating");
    assert!(parse_timestamp(&context.timestamp).is_some());

    let message = match OnRatingMessage::from_value(json.get("message")) {
        Ok(m) => m,
        Err(e) => {
            assert!(e.path.starts_with("message"), "{e}");
            return;
        }
    };
    if let Some(f) = &message.feedback_form {
        assert!(!f.form.url.is_empty());
    }
    // The stored callback reads back the same, and so does the context echoed to the buyer.
    let text = serde_json::to_string(&message).expect("message serialises");
    assert_eq!(
        serde_json::from_str::<OnRatingMessage>(&text).expect("message reads back"),
        message
    );
    let text = serde_json::to_string(&context).expect("context serialises");
    assert_eq!(
        serde_json::from_str::<ondc_rating::protocol::Context>(&text).expect("context reads back"),
        context
    );

    // The seller's business refusal, as the callback handler reads it.
    if let Some(e) = json.get("error").filter(|e| !e.is_null()) {
        if let Ok(error) = serde_json::from_value::<NetworkError>(e.clone()) {
            let text = serde_json::to_string(&error).expect("error serialises");
            assert_eq!(
                serde_json::from_str::<NetworkError>(&text).expect("error reads back"),
                error
            );
        }
    }
});

//! ONDC wire types and rules for the rating exchange, with no I/O: the context, the `/rating` and
//! `/on_rating` messages, the synchronous ACK/NACK answer and the error-code table.
//!
//! Outbound types are strict (every context field, PascalCase categories, string values, never a
//! JSON `null`); inbound readers are tolerant in the ways PROTOCOL.md lists (a single rating object,
//! numeric values, any-case categories, unknown keys, a missing ttl).

pub mod ack;
pub mod context;
pub mod on_rating;
pub mod rating;
pub mod schema;

pub use ack::{AckResponse, AckStatus, ErrorType, NackCode, NetworkError};
pub use context::{Action, Context, ContextError};
pub use on_rating::{FeedbackForm, Form, OnRatingMessage};
pub use rating::{FeedbackAnswer, InboundRating, RatingCategory, RatingEntry, RatingMessage};

/// A network message: `{"context":...,"message":...}`, serialised in that field order.
#[derive(Debug, serde::Serialize)]
pub struct Envelope<'a, M: serde::Serialize> {
    /// The context.
    pub context: &'a Context,
    /// The message.
    pub message: M,
}

/// What [`to_json`] allocates up front: the bodies and records of a rating exchange serialise to
/// 0.7 to 2 KiB.
pub const JSON_CAPACITY: usize = 2048;

/// Compact JSON of `v` in a buffer allocated once at [`JSON_CAPACITY`]. `serde_json::to_vec`
/// starts at 128 bytes and doubles, three to four reallocations (each a copy) for one of these
/// bodies or records; a round trip serialises about ten of them (docs/BENCHMARKS.md). For
/// short-lived buffers only: one kept for long keeps its spare capacity too.
pub fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(JSON_CAPACITY);
    serde_json::to_writer(&mut out, v)?;
    Ok(out)
}

/// The retail core version this adapter speaks.
pub const CORE_VERSION: &str = "1.2.0";
/// The ttl ONDC allows for a rating exchange.
pub const RATING_TTL: &str = "PT30S";
/// The ttl in seconds.
pub const RATING_TTL_SECS: i64 = 30;
/// The only country ONDC serves.
pub const COUNTRY: &str = "IND";

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

/// The retail core version this adapter speaks.
pub const CORE_VERSION: &str = "1.2.0";
/// The ttl ONDC allows for a rating exchange.
pub const RATING_TTL: &str = "PT30S";
/// The ttl in seconds.
pub const RATING_TTL_SECS: i64 = 30;
/// The only country ONDC serves.
pub const COUNTRY: &str = "IND";

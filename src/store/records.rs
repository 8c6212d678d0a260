//! What is persisted: orders known to the buyer side, rating records (the one-time claim),
//! received callbacks, and ratings received by the seller side. Stored as JSON in both backends.

use serde::{Deserialize, Serialize};

use crate::protocol::{Context, FeedbackForm, InboundRating, NetworkError, OnRatingMessage};

/// An order as the buyer app knows it after on_confirm/on_status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// The order id (ONDC `order.id`).
    pub order_id: String,
    /// The buyer app's user id; only this user may rate the order.
    pub user_id: String,
    /// ONDC order state, e.g. `Completed`.
    pub state: String,
    /// `ONDC:RET11` etc.
    pub domain: String,
    /// `std:080` etc.
    pub city: String,
    /// The order's transaction id.
    pub transaction_id: String,
    /// Seller-side subscriber id.
    pub bpp_id: String,
    /// Seller-side base URI.
    pub bpp_uri: String,
    /// The provider (store) id.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub provider_id: Option<String>,
    /// Ids of the items in the order.
    #[serde(default)]
    pub item_ids: Vec<String>,
    /// Ids of the order's fulfillments.
    #[serde(default)]
    pub fulfillment_ids: Vec<String>,
    /// The delivery agent's id, when the order had one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub agent_id: Option<String>,
}

/// Where a rating is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RatingStatus {
    /// Claimed; /rating being sent.
    Pending,
    /// The seller ACKed /rating; waiting for /on_rating.
    Acknowledged,
    /// /on_rating received.
    Completed,
    /// The seller NACKed or could not be reached; the order may be rated again.
    Failed,
}

impl RatingStatus {
    /// The lower-case name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            RatingStatus::Pending => "pending",
            RatingStatus::Acknowledged => "acknowledged",
            RatingStatus::Completed => "completed",
            RatingStatus::Failed => "failed",
        }
    }
}

/// The stars a buyer gave, as submitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubmittedRating {
    /// Overall.
    pub order_rating: u8,
    /// The store.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub provider_rating: Option<u8>,
    /// The delivery agent.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub agent_rating: Option<u8>,
    /// The fulfilment.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub fulfilment_rating: Option<u8>,
    /// Per item.
    #[serde(default)]
    pub item_ratings: Vec<ItemRating>,
}

/// One item's stars.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemRating {
    /// Item id, one of the order's.
    pub item_id: String,
    /// 1..5.
    pub rating: u8,
}

/// The one-time claim on an order's rating, and everything known about its exchange.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RatingRecord {
    /// Rated order.
    pub order_id: String,
    /// Who rated it.
    pub user_id: String,
    /// Status; `completed` is also implied by a stored callback (see [`CallbackRecord`]).
    pub status: RatingStatus,
    /// What the buyer submitted.
    pub submitted: SubmittedRating,
    /// The /rating context sent (its message_id is the exchange's key).
    pub context: Context,
    /// When the claim was taken (ONDC timestamp format).
    pub created_at: String,
    /// The seller's error when it NACKed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<NetworkError>,
    /// Why the exchange failed when it was not a NACK (unreachable seller, unreadable answer).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub failure: Option<String>,
}

impl RatingRecord {
    /// The exchange's message id.
    pub fn message_id(&self) -> &str {
        &self.context.message_id
    }
}

/// A verified /on_rating, stored by message_id before it is acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallbackRecord {
    /// The callback's context as received.
    pub context: Context,
    /// The callback's message as received.
    pub message: OnRatingMessage,
    /// The seller's business error (an /on_rating refusing the rating), when it sent one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<NetworkError>,
    /// When it arrived.
    pub received_at: String,
}

impl CallbackRecord {
    /// Why a callback that refuses the rating without an error block failed, as users read it.
    pub const DECLINED: &'static str = "the seller's /on_rating says rating_ack false: it did not record the rating, and gave no error";

    /// Whether the seller refused the rating: an error block, or `rating_ack: false` ("the rating
    /// has not been recorded") without one. `feedback_ack: false` alone refuses nothing: the
    /// rating was recorded.
    pub fn refused(&self) -> bool {
        self.error.is_some() || self.declined_without_error().is_some()
    }

    /// The reason users read for a refusal that carries no error block, else None.
    pub fn declined_without_error(&self) -> Option<&'static str> {
        (self.error.is_none() && self.message.rating_ack == Some(false)).then_some(Self::DECLINED)
    }
}

/// Delivery state of the /on_rating a seller side owes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Not yet delivered.
    Pending,
    /// Held for the seller platform's answer (`seller.on_rating = "platform"`).
    Awaiting,
    /// The buyer side ACKed it.
    Sent,
    /// Given up (ttl passed or the buyer NACKed).
    Failed,
}

/// A /rating received by the seller side: the hand-off to the seller platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceivedRating {
    /// The /rating context.
    pub context: Context,
    /// The ratings, read tolerantly.
    pub ratings: Vec<InboundRating>,
    /// When it arrived.
    pub received_at: String,
    /// The /on_rating owed for it.
    pub on_rating: DeliveryStatus,
    /// Attempts made to deliver /on_rating.
    pub attempts: u32,
    /// Last delivery error.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_error: Option<String>,
    /// The seller's business verdict on the rating, answered in /on_rating's `rating_ack`.
    #[serde(default = "Verdict::accepted")]
    pub verdict: Verdict,
    /// The business error sent in /on_rating's `error` block (30015, 50003, 30018), when refused.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<NetworkError>,
    /// The feedback form sent in /on_rating, when one was.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub feedback_form: Option<FeedbackForm>,
    /// The hand-off to the seller platform's webhook, when one is configured and was called.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub webhook: Option<WebhookDelivery>,
    /// The message was one rating object rather than `{"ratings":[...]}`, so error paths name
    /// `message.*`.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub single: bool,
    /// When its `/on_rating` was sent or given up (ONDC timestamp); None while one is owed or
    /// held for the seller platform. `seller.retention_days` counts from it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub settled_at: Option<String>,
}

impl ReceivedRating {
    /// Whether this adapter still owes work on it after its ACK: the seller platform's webhook
    /// has not settled its verdict, or its `/on_rating` is neither sent, given up, nor held for
    /// the platform to answer.
    pub fn owes_work(&self) -> bool {
        self.verdict == Verdict::Pending || self.on_rating == DeliveryStatus::Pending
    }
}

/// The seller side's verdict on a received rating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Waiting for the seller platform's webhook.
    Pending,
    /// Taken: /on_rating says `rating_ack: true`.
    Accepted,
    /// Refused for a business reason: /on_rating carries the error and `rating_ack: false`.
    Refused,
}

impl Verdict {
    fn accepted() -> Self {
        Verdict::Accepted
    }
}

/// Outcome of the call to the seller platform's webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookStatus {
    /// The platform answered 2xx with a usable body.
    Delivered,
    /// Unreachable, an error status, or an unusable answer within its budget: the configured
    /// form was used instead.
    Failed,
}

/// The webhook call made for a received rating.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivery {
    /// Delivered or failed.
    pub status: WebhookStatus,
    /// Attempts made.
    pub attempts: u32,
    /// HTTP status of the last answer, when there was one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub http_status: Option<u16>,
    /// Why it failed (or why its answer was not used).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

/// A buyer app user, as registered through `PUT /internal/users/{user_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// The buyer app's user id.
    pub user_id: String,
    /// Whether the user may give feedback through the v2 feedback API.
    pub active: bool,
    /// When it was last written (ONDC timestamp format).
    pub updated_at: String,
}

/// What a v2 feedback request carried, mapped to ONDC values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedbackSubmission {
    /// `STARS1`..`STARS5` as sent by the caller.
    pub rating_value: String,
    /// Highlights, deduplicated, in the caller's order.
    #[serde(default)]
    pub highlights: Vec<String>,
    /// The thank-you note, when one was given.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub thank_you_note: Option<String>,
}

/// Which v2 API gave feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FeedbackApi {
    /// `POST /v2/feedback/users/{user_id}/orders/{order_id}/rating`.
    #[serde(rename = "order_feedback")]
    Order,
    /// `POST /v2/listings/{listing_id}/feedback`.
    #[serde(rename = "listing_feedback")]
    Listing,
}

impl FeedbackApi {
    /// Its name in notifications.
    pub fn name(self) -> &'static str {
        match self {
            Self::Order => "order_feedback",
            Self::Listing => "listing_feedback",
        }
    }

    /// The key of the id it is about: `order_id` or `listing_id`.
    pub fn id_key(self) -> &'static str {
        match self {
            Self::Order => "order_id",
            Self::Listing => "listing_id",
        }
    }
}

/// A /rating sent by the v2 feedback API, indexed by its message_id so the seller's /on_rating
/// for it is recognised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedbackSent {
    /// Who gave the feedback.
    pub user_id: String,
    /// The order (or, for listing feedback, the listing) it is about.
    pub order_id: String,
    /// The /rating context sent.
    pub context: Context,
    /// The API that sent it; absent in records written before it was kept, whose refusals are
    /// therefore not notified.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub api: Option<FeedbackApi>,
    /// The rating as given (`STARS4`, `Positive`, ...), for the refusal notification.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rating: Option<String>,
}

/// The latest v2 feedback the seller acknowledged for a (user, order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedbackRecord {
    /// Who gave the feedback.
    pub user_id: String,
    /// The order it is about.
    pub order_id: String,
    /// What was submitted.
    pub submitted: FeedbackSubmission,
    /// The /rating context sent (its message_id keys the seller's /on_rating).
    pub context: Context,
    /// When it was submitted (ONDC timestamp format).
    pub submitted_at: String,
    /// How many submissions the seller has acknowledged for this (user, order), this one included.
    pub revision: u32,
}

/// One listing feedback (`POST /v2/listings/{listing_id}/feedback`): the one-time slot of a
/// (user, listing) and what was sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListingFeedbackRecord {
    /// The rater (the token's `sub`).
    pub user_id: String,
    /// The listing (order) rated.
    pub listing_id: String,
    /// `shipper` (the order's user, rating the provider) or `provider` (rating the shipper).
    pub rater_role: String,
    /// `Positive`, `Neutral` or `Negative`.
    pub rating: String,
    /// The free-text feedback, when given.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub feedback: Option<String>,
    /// The detailed service-provider scores taken (shipper raters only), in field order.
    #[serde(default)]
    pub detailed: Vec<(String, u8)>,
    /// `pending` until the seller ACKs the /rating, then `acknowledged`.
    pub status: String,
    /// The /rating context sent.
    pub context: Context,
    /// When it was submitted (ONDC timestamp format).
    pub submitted_at: String,
}

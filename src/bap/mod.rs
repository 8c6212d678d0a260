//! The buyer side (BAP role): the buyer HTTP API, the internal orders API, the outbound `/rating`,
//! the `/on_rating` receiver, the bridge that wakes a buyer request when its callback lands, the
//! v2 feedback APIs and their notifications, with the internal API over those given up.

pub mod api;
pub mod auth;
pub mod bridge;
pub mod callback;
pub mod feedback;
pub mod listing;
pub mod notices;
pub mod notify;
pub mod orders;
pub mod request;
pub mod users;

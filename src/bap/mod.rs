//! The buyer side (BAP role): the buyer HTTP API, the internal orders API, the outbound `/rating`,
//! the `/on_rating` receiver, and the bridge that wakes a buyer request when its callback lands.

pub mod api;
pub mod auth;
pub mod bridge;
pub mod callback;
pub mod feedback;
pub mod listing;
pub mod notify;
pub mod orders;
pub mod request;
pub mod users;

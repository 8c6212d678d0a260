//! The seller side (BPP role): receive `/rating`, verify and acknowledge it, persist it for the
//! seller platform, and send the signed `/on_rating` back to the buyer side.

pub mod receiver;
pub mod sender;

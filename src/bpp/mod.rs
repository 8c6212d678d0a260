//! The seller side (BPP role): receive `/rating`, verify and acknowledge it, persist it for the
//! seller platform (and hand it to the platform's webhook), and send the signed `/on_rating` back
//! to the buyer side, with a business error when the rating cannot be taken.

pub mod checks;
pub mod mock;
pub mod receiver;
pub mod retention;
pub mod sender;
pub mod webhook;

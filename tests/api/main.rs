//! Integration tests: real adapters over loopback HTTP, real redb files, a real Redis, real
//! peer processes (this binary, ONDC's Node SDK).

mod helpers;

mod backup;
mod bodies;
mod checker;
mod cli;
mod concurrency;
mod faults;
mod feedback_api;
mod http2;
mod interop;
mod kill;
mod limits;
mod listing_feedback;
mod load_tool;
mod lost_answers;
mod network;
mod notifications;
mod observability;
mod onboarding;
mod openapi;
mod owed_marks;
mod rating_flow;
mod registry;
mod restart;
mod rotation;
mod seller_failures;
mod seller_side;
mod shutdown;
mod subscribe_flow;
mod traffic;

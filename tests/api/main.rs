//! Integration tests: real adapters over loopback HTTP, real redb files, a real Redis, real
//! peer processes (this binary, ONDC's Node SDK).

mod helpers;

mod cli;
mod concurrency;
mod interop;
mod network;
mod onboarding;
mod rating_flow;
mod registry;
mod restart;
mod rotation;
mod seller_failures;

//! Integration tests: real adapters over loopback HTTP, real redb files, a real Redis.

mod helpers;

mod interop;
mod network;
mod rating_flow;

//! ondc-rating: an ONDC protocol adapter for order ratings, playing the buyer side (BAP), the
//! seller side (BPP) or both.
//!
//! # Layout
//!
//! - [`config`]: typed settings (file, then environment), validated at start-up.
//! - [`clock`]: injected time and ONDC's timestamp format.
//! - [`crypto`]: BLAKE2b-512 digest, signing string, the `Authorization` header, key encodings.
//! - [`protocol`]: wire types and rules with no I/O: context, /rating, /on_rating, ACK/NACK, codes.
//! - [`store`]: one store over two backends (embedded redb, Redis) with the atomic one-time claim,
//!   and online backups of the embedded one.
//! - [`registry`]: finding a peer's signing key.
//! - [`bap`]: buyer API, internal orders API, outbound /rating, /on_rating receiver, callback bridge,
//!   the v2 feedback APIs and their notifications.
//! - [`bpp`]: /rating receiver and the /on_rating sender.
//! - [`http`]: actix wiring, inbound signature checks, error mapping, outbound signed client,
//!   health, metrics and the backup endpoint.
//! - [`demo`]: the two-adapter walkthrough behind `ondc-rating demo`.
//! - [`checker`]: `ondc-rating check`, conformance rules for captured /rating and /on_rating traffic.
//! - [`loadtool`]: `ondc-rating bench`, load runs against adapter processes on loopback.
//! - [`perf`]: representative bodies and the crypto floor that throughput figures are compared to.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bap;
pub mod bpp;
pub mod checker;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod demo;
pub mod http;
pub mod loadtool;
pub mod perf;
pub mod protocol;
pub mod registry;
pub mod store;

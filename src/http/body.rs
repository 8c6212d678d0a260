//! Reading request bodies into buffers of their own size.
//!
//! actix-web's `Payload::to_bytes_limited` starts every body without a known size in a buffer of
//! up to 32 KiB, and the `Bytes` it returns keeps that whole allocation alive for as long as the
//! handler holds the body: a buyer request waiting for its `/on_rating` would carry 32 KiB for an
//! 800-byte body. Here a body declared by Content-Length gets a buffer of exactly that size
//! (refused at once when it exceeds the limit), and a chunked one grows with what arrives.

use actix_web::http::header::{CONTENT_LENGTH, HeaderMap};
use actix_web::web::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};

/// The first buffer for a body of undeclared length (chunked transfer).
const UNDECLARED_START: usize = 1024;

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// It is (or declares itself) longer than the limit.
    TooLarge,
    /// The connection failed or the transfer was malformed.
    Read(String),
}

/// Reads the body of a request with `headers` from `payload` (actix-web's `web::Payload` or the
/// `dev::Payload` a service is handed), at most `limit` bytes.
pub async fn collect<S, E>(
    headers: &HeaderMap,
    mut payload: S,
    limit: usize,
) -> Result<Bytes, BodyError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let declared = declared_length(headers);
    if declared.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge);
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(UNDECLARED_START).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
        if buf.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// The Content-Length the request declares, when it declares a valid one.
fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

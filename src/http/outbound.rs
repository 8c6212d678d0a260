//! Signed POSTs to peers: serialise once, sign those bytes, send those bytes, and read the peer's
//! synchronous ACK/NACK.

use std::time::Duration;

use actix_web::web::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};

use crate::clock::SharedClock;
use crate::crypto::{SigningKeyPair, sign_body};
use crate::protocol::{AckResponse, AckStatus, NetworkError};

/// What a peer answered.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerAnswer {
    /// HTTP 2xx with an ACK.
    Ack,
    /// A NACK (any status), with the peer's error if it gave one.
    Nack {
        /// HTTP status.
        status: u16,
        /// The peer's error block.
        error: Option<NetworkError>,
    },
    /// Neither: an error page, garbage, an ACK with a failure status.
    Invalid {
        /// HTTP status.
        status: u16,
        /// Start of the body, for the log and the buyer's error.
        excerpt: String,
    },
}

/// Signs and sends network requests as this participant.
#[derive(Clone)]
pub struct Outbound {
    http: reqwest::Client,
    keys: SigningKeyPair,
    subscriber_id: String,
    unique_key_id: String,
    signature_ttl: i64,
    clock: SharedClock,
    urls: std::sync::Arc<std::sync::Mutex<ParsedUrls>>,
}

/// Peer URLs parsed once: a peer's `/rating` or `/on_rating` URL is the same on every exchange
/// with it. Bounded: emptied when full.
type ParsedUrls = std::collections::HashMap<Box<str>, reqwest::Url>;

/// The most parsed URLs [`Outbound`] keeps.
const MAX_PARSED_URLS: usize = 4096;

impl Outbound {
    /// A client signing as `subscriber_id|unique_key_id` with `keys`.
    pub fn new(
        keys: SigningKeyPair,
        subscriber_id: String,
        unique_key_id: String,
        signature_ttl: i64,
        clock: SharedClock,
    ) -> Self {
        // Redirects are not followed: a peer answers a signed request at the URL it was sent
        // to, and one checked to be on the peer's domain must not be sent on to another host.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(3))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .expect("TLS backend initialises");
        Self {
            http,
            keys,
            subscriber_id,
            unique_key_id,
            signature_ttl,
            clock,
            urls: Default::default(),
        }
    }

    /// `url` parsed, from the ones parsed before when it is one of them; None when it does not
    /// parse (the request is then given the text, and fails as it would have).
    fn parsed(&self, url: &str) -> Option<reqwest::Url> {
        let mut urls = self.urls.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(u) = urls.get(url) {
            return Some(u.clone());
        }
        let u = reqwest::Url::parse(url).ok()?;
        if urls.len() >= MAX_PARSED_URLS {
            urls.clear();
        }
        urls.insert(url.into(), u.clone());
        Some(u)
    }

    /// The Authorization header for `body`, created now.
    pub fn authorization(&self, body: &[u8]) -> String {
        let created = self.clock.unix();
        sign_body(
            body,
            &self.keys,
            &self.subscriber_id,
            &self.unique_key_id,
            created,
            created + self.signature_ttl,
        )
    }

    /// One POST of `body` with `authorization`; Err on a transport failure (connect, timeout,
    /// reset), which the caller may retry.
    pub async fn post(
        &self,
        url: &str,
        body: Bytes,
        authorization: &str,
        timeout: Duration,
    ) -> Result<PeerAnswer, TransportError> {
        let raw = self
            .post_raw(url, body, Some(authorization), timeout)
            .await?;
        Ok(read_answer(raw.status, &raw.body))
    }

    /// One POST, returning the status and body as they came.
    pub async fn post_raw(
        &self,
        url: &str,
        body: Bytes,
        authorization: Option<&str>,
        timeout: Duration,
    ) -> Result<RawAnswer, TransportError> {
        let req = match self.parsed(url) {
            Some(parsed) => self.http.post(parsed),
            None => self.http.post(url),
        };
        let mut req = req
            .header(CONTENT_TYPE, "application/json")
            .timeout(timeout)
            .body(body);
        if let Some(auth) = authorization {
            req = req.header(AUTHORIZATION, auth);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| TransportError::from_reqwest(&e))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp
            .bytes()
            .await
            .map_err(|e| TransportError::from_reqwest(&e))?;
        Ok(RawAnswer {
            status,
            body,
            retry_after,
        })
    }

    /// A readiness probe: one GET of `url`, Ok with the status of any HTTP answer (the body is
    /// not read), Err when nothing answers within `timeout`.
    pub async fn reachable(&self, url: &str, timeout: Duration) -> Result<u16, String> {
        let resp = self
            .http
            .get(url)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        Ok(resp.status().as_u16())
    }
}

/// A request that got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportError {
    /// What happened, with its causes.
    pub message: String,
    /// False only when the connection was never made (refused, unresolvable, TLS handshake):
    /// then the peer cannot have the request. A timeout or a reset after sending may have
    /// delivered it.
    pub maybe_delivered: bool,
}

impl TransportError {
    fn from_reqwest(e: &reqwest::Error) -> Self {
        Self {
            message: describe(e),
            maybe_delivered: !e.is_connect(),
        }
    }
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A peer's HTTP answer as received.
#[derive(Debug)]
pub struct RawAnswer {
    /// HTTP status.
    pub status: u16,
    /// Body bytes.
    pub body: Bytes,
    /// `Retry-After`, when given in seconds.
    pub retry_after: Option<Duration>,
}

fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

/// Classifies a peer's synchronous answer.
pub fn read_answer(status: u16, body: &[u8]) -> PeerAnswer {
    match serde_json::from_slice::<AckResponse>(body) {
        Ok(a) if a.status() == AckStatus::Ack && (200..300).contains(&status) => PeerAnswer::Ack,
        Ok(a) if a.status() == AckStatus::Nack => PeerAnswer::Nack {
            status,
            error: a.error,
        },
        _ => PeerAnswer::Invalid {
            status,
            excerpt: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        },
    }
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn peer_urls_are_parsed_once_and_the_parsed_ones_stay_bounded() {
        let out = Outbound::new(
            SigningKeyPair::generate().expect("a key"),
            "me".into(),
            "k1".into(),
            60,
            std::sync::Arc::new(crate::clock::SystemClock),
        );
        let u = out.parsed("http://127.0.0.1:9/bpp/rating").expect("parses");
        assert_eq!(u.as_str(), "http://127.0.0.1:9/bpp/rating");
        assert_eq!(out.parsed("http://127.0.0.1:9/bpp/rating"), Some(u));
        assert_eq!(out.parsed("not a url"), None);
        for i in 0..MAX_PARSED_URLS + 10 {
            assert!(
                out.parsed(&format!("http://seller-{i}.example/rating"))
                    .is_some()
            );
        }
        let kept = out.urls.lock().unwrap().len();
        assert!((1..=MAX_PARSED_URLS).contains(&kept), "{kept}");
    }
}

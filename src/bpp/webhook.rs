//! The hand-off to the seller platform: every new `/rating` that passed the business checks is
//! POSTed to `seller.webhook_url`, and the platform's answer shapes the `/on_rating`.
//!
//! The request:
//!
//! - body: `{"event":"rating.received","bap_id","bap_uri","bpp_id","domain","city",
//!   "transaction_id","message_id","order_id","ratings":[...],"received_at"}` (`order_id` is the
//!   id of the Order rating, absent when there is none; `ratings` as received, categories
//!   canonical, values as text);
//! - `X-Ondc-Rating-Timestamp: <unix seconds>`, set per attempt;
//! - `X-Ondc-Rating-Signature: sha256=<lower-case hex of HMAC-SHA256(seller.webhook_secret,
//!   "<timestamp>." + body)>`: the timestamp header's value, a full stop, then the exact body
//!   bytes. The platform recomputes it, compares in constant time, and refuses timestamps far
//!   from its clock (a few minutes) so a captured request cannot be replayed later;
//! - `Idempotency-Key: <bap_id>|<message_id>` (bytes outside visible ASCII, and `%`,
//!   percent-encoded): the same for every attempt, so the platform can drop repeats.
//!
//! Transport errors, 5xx and 429 (honouring `Retry-After` when it fits) are retried with backoff,
//! at most `seller.webhook_attempts` times, all within `seller.webhook_timeout_ms`. A 2xx answer
//! may be empty or `{}` (rating taken, configured form), carry
//! `{"feedback_form_url":"...","feedback_form_data":"..."}` (that form instead of the configured
//! one), or `{"error":{"code":"30018","message":"...","path":"..."}}` (the rating is refused with
//! that error; only the seller-side business codes 30015, 30018 and 50003 are taken). Anything
//! else (unreachable, out of time, another status, a body that is not such JSON, another error
//! code) is a webhook failure: it is recorded and the configured form is used.

use std::sync::OnceLock;
use std::time::Duration;

use hmac::{KeyInit, Mac};
use reqwest::header::CONTENT_TYPE;
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;
use tokio::time::Instant;

use super::checks::{BusinessCode, rating_path};
use crate::http::AppState;
use crate::http::metrics::{RetryTarget, SlotWait};
use crate::protocol::{InboundRating, NetworkError};
use crate::store::{ReceivedRating, WebhookDelivery, WebhookStatus};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Ondc-Rating-Signature";
/// The header with the signed Unix time.
pub const TIMESTAMP_HEADER: &str = "X-Ondc-Rating-Timestamp";
/// The header the platform dedupes on.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// The body's `event`.
pub const EVENT: &str = "rating.received";
/// Larger answers are not read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

type HmacSha256 = hmac::Hmac<Sha256>;

/// `sha256=<hex>` of HMAC-SHA256(`secret`, `"{timestamp}."` + `body`).
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + digest.len() * 2);
    out.push_str("sha256=");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// `<bap_id>|<message_id>`, with bytes a header cannot carry (and `%`) percent-encoded.
pub fn idempotency_key(bap_id: &str, message_id: &str) -> String {
    let mut out = String::new();
    for b in format!("{bap_id}|{message_id}").bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Serialize)]
struct Event<'a> {
    event: &'static str,
    bap_id: &'a str,
    bap_uri: &'a str,
    bpp_id: &'a str,
    domain: &'a str,
    city: &'a str,
    transaction_id: &'a str,
    message_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<&'a str>,
    ratings: &'a [InboundRating],
    received_at: &'a str,
}

/// The id of the Order rating, and its index.
fn order_rating(r: &ReceivedRating) -> Option<(usize, &str)> {
    r.ratings
        .iter()
        .enumerate()
        .find(|(_, x)| x.rating_category == "Order")
        .map(|(i, x)| (i, x.id.as_str()))
}

/// The webhook body for `r`, serialised once.
pub fn event_body(r: &ReceivedRating) -> Vec<u8> {
    let c = &r.context;
    serde_json::to_vec(&Event {
        event: EVENT,
        bap_id: &c.bap_id,
        bap_uri: &c.bap_uri,
        bpp_id: &c.bpp_id,
        domain: &c.domain,
        city: &c.city,
        transaction_id: &c.transaction_id,
        message_id: &c.message_id,
        order_id: order_rating(r).map(|(_, id)| id),
        ratings: &r.ratings,
        received_at: &r.received_at,
    })
    .expect("webhook event serialises")
}

/// What the seller platform decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformAnswer {
    /// Taken; the configured form is used.
    Accepted,
    /// Taken, with this form instead of the configured one.
    Form {
        /// Form URL.
        url: String,
        /// Form data; None: the configured data.
        data: Option<String>,
    },
    /// Refused with this business error.
    Refused(NetworkError),
}

/// Reads the platform's 2xx answer; Err says why it cannot be used.
pub fn read_answer(
    body: &[u8],
    r: &ReceivedRating,
    single: bool,
) -> Result<PlatformAnswer, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(PlatformAnswer::Accepted);
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(obj) = v else {
        return Err("not a JSON object".into());
    };
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(str::to_owned)
    };
    if let Some(err) = obj.get("error").filter(|e| !e.is_null()) {
        let code = match err.get("code") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err("error.code is missing".into()),
        };
        let business = BusinessCode::from_code(&code).ok_or_else(|| {
            format!("error.code {code:?} is not a seller business code (30015, 30018, 50003)")
        })?;
        let message = text(err.get("message")).unwrap_or_else(|| {
            match business {
                BusinessCode::InvalidRatingValue => "invalid rating value",
                BusinessCode::UnknownOrder => "order not found",
                BusinessCode::UnsupportedCategory => "unsupported rating category",
            }
            .to_owned()
        });
        let path = text(err.get("path")).or_else(|| match business {
            BusinessCode::UnknownOrder => {
                order_rating(r).map(|(i, _)| rating_path(single, i, "id"))
            }
            _ => None,
        });
        return Ok(PlatformAnswer::Refused(business.error(path, message)));
    }
    match obj.get("feedback_form_url") {
        None | Some(Value::Null) => Ok(PlatformAnswer::Accepted),
        Some(Value::String(url)) if is_http_url(url) => {
            let data = match obj.get("feedback_form_data") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return Err("feedback_form_data must be a string".into()),
            };
            Ok(PlatformAnswer::Form {
                url: url.clone(),
                data,
            })
        }
        Some(_) => Err("feedback_form_url must be an http(s) URL".into()),
    }
}

fn is_http_url(s: &str) -> bool {
    (s.starts_with("http://") || s.starts_with("https://"))
        && !s.contains(char::is_whitespace)
        && reqwest::Url::parse(s).is_ok_and(|u| u.host_str().is_some())
}

/// The webhook call's outcome: what was recorded, and the platform's answer when it gave a
/// usable one (None: fall back to the configured form).
#[derive(Debug)]
pub struct HandOff {
    /// For the record.
    pub delivery: WebhookDelivery,
    /// The platform's decision.
    pub answer: Option<PlatformAnswer>,
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("TLS backend initialises")
    })
}

/// What a signed POST got back.
pub(crate) struct Answer {
    /// HTTP status.
    pub status: u16,
    /// `Retry-After` in seconds, when given.
    pub retry_after: Option<Duration>,
    /// The body, at most `MAX_ANSWER_BYTES`.
    pub body: Vec<u8>,
    /// The body was larger and cut.
    pub truncated: bool,
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

/// One signed POST of `body` to `url`: the timestamp, signature (with `secret`) and idempotency
/// headers described above. Shared by every signed webhook this adapter calls.
pub(crate) async fn post_signed(
    url: &str,
    secret: &str,
    timestamp: i64,
    body: &[u8],
    key: &str,
    timeout: Duration,
) -> Result<Answer, String> {
    let mut resp = client()
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(
            SIGNATURE_HEADER,
            signature(secret.as_bytes(), timestamp, body),
        )
        .header(IDEMPOTENCY_HEADER, key)
        .timeout(timeout)
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let mut answer = Answer {
        status,
        retry_after,
        body: Vec::new(),
        truncated: false,
    };
    while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e))? {
        if answer.body.len() + chunk.len() > MAX_ANSWER_BYTES {
            answer.truncated = true;
            break;
        }
        answer.body.extend_from_slice(&chunk);
    }
    Ok(answer)
}

async fn post_once(
    state: &AppState,
    body: &[u8],
    key: &str,
    timeout: Duration,
) -> Result<Answer, String> {
    let s = &state.settings.seller;
    post_signed(
        &s.webhook_url,
        &s.webhook_secret,
        state.clock.unix(),
        body,
        key,
        timeout,
    )
    .await
}

pub(crate) fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}

/// One of the requests `slots` lets be in flight, waited for up to `wait` when they are all
/// taken; None when none freed in time. `waited` hears how a wait ended (true: with a slot), and
/// nothing when one was free at once. Shared by every webhook this adapter calls.
pub(crate) async fn slot_within(
    slots: &tokio::sync::Semaphore,
    wait: Duration,
    waited: impl FnOnce(bool),
) -> Option<tokio::sync::SemaphorePermit<'_>> {
    if let Ok(slot) = slots.try_acquire() {
        return Some(slot);
    }
    // The semaphores are never closed: an error is only the wait running out.
    let got = tokio::time::timeout(wait, slots.acquire())
        .await
        .ok()
        .and_then(Result::ok);
    waited(got.is_some());
    got
}

/// One of the `seller.webhook_concurrency` webhook requests that may be in flight, waited for
/// up to `left` when they are all taken (counted); None when none freed in time.
async fn slot(state: &AppState, left: Duration) -> Option<tokio::sync::SemaphorePermit<'_>> {
    slot_within(&state.webhook_slots, left, |got| {
        state.metrics.webhook_slot_wait(if got {
            SlotWait::Slot
        } else {
            SlotWait::Budget
        })
    })
    .await
}

/// Calls the webhook for `r` within `budget`, at most `seller.webhook_concurrency` requests in
/// flight at once ([`slot`]); never fails, never takes longer.
pub async fn hand_off(
    state: &AppState,
    r: &ReceivedRating,
    single: bool,
    budget: Duration,
) -> HandOff {
    let body = event_body(r);
    let key = idempotency_key(&r.context.bap_id, &r.context.message_id);
    let deadline = Instant::now() + budget;
    let mut delivery = WebhookDelivery {
        status: WebhookStatus::Failed,
        attempts: 0,
        http_status: None,
        error: None,
    };
    let mut delay = Duration::from_millis(100);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(10) {
            if delivery.attempts == 0 {
                delivery.error = Some("no time left within the rating's ttl".into());
            }
            break;
        }
        let Some(_slot) = slot(state, left).await else {
            let waited = format!(
                "no free webhook slot within {} ms ({} requests in flight, seller.webhook_concurrency)",
                budget.as_millis(),
                state.settings.seller.webhook_concurrency
            );
            delivery.error = Some(match delivery.error.take() {
                Some(before) => format!("{before}; then {waited}"),
                None => waited,
            });
            break;
        };
        let left = deadline.saturating_duration_since(Instant::now());
        delivery.attempts += 1;
        let outcome = tokio::time::timeout(left, post_once(state, &body, &key, left)).await;
        let (retry, retry_after) = match outcome {
            Err(_) => {
                delivery.error = Some(format!("no answer within {} ms", budget.as_millis()));
                (true, None)
            }
            Ok(Err(e)) => {
                delivery.error = Some(e);
                (true, None)
            }
            Ok(Ok(a)) if (200..300).contains(&a.status) => {
                delivery.http_status = Some(a.status);
                let read = if a.truncated {
                    Err(format!("answer larger than {MAX_ANSWER_BYTES} bytes"))
                } else {
                    read_answer(&a.body, r, single)
                };
                match read {
                    Ok(answer) => {
                        delivery.status = WebhookStatus::Delivered;
                        delivery.error = None;
                        return HandOff {
                            delivery,
                            answer: Some(answer),
                        };
                    }
                    Err(e) => {
                        delivery.error = Some(format!("unusable answer: {e}"));
                        (false, None)
                    }
                }
            }
            Ok(Ok(a)) => {
                delivery.http_status = Some(a.status);
                delivery.error = Some(format!("HTTP {}: {}", a.status, excerpt(&a.body)));
                (a.status >= 500 || a.status == 429, a.retry_after)
            }
        };
        if !retry || delivery.attempts >= state.settings.seller.webhook_attempts {
            break;
        }
        let wait = retry_after.unwrap_or(delay);
        if Instant::now() + wait >= deadline {
            break;
        }
        state.metrics.retry(RetryTarget::Webhook);
        tokio::time::sleep(wait).await;
        delay = (delay * 2).min(Duration::from_secs(2));
    }
    HandOff {
        delivery,
        answer: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Context;
    use crate::store::{DeliveryStatus, Verdict};
    use serde_json::json;

    fn received() -> ReceivedRating {
        let context: Context = serde_json::from_value(json!({
            "domain": "ONDC:RET11", "country": "IND", "city": "std:080", "action": "rating",
            "core_version": "1.2.0", "bap_id": "buyer.test", "bap_uri": "http://b.test/bap",
            "bpp_id": "seller.test", "bpp_uri": "http://s.test/bpp", "transaction_id": "t-1",
            "message_id": "m-1", "timestamp": "2026-01-01T10:00:00.000Z", "ttl": "PT30S"
        }))
        .unwrap();
        let rating = |c: &str, id: &str| InboundRating {
            rating_category: c.into(),
            id: id.into(),
            value: "5".into(),
            feedback_form: None,
            feedback_id: None,
        };
        ReceivedRating {
            context,
            ratings: vec![rating("Item", "I1"), rating("Order", "O-1")],
            received_at: "2026-01-01T10:00:00.100Z".into(),
            on_rating: DeliveryStatus::Pending,
            attempts: 0,
            last_error: None,
            verdict: Verdict::Pending,
            error: None,
            feedback_form: None,
            webhook: None,
            single: false,
            settled_at: None,
        }
    }

    #[test]
    fn signature_is_hmac_sha256_over_timestamp_dot_body() {
        // RFC 4231 test case 2 (key "Jefe"), with the message split as "<timestamp>." + body.
        assert_eq!(
            signature(b"Jefe", 0, b"what do ya want for nothing?").len(),
            7 + 64
        );
        let whole = {
            let mut mac = HmacSha256::new_from_slice(b"Jefe").unwrap();
            mac.update(b"what do ya want for nothing?");
            mac.finalize().into_bytes()
        };
        let hex: String = whole.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let mut mac = HmacSha256::new_from_slice(b"secret").unwrap();
        mac.update(b"1700000000.{}");
        let expected: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            signature(b"secret", 1_700_000_000, b"{}"),
            format!("sha256={expected}")
        );
    }

    #[test]
    fn idempotency_keys_fit_a_header() {
        assert_eq!(idempotency_key("buyer.test", "m-1"), "buyer.test|m-1");
        assert_eq!(idempotency_key("b", "m 1%é"), "b|m%201%25%C3%A9");
    }

    #[test]
    fn the_body_names_the_order() {
        let v: Value = serde_json::from_slice(&event_body(&received())).unwrap();
        assert_eq!(v["event"], "rating.received");
        assert_eq!(v["order_id"], "O-1");
        assert_eq!(
            v["ratings"][0],
            json!({"rating_category":"Item","id":"I1","value":"5"})
        );
        let mut no_order = received();
        no_order.ratings.remove(1);
        let v: Value = serde_json::from_slice(&event_body(&no_order)).unwrap();
        assert!(v.get("order_id").is_none());
    }

    #[test]
    fn answers() {
        let r = received();
        let read = |s: &str| read_answer(s.as_bytes(), &r, false);
        assert_eq!(read(""), Ok(PlatformAnswer::Accepted));
        assert_eq!(read("{}"), Ok(PlatformAnswer::Accepted));
        assert_eq!(
            read(r#"{"message":{"ack":{"status":"ACK"}}}"#),
            Ok(PlatformAnswer::Accepted)
        );
        assert_eq!(
            read(r#"{"feedback_form_url":"https://p.test/f","feedback_form_data":"k=v"}"#),
            Ok(PlatformAnswer::Form {
                url: "https://p.test/f".into(),
                data: Some("k=v".into())
            })
        );
        let Ok(PlatformAnswer::Refused(e)) = read(r#"{"error":{"code":"30018"}}"#) else {
            panic!("refused expected");
        };
        assert_eq!(e.code, "30018");
        assert_eq!(e.path.as_deref(), Some("message.ratings[1].id"));
        assert_eq!(e.message.as_deref(), Some("order not found"));
        let Ok(PlatformAnswer::Refused(e)) =
            read(r#"{"error":{"code":30015,"message":"no","path":"message.ratings[0].value"}}"#)
        else {
            panic!("refused expected");
        };
        assert_eq!(
            (e.code.as_str(), e.message.as_deref(), e.path.as_deref()),
            ("30015", Some("no"), Some("message.ratings[0].value"))
        );
        for bad in [
            "oops",
            "[]",
            r#"{"error":{"code":"30016"}}"#,
            r#"{"error":{"message":"x"}}"#,
            r#"{"feedback_form_url":"ftp://x"}"#,
            r#"{"feedback_form_url":"https://x.test/f","feedback_form_data":1}"#,
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }
}

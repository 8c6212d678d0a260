//! Telling the rated party that v2 feedback was recorded (after the seller ACKed its /rating),
//! besides the /rating itself. Both channels are optional, run in the background (the API answer
//! never waits for them nor depends on them) and log their outcome:
//!
//! - a signed webhook, `buyer.notify_webhook_url`: the event
//!   `{"event":"feedback.recorded","api","order_id"|"listing_id","user_id","rating","message_id",
//!   "recorded_at"}`, signed with `buyer.notify_webhook_secret` exactly like the seller platform
//!   webhook ([`crate::bpp::webhook`]: same headers, same HMAC, `Idempotency-Key:
//!   <bap_id>|<message_id>`), retried on transport errors, 5xx and 429 within a bounded budget,
//!   at most `buyer.notify_concurrency` requests in flight, an attempt waiting within the budget;
//! - an email through a local SMTP relay, `buyer.notify_smtp` (plain SMTP: no TLS, no auth), from
//!   `buyer.notify_email_from` to `buyer.notify_email_to`; at most `buyer.notify_concurrency`
//!   sessions at once, an email waiting up to a minute for one.

use std::time::Duration;

use actix_web::web;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

use crate::bpp::webhook::{excerpt, idempotency_key, post_signed, slot_within};
use crate::http::AppState;

/// The event's name.
pub const EVENT: &str = "feedback.recorded";
/// Webhook attempts at most.
const WEBHOOK_ATTEMPTS: u32 = 4;
/// An email waits this long at most for a free SMTP session (`buyer.notify_concurrency`).
const EMAIL_SLOT_WAIT: Duration = Duration::from_secs(60);
/// All webhook attempts fit in this.
const WEBHOOK_BUDGET: Duration = Duration::from_secs(20);
/// Each SMTP step (connect, one command and its reply) fits in this.
const SMTP_STEP: Duration = Duration::from_secs(10);
/// Longest SMTP reply line read.
const MAX_REPLY_LINE: usize = 4096;

/// The notifications that may be in flight at once, per channel (`buyer.notify_concurrency`).
pub struct Slots {
    webhook: tokio::sync::Semaphore,
    email: tokio::sync::Semaphore,
}

impl Slots {
    /// `n` for each channel.
    pub fn new(n: usize) -> Self {
        Self {
            webhook: tokio::sync::Semaphore::new(n),
            email: tokio::sync::Semaphore::new(n),
        }
    }
}

/// A free slot of `slots`, waited for up to `wait`; Err says what ran out.
async fn slot<'a>(
    slots: &'a tokio::sync::Semaphore,
    wait: Duration,
    channel: &str,
) -> Result<tokio::sync::SemaphorePermit<'a>, String> {
    slot_within(slots, wait, |_| {}).await.ok_or_else(|| {
        format!(
            "no free {channel} slot within {} ms (buyer.notify_concurrency in flight)",
            wait.as_millis()
        )
    })
}

/// Which v2 API recorded the feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedbackApi {
    /// `POST /v2/feedback/users/{user_id}/orders/{order_id}/rating`.
    Order,
    /// `POST /v2/listings/{listing_id}/feedback`.
    Listing,
}

impl FeedbackApi {
    fn name(self) -> &'static str {
        match self {
            Self::Order => "order_feedback",
            Self::Listing => "listing_feedback",
        }
    }

    fn id_key(self) -> &'static str {
        match self {
            Self::Order => "order_id",
            Self::Listing => "listing_id",
        }
    }
}

/// One recorded feedback.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The API.
    pub api: FeedbackApi,
    /// The order or listing id.
    pub id: String,
    /// The user who gave it.
    pub user_id: String,
    /// The rating as given (`STARS4`, `Positive`, ...).
    pub rating: String,
    /// The /rating's message_id.
    pub message_id: String,
    /// When it was recorded (ONDC timestamp).
    pub recorded_at: String,
}

/// The webhook body.
pub fn event_body(r: &Recorded) -> Vec<u8> {
    let mut v = json!({
        "event": EVENT,
        "api": r.api.name(),
        "user_id": r.user_id,
        "rating": r.rating,
        "message_id": r.message_id,
        "recorded_at": r.recorded_at,
    });
    v[r.api.id_key()] = json!(r.id);
    serde_json::to_vec(&v).expect("event serialises")
}

/// Starts the configured notifications for `r` in the background.
pub fn feedback_recorded(state: &web::Data<AppState>, r: Recorded) {
    let b = &state.settings.buyer;
    if !b.notify_webhook_url.is_empty() {
        let (state, r) = (state.clone(), r.clone());
        tokio::spawn(async move {
            match send_webhook(&state, &r).await {
                Ok(attempts) => tracing::info!(
                    api = r.api.name(), message_id = %r.message_id, attempts,
                    "feedback webhook delivered"
                ),
                Err(e) => tracing::warn!(
                    api = r.api.name(), message_id = %r.message_id, error = %e,
                    "feedback webhook failed"
                ),
            }
        });
    }
    if !b.notify_smtp.is_empty() {
        let (state, r) = (state.clone(), r);
        tokio::spawn(async move {
            let b = &state.settings.buyer;
            let (subject, text) = email_text(&r);
            let sent = async {
                let _slot = slot(&state.notify_slots.email, EMAIL_SLOT_WAIT, "SMTP").await?;
                send_mail(
                    &b.notify_smtp,
                    &b.notify_email_from,
                    &b.notify_email_to,
                    &subject,
                    &text,
                )
                .await
            };
            match sent.await {
                Ok(()) => tracing::info!(
                    api = r.api.name(), message_id = %r.message_id, "feedback email sent"
                ),
                Err(e) => tracing::warn!(
                    api = r.api.name(), message_id = %r.message_id, error = %e,
                    "feedback email failed"
                ),
            }
        });
    }
}

/// POSTs the event with retries; Ok: the attempts it took.
async fn send_webhook(state: &AppState, r: &Recorded) -> Result<u32, String> {
    let b = &state.settings.buyer;
    let body = event_body(r);
    let key = idempotency_key(&state.settings.identity.subscriber_id, &r.message_id);
    let deadline = Instant::now() + WEBHOOK_BUDGET;
    let mut delay = Duration::from_millis(200);
    let mut attempts = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(10) {
            return Err(format!("no answer within {} s", WEBHOOK_BUDGET.as_secs()));
        }
        let _slot = slot(&state.notify_slots.webhook, left, "webhook").await?;
        let left = deadline.saturating_duration_since(Instant::now());
        attempts += 1;
        let outcome = timeout(
            left,
            post_signed(
                &b.notify_webhook_url,
                &b.notify_webhook_secret,
                state.clock.unix(),
                &body,
                &key,
                left,
            ),
        )
        .await;
        let (error, retry_after) = match outcome {
            Err(_) => ("out of time".to_owned(), None),
            Ok(Err(e)) => (e, None),
            Ok(Ok(a)) if (200..300).contains(&a.status) => return Ok(attempts),
            Ok(Ok(a)) if a.status >= 500 || a.status == 429 => (
                format!("HTTP {}: {}", a.status, excerpt(&a.body)),
                a.retry_after,
            ),
            Ok(Ok(a)) => {
                return Err(format!("HTTP {}: {}", a.status, excerpt(&a.body)));
            }
        };
        let wait = retry_after.unwrap_or(delay);
        if attempts >= WEBHOOK_ATTEMPTS || Instant::now() + wait >= deadline {
            return Err(format!("{error} (after {attempts} attempts)"));
        }
        // The slot is free while it waits to retry.
        drop(_slot);
        tokio::time::sleep(wait).await;
        delay = (delay * 2).min(Duration::from_secs(4));
    }
}

/// The email's subject and body.
pub fn email_text(r: &Recorded) -> (String, String) {
    let what = match r.api {
        FeedbackApi::Order => "order",
        FeedbackApi::Listing => "listing",
    };
    let subject = format!("Feedback recorded: {what} {} rated {}", r.id, r.rating);
    let text = format!(
        "Feedback was recorded and sent to the seller.\n\n\
         API: {}\n{}: {}\nUser: {}\nRating: {}\nMessage id: {}\nRecorded at: {}\n",
        r.api.name(),
        r.api.id_key(),
        r.id,
        r.user_id,
        r.rating,
        r.message_id,
        r.recorded_at
    );
    (subject, text)
}

/// Header values and addresses lose CR and LF (no header injection).
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `text` as a DATA payload: CRLF line ends, lines starting with '.' dot-stuffed.
fn dot_stuffed(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

/// The full message (headers, blank line, dot-stuffed body) followed by the `.` line.
fn message(from: &str, to: &str, subject: &str, text: &str) -> String {
    let mut m = format!(
        "From: <{}>\r\nTo: <{}>\r\nSubject: {}\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        one_line(from),
        one_line(to),
        one_line(subject)
    );
    m.push_str(&dot_stuffed(text.trim_end_matches('\n')));
    m.push_str(".\r\n");
    m
}

struct Smtp {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Smtp {
    /// Reads one (possibly multi-line) reply; Err unless its code is `want`.
    async fn expect(&mut self, want: u16, after: &str) -> Result<(), String> {
        let mut all = String::new();
        loop {
            let mut line = Vec::new();
            let n = timeout(SMTP_STEP, async {
                let mut limited = (&mut self.reader).take(MAX_REPLY_LINE as u64);
                limited.read_until(b'\n', &mut line).await
            })
            .await
            .map_err(|_| format!("no reply to {after} within {} s", SMTP_STEP.as_secs()))?
            .map_err(|e| format!("reading the reply to {after}: {e}"))?;
            if n == 0 {
                return Err(format!("connection closed before the reply to {after}"));
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end();
            all.push_str(text);
            let code = text.get(..3).and_then(|c| c.parse::<u16>().ok());
            let Some(code) = code else {
                return Err(format!("malformed reply to {after}: {text:?}"));
            };
            if text.as_bytes().get(3) == Some(&b'-') {
                all.push(' ');
                continue;
            }
            return if code == want {
                Ok(())
            } else {
                Err(format!("{after}: expected {want}, got {all:?}"))
            };
        }
    }

    async fn send(&mut self, data: &str, what: &str) -> Result<(), String> {
        timeout(SMTP_STEP, self.writer.write_all(data.as_bytes()))
            .await
            .map_err(|_| format!("sending {what} took over {} s", SMTP_STEP.as_secs()))?
            .map_err(|e| format!("sending {what}: {e}"))
    }

    async fn command(&mut self, line: &str, want: u16) -> Result<(), String> {
        let verb = line.split([' ', ':']).next().unwrap_or(line).to_owned();
        self.send(&format!("{line}\r\n"), &verb).await?;
        self.expect(want, &verb).await
    }
}

/// Sends one plain-text email through the SMTP server at `server` (`host:port`): no TLS, no
/// auth, every reply code checked, every step bounded.
pub async fn send_mail(
    server: &str,
    from: &str,
    to: &str,
    subject: &str,
    text: &str,
) -> Result<(), String> {
    let stream = timeout(SMTP_STEP, TcpStream::connect(server))
        .await
        .map_err(|_| format!("connecting to {server} took over {} s", SMTP_STEP.as_secs()))?
        .map_err(|e| format!("connecting to {server}: {e}"))?;
    let (r, w) = stream.into_split();
    let mut s = Smtp {
        reader: BufReader::new(r),
        writer: w,
    };
    s.expect(220, "the greeting").await?;
    if s.command("EHLO ondc-rating", 250).await.is_err() {
        s.command("HELO ondc-rating", 250).await?;
    }
    s.command(&format!("MAIL FROM:<{}>", one_line(from)), 250)
        .await?;
    s.command(&format!("RCPT TO:<{}>", one_line(to)), 250)
        .await?;
    s.command("DATA", 354).await?;
    s.send(&message(from, to, subject, text), "the message")
        .await?;
    s.expect(250, "the message").await?;
    // The message is taken; a failed QUIT does not undo that.
    if let Err(e) = s.command("QUIT", 221).await {
        tracing::debug!(error = %e, "SMTP QUIT");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_starting_with_a_dot_are_stuffed() {
        assert_eq!(dot_stuffed("a\n.b\n..c\r\nd"), "a\r\n..b\r\n...c\r\nd\r\n");
        let m = message("a@x.test", "b@y.test", "Hi\r\nBcc: c@z.test", ".\nok");
        assert!(m.contains("Subject: Hi  Bcc: c@z.test\r\n"), "{m}");
        assert!(m.ends_with("\r\n\r\n..\r\nok\r\n.\r\n"), "{m}");
    }

    #[test]
    fn the_event_names_its_api_and_id() {
        let r = Recorded {
            api: FeedbackApi::Listing,
            id: "L-1".into(),
            user_id: "alice".into(),
            rating: "Positive".into(),
            message_id: "m-1".into(),
            recorded_at: "2026-01-01T10:00:00.000Z".into(),
        };
        let v: serde_json::Value = serde_json::from_slice(&event_body(&r)).unwrap();
        assert_eq!(v["event"], "feedback.recorded");
        assert_eq!(v["api"], "listing_feedback");
        assert_eq!(v["listing_id"], "L-1");
        assert!(v.get("order_id").is_none());
    }
}

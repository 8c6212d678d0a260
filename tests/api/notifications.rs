//! Notifications of recorded and refused v2 feedback: the signed webhook (a recorder of ours)
//! and the email through an SMTP server of ours on loopback; neither changes the API's answer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::both_stores;
use crate::helpers::*;

const SECRET: &str = "notify-webhook-secret-for-tests";
const FROM: &str = "ratings@buyer.test";
const TO: &str = "support@seller.test";

/// Checks the signature the way the receiver would, and returns the event.
fn check_signed(c: &Captured, message_id: &str) -> Value {
    check_signed_webhook(c, SECRET, &format!("buyer.test|{message_id}"))
}

async fn user_active(b: &Buyer, user: &str) -> (u16, Value) {
    let r = b
        .http
        .put(format!("{}/internal/users/{user}", b.app.base))
        .bearer_auth(INTERNAL)
        .json(&json!({"active": true}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// One message an SMTP client handed over: its envelope and its content, dot-unstuffed, with
/// its CRLF line ends.
#[derive(Clone, Debug)]
struct Mail {
    from: String,
    to: Vec<String>,
    data: String,
}

/// A small SMTP server of ours on loopback: the server side of RFC 5321 (a greeting, a
/// multi-line EHLO reply, HELO, MAIL, RCPT, DATA ending at the `.` line and dot-unstuffed, RSET,
/// NOOP, QUIT). It holds the client to the protocol: a line not ending in CRLF, a command out of
/// order, or an unknown one is answered with an error and recorded as a violation, as is a
/// greeted session the client closes without QUIT.
struct SmtpServer {
    addr: String,
    mails: Arc<Mutex<Vec<Mail>>>,
    violations: Arc<Mutex<Vec<String>>>,
    /// Sessions open now, and the most open at once.
    open: Arc<Mutex<(usize, usize)>>,
    /// The replies the next RCPT commands get instead of 250, first first; and how many RCPT
    /// commands came.
    rcpt: Arc<Mutex<(Vec<&'static str>, usize)>>,
}

impl SmtpServer {
    async fn start() -> Self {
        Self::holding(None).await
    }

    /// With `hold`, each session's greeting waits until it is notified (once per session).
    async fn holding(hold: Option<Arc<tokio::sync::Notify>>) -> Self {
        Self::serving(hold, Vec::new()).await
    }

    /// Refusing the first RCPT commands with `replies` (a reply line each, without CRLF).
    async fn refusing(replies: Vec<&'static str>) -> Self {
        Self::serving(None, replies).await
    }

    async fn serving(hold: Option<Arc<tokio::sync::Notify>>, replies: Vec<&'static str>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
        let violations: Arc<Mutex<Vec<String>>> = Arc::default();
        let open: Arc<Mutex<(usize, usize)>> = Arc::default();
        let rcpt = Arc::new(Mutex::new((replies, 0)));
        let (m, v, o, r) = (
            mails.clone(),
            violations.clone(),
            open.clone(),
            rcpt.clone(),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (m, v, o, r) = (m.clone(), v.clone(), o.clone(), r.clone());
                let hold = hold.clone();
                tokio::spawn(async move {
                    let open = Open::count(o);
                    if let Some(go) = hold {
                        go.notified().await;
                    }
                    session(stream, m, v, open, r).await;
                });
            }
        });
        Self {
            addr,
            mails,
            violations,
            open,
            rcpt,
        }
    }

    /// Waits (bounded) for the first whole message and returns it, after checking the client
    /// kept to the protocol.
    async fn message(&self) -> Mail {
        self.nth_message(0).await
    }

    /// [`SmtpServer::message`] for the `n`-th message (from 0).
    async fn nth_message(&self, n: usize) -> Mail {
        for _ in 0..250 {
            if let Some(mail) = self.mails.lock().unwrap().get(n).cloned() {
                let violations = self.violations.lock().unwrap().clone();
                assert!(violations.is_empty(), "SMTP violations: {violations:?}");
                return mail;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no message {n} reached the SMTP server");
    }
}

/// One session counted in (sessions open now, the most open at once) for as long as it lives.
struct Open(Arc<Mutex<(usize, usize)>>);

impl Open {
    fn count(open: Arc<Mutex<(usize, usize)>>) -> Self {
        {
            let mut o = open.lock().unwrap();
            o.0 += 1;
            o.1 = o.1.max(o.0);
        }
        Self(open)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.lock().unwrap().0 -= 1;
    }
}

/// One SMTP session on `stream`, counted open by `open` until it ends: at QUIT before the 221
/// reply (a client may open its next session as soon as it reads that reply), otherwise when the
/// connection does.
async fn session(
    stream: tokio::net::TcpStream,
    mails: Arc<Mutex<Vec<Mail>>>,
    violations: Arc<Mutex<Vec<String>>>,
    open: Open,
    rcpt: Arc<Mutex<(Vec<&'static str>, usize)>>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let violation = |what: String| violations.lock().unwrap().push(what);
    let _ = write.write_all(b"220 smtp.test ESMTP ready\r\n").await;
    let (mut greeted, mut from, mut to) = (false, None::<String>, Vec::<String>::new());
    loop {
        let mut line = Vec::new();
        match read.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => {
                if greeted {
                    violation("the session was closed without QUIT".into());
                }
                return;
            }
            Ok(_) => {}
        }
        let Some(line) = line.strip_suffix(b"\r\n") else {
            violation(format!(
                "a line without CRLF: {:?}",
                String::from_utf8_lossy(&line)
            ));
            let _ = write.write_all(b"500 lines end with CRLF\r\n").await;
            continue;
        };
        let line = String::from_utf8_lossy(line).into_owned();
        let verb = line
            .split([' ', ':'])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let address = |prefix: &str| {
            let rest = line.get(prefix.len()..).filter(|_| {
                line.get(..prefix.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
            })?;
            Some(rest.strip_prefix('<')?.strip_suffix('>')?.to_owned())
        };
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => {
                greeted = true;
                b"250-smtp.test\r\n250-8BITMIME\r\n250 SIZE 1000000\r\n"
            }
            "HELO" => {
                greeted = true;
                b"250 smtp.test\r\n"
            }
            "MAIL" if greeted && from.is_none() => match address("MAIL FROM:") {
                Some(a) => {
                    from = Some(a);
                    b"250 sender ok\r\n"
                }
                None => b"501 MAIL FROM:<address>\r\n",
            },
            "RCPT" if from.is_some() => {
                let refusal = {
                    let mut r = rcpt.lock().unwrap();
                    r.1 += 1;
                    (!r.0.is_empty()).then(|| r.0.remove(0))
                };
                match (refusal, address("RCPT TO:")) {
                    (Some(refused), _) => {
                        let _ = write.write_all(format!("{refused}\r\n").as_bytes()).await;
                        continue;
                    }
                    (None, Some(a)) => {
                        to.push(a);
                        b"250 recipient ok\r\n"
                    }
                    (None, None) => b"501 RCPT TO:<address>\r\n",
                }
            }
            "DATA" if !to.is_empty() => {
                let _ = write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await;
                let mut data = String::new();
                loop {
                    let mut l = Vec::new();
                    match read.read_until(b'\n', &mut l).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if !l.ends_with(b"\r\n") {
                        violation(format!(
                            "a DATA line without CRLF: {:?}",
                            String::from_utf8_lossy(&l)
                        ));
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    let l = String::from_utf8_lossy(&l).into_owned();
                    data.push_str(l.strip_prefix('.').unwrap_or(&l));
                }
                mails.lock().unwrap().push(Mail {
                    from: from.take().unwrap_or_default(),
                    to: std::mem::take(&mut to),
                    data,
                });
                b"250 queued\r\n"
            }
            "RSET" => {
                (from, to) = (None, Vec::new());
                b"250 reset\r\n"
            }
            "NOOP" => b"250 ok\r\n",
            "QUIT" => {
                drop(open);
                let _ = write.write_all(b"221 bye\r\n").await;
                return;
            }
            "MAIL" | "RCPT" | "DATA" => {
                violation(format!("out of order: {line}"));
                b"503 bad sequence of commands\r\n"
            }
            _ => {
                violation(format!("unknown command: {line}"));
                b"502 command not implemented\r\n"
            }
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// A buyer whose orders and listings (O-1, L-1, both alice's, who is active) are sold by
/// `seller` (scripted); `tweak` has the last word on its settings.
async fn selling_buyer(
    store: &StoreFixture,
    seller: &ScriptedSeller,
    tweak: impl FnOnce(&mut ondc_rating::config::Settings),
) -> Buyer {
    let clock: ondc_rating::clock::SharedClock = Arc::new(ondc_rating::clock::SystemClock);
    selling_buyer_at(store, seller, clock, tweak).await
}

/// A [`selling_buyer`] whose clock is `clock`.
async fn selling_buyer_at(
    store: &StoreFixture,
    seller: &ScriptedSeller,
    clock: ondc_rating::clock::SharedClock,
    tweak: impl FnOnce(&mut ondc_rating::config::Settings),
) -> Buyer {
    let peer = seller.identity.peer();
    let b = Buyer::start_as_clocked(
        Identity::new("buyer.test"),
        store,
        "buyer",
        vec![],
        clock,
        move |s| {
            s.peers.push(peer);
            tweak(s);
        },
    )
    .await;
    assert_eq!(user_active(&b, "alice").await.0, 200);
    for id in ["O-1", "L-1"] {
        let o = order("alice", "scripted-seller.test", &seller.bpp_uri());
        assert_eq!(b.put_order(id, &o).await.0, 200);
    }
    b
}

/// Settings that notify `hook`'s `/events`, signed with [`SECRET`].
fn webhook_to(hook: &Recorder) -> impl FnOnce(&mut ondc_rating::config::Settings) {
    let url = format!("{}/events", hook.base);
    move |s| {
        s.buyer.notify_webhook_url = url;
        s.buyer.notify_webhook_secret = SECRET.into();
    }
}

/// Settings that mail from [`FROM`] to [`TO`] through `smtp`.
fn mail_through(smtp: &SmtpServer) -> impl FnOnce(&mut ondc_rating::config::Settings) {
    let addr = smtp.addr.clone();
    move |s| {
        s.buyer.notify_smtp = addr;
        s.buyer.notify_email_from = FROM.into();
        s.buyer.notify_email_to = TO.into();
    }
}

/// A [`selling_buyer`] notifying `hook` and mailing through `smtp` like [`notifying_pair`]'s.
async fn notifying_buyer(
    store: &StoreFixture,
    seller: &ScriptedSeller,
    hook: &Recorder,
    smtp: &SmtpServer,
) -> Buyer {
    let (hook, mail) = (webhook_to(hook), mail_through(smtp));
    selling_buyer(store, seller, move |s| {
        hook(s);
        mail(s);
    })
    .await
}

/// A buyer and seller pair whose buyer notifies `hook` (its `/events`) and mails through
/// `smtp` (`host:port`), with `notify_concurrency` slots per channel; alice is an active user.
async fn notifying_pair(hook: &Recorder, smtp: String, notify_concurrency: usize) -> Pair {
    let url = format!("{}/events", hook.base);
    let p = Pair::start_with(Backend::Embedded, move |s| {
        s.buyer.notify_webhook_url = url;
        s.buyer.notify_webhook_secret = SECRET.into();
        s.buyer.notify_smtp = smtp;
        s.buyer.notify_email_from = FROM.into();
        s.buyer.notify_email_to = TO.into();
        s.buyer.notify_concurrency = notify_concurrency;
    })
    .await;
    let (status, body) = user_active(&p.buyer, "alice").await;
    assert_eq!(status, 200, "{body}");
    p
}

/// alice's order feedback through the v2 API, posted by the backend service.
async fn order_feedback(p: &Pair, order_id: &str, body: Value) -> reqwest::Response {
    p.buyer
        .http
        .post(format!(
            "{}/v2/feedback/users/alice/orders/{order_id}/rating",
            p.buyer.app.base
        ))
        .bearer_auth(Buyer::token("backend-service"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_feedback_is_signed_to_the_webhook_and_mailed() {
    // The first attempt fails with 503: the event is retried with the same key.
    let hook = Recorder::start("/events", Script::FailFirst(1, 503)).await;
    let smtp = SmtpServer::start().await;
    let p = notifying_pair(&hook, smtp.addr.clone(), 16).await;
    p.order("O-1", "alice").await;

    let r = order_feedback(
        &p,
        "O-1",
        json!({"rating_value": "STARS4", "thank_you_note": ".Thanks"}),
    )
    .await;
    assert_eq!(r.status().as_u16(), 200);

    let got = hook.wait_for(2).await;
    let first: Value = serde_json::from_slice(&got[0].body).unwrap();
    let message_id = first["message_id"].as_str().unwrap().to_owned();
    for c in &got {
        let event = check_signed(c, &message_id);
        assert_eq!(event, first);
    }
    assert_eq!(first["event"], "feedback.recorded");
    assert_eq!(first["api"], "order_feedback");
    assert_eq!(first["order_id"], "O-1");
    assert_eq!(first["user_id"], "alice");
    assert_eq!(first["rating"], "STARS4");
    assert!(first["recorded_at"].as_str().unwrap().ends_with('Z'));
    assert!(first.get("listing_id").is_none());
    // The /rating the seller got is the one the event names.
    let (status, received) = p.seller.received("buyer.test", &message_id).await;
    assert_eq!(status, 200, "{received}");

    let mail = smtp.message().await;
    assert_eq!(
        (mail.from.as_str(), &mail.to[..]),
        (FROM, &[TO.to_owned()][..])
    );
    let mail = mail.data;
    assert!(mail.contains(&format!("From: <{FROM}>\r\n")), "{mail}");
    assert!(mail.contains(&format!("To: <{TO}>\r\n")), "{mail}");
    assert!(
        mail.contains("Subject: Feedback recorded: order O-1 rated STARS4\r\n"),
        "{mail}"
    );
    assert!(mail.contains("Rating: STARS4"), "{mail}");
    assert!(
        mail.contains(&format!("Message id: {message_id}")),
        "{mail}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_feedback_is_signed_to_the_webhook_and_mailed() {
    let hook = Recorder::start("/events", Script::AckSilently).await;
    let smtp = SmtpServer::start().await;
    let p = notifying_pair(&hook, smtp.addr.clone(), 16).await;
    p.order("L-1", "alice").await;
    let r = p
        .buyer
        .http
        .post(format!("{}/v2/listings/L-1/feedback", p.buyer.app.base))
        .bearer_auth(Buyer::token("alice"))
        .json(&json!({"Rating": "Negative", "Feedback": "Late"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let answer: Value = r.json().await.unwrap();
    let message_id = answer["feedback"]["message_id"].as_str().unwrap();

    let got = hook.wait_for(1).await;
    let event = check_signed(&got[0], message_id);
    assert_eq!(event["event"], "feedback.recorded");
    assert_eq!(event["api"], "listing_feedback");
    assert_eq!(event["listing_id"], "L-1");
    assert_eq!(event["user_id"], "alice");
    assert_eq!(event["rating"], "Negative");
    assert_eq!(event["message_id"], message_id);
    assert!(event.get("order_id").is_none());

    let mail = smtp.message().await;
    assert_eq!(
        (mail.from.as_str(), &mail.to[..]),
        (FROM, &[TO.to_owned()][..])
    );
    let mail = mail.data;
    assert!(
        mail.contains("Subject: Feedback recorded: listing L-1 rated Negative"),
        "{mail}"
    );
    assert!(mail.contains("Rating: Negative"), "{mail}");
    assert!(mail.contains(&format!("To: <{TO}>")), "{mail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_notifications_do_not_change_the_answers() {
    let hook = Recorder::start("/events", Script::Respond(500, "down".into())).await;
    // Nothing listens there.
    let (listener, port) = bind();
    drop(listener);
    let p = notifying_pair(&hook, format!("127.0.0.1:{port}"), 16).await;
    p.order("O-1", "alice").await;
    p.order("L-1", "bob").await;

    let started = std::time::Instant::now();
    let r = order_feedback(&p, "O-1", json!({"rating_value": "STARS1"})).await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"success": true}));
    let r = p
        .buyer
        .http
        .post(format!("{}/v2/listings/L-1/feedback", p.buyer.app.base))
        .bearer_auth(Buyer::token("bob"))
        .json(&json!({"Rating": "Neutral"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    // The retries run in the background, not within the answers.
    assert!(started.elapsed() < Duration::from_secs(5));
    // Each event is retried on 500 (two events, more than one attempt each).
    hook.wait_for(4).await;
    // Neither delivered, both events are kept on both channels, to be tried again later; the
    // sweep (every 5 s) counts them.
    let kept = "ondc_rating_notifications_kept";
    let mut seen = None;
    for _ in 0..40 {
        seen = sample(&metrics(&p.buyer.app.base).await, kept);
        if seen == Some(4.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(seen, Some(4.0));
}

/// A burst of feedback reaches the webhook's receiver and the SMTP relay
/// `buyer.notify_concurrency` at a time: the second event waits for the first request to be
/// answered, the second email for the first session to end, and both are delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_go_out_notify_concurrency_at_a_time() {
    let answer = Arc::new(tokio::sync::Notify::new());
    let hook = Recorder::start("/events", Script::AckWhen(answer.clone())).await;
    let greet = Arc::new(tokio::sync::Notify::new());
    let smtp = SmtpServer::holding(Some(greet.clone())).await;
    let p = notifying_pair(&hook, smtp.addr.clone(), 1).await;
    for order in ["O-1", "O-2"] {
        p.order(order, "alice").await;
        let r = order_feedback(&p, order, json!({"rating_value": "STARS5"})).await;
        assert_eq!(r.status().as_u16(), 200);
    }
    hook.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hook.requests().len(), 1, "one webhook request in flight");
    assert_eq!(smtp.open.lock().unwrap().0, 1, "one SMTP session open");
    answer.notify_one();
    hook.wait_for(2).await;
    answer.notify_one();
    for _ in 0..2 {
        greet.notify_one();
        let before = smtp.mails.lock().unwrap().len();
        for _ in 0..250 {
            if smtp.mails.lock().unwrap().len() > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mails = smtp.mails.lock().unwrap().clone();
    let subjects: Vec<bool> = ["O-1", "O-2"]
        .iter()
        .map(|o| {
            let subject = format!("Subject: Feedback recorded: order {o} rated STARS5\r\n");
            mails.iter().any(|m| m.data.contains(&subject))
        })
        .collect();
    assert_eq!(subjects, [true, true], "{mails:?}");
    assert_eq!(
        smtp.open.lock().unwrap().1,
        1,
        "never two SMTP sessions at once"
    );
    assert!(smtp.violations.lock().unwrap().is_empty());
    let events: Vec<Value> = hook
        .requests()
        .iter()
        .map(|c| serde_json::from_slice(&c.body).unwrap())
        .collect();
    let mut orders: Vec<&str> = events
        .iter()
        .map(|e| e["order_id"].as_str().unwrap())
        .collect();
    orders.sort();
    assert_eq!(orders, ["O-1", "O-2"]);
}

/// A seller that ACKs feedback and refuses it later in its /on_rating: the receiver learns of
/// the recording and then of the refusal, each signed under its own key, and so does the relay;
/// a repeat of the refusal tells nobody again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_refusal_is_notified_after_the_recording() {
    let store = StoreFixture::new(Backend::Embedded);
    let seller = ScriptedSeller::start(Script::AckSilently).await;
    let hook = Recorder::start("/events", Script::AckSilently).await;
    let smtp = SmtpServer::start().await;
    let b = notifying_buyer(&store, &seller, &hook, &smtp).await;
    let sent = feedback_on_o1(&b, &seller, "STARS2").await;
    let recorded = hook.wait_for(1).await;
    let message_id = message_id(&sent);
    assert_eq!(
        check_signed(&recorded[0], &message_id)["event"],
        "feedback.recorded"
    );
    let mail = smtp.message().await.data;
    assert!(
        mail.contains("Subject: Feedback recorded: order O-1 rated STARS2\r\n"),
        "{mail}"
    );

    let error = json!({"type": "DOMAIN-ERROR", "code": "30018", "message": "Order not found"});
    let refusal = callback_of(
        &sent["context"],
        json!({"message": {"feedback_ack": false, "rating_ack": true}, "error": error}),
    );
    assert_eq!(b.on_rating(&seller.identity, &refusal).await.0, 200);
    let got = hook.wait_for(2).await;
    let event = check_signed_webhook(&got[1], SECRET, &format!("buyer.test|{message_id}|refused"));
    assert_eq!(event["event"], "feedback.refused");
    assert_eq!(event["api"], "order_feedback");
    assert_eq!(event["order_id"], "O-1");
    assert_eq!(event["user_id"], "alice");
    assert_eq!(event["rating"], "STARS2");
    assert_eq!(event["message_id"], message_id.as_str());
    assert_eq!(event["seller_error"], error);
    assert_eq!(
        event["reason"],
        "the seller refused the rating: 30018 Order not found"
    );
    assert!(event["refused_at"].as_str().unwrap().ends_with('Z'));
    assert!(event.get("recorded_at").is_none());
    let mail = smtp.nth_message(1).await.data;
    assert!(
        mail.contains("Subject: Feedback refused: order O-1 rated STARS2\r\n"),
        "{mail}"
    );
    assert!(
        mail.contains("Reason: the seller refused the rating: 30018 Order not found"),
        "{mail}"
    );
    assert!(
        mail.contains(&format!("Message id: {message_id}")),
        "{mail}"
    );

    // The same callback again is ACKed (the first one is kept) and tells nobody again.
    assert_eq!(b.on_rating(&seller.identity, &refusal).await.0, 200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(hook.requests().len(), 2, "no second refusal event");
    assert_eq!(
        smtp.mails.lock().unwrap().len(),
        2,
        "no second refusal email"
    );
}

/// Listing feedback refused (`rating_ack: false`) before the seller's ACK is processed: only
/// the refusal is told, since the feedback was never recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_before_the_ack_is_the_only_notification() {
    let store = StoreFixture::new(Backend::Embedded);
    let ack = Arc::new(tokio::sync::Notify::new());
    let seller = ScriptedSeller::start(Script::AckWhen(ack.clone())).await;
    let hook = Recorder::start("/events", Script::AckSilently).await;
    let smtp = SmtpServer::start().await;
    let b = notifying_buyer(&store, &seller, &hook, &smtp).await;
    let post = {
        let (http, url) = (
            b.http.clone(),
            format!("{}/v2/listings/L-1/feedback", b.app.base),
        );
        tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(Buyer::token("alice"))
                .json(&json!({"Rating": "Negative"}))
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        })
    };
    let sent: Value = serde_json::from_slice(&seller.recorder.wait_for(1).await[0].body).unwrap();
    let message_id = sent["context"]["message_id"].as_str().unwrap().to_owned();
    let declined = callback_of(
        &sent["context"],
        json!({"message": {"feedback_ack": true, "rating_ack": false}}),
    );
    assert_eq!(b.on_rating(&seller.identity, &declined).await.0, 200);
    let got = hook.wait_for(1).await;
    let event = check_signed_webhook(&got[0], SECRET, &format!("buyer.test|{message_id}|refused"));
    assert_eq!(event["event"], "feedback.refused");
    assert_eq!(event["api"], "listing_feedback");
    assert_eq!(event["listing_id"], "L-1");
    assert_eq!(event["rating"], "Negative");
    assert_eq!(
        event["reason"],
        ondc_rating::store::CallbackRecord::DECLINED
    );
    assert!(event.get("seller_error").is_none());

    ack.notify_one();
    assert_eq!(post.await.unwrap(), 201);
    let mail = smtp.message().await.data;
    assert!(
        mail.contains("Subject: Feedback refused: listing L-1 rated Negative\r\n"),
        "{mail}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        hook.requests().len(),
        1,
        "no feedback.recorded after the refusal"
    );
    assert_eq!(
        smtp.mails.lock().unwrap().len(),
        1,
        "one email: the refusal"
    );
}

/// A [`selling_buyer`] notifying `hook` only, trying again `retry_after_ms` after a failed
/// round (twice as late each time), for `retry_hours`.
async fn retrying_buyer(
    store: &StoreFixture,
    seller: &ScriptedSeller,
    hook: &Recorder,
    retry_after_ms: u64,
    retry_hours: u32,
) -> Buyer {
    let hook = webhook_to(hook);
    selling_buyer(store, seller, move |s| {
        hook(s);
        s.buyer.notify_retry_after_ms = retry_after_ms;
        s.buyer.notify_retry_hours = retry_hours;
    })
    .await
}

/// alice's `rating` on O-1 through the v2 API, the first `seller` gets; the /rating it got.
async fn feedback_on_o1(b: &Buyer, seller: &ScriptedSeller, rating: &str) -> Value {
    let r = b
        .http
        .post(format!(
            "{}/v2/feedback/users/alice/orders/O-1/rating",
            b.app.base
        ))
        .bearer_auth(Buyer::token("backend-service"))
        .json(&json!({"rating_value": rating}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    serde_json::from_slice(&seller.requests()[0].body).unwrap()
}

/// The message_id of a /rating.
fn message_id(sent: &Value) -> String {
    sent["context"]["message_id"].as_str().unwrap().to_owned()
}

/// Every request `hook` got: each signed under `message_id`'s key, all the same event.
fn same_event(hook: &Recorder, message_id: &str) -> Vec<Value> {
    let events: Vec<Value> = hook
        .requests()
        .iter()
        .map(|c| check_signed(c, message_id))
        .collect();
    assert!(events.windows(2).all(|w| w[0] == w[1]), "{events:?}");
    events
}

/// A receiver down for a whole round of attempts (4, within 20 s) gets the event in a later
/// round, from one instance only where two share Redis; then it is not sent again.
async fn an_undelivered_event_is_sent_again_in_a_later_round(backend: Backend) {
    let store = StoreFixture::new(backend);
    let seller = ScriptedSeller::start(Script::AckSilently).await;
    let hook = Recorder::start("/events", Script::FailFirst(4, 503)).await;
    let b = retrying_buyer(&store, &seller, &hook, 300, 24).await;
    // Where the store is shared, a second instance sweeps for due events too.
    let other = match backend {
        Backend::Embedded => None,
        _ => Some(retrying_buyer(&store, &seller, &hook, 300, 24).await),
    };
    let message_id = message_id(&feedback_on_o1(&b, &seller, "STARS3").await);
    hook.wait_for_within(5, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let events = same_event(&hook, &message_id);
    assert_eq!(
        events.len(),
        5,
        "4 refused in the first round, 1 taken in the second"
    );
    assert_eq!(events[0]["event"], "feedback.recorded");
    assert_eq!(events[0]["rating"], "STARS3");
    // The rounds, counted where they ran: one kept to retry, then one delivered.
    let mut rounds = [0.0; 2];
    for app in std::iter::once(&b).chain(other.as_ref()) {
        let text = metrics(&app.app.base).await;
        for (n, ended) in rounds.iter_mut().zip(["retry", "delivered"]) {
            let series = format!(
                "ondc_rating_notification_rounds_total{{channel=\"webhook\",ended=\"{ended}\"}}"
            );
            *n += sample(&text, &series).unwrap();
        }
    }
    assert_eq!(rounds, [1.0, 1.0]);
}
both_stores!(an_undelivered_event_is_sent_again_in_a_later_round);

/// A notification whose round failed is listed among those kept to be sent, with when its
/// next round is due and why the last one failed, from any instance sharing the store; given up
/// it is not.
async fn a_notification_kept_to_be_sent_again_is_listed(backend: Backend) {
    let store = StoreFixture::new(backend);
    let seller = ScriptedSeller::start(Script::AckSilently).await;
    let hook = Recorder::start("/events", Script::FailFirst(4, 503)).await;
    let b = retrying_buyer(&store, &seller, &hook, 60_000, 24).await;
    let message_id = message_id(&feedback_on_o1(&b, &seller, "STARS4").await);
    hook.wait_for(4).await;
    let kept_at = |base: String| {
        let http = b.http.clone();
        async move {
            let mut page = Value::Null;
            for _ in 0..250 {
                page = internal_call(http.get(format!("{base}/internal/notifications/kept")))
                    .await
                    .1;
                if page["notifications"][0]["rounds"] == 1 {
                    return page;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("not kept after a failed round: {page}");
        }
    };
    let page = kept_at(b.app.base.clone()).await;
    let listed = page["notifications"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{page}");
    let n = &listed[0];
    assert_eq!(n["id"], format!("{message_id}|feedback.recorded|webhook"));
    assert_eq!(n["channel"], "webhook");
    assert_eq!(n["event"]["event"], "feedback.recorded");
    assert_eq!(n["event"]["rating"], "STARS4");
    assert!(
        n["lastError"].as_str().unwrap().starts_with("HTTP 503"),
        "{n}"
    );
    assert!(n.get("givenUpAt").is_none());
    let at = |field: &str| ondc_rating::clock::parse_timestamp(n[field].as_str().unwrap()).unwrap();
    let wait = (at("dueAt") - at("firstDueAt")).num_milliseconds();
    assert!(
        (60_000..70_000).contains(&wait),
        "due a minute after the round: {n}"
    );
    // A page of one, then nothing after it.
    let (_, first) = internal_call(b.http.get(format!(
        "{}/internal/notifications/kept?limit=1",
        b.app.base
    )))
    .await;
    let next = first["next"].as_str().expect("a next").to_owned();
    let (_, rest) = internal_call(b.http.get(format!(
        "{}/internal/notifications/kept?limit=1&after={}",
        b.app.base,
        next.replace('|', "%7C")
    )))
    .await;
    assert_eq!(rest["notifications"], json!([]), "{rest}");
    given_up_once(&b.http, &b.app.base, 0).await;
    // The same from an instance sharing the store; after a restart on the embedded one.
    let other = match backend {
        Backend::Embedded => b.app.restart().await,
        _ => retrying_buyer(&store, &seller, &hook, 60_000, 24).await.app,
    };
    assert_eq!(kept_at(other.base.clone()).await, page);
}
both_stores!(a_notification_kept_to_be_sent_again_is_listed);

/// A receiver that refuses the event (a 4xx other than 429) is not asked again; nor, with
/// `buyer.notify_retry_hours = 0`, is one that was down for the only round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_or_expired_event_is_given_up() {
    for (script, hours, expected) in [
        (Script::Respond(410, "gone".into()), 24, 1),
        (Script::Respond(503, "down".into()), 0, 4),
    ] {
        let store = StoreFixture::new(Backend::Embedded);
        let seller = ScriptedSeller::start(Script::AckSilently).await;
        let hook = Recorder::start("/events", script).await;
        let b = retrying_buyer(&store, &seller, &hook, 200, hours).await;
        let message_id = message_id(&feedback_on_o1(&b, &seller, "STARS3").await);
        hook.wait_for_within(expected, Duration::from_secs(10))
            .await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            same_event(&hook, &message_id).len(),
            expected,
            "retry_hours {hours}"
        );
        let series =
            "ondc_rating_notification_rounds_total{channel=\"webhook\",ended=\"given_up\"}";
        let text = metrics(&b.app.base).await;
        assert_eq!(sample(&text, series), Some(1.0));
        assert_eq!(
            sample(&text, "ondc_rating_notifications_kept"),
            Some(0.0),
            "none kept"
        );
    }
}

/// A relay that refuses the recipient for now (451) gets the email in a later round; one that
/// refuses it for good (550) is not asked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_is_retried_after_a_4yz_and_given_up_after_a_5yz() {
    for (reply, mails, ended) in [
        ("451 4.3.0 try again later", 1, "delivered"),
        ("550 5.1.1 no such mailbox", 0, "given_up"),
    ] {
        let store = StoreFixture::new(Backend::Embedded);
        let seller = ScriptedSeller::start(Script::AckSilently).await;
        let smtp = SmtpServer::refusing(vec![reply]).await;
        let mail = mail_through(&smtp);
        let b = selling_buyer(&store, &seller, move |s| {
            mail(s);
            s.buyer.notify_retry_after_ms = 200;
        })
        .await;
        feedback_on_o1(&b, &seller, "STARS4").await;
        if mails == 1 {
            assert!(smtp.message().await.data.contains("Rating: STARS4"));
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let rcpts = smtp.rcpt.lock().unwrap().1;
        assert_eq!(
            (smtp.mails.lock().unwrap().len(), rcpts),
            (mails, 1 + mails),
            "{reply}"
        );
        assert!(smtp.violations.lock().unwrap().is_empty());
        let series =
            format!("ondc_rating_notification_rounds_total{{channel=\"email\",ended=\"{ended}\"}}");
        assert_eq!(
            sample(&metrics(&b.app.base).await, &series),
            Some(1.0),
            "{reply}"
        );
    }
}

/// What a stopped instance left in Redis: a notification kept after a failed round, and a
/// due-time entry of one it never got to keep. An instance sharing the store sends the first
/// and drops the second, and keeps neither once done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_what_a_stopped_instance_kept_is_sent_by_another() {
    use ondc_rating::bap::notify::{Channel, Notice, Outcome, Pending};
    let fixture = StoreFixture::new(Backend::Redis);
    let settings = fixture.settings("buyer");
    let prefix = settings.key_prefix.clone();
    let redis = redis_connection(&settings.redis_url).await;
    let run = |cmd: &mut redis::Cmd| redis_do(&redis, cmd.clone());
    let due = chrono::Utc::now().timestamp_millis() - 1_000;
    let kept = Pending {
        notice: Notice {
            api: ondc_rating::store::FeedbackApi::Order,
            id: "O-9".into(),
            user_id: "alice".into(),
            rating: "STARS1".into(),
            message_id: "m-kept".into(),
            at: "2026-12-01T10:00:00.000Z".into(),
            outcome: Outcome::Recorded,
        },
        channel: Channel::Webhook,
        due_ms: due,
        since_ms: due - 30_000,
        rounds: 1,
        last_error: Some("HTTP 503: down (after 4 attempts)".into()),
        given_up_ms: None,
    };
    let orphan = "m-orphan|feedback.recorded|webhook";
    run(redis::cmd("SET")
        .arg(format!("{prefix}notices:{}", kept.key()))
        .arg(serde_json::to_vec(&kept).unwrap()))
    .await;
    for key in [kept.key().as_str(), orphan] {
        run(redis::cmd("ZADD")
            .arg(format!("{prefix}notices_due"))
            .arg(due)
            .arg(key))
        .await;
    }

    let hook = Recorder::start("/events", Script::AckSilently).await;
    let url = format!("{}/events", hook.base);
    let b = Buyer::start(&fixture, "buyer", vec![], move |s| {
        s.buyer.notify_webhook_url = url;
        s.buyer.notify_webhook_secret = SECRET.into();
    })
    .await;
    let event = check_signed(&hook.wait_for(1).await[0], "m-kept");
    assert_eq!(event["event"], "feedback.recorded");
    assert_eq!(event["order_id"], "O-9");
    assert_eq!(event["recorded_at"], "2026-12-01T10:00:00.000Z");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(hook.requests().len(), 1);
    let mut c = redis.clone();
    let left: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("{prefix}notices_due"))
        .arg(0)
        .arg(-1)
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(left.is_empty(), "nothing due is left: {left:?}");
    let record: i64 = redis::cmd("EXISTS")
        .arg(format!("{prefix}notices:{}", kept.key()))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(record, 0, "the delivered notification is not kept");
    let series = "ondc_rating_notification_rounds_total{channel=\"webhook\",ended=\"delivered\"}";
    assert_eq!(sample(&metrics(&b.app.base).await, series), Some(1.0));
}

/// A feedback's notifications are kept before the API answers: the moment the 200 arrives, the
/// store holds the webhook's (its first round still waiting for the receiver), and once the
/// receiver answers it is kept no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_notification_is_kept_before_the_answer() {
    let store = StoreFixture::new(Backend::Redis);
    let settings = store.settings("buyer");
    let (prefix, redis) = (
        settings.key_prefix.clone(),
        redis_connection(&settings.redis_url).await,
    );
    let seller = ScriptedSeller::start(Script::AckSilently).await;
    let go = Arc::new(tokio::sync::Notify::new());
    let hook = Recorder::start("/events", Script::AckWhen(go.clone())).await;
    let b = selling_buyer(&store, &seller, webhook_to(&hook)).await;
    let message_id = message_id(&feedback_on_o1(&b, &seller, "STARS5").await);
    let kept = format!("{prefix}notices:{message_id}|feedback.recorded|webhook");
    let exists = || {
        let (mut c, kept) = (redis.clone(), kept.clone());
        async move {
            redis::cmd("EXISTS")
                .arg(kept)
                .query_async::<i64>(&mut c)
                .await
                .unwrap()
        }
    };
    assert_eq!(exists().await, 1, "kept when the answer came");
    hook.wait_for(1).await;
    go.notify_one();
    for _ in 0..250 {
        if exists().await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(exists().await, 0, "delivered, kept no more");
    check_signed(&hook.requests()[0], &message_id);
}

/// The gauge of the notifications given up and kept.
const GIVEN_UP: &str = "ondc_rating_notifications_given_up";

/// Waits (bounded) until the gauge `name` at `base` reads `value`.
async fn gauge_reads(base: &str, name: &str, value: f64) {
    let mut read = None;
    for _ in 0..100 {
        read = sample(&metrics(base).await, name);
        if read == Some(value) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    panic!("{name} reads {read:?}, not {value}");
}

/// `req` sent with the internal token: its status, and its body (none with a 204), checked
/// against the notifications schema.
async fn internal_call(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.bearer_auth(INTERNAL).send().await.unwrap();
    let (status, body) = (r.status().as_u16(), r.json().await.unwrap_or(Value::Null));
    if status != 204 {
        assert_documented(status, &body, &schemas().notifications);
    }
    (status, body)
}

/// A page of the notifications given up, read at `base` (`query` as given).
async fn given_up_page(http: &reqwest::Client, base: &str, query: &str) -> (u16, Value) {
    internal_call(http.get(format!("{base}/internal/notifications/given-up{query}"))).await
}

/// The notifications given up at `base`, once there are `n` (waited for, bounded).
async fn given_up_once(http: &reqwest::Client, base: &str, n: usize) -> Vec<Value> {
    let mut page = Value::Null;
    for _ in 0..250 {
        let status;
        (status, page) = given_up_page(http, base, "").await;
        assert_eq!(status, 200, "{page}");
        if page["notifications"].as_array().unwrap().len() == n {
            return page["notifications"].as_array().unwrap().clone();
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    panic!("not {n} notifications given up: {page}");
}

/// Asks `base` to send the given-up notification `id` again, its `|` percent-encoded.
async fn send_again(http: &reqwest::Client, base: &str, id: &str) -> (u16, Value) {
    let id = id.replace('|', "%7C");
    internal_call(http.post(format!("{base}/internal/notifications/given-up/{id}/send"))).await
}

/// A webhook receiver that refuses the event (410) and a relay that refuses the mailbox (550):
/// both are given up, listed oldest first a page at a time, still after a restart; sent again on
/// request, the receiver gets the same event under the same key, the relay takes the email, and
/// neither is listed any more.
async fn a_given_up_event_is_listed_and_sent_again_on_request(backend: Backend) {
    let store = StoreFixture::new(backend);
    let seller = ScriptedSeller::start(Script::AckSilently).await;
    let hook = Recorder::start("/events", Script::FailFirst(1, 410)).await;
    let smtp = SmtpServer::refusing(vec!["550 5.1.1 no such mailbox"]).await;
    let (webhook, mail) = (webhook_to(&hook), mail_through(&smtp));
    let b = selling_buyer(&store, &seller, move |s| {
        webhook(s);
        mail(s);
        // Sweeps, which count what is kept, every 100 ms.
        s.buyer.notify_retry_after_ms = 200;
    })
    .await;
    let message_id = message_id(&feedback_on_o1(&b, &seller, "STARS2").await);
    let refused = check_signed(&hook.wait_for(1).await[0], &message_id);
    given_up_once(&b.http, &b.app.base, 2).await;
    gauge_reads(&b.app.base, GIVEN_UP, 2.0).await;

    // Kept in the store: the same after a restart.
    let app = b.app.restart().await;
    let base = app.base.as_str();
    gauge_reads(base, GIVEN_UP, 2.0).await;
    let (status, first) = given_up_page(&b.http, base, "?limit=1").await;
    assert_eq!(status, 200);
    let next = first["next"].as_str().expect("a next page").to_owned();
    let (_, second) = given_up_page(&b.http, base, &format!("?limit=1&after={next}")).await;
    let after = second["next"].as_str().unwrap_or_default().to_owned();
    let (_, third) = given_up_page(&b.http, base, &format!("?limit=1&after={after}")).await;
    assert_eq!(third["notifications"], json!([]), "{third}");
    let listed = [&first, &second].map(|p| p["notifications"][0].clone());
    assert!(
        listed[0]["givenUpAt"].as_str() <= listed[1]["givenUpAt"].as_str(),
        "oldest first: {listed:?}"
    );
    let by = |channel: &str| {
        listed
            .iter()
            .find(|n| n["channel"] == channel)
            .unwrap_or_else(|| panic!("no {channel} given up: {listed:?}"))
            .clone()
    };
    let (webhook, email) = (by("webhook"), by("email"));
    assert_eq!(
        webhook["event"], refused,
        "the event as the receiver got it"
    );
    assert_eq!(email["event"], refused, "the email tells the same");
    assert_eq!(webhook["rounds"], 1);
    assert!(
        webhook["lastError"]
            .as_str()
            .unwrap()
            .starts_with("HTTP 410"),
        "{webhook}"
    );
    assert!(
        email["lastError"].as_str().unwrap().contains("550"),
        "{email}"
    );
    assert_eq!(webhook["firstDueAt"].as_str().unwrap().len(), 24);

    // The internal token, a valid query.
    let r = b
        .http
        .get(format!("{base}/internal/notifications/given-up"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    for query in ["?limit=0", "?limit=1001", "?state=all"] {
        let (status, body) = given_up_page(&b.http, base, query).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &json!("validation_failed")),
            "{query}: {body}"
        );
    }

    // Sent again: the same event, signed under the same key, and no longer listed.
    let id = webhook["id"].as_str().unwrap();
    let (status, body) = send_again(&b.http, base, id).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["notification"]["event"], refused);
    assert_eq!(body["notification"]["rounds"], 0);
    hook.wait_for(2).await;
    assert_eq!(same_event(&hook, &message_id).len(), 2);
    let (status, body) = send_again(&b.http, base, id).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("notification_not_found")),
        "sent again once: {body}"
    );
    let left = given_up_once(&b.http, base, 1).await;
    assert_eq!(left[0]["channel"], "email");
    // The id as listed, its `|` not encoded (as a shell's curl sends it).
    let id = email["id"].as_str().unwrap();
    let raw = b
        .http
        .post(format!("{base}/internal/notifications/given-up/{id}/send"));
    assert_eq!(internal_call(raw).await.0, 202);
    let mail = smtp.message().await;
    assert!(mail.data.contains("Rating: STARS2"), "{}", mail.data);
    assert_eq!(mail.to, [TO]);
    given_up_once(&b.http, base, 0).await;
    gauge_reads(base, GIVEN_UP, 0.0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hook.requests().len(), 2, "delivered once: not sent again");
    let text = metrics(base).await;
    for channel in ["webhook", "email"] {
        let series = format!(
            "ondc_rating_notification_rounds_total{{channel=\"{channel}\",ended=\"delivered\"}}"
        );
        assert_eq!(sample(&text, &series), Some(1.0), "{channel}");
    }
}
both_stores!(a_given_up_event_is_listed_and_sent_again_on_request);

/// A notification given up is kept `buyer.notify_given_up_days`, then forgotten; with 0 it is
/// not kept at all. One whose channel is no longer configured is not sent again (409); one an
/// operator dismisses is forgotten at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_up_notifications_are_kept_their_days_only() {
    let start = chrono::Utc::now().timestamp_millis();
    for days in [2, 0] {
        let store = StoreFixture::new(Backend::Embedded);
        let seller = ScriptedSeller::start(Script::AckSilently).await;
        let hook = Recorder::start("/events", Script::Respond(410, "gone".into())).await;
        let clock = ondc_rating::clock::FixedClock::at_millis(start);
        let webhook = webhook_to(&hook);
        let b = selling_buyer_at(&store, &seller, clock.clone(), move |s| {
            webhook(s);
            s.buyer.notify_retry_after_ms = 200;
            s.buyer.notify_given_up_days = days;
        })
        .await;
        // Two feedbacks, two events refused.
        feedback_on_o1(&b, &seller, "STARS1").await;
        let r = b
            .http
            .post(format!("{}/v2/listings/L-1/feedback", b.app.base))
            .bearer_auth(Buyer::token("alice"))
            .json(&json!({"Rating": "Negative"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        hook.wait_for(2).await;
        let series =
            "ondc_rating_notification_rounds_total{channel=\"webhook\",ended=\"given_up\"}";
        for _ in 0..100 {
            if sample(&metrics(&b.app.base).await, series) == Some(2.0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(sample(&metrics(&b.app.base).await, series), Some(2.0));
        if days == 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            given_up_once(&b.http, &b.app.base, 0).await;
            gauge_reads(&b.app.base, GIVEN_UP, 0.0).await;
            continue;
        }
        let listed = given_up_once(&b.http, &b.app.base, 2).await;
        gauge_reads(&b.app.base, GIVEN_UP, 2.0).await;
        // A day short, swept many times over: kept.
        clock.advance_millis(2 * 86_400_000 - 60_000);
        tokio::time::sleep(Duration::from_millis(500)).await;
        given_up_once(&b.http, &b.app.base, 2).await;

        // Without a webhook now, it cannot be sent again.
        let (settings, clock_now) = b.app.stop().await;
        let mut settings = settings;
        settings.buyer.notify_webhook_url.clear();
        let (listener, _) = bind();
        let app = TestApp::start_clocked(settings, listener, clock_now).await;
        let (status, body) =
            send_again(&b.http, &app.base, listed[0]["id"].as_str().unwrap()).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (409, &json!("channel_not_configured")),
            "{body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("buyer.notify_webhook_url"),
            "{body}"
        );
        given_up_once(&b.http, &app.base, 2).await;

        // Dismissed: forgotten at once, once.
        let dismissed = listed[1]["id"].as_str().unwrap().replace('|', "%7C");
        let dismiss = || {
            b.http.delete(format!(
                "{}/internal/notifications/given-up/{dismissed}",
                app.base
            ))
        };
        assert_eq!(dismiss().send().await.unwrap().status().as_u16(), 401);
        let (status, body) = internal_call(dismiss()).await;
        assert_eq!(status, 204, "{body}");
        let left = given_up_once(&b.http, &app.base, 1).await;
        assert_eq!(left[0]["id"], listed[0]["id"]);
        let (status, body) = internal_call(dismiss()).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (404, &json!("notification_not_found"))
        );
        gauge_reads(&app.base, GIVEN_UP, 1.0).await;

        // Past its days: forgotten.
        clock.advance_millis(120_000);
        given_up_once(&b.http, &app.base, 0).await;
        gauge_reads(&app.base, GIVEN_UP, 0.0).await;
        assert_eq!(hook.requests().len(), 2);
    }
}

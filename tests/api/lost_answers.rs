//! Both adapters over a link that loses answers both ways for a while: the buyer side never gets
//! the seller's ACK of its /rating, and the seller side's /on_rating is refused on its way back.
//! The user's rating stays pending, and rating the order the same way once no copy can still be
//! on its way sends the /rating again; the seller side, which gave its answer up, answers the
//! repeat again, and the rating completes with the seller's form.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use ondc_rating::clock::Clock;
use serde_json::Value;

use crate::both_stores;
use crate::helpers::*;

/// What crossed the link: (path, status answered, body), in order.
type Crossed = Arc<Mutex<Vec<(String, u16, Vec<u8>)>>>;

/// A link of ours between the two adapters: `/bpp/rating` goes to the seller side, `/bap/on_rating`
/// to the buyer side. While `cut`, the seller's answer to a /rating is held until the buyer
/// side gave up on it (3 s, twice its send timeout), and an /on_rating is refused with a 404 that
/// is not the buyer's.
struct Link {
    base: String,
    cut: Arc<AtomicBool>,
    crossed: Crossed,
}

impl Link {
    async fn start(listener: std::net::TcpListener, seller: String, buyer: String) -> Self {
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(true));
        let crossed: Crossed = Arc::default();
        let (c, x) = (cut.clone(), crossed.clone());
        let server = HttpServer::new(move || {
            let (cut, crossed) = (c.clone(), x.clone());
            let (seller, buyer) = (seller.clone(), buyer.clone());
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let (cut, crossed) = (cut.clone(), crossed.clone());
                let (seller, buyer) = (seller.clone(), buyer.clone());
                async move {
                    let path = req.path().to_owned();
                    let cut = cut.load(Ordering::SeqCst);
                    let to = match path.as_str() {
                        "/bpp/rating" => seller,
                        "/bap/on_rating" if !cut => buyer,
                        _ => {
                            crossed.lock().unwrap().push((path, 404, body.to_vec()));
                            return HttpResponse::NotFound().body("no route to the buyer");
                        }
                    };
                    let mut forward = reqwest::Client::new()
                        .post(format!("{to}{path}"))
                        .header("content-type", "application/json")
                        .body(body.to_vec());
                    if let Some(auth) = req.headers().get("authorization") {
                        forward = forward.header("authorization", auth.to_str().unwrap());
                    }
                    let answer = forward.send().await.unwrap();
                    let status = answer.status().as_u16();
                    let answer_body = answer.bytes().await.unwrap();
                    crossed.lock().unwrap().push((path, status, body.to_vec()));
                    if cut {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                    }
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                        .content_type("application/json")
                        .body(answer_body)
                }
            }))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Self {
            base: format!("http://127.0.0.1:{port}"),
            cut,
            crossed,
        }
    }

    fn crossed(&self) -> Vec<(String, u16, Value)> {
        self.crossed
            .lock()
            .unwrap()
            .iter()
            .map(|(p, s, b)| (p.clone(), *s, serde_json::from_slice(b).unwrap()))
            .collect()
    }

    /// Waits (bounded) until `n` requests crossed or were refused.
    async fn wait_for(&self, n: usize) -> Vec<(String, u16, Value)> {
        for _ in 0..250 {
            if self.crossed.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let got = self.crossed();
        assert!(
            got.len() >= n,
            "expected {n} requests over the link: {got:?}"
        );
        got
    }
}

/// The (status, body) of what crossed to `path`, in order.
fn on(crossed: &[(String, u16, Value)], path: &str) -> Vec<(u16, Value)> {
    crossed
        .iter()
        .filter(|(p, ..)| p == path)
        .map(|(_, s, b)| (*s, b.clone()))
        .collect()
}

async fn a_rating_whose_answers_were_lost_both_ways_completes_when_rated_again(backend: Backend) {
    let store = StoreFixture::new(backend);
    let clock = ondc_rating::clock::FixedClock::at_millis(chrono::Utc::now().timestamp_millis());
    let buyer_identity = Identity::new("buyer.test");
    let seller = Seller::start_clocked(
        &store,
        "seller",
        vec![buyer_identity.peer()],
        clock.clone(),
        |_| {},
    )
    .await;
    let (listener, port) = bind();
    let buyer = Buyer::start_as_clocked(
        buyer_identity,
        &store,
        "buyer",
        vec![seller.identity.peer()],
        clock.clone(),
        |s| {
            s.buyer.bap_uri = format!("http://127.0.0.1:{port}/bap");
            // Long enough for the resend below to be answered on a busy machine, short enough
            // that the first attempt, whose ACK is lost, gives up soon.
            s.buyer.send_timeout_ms = 1_500;
            s.buyer.send_attempts = 1;
            s.buyer.callback_wait_ms = 5_000;
        },
    )
    .await;
    let link = Link::start(listener, seller.app.base.clone(), buyer.app.base.clone()).await;
    let o = order("alice", &seller.identity.id, &format!("{}/bpp", link.base));
    assert_eq!(buyer.put_order("O-1", &o).await.0, 200);

    // The seller side takes the /rating, but its ACK and its /on_rating are both lost.
    let (status, err) = buyer.rate("alice", &full_rating("O-1")).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (504, Some("seller_timeout")),
        "{err}"
    );
    let crossed = link.wait_for(2).await;
    let [(200, first)] = &on(&crossed, "/bpp/rating")[..] else {
        panic!("one /rating, taken: {crossed:?}");
    };
    assert_eq!(on(&crossed, "/bap/on_rating").len(), 1, "{crossed:?}");
    assert_eq!(on(&crossed, "/bap/on_rating")[0].0, 404);
    let first = first.clone();
    let message_id = first["context"]["message_id"].as_str().unwrap().to_owned();
    let mut given_up = Value::Null;
    for _ in 0..250 {
        given_up = seller.received("buyer.test", &message_id).await.1;
        if given_up["rating"]["onRating"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(given_up["rating"]["onRating"], "failed", "{given_up}");
    let (_, got) = buyer.rating_of("alice", "O-1").await;
    assert_eq!(got["data"]["status"], "pending", "{got}");

    // The link is back; once no copy can still be on its way, the same rating sends it again.
    link.cut.store(false, Ordering::SeqCst);
    clock.advance_millis(35_001);
    let (status, answer) = buyer.rate("alice", &full_rating("O-1")).await;
    assert_eq!(status, 200, "{answer}");
    let crossed = link.wait_for(4).await;
    assert_eq!(crossed.len(), 4, "{crossed:?}");
    let (status, again) = &on(&crossed, "/bpp/rating")[1];
    assert_eq!(*status, 200);
    assert_eq!(again["context"]["message_id"], message_id.as_str());
    assert_eq!(again["message"], first["message"], "the same ratings");
    assert_eq!(
        again["context"]["timestamp"],
        ondc_rating::clock::ondc_timestamp(clock.now()),
        "stamped anew"
    );
    // The seller side answered the repeat, echoing it, and the buyer side took that answer.
    let (status, on_rating) = &on(&crossed, "/bap/on_rating")[1];
    assert_eq!(*status, 200);
    assert_eq!(on_rating["context"]["message_id"], message_id.as_str());
    assert_eq!(
        on_rating["context"]["transaction_id"],
        again["context"]["transaction_id"]
    );
    assert!(
        on_rating["context"]["timestamp"].as_str() > again["context"]["timestamp"].as_str(),
        "{on_rating}"
    );
    let url = "https://seller.test/feedback/O-1";
    assert_eq!(on_rating["message"]["feedback_form"]["form"]["url"], url);
    assert_eq!(
        answer["data"]["dto"]["context"]["message_id"],
        message_id.as_str()
    );
    assert_eq!(answer["data"]["dto"]["context"]["action"], "on_rating");
    let (_, got) = buyer.rating_of("alice", "O-1").await;
    assert_eq!(got["data"]["status"], "completed", "{got}");
    assert_eq!(got["data"]["feedbackForm"]["url"], url, "{got}");
    // The seller records the delivery once the buyer's ACK reaches it, which may be after the
    // buyer side has woken the waiting request with the answer.
    let mut rec = Value::Null;
    for _ in 0..250 {
        rec = seller.received("buyer.test", &message_id).await.1;
        if rec["rating"]["onRating"] != "pending" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rec["rating"]["onRating"], "sent", "{rec}");
}

both_stores!(a_rating_whose_answers_were_lost_both_ways_completes_when_rated_again);

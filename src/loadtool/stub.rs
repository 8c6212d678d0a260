//! A tiny peer inside the load tool: ACKs every POST to one path and counts them. It stands in
//! for the buyer side receiving /on_rating (seller inbound runs) and for a seller that ACKs
//! /rating and never calls back (waiting-request runs).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpResponse, HttpServer, web};

const ACK: &str = r#"{"message":{"ack":{"status":"ACK"}}}"#;

/// A running ACK-and-count peer; stopped when dropped.
pub struct AckPeer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    received: Arc<AtomicU64>,
    handle: ServerHandle,
}

impl AckPeer {
    /// Serves POST `path` on a free loopback port with one worker.
    pub fn start(path: &'static str) -> Result<Self, String> {
        let listener = crate::http::bind_listener("127.0.0.1:0", crate::config::DEFAULT_BACKLOG)
            .map_err(|e| format!("cannot bind a loopback port: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let received: Arc<AtomicU64> = Arc::default();
        let count = received.clone();
        let server = HttpServer::new(move || {
            let count = count.clone();
            App::new().route(
                path,
                web::post().to(move |_body: web::Bytes| {
                    let count = count.clone();
                    async move {
                        count.fetch_add(1, Ordering::Relaxed);
                        HttpResponse::Ok()
                            .content_type("application/json")
                            .body(ACK)
                    }
                }),
            )
        })
        .workers(1)
        .backlog(4096)
        .max_connections(100_000)
        .disable_signals()
        .listen(listener)
        .map_err(|e| format!("cannot serve on port {port}: {e}"))?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self {
            base: format!("http://127.0.0.1:{port}"),
            received,
            handle,
        })
    }

    /// POSTs received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Waits until `n` POSTs arrived or `limit` passed; the count reached.
    pub async fn wait_for(&self, n: u64, limit: Duration) -> u64 {
        let deadline = tokio::time::Instant::now() + limit;
        while self.received() < n && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.received()
    }
}

impl Drop for AckPeer {
    fn drop(&mut self) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let handle = self.handle.clone();
            runtime.spawn(async move { handle.stop(false).await });
        }
    }
}

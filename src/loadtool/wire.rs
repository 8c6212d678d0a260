//! The load tool's own HTTP/1.1 client for the requests it measures.
//!
//! The tool runs on the cores it measures, so every microsecond it spends on a request is taken
//! from the adapters under load and shows up as a lower throughput against the crypto floor.
//! This client does only what a load generator needs: keep-alive connections to one loopback
//! server, one per request in flight; the request written with one `write`; the status line and
//! headers parsed in place; the body read by its `Content-Length`. Anything else the server
//! could answer with (a chunked body, a body delimited by the connection's close, an oversized
//! header section) is reported as a failed request with its own label, never guessed at; a
//! connection is reused only after a complete, well-framed answer. Requests are never retried.
//!
//! `--client reqwest` runs the same loads through reqwest instead, for comparison.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most a response's status line and headers may take.
const MAX_HEAD: usize = 16 * 1024;

/// The most a response's body may take.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// An idle connection older than this is closed instead of reused: the server may have closed
/// it (actix-web's keep-alive is 5 s), and a request written into a closed connection fails.
const MAX_IDLE: Duration = Duration::from_secs(1);

/// Why a request got no answer.
#[derive(Debug)]
pub enum WireError {
    /// The connection could not be opened.
    Connect(std::io::Error),
    /// Writing the request or reading the answer failed.
    Io(std::io::Error),
    /// The connection closed before the answer was complete.
    Closed,
    /// No complete answer within the client's timeout.
    Timeout,
    /// The answer is not one this client reads.
    Malformed(&'static str),
}

impl WireError {
    /// The label a load run counts this failure under.
    pub fn label(&self) -> String {
        match self {
            WireError::Connect(_) => "transport: connect".into(),
            WireError::Io(_) | WireError::Closed => "transport: other".into(),
            WireError::Timeout => "transport: timeout".into(),
            WireError::Malformed(what) => format!("malformed response: {what}"),
        }
    }
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Connect(e) => write!(f, "connect: {e}"),
            WireError::Io(e) => write!(f, "{e}"),
            WireError::Closed => {
                f.write_str("the connection closed before the answer was complete")
            }
            WireError::Timeout => f.write_str("timed out"),
            WireError::Malformed(what) => write!(f, "malformed response: {what}"),
        }
    }
}

/// A complete answer.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body, as framed by `Content-Length`.
    pub body: Vec<u8>,
}

struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet consumed; kept between requests for its capacity.
    buf: Vec<u8>,
    /// When its last answer was read.
    idle_since: Instant,
}

/// Keep-alive connections to one server.
pub struct Client {
    addr: SocketAddr,
    host: String,
    timeout: Duration,
    idle: Mutex<Vec<Conn>>,
}

impl Client {
    /// A client for `base` (`http://IP:PORT`, an address, not a name).
    pub fn new(base: &str, timeout: Duration) -> Result<Self, String> {
        let host = base
            .strip_prefix("http://")
            .ok_or_else(|| format!("{base}: only http:// addresses are served"))?
            .trim_end_matches('/');
        let addr: SocketAddr = host
            .parse()
            .map_err(|_| format!("{base}: not an IP address and port"))?;
        Ok(Self {
            addr,
            host: host.to_owned(),
            timeout,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// POSTs `body` (JSON) to `path` with `headers`; the complete answer, whatever its status.
    pub async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Response, WireError> {
        let mut request = Vec::with_capacity(160 + path.len() + body.len() + headers_len(headers));
        for part in [
            b"POST ",
            path.as_bytes(),
            b" HTTP/1.1\r\nhost: ",
            self.host.as_bytes(),
        ] {
            request.extend_from_slice(part);
        }
        for (name, value) in headers {
            for part in [b"\r\n", name.as_bytes(), b": ", value.as_bytes()] {
                request.extend_from_slice(part);
            }
        }
        request.extend_from_slice(b"\r\ncontent-type: application/json\r\ncontent-length: ");
        request.extend_from_slice(body.len().to_string().as_bytes());
        request.extend_from_slice(b"\r\n\r\n");
        request.extend_from_slice(body);
        match tokio::time::timeout(self.timeout, self.exchange(&request)).await {
            Ok(answer) => answer,
            Err(_) => Err(WireError::Timeout),
        }
    }

    async fn exchange(&self, request: &[u8]) -> Result<Response, WireError> {
        let mut conn = match self.take_idle() {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        conn.stream
            .write_all(request)
            .await
            .map_err(WireError::Io)?;
        let (response, reusable) = read_response(&mut conn).await?;
        if reusable {
            conn.idle_since = Instant::now();
            self.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
        }
        Ok(response)
    }

    fn take_idle(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(conn) = idle.pop() {
            if conn.idle_since.elapsed() <= MAX_IDLE {
                return Some(conn);
            }
        }
        None
    }

    async fn connect(&self) -> Result<Conn, WireError> {
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(WireError::Connect)?;
        stream.set_nodelay(true).map_err(WireError::Connect)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(4096),
            idle_since: Instant::now(),
        })
    }
}

fn headers_len(headers: &[(&str, &str)]) -> usize {
    headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum()
}

/// Reads more bytes into `conn.buf`; Closed at the end of the stream.
async fn fill(conn: &mut Conn) -> Result<(), WireError> {
    if conn.buf.capacity() - conn.buf.len() < 1024 {
        conn.buf.reserve(4096);
    }
    match conn.stream.read_buf(&mut conn.buf).await {
        Ok(0) => Err(WireError::Closed),
        Ok(_) => Ok(()),
        Err(e) => Err(WireError::Io(e)),
    }
}

/// Reads one answer from `conn`: it and whether the connection may carry another request.
async fn read_response(conn: &mut Conn) -> Result<(Response, bool), WireError> {
    conn.buf.clear();
    let head_len = loop {
        if let Some(at) = find_head_end(&conn.buf) {
            break at;
        }
        if conn.buf.len() > MAX_HEAD {
            return Err(WireError::Malformed("header section over 16 KiB"));
        }
        fill(conn).await?;
    };
    let head = parse_head(&conn.buf[..head_len])?;
    if head.chunked {
        return Err(WireError::Malformed("chunked body"));
    }
    let length = match head.content_length {
        Some(n) => n,
        None if head.status == 204 || head.status == 304 => 0,
        None => return Err(WireError::Malformed("no Content-Length")),
    };
    if length > MAX_BODY {
        return Err(WireError::Malformed("body over 4 MiB"));
    }
    let end = head_len + length;
    while conn.buf.len() < end {
        fill(conn).await?;
    }
    if conn.buf.len() > end {
        return Err(WireError::Malformed("bytes after the answer"));
    }
    let body = conn.buf[head_len..end].to_vec();
    Ok((
        Response {
            status: head.status,
            body,
        },
        head.keep_alive,
    ))
}

/// The offset just past the blank line ending the header section, if it is all in `buf`.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

#[derive(Debug, PartialEq, Eq)]
struct Head {
    status: u16,
    content_length: Option<usize>,
    chunked: bool,
    keep_alive: bool,
}

/// Parses a status line and headers, `head` ending with the blank line.
fn parse_head(head: &[u8]) -> Result<Head, WireError> {
    let text =
        std::str::from_utf8(head).map_err(|_| WireError::Malformed("header section not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let (version, rest) = status_line
        .split_once(' ')
        .ok_or(WireError::Malformed("status line"))?;
    let mut keep_alive = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(WireError::Malformed("not HTTP/1.x")),
    };
    let code = rest.get(..3).ok_or(WireError::Malformed("status line"))?;
    if !code.bytes().all(|b| b.is_ascii_digit())
        || rest.as_bytes().get(3).is_some_and(|b| *b != b' ')
    {
        return Err(WireError::Malformed("status code"));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| WireError::Malformed("status code"))?;
    let mut content_length = None;
    let mut chunked = false;
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or(WireError::Malformed("header line"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .parse()
                .map_err(|_| WireError::Malformed("Content-Length"))?;
            if content_length.is_some_and(|m| m != n) {
                return Err(WireError::Malformed("two Content-Lengths"));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        } else if name.eq_ignore_ascii_case("connection") {
            if value.eq_ignore_ascii_case("close") {
                keep_alive = false;
            } else if value.eq_ignore_ascii_case("keep-alive") {
                keep_alive = true;
            }
        }
    }
    Ok(Head {
        status,
        content_length,
        chunked,
        keep_alive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn heads_are_read_as_written() {
        let h = parse_head(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 42\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            h,
            Head {
                status: 200,
                content_length: Some(42),
                chunked: false,
                keep_alive: true
            }
        );
        let h =
            parse_head(b"HTTP/1.1 409 Conflict\r\nconnection: close\r\ncontent-length: 0\r\n\r\n")
                .unwrap();
        assert_eq!((h.status, h.keep_alive), (409, false));
        let h = parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").unwrap();
        assert!(h.chunked);
        for bad in [
            &b"HTTP/2 200\r\n\r\n"[..],
            b"HTTP/1.1 20x OK\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
        ] {
            assert!(
                matches!(parse_head(bad), Err(WireError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// A server on loopback that answers each connection's requests from `answers`, in order,
    /// and records what it read; one connection per element of `per_conn`.
    async fn serve(
        per_conn: Vec<Vec<&'static [u8]>>,
    ) -> (String, tokio::task::JoinHandle<Vec<Vec<u8>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            for answers in per_conn {
                let (mut s, _) = listener.accept().await.unwrap();
                for answer in answers {
                    let mut got = Vec::new();
                    // Read one request: its head, then its Content-Length of body.
                    loop {
                        let mut chunk = [0u8; 4096];
                        let n = s.read(&mut chunk).await.unwrap();
                        got.extend_from_slice(&chunk[..n]);
                        if let Some(h) = find_head_end(&got) {
                            let text = String::from_utf8_lossy(&got[..h]).to_lowercase();
                            let cl: usize = text
                                .split("content-length: ")
                                .nth(1)
                                .and_then(|r| r.split("\r\n").next())
                                .and_then(|n| n.parse().ok())
                                .unwrap();
                            if got.len() >= h + cl {
                                break;
                            }
                        }
                    }
                    seen.push(got);
                    s.write_all(answer).await.unwrap();
                }
            }
            seen
        });
        (base, task)
    }

    #[tokio::test]
    async fn one_connection_carries_request_after_request() {
        let (base, server) = serve(vec![vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst",
            b"HTTP/1.1 409 Conflict\r\nContent-Length: 6\r\n\r\nsecond",
        ]])
        .await;
        let client = Client::new(&base, Duration::from_secs(5)).unwrap();
        let a = client
            .post(
                "/ret11/rating",
                &[("authorization", "Bearer t")],
                b"{\"a\":1}",
            )
            .await
            .unwrap();
        assert_eq!((a.status, a.body.as_slice()), (200, &b"first"[..]));
        let b = client.post("/ret11/rating", &[], b"{}").await.unwrap();
        assert_eq!((b.status, b.body.as_slice()), (409, &b"second"[..]));
        let seen = server.await.unwrap();
        assert_eq!(seen.len(), 2, "both requests on the one connection");
        let first = String::from_utf8(seen[0].clone()).unwrap();
        assert!(
            first.starts_with("POST /ret11/rating HTTP/1.1\r\nhost: 127.0.0.1:"),
            "{first}"
        );
        assert!(first.contains("\r\nauthorization: Bearer t\r\n"), "{first}");
        assert!(
            first.contains("\r\ncontent-type: application/json\r\n"),
            "{first}"
        );
        assert!(
            first.ends_with("\r\ncontent-length: 7\r\n\r\n{\"a\":1}"),
            "{first}"
        );
    }

    #[tokio::test]
    async fn a_closed_connection_is_not_reused() {
        let (base, server) = serve(vec![
            vec![b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"],
            vec![b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"],
        ])
        .await;
        let client = Client::new(&base, Duration::from_secs(5)).unwrap();
        for _ in 0..2 {
            let r = client.post("/x", &[], b"{}").await.unwrap();
            assert_eq!(r.status, 200);
        }
        assert_eq!(server.await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn answers_it_does_not_read_are_failures_not_guesses() {
        for (answer, label) in [
            (
                &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"[..],
                "malformed response: chunked body",
            ),
            (
                b"HTTP/1.1 200 OK\r\n\r\nok",
                "malformed response: no Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1",
                "malformed response: bytes after the answer",
            ),
        ] {
            let (base, _server) = serve(vec![vec![answer]]).await;
            let client = Client::new(&base, Duration::from_secs(5)).unwrap();
            let e = client.post("/x", &[], b"{}").await.unwrap_err();
            assert_eq!(e.label(), label);
        }
        // The server closes mid-body.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut chunk = [0u8; 4096];
            let _ = s.read(&mut chunk).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort")
                .await;
        });
        let client = Client::new(&base, Duration::from_secs(5)).unwrap();
        let e = client.post("/x", &[], b"{}").await.unwrap_err();
        assert!(matches!(e, WireError::Closed), "{e}");
        assert_eq!(e.label(), "transport: other");
    }

    #[tokio::test]
    async fn a_silent_server_times_out_and_a_closed_port_fails_to_connect() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let client = Client::new(&base, Duration::from_millis(200)).unwrap();
        let e = client.post("/x", &[], b"{}").await.unwrap_err();
        assert_eq!(e.label(), "transport: timeout");
        drop(listener);
        let e = client.post("/x", &[], b"{}").await.unwrap_err();
        assert_eq!(e.label(), "transport: connect");
        assert!(Client::new("https://127.0.0.1:1", Duration::from_secs(1)).is_err());
        assert!(Client::new("http://localhost:1", Duration::from_secs(1)).is_err());
    }
}

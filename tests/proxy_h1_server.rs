//! The proxy's own HTTP/1.1 server against clients written by hand on
//! real sockets: pipelining, `Expect: 100-continue`, HTTP/1.0 persistence
//! and close-delimited answers, chunked requests with trailers, the 408 and
//! 431 limits, and a request body the pipeline left unread followed by
//! another request on the same connection.

mod proxy_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proxy_support::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response read off a raw connection.
#[derive(Debug)]
struct Raw {
    head: String,
    body: Vec<u8>,
}

impl Raw {
    fn status(&self) -> u16 {
        self.head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Reads responses from one connection, keeping what it read ahead.
struct Reader {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Reader {
    fn new(s: TcpStream) -> Reader {
        Reader { s, buf: Vec::new() }
    }

    /// More bytes; false at the end of the stream (or after 5 s).
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout(Duration::from_secs(5), self.s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            _ => false,
        }
    }

    async fn head(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..i + 4]).into_owned();
                self.buf.drain(..i + 4);
                return Some(head);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await, "connection ended inside a body");
        }
        self.buf.drain(..n).collect()
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return line;
            }
            assert!(self.fill().await, "connection ended inside a chunk line");
        }
    }

    /// One whole response to a request of `method`.
    async fn response(&mut self, method: &str) -> Raw {
        let head = self.head().await.expect("a response head");
        let mut raw = Raw {
            head,
            body: Vec::new(),
        };
        let status = raw.status();
        if method == "HEAD" || status == 204 || status == 304 || status < 200 {
            return raw;
        }
        if let Some(n) = raw.header("content-length") {
            raw.body = self.take(n.parse().unwrap()).await;
        } else if raw.header("transfer-encoding").as_deref() == Some("chunked") {
            loop {
                let size = usize::from_str_radix(self.line().await.trim(), 16).unwrap();
                if size == 0 {
                    while !self.line().await.is_empty() {}
                    break;
                }
                raw.body.extend(self.take(size).await);
                assert_eq!(self.line().await, "");
            }
        } else {
            while self.fill().await {}
            raw.body = std::mem::take(&mut self.buf);
        }
        raw
    }

    /// Whether the proxy closed the connection (nothing more comes).
    async fn closed(&mut self) -> bool {
        !self.fill().await && self.buf.is_empty()
    }
}

async fn connect(addr: SocketAddr, bytes: &[u8]) -> Reader {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    Reader::new(s)
}

async fn echo_proxy() -> (Upstream, Running) {
    let u = upstream("u").await;
    let mut e = service_and_route(1, 11, &u.addr.to_string(), json!({"paths": ["/"]}));
    e.push((
        "plugins",
        json!({"id": id(70), "name": "request-size-limiting", "route": {"id": id(11)},
        "config": {"allowed_payload_size": 1, "size_unit": "kilobytes"}}),
    ));
    let p = start(state(&e)).await;
    (u, p)
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let (_u, p) = echo_proxy().await;
    let mut r = connect(
        p.http,
        b"GET /one HTTP/1.1\r\nhost: x\r\n\r\nPOST /two HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabcGET /three HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await;
    for (path, len) in [("/one", 0), ("/two", 3), ("/three", 0)] {
        let a = r.response("GET").await;
        assert_eq!(a.status(), 200, "{a:?}");
        assert_eq!(a.json()["uri"], path);
        assert_eq!(a.json()["body_len"], len);
        assert!(
            a.header("date").is_some_and(|d| d.ends_with(" GMT")),
            "{a:?}"
        );
    }
    // Still open: a fourth request is served too.
    r.s.write_all(b"GET /four HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let a = r.response("GET").await;
    assert_eq!(a.json()["uri"], "/four");
    assert_eq!(a.header("connection").as_deref(), Some("close"));
    assert!(r.closed().await);
}

#[tokio::test]
async fn expect_100_continue_is_answered_when_the_body_is_wanted() {
    let (_u, p) = echo_proxy().await;
    let mut r = connect(
        p.http,
        b"POST /up HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n",
    )
    .await;
    let interim = r.head().await.unwrap();
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    r.s.write_all(b"hello").await.unwrap();
    let a = r.response("POST").await;
    assert_eq!(a.status(), 200);
    assert_eq!(a.json()["body_len"], 5);

    // Refused before the body is wanted (too large for the size limit):
    // no 100, the answer, and the connection is not trusted after.
    let mut r = connect(
        p.http,
        b"POST /up HTTP/1.1\r\nhost: x\r\ncontent-length: 5000\r\nexpect: 100-continue\r\n\r\n",
    )
    .await;
    let a = r.response("POST").await;
    assert_eq!(a.status(), 413, "{a:?}");
    assert!(r.closed().await);
}

#[tokio::test]
async fn http10_keeps_alive_only_when_asked_and_gets_close_delimited_bodies() {
    // An upstream answering every request chunked: a length the proxy
    // cannot know in advance.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let chunked = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut r = Reader::new(s);
                while r.head().await.is_some() {
                    let answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
                    if r.s.write_all(answer).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let u = upstream("u").await;
    let mut e = service_and_route(1, 11, &u.addr.to_string(), json!({"paths": ["/"]}));
    e.extend(service_and_route(
        2,
        12,
        &chunked.to_string(),
        json!({"paths": ["/chunked"]}),
    ));
    let p = start(state(&e)).await;

    let mut r = connect(
        p.http,
        b"GET /a HTTP/1.0\r\nhost: x\r\nconnection: keep-alive\r\n\r\n",
    )
    .await;
    let a = r.response("GET").await;
    assert!(a.head.starts_with("HTTP/1.0 200 OK\r\n"), "{a:?}");
    assert_eq!(a.header("connection").as_deref(), Some("keep-alive"));
    assert_eq!(a.json()["uri"], "/a");
    r.s.write_all(b"GET /b HTTP/1.0\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let a = r.response("GET").await;
    assert_eq!(a.json()["uri"], "/b");
    assert!(r.closed().await, "HTTP/1.0 without keep-alive closes");

    // Unknown length: chunked to HTTP/1.1, delimited by the close to 1.0.
    let mut r = connect(p.http, b"GET /chunked HTTP/1.1\r\nhost: x\r\n\r\n").await;
    let a = r.response("GET").await;
    assert_eq!(a.header("transfer-encoding").as_deref(), Some("chunked"));
    assert_eq!(a.body, b"hello world");
    let mut r = connect(
        p.http,
        b"GET /chunked HTTP/1.0\r\nhost: x\r\nconnection: keep-alive\r\n\r\n",
    )
    .await;
    let a = r.response("GET").await;
    assert!(a.head.starts_with("HTTP/1.0 200 OK\r\n"), "{a:?}");
    assert!(a.header("content-length").is_none() && a.header("transfer-encoding").is_none());
    assert_eq!(a.body, b"hello world");
}

#[tokio::test]
async fn chunked_requests_with_trailers_leave_the_connection_usable() {
    let (_u, p) = echo_proxy().await;
    let mut r = connect(
        p.http,
        b"POST /c HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n4;ext=1\r\nabcd\r\n3\r\nefg\r\n0\r\nx-sum: 7\r\nx-more: 1\r\n\r\nGET /next HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await;
    let a = r.response("POST").await;
    assert_eq!(a.status(), 200, "{a:?}");
    assert_eq!(a.json()["body_len"], 7);
    let a = r.response("GET").await;
    assert_eq!(a.json()["uri"], "/next");

    // A malformed chunk is a 400-class failure of that request, never a
    // second request read out of its body.
    let mut r = connect(
        p.http,
        b"POST /c HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nGET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await;
    let mut all = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), r.s.read_to_end(&mut all)).await;
    let all = String::from_utf8_lossy(&all);
    assert!(!all.contains("smuggled"), "{all}");
    assert!(all.matches("HTTP/1.1 ").count() <= 1, "{all}");
}

#[tokio::test]
async fn silent_and_slow_clients_get_408_and_idle_ones_are_closed() {
    let mut s = settings();
    s.header_read_timeout = Duration::from_millis(300);
    let u = upstream("u").await;
    let e = service_and_route(1, 11, &u.addr.to_string(), json!({"paths": ["/"]}));
    let p = start_with(s, state(&e)).await;

    let t = Instant::now();
    let mut r = connect(p.http, b"").await;
    let a = r.response("GET").await;
    assert_eq!(a.status(), 408, "{a:?}");
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(r.closed().await);

    let mut r = connect(p.http, b"GET / HTTP/1.1\r\nhost: x\r\nx-a: ").await;
    assert_eq!(r.response("GET").await.status(), 408);

    // After a request, an idle keep-alive connection just closes.
    let mut r = connect(p.http, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(r.response("GET").await.status(), 200);
    let t = Instant::now();
    assert!(r.closed().await);
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn too_many_header_fields_get_431() {
    let (_u, p) = echo_proxy().await;
    let mut req = b"GET / HTTP/1.1\r\nhost: x\r\n".to_vec();
    for i in 0..120 {
        req.extend(format!("x-h{i}: v\r\n").as_bytes());
    }
    req.extend(b"\r\n");
    let mut r = connect(p.http, &req).await;
    assert_eq!(r.response("GET").await.status(), 431);
    let mut r = connect(p.http, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(r.response("GET").await.status(), 200);
}

#[tokio::test]
async fn an_unread_body_is_drained_or_the_connection_closed() {
    let u = upstream("u").await;
    let e = service_and_route(1, 11, &u.addr.to_string(), json!({"paths": ["/here"]}));
    let p = start(state(&e)).await;
    // No route: the body is never read; it is small, so it is read off
    // and the next request on the connection is served.
    let mut req = b"POST /nowhere HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n".to_vec();
    req.extend(vec![b'G'; 1000]);
    req.extend(b"GET /here HTTP/1.1\r\nhost: x\r\n\r\n");
    let mut r = connect(p.http, &req).await;
    assert_eq!(r.response("POST").await.status(), 404);
    let a = r.response("GET").await;
    assert_eq!(a.status(), 200, "{a:?}");
    assert_eq!(a.json()["name"], "u");

    // Too large to read off: the connection closes after the answer.
    let mut r = connect(
        p.http,
        b"POST /nowhere HTTP/1.1\r\nhost: x\r\ncontent-length: 100000000\r\n\r\nGGGG",
    )
    .await;
    let a = r.response("POST").await;
    assert_eq!(a.status(), 404);
    assert!(r.closed().await);
}

#[tokio::test]
async fn head_and_no_content_answers_have_no_body() {
    let (_u, p) = echo_proxy().await;
    let mut r = connect(
        p.http,
        b"HEAD /x HTTP/1.1\r\nhost: x\r\n\r\nGET /status/204 HTTP/1.1\r\nhost: x\r\n\r\nGET /status/304 HTTP/1.1\r\nhost: x\r\n\r\nGET /after HTTP/1.1\r\nhost: x\r\n\r\n",
    )
    .await;
    let a = r.response("HEAD").await;
    assert_eq!(a.status(), 200);
    assert!(a.header("content-length").is_some(), "{a:?}");
    assert_eq!(r.response("GET").await.status(), 204);
    assert_eq!(r.response("GET").await.status(), 304);
    let a = r.response("GET").await;
    assert_eq!(a.json()["uri"], "/after", "{a:?}");
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_flight_and_closes_idle_connections() {
    let u = upstream("u").await;
    let e = service_and_route(1, 11, &u.addr.to_string(), json!({"paths": ["/"]}));
    let mut p = start(state(&e)).await;
    let mut idle = connect(p.http, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert_eq!(idle.response("GET").await.status(), 200);
    let mut busy = connect(p.http, b"GET /sleep/500 HTTP/1.1\r\nhost: x\r\n\r\n").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = tokio::spawn(async move {
        p.shutdown().await;
    });
    assert!(idle.closed().await);
    let a = busy.response("GET").await;
    assert_eq!(a.status(), 200);
    assert_eq!(a.header("connection").as_deref(), Some("close"));
    assert!(busy.closed().await);
    stopping.await.unwrap();
}

//! The inline HTTP/1.1 upstream client against scripted upstreams on real
//! sockets: each answers with bytes written by hand, so that every framing
//! (chunked with trailers, read-to-close, HEAD, 204/304, 1xx) and every
//! way of ending (Connection: close, closing mid-body, closing an idle
//! pooled connection) can be seen from the client's side, together with
//! how many upstream connections the proxy opened.

mod proxy_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proxy_support::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a scripted upstream does with one request: the bytes it answers,
/// then whether it closes the connection.
type Script = fn(&str) -> (Vec<u8>, bool);

/// An upstream that reads each request (head, and a Content-Length or
/// chunked body), answers it with `script` (after N ms for a path
/// `/delay/N`), and counts connections.
async fn scripted(script: Script) -> (SocketAddr, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(head) = read_request(&mut s, &mut buf).await else {
                        return;
                    };
                    let (answer, close) = script(&head);
                    let delay = head
                        .split_whitespace()
                        .nth(1)
                        .and_then(|p| p.strip_prefix("/delay/"))
                        .and_then(|ms| ms.parse::<u64>().ok());
                    if let Some(ms) = delay {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    if s.write_all(&answer).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (addr, count)
}

/// One request off `s` (its head, lowercased; its body read and dropped).
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
    buf.drain(..end);
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    if let Some(n) = length {
        while buf.len() < n {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            }
        }
        buf.drain(..n);
    } else if head.contains("transfer-encoding: chunked") {
        while !buf.windows(5).any(|w| w == b"0\r\n\r\n") {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            }
        }
        let end = buf.windows(5).position(|w| w == b"0\r\n\r\n").unwrap() + 5;
        buf.drain(..end);
    }
    Some(head)
}

async fn proxy_to(addr: SocketAddr) -> Running {
    let e = service_and_route(1, 11, &addr.to_string(), json!({"paths": ["/"]}));
    start(state(&e)).await
}

/// A raw request to the proxy; everything it answers until it closes or
/// goes quiet for a while.
async fn raw_exchange(proxy: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), s.read(&mut chunk)).await
    {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn chunked_answers_with_trailers_pass_and_the_connection_is_reused() {
    let (up, conns) = scripted(|_| {
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n\
              5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-sum: 11\r\n\r\n"
                .to_vec(),
            false,
        )
    })
    .await;
    let p = proxy_to(up).await;
    let c = client();
    for _ in 0..3 {
        let r = get(&c, p.http, "/", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(&r.body[..], b"hello world");
    }
    assert_eq!(conns.load(Ordering::SeqCst), 1, "pooled after a clean end");
    // On the wire to the client: a clean chunked end. (The gateway strips
    // `Trailer`, a hop-by-hop header in its list, and hyper's server sends
    // only the trailer fields a `Trailer` header announced; the decoder's
    // own tests check that trailers are parsed.)
    let answer = raw_exchange(
        p.http,
        b"GET / HTTP/1.1\r\nhost: x\r\nte: trailers\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(
        answer.contains("\r\n5\r\nhello\r\n6\r\n world\r\n"),
        "{answer}"
    );
    assert!(answer.ends_with("0\r\n\r\n"), "{answer}");
}

#[tokio::test]
async fn read_to_close_bodies_pass_whole_and_are_not_pooled() {
    let (up, conns) = scripted(|_| (b"HTTP/1.1 200 OK\r\n\r\nuntil the end".to_vec(), true)).await;
    let p = proxy_to(up).await;
    let c = client();
    for _ in 0..2 {
        let r = get(&c, p.http, "/", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(&r.body[..], b"until the end");
    }
    assert_eq!(conns.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn head_204_and_304_have_no_body_and_keep_the_connection() {
    let (up, conns) = scripted(|head| {
        let answer: &[u8] = if head.starts_with("head ") {
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n"
        } else if head.starts_with("get /nc") {
            b"HTTP/1.1 204 No Content\r\n\r\n"
        } else if head.starts_with("get /nm") {
            b"HTTP/1.1 304 Not Modified\r\ncontent-length: 50\r\n\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        };
        (answer.to_vec(), false)
    })
    .await;
    let p = proxy_to(up).await;
    let c = client();
    let r = send(&c, p.http, "HEAD", "/", &[], Bytes::new()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("100"));
    assert!(r.body.is_empty());
    let r = get(&c, p.http, "/nc", &[]).await;
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    let r = get(&c, p.http, "/nm", &[]).await;
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let r = get(&c, p.http, "/", &[]).await;
    assert_eq!((r.status, &r.body[..]), (200, &b"ok"[..]));
    assert_eq!(conns.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn informational_answers_are_skipped() {
    let (up, _) = scripted(|_| {
        (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n\
              HTTP/1.1 201 Created\r\ncontent-length: 4\r\n\r\ndone"
                .to_vec(),
            false,
        )
    })
    .await;
    let p = proxy_to(up).await;
    let r = send(
        &client(),
        p.http,
        "POST",
        "/",
        &[],
        Bytes::from_static(b"data"),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(&r.body[..], b"done");
}

#[tokio::test]
async fn connection_close_from_the_upstream_is_not_pooled() {
    let (up, conns) = scripted(|_| {
        (
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok".to_vec(),
            false,
        )
    })
    .await;
    let p = proxy_to(up).await;
    let c = client();
    for _ in 0..3 {
        assert_eq!(get(&c, p.http, "/", &[]).await.status, 200);
    }
    assert_eq!(conns.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn an_upstream_closing_mid_body_aborts_the_answer_and_is_not_pooled() {
    let (up, conns) = scripted(|head| {
        if head.starts_with("get /cut") {
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b".to_vec(),
                true,
            )
        } else {
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
                false,
            )
        }
    })
    .await;
    let p = proxy_to(up).await;
    // The client sees the answer fail: before its head (when the cut comes
    // before the head left the proxy) or in its body.
    let resp = client()
        .get(format!("http://{}/cut", p.http).parse().unwrap())
        .await;
    if let Ok(resp) = resp {
        assert_eq!(resp.status(), 200);
        let body = http_body_util::BodyExt::collect(resp.into_body()).await;
        assert!(body.is_err(), "a truncated body must fail at the client");
    }
    // On the wire: the promised length, fewer bytes, then the close (or
    // only the close).
    let answer = raw_exchange(p.http, b"GET /cut HTTP/1.1\r\nhost: x\r\n\r\n").await;
    if let Some((head, body)) = answer.split_once("\r\n\r\n") {
        assert!(head.contains("content-length: 100"), "{head}");
        assert!(body.len() < 100, "{body}");
    }
    let r = get(&client(), p.http, "/", &[]).await;
    assert_eq!((r.status, &r.body[..]), (200, &b"ok"[..]));
    assert_eq!(conns.load(Ordering::SeqCst), 3, "no cut connection reused");
}

#[tokio::test]
async fn a_stale_pooled_connection_is_skipped_and_the_request_sent_whole() {
    // Answers, then closes every connection shortly after, while it idles
    // in the proxy's pool.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (c2, b2) = (conns.clone(), bodies.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            c2.fetch_add(1, Ordering::SeqCst);
            let b3 = b2.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") || !buf.ends_with(b"payload") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                b3.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf).into_owned());
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            });
        }
    });
    let p = proxy_to(up).await;
    let c = client();
    for _ in 0..3 {
        let r = send(&c, p.http, "POST", "/", &[], Bytes::from_static(b"payload")).await;
        assert_eq!((r.status, &r.body[..]), (200, &b"ok"[..]));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(conns.load(Ordering::SeqCst), 3);
    for b in bodies.lock().unwrap().iter() {
        assert!(b.contains("content-length: 7\r\n"), "{b}");
        assert!(b.ends_with("\r\n\r\npayload"), "{b}");
    }
}

#[tokio::test]
async fn bad_answers_are_502() {
    let (up, _) = scripted(|head| {
        let answer: &[u8] = if head.starts_with("get /garbage") {
            b"this is not http\r\n\r\n"
        } else if head.starts_with("get /lengths") {
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok"
        } else {
            b""
        };
        (answer.to_vec(), true)
    })
    .await;
    let p = proxy_to(up).await;
    let c = client();
    for path in ["/garbage", "/lengths", "/nothing"] {
        assert_eq!(get(&c, p.http, path, &[]).await.status, 502, "{path}");
    }
}

#[tokio::test]
async fn uploads_of_unknown_length_go_chunked() {
    let (up, _) = scripted(|head| {
        let answer: &[u8] = if head.contains("transfer-encoding: chunked") {
            b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nchunked"
        } else {
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nwrong"
        };
        (answer.to_vec(), false)
    })
    .await;
    let p = proxy_to(up).await;
    let answer = raw_exchange(
        p.http,
        b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
          3\r\nabc\r\n0\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("chunked"), "{answer}");
}

#[tokio::test]
async fn the_read_timeout_holds_for_each_request_on_a_pooled_connection() {
    let (up, conns) = scripted(|_| {
        (
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_vec(),
            false,
        )
    })
    .await;
    let mut e = service_and_route(1, 11, &up.to_string(), json!({"paths": ["/"]}));
    e[0].1["read_timeout"] = json!(400);
    let p = start(state(&e)).await;
    let c = client();
    // Each request within its own 400 ms, though later than the first
    // request's deadline: no timeout carried over from an earlier one.
    for _ in 0..3 {
        let r = get(&c, p.http, "/delay/250", &[]).await;
        assert_eq!((r.status, &r.body[..]), (200, &b"ok"[..]));
    }
    assert_eq!(conns.load(Ordering::SeqCst), 1);
    // Too slow on the same pooled connection: 504 in time.
    let t = std::time::Instant::now();
    let r = get(&c, p.http, "/delay/3000", &[]).await;
    assert_eq!(r.status, 504);
    assert!(
        t.elapsed() < Duration::from_millis(2000),
        "{:?}",
        t.elapsed()
    );
    // The timed-out connection is not reused.
    assert_eq!(get(&c, p.http, "/", &[]).await.status, 200);
    assert_eq!(conns.load(Ordering::SeqCst), 2);
}

/// The response header lines of a raw answer, names lowercased, sorted;
/// the latencies' values left out (they vary).
fn header_lines(answer: &str) -> Vec<String> {
    let head = answer.split("\r\n\r\n").next().unwrap_or("");
    let mut lines: Vec<String> = head
        .lines()
        .skip(1)
        .map(|l| {
            let (name, value) = l.split_once(':').unwrap_or((l, ""));
            let name = name.to_ascii_lowercase();
            match name.as_str() {
                "x-kong-upstream-latency" | "x-kong-proxy-latency" | "date" => name,
                _ => format!("{name}:{}", value.trim()),
            }
        })
        .collect();
    lines.sort();
    lines
}

#[tokio::test]
async fn upstream_response_fields_pass_alike_with_and_without_plugins() {
    // A response passes on without a header map when no plugin runs, and
    // through one when a plugin does: on the wire, the client sees the
    // same fields either way, hop-by-hop ones and the upstream's own
    // latency figures removed, its Via kept beside ours, its own Date
    // instead of ours, no length on a 304, lines in odd spacing kept.
    let (up, _) = scripted(|head| {
        let connection = if head.contains("/named") {
            "Connection: keep-alive, X-Private\r\nX-Private: secret\r\n"
        } else {
            "Connection: keep-alive\r\n"
        };
        let date = if head.contains("/dated") {
            "Date: Sun, 06 Dec 2026 10:00:00 GMT\r\n"
        } else {
            ""
        };
        let (status, body) = if head.contains("/unmodified") {
            ("304 Not Modified", "")
        } else {
            ("200 OK", "ok")
        };
        let answer = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n{connection}Keep-Alive: timeout=5\r\n\
             Proxy-Authenticate: Basic\r\nUpgrade: h2c\r\nVia: 1.1 cache\r\n{date}\
             X-Kong-Upstream-Latency: 999\r\nX-Kong-Proxy-Latency: 999\r\n\
             Set-Cookie: a=1\r\nX-Tight:t\r\nX-Padded:  p \t\r\nSet-Cookie: b=2\r\n\
             Content-Length: 2\r\n\r\n{body}"
        );
        (answer.into_bytes(), false)
    })
    .await;
    let mut e = service_and_route(1, 11, &up.to_string(), json!({"paths": ["/plain"]}));
    e.extend(service_and_route(
        2,
        12,
        &up.to_string(),
        json!({"paths": ["/plugged"]}),
    ));
    e.push((
        "plugins",
        json!({"id": id(70), "name": "request-size-limiting", "route": {"id": id(12)},
        "config": {"allowed_payload_size": 1, "size_unit": "kilobytes"}}),
    ));
    let p = start(state(&e)).await;
    let expected = [
        "connection:close",
        "content-length:2",
        "content-type:text/plain",
        "date",
        "set-cookie:a=1",
        "set-cookie:b=2",
        "via:1.1 cache",
        "via:1.1 raftgate",
        "x-kong-proxy-latency",
        "x-kong-upstream-latency",
        "x-padded:p",
        "x-tight:t",
    ];
    for case in ["", "/named", "/dated", "/unmodified"] {
        let mut seen = Vec::new();
        for route in ["/plain", "/plugged"] {
            let request =
                format!("GET {route}{case} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
            let answer = raw_exchange(p.http, request.as_bytes()).await;
            if case == "/unmodified" {
                assert!(
                    answer.starts_with("HTTP/1.1 304 Not Modified\r\n"),
                    "{answer}"
                );
                assert!(answer.ends_with("\r\n\r\n"), "{answer}");
            } else {
                assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
                assert!(answer.ends_with("\r\n\r\nok"), "{answer}");
            }
            if case == "/dated" {
                assert!(
                    answer
                        .to_ascii_lowercase()
                        .contains("\r\ndate: sun, 06 dec 2026 10:00:00 gmt\r\n"),
                    "{answer}"
                );
            }
            seen.push(header_lines(&answer));
        }
        assert_eq!(seen[0], seen[1], "{case}: the two paths differ");
        let lines = &seen[0];
        if case == "/unmodified" {
            let mut without_length = expected.to_vec();
            without_length.retain(|l| !l.starts_with("content-length"));
            assert_eq!(lines, &without_length, "{case}");
        } else {
            assert_eq!(lines, &expected, "{case}");
        }
    }
}

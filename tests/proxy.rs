//! The data plane against real sockets: a real upstream server, the proxy
//! on port 0, requests over TCP.

mod proxy_support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use proxy_support::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn no_route_is_404_with_kongs_body() {
    let p = start(state(&[])).await;
    let a = get(&client(), p.http, "/", &[]).await;
    assert_eq!(a.status, 404);
    assert_eq!(
        a.json(),
        json!({"message": "no Route matched with those values"})
    );
    assert!(a.header("x-kong-response-latency").is_some());
}

#[tokio::test]
async fn routes_by_host_path_method_and_header() {
    let a = upstream("a").await;
    let b = upstream("b").await;
    let c = upstream("c").await;
    let addr_a = a.addr.to_string();
    let addr_b = b.addr.to_string();
    let addr_c = c.addr.to_string();
    let mut e = service_and_route(1, 11, &addr_a, json!({"hosts": ["*.example.com"]}));
    e.extend(service_and_route(
        2,
        12,
        &addr_b,
        json!({"paths": ["/b"], "methods": ["POST"]}),
    ));
    e.extend(service_and_route(
        3,
        13,
        &addr_c,
        json!({"paths": ["~/c/\\d+$"], "headers": {"x-tier": ["gold"]}}),
    ));
    let p = start(state(&e)).await;
    let cl = client();
    let r = get(&cl, p.http, "/x", &[("host", "api.example.com")]).await;
    assert_eq!(r.header("x-upstream"), Some("a"));
    let r = send(&cl, p.http, "POST", "/b/1", &[], Bytes::from_static(b"hi")).await;
    assert_eq!(r.header("x-upstream"), Some("b"));
    assert_eq!(r.json()["body_len"], 2);
    assert_eq!(get(&cl, p.http, "/b/1", &[]).await.status, 404);
    let r = get(&cl, p.http, "/c/42", &[("x-tier", "GOLD")]).await;
    assert_eq!(r.header("x-upstream"), Some("c"));
    assert_eq!(
        get(&cl, p.http, "/c/42x", &[("x-tier", "gold")])
            .await
            .status,
        404
    );
    assert_eq!(get(&cl, p.http, "/c/42", &[]).await.status, 404);
    // Paths are normalized before matching: no dot-segment or escape tricks.
    let r = send(&cl, p.http, "POST", "/x/../%62/1", &[], Bytes::new()).await;
    assert_eq!(r.header("x-upstream"), Some("b"));
    assert_eq!(r.json()["uri"], "/1");
}

#[tokio::test]
async fn paths_are_stripped_and_joined_and_headers_forwarded() {
    let u = upstream("u").await;
    let addr = u.addr.to_string();
    let mut e = service_and_route(1, 11, &addr, json!({"paths": ["/api"]}));
    e[0].1["path"] = json!("/base");
    e.extend(service_and_route(
        2,
        12,
        &addr,
        json!({"paths": ["/keep"], "strip_path": false, "preserve_host": true}),
    ));
    let p = start(state(&e)).await;
    let cl = client();
    let r = get(
        &cl,
        p.http,
        "/api/users?x=1",
        &[
            ("host", "front.test:8000"),
            ("x-forwarded-for", "10.0.0.9"),
            ("connection", "keep-alive, x-drop"),
            ("x-drop", "1"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j["uri"], "/base/users?x=1");
    let h = &j["headers"];
    assert_eq!(h["host"], addr);
    assert_eq!(h["x-forwarded-for"], "10.0.0.9, 127.0.0.1");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "front.test");
    assert_eq!(h["x-forwarded-port"], p.http.port().to_string());
    assert_eq!(h["x-forwarded-path"], "/api/users");
    assert_eq!(h["x-forwarded-prefix"], "/api");
    assert!(
        h.get("x-drop").is_none(),
        "headers named by Connection are hop-by-hop"
    );
    assert_eq!(r.header("via"), Some("1.1 raftgate"));
    assert!(r.header("x-kong-upstream-latency").is_some());
    assert!(r.header("x-kong-proxy-latency").is_some());

    let r = get(&cl, p.http, "/api", &[]).await;
    assert_eq!(r.json()["uri"], "/base");
    let r = get(&cl, p.http, "/keep/me", &[("host", "front.test")]).await;
    assert_eq!(r.json()["uri"], "/keep/me");
    assert_eq!(r.json()["headers"]["host"], "front.test");
    assert!(r.json()["headers"].get("x-forwarded-prefix").is_none());
}

#[tokio::test]
async fn https_only_route_over_http_is_426() {
    let u = upstream("u").await;
    let e = service_and_route(
        1,
        11,
        &u.addr.to_string(),
        json!({"paths": ["/"], "protocols": ["https"]}),
    );
    let p = start(state(&e)).await;
    let r = get(&client(), p.http, "/", &[]).await;
    assert_eq!(r.status, 426);
    assert_eq!(r.json(), json!({"message": "Please use HTTPS protocol"}));
}

/// A raw HTTP/1.1 upstream that counts its connections and answers every
/// request with a small body; with `close_after_each`, it closes the
/// connection after each answer without saying so (no `connection: close`).
async fn counting_upstream(
    close_after_each: bool,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            c.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if s.write_all(answer).await.is_err() || close_after_each {
                            return;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (addr, count)
}

#[tokio::test]
async fn upstream_connections_are_pooled_and_dead_ones_skipped() {
    use std::sync::atomic::Ordering;
    // Sequential requests share one upstream connection.
    let (addr, conns) = counting_upstream(false).await;
    let e = service_and_route(1, 11, &addr.to_string(), json!({"paths": ["/"]}));
    let p = start(state(&e)).await;
    let c = client();
    for _ in 0..20 {
        assert_eq!(get(&c, p.http, "/", &[]).await.status, 200);
    }
    assert_eq!(conns.load(Ordering::Relaxed), 1);

    // An upstream that drops each connection after answering: the pooled
    // connection is found dead and the next request opens a new one.
    let (addr, conns) = counting_upstream(true).await;
    let e = service_and_route(2, 12, &addr.to_string(), json!({"paths": ["/"]}));
    p.publish(state(&e));
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..5 {
        assert_eq!(get(&c, p.http, "/", &[]).await.status, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(conns.load(Ordering::Relaxed), 5);
}

#[tokio::test]
async fn upstream_errors_are_502_and_504() {
    let (dead, _held) = dead_addr();
    let slow = upstream("slow").await;
    let mut e = service_and_route(1, 11, &dead.to_string(), json!({"paths": ["/dead"]}));
    e[0].1["retries"] = json!(2);
    e.extend(service_and_route(
        2,
        12,
        &slow.addr.to_string(),
        json!({"paths": ["/sleep"], "strip_path": false}),
    ));
    e[2].1["read_timeout"] = json!(200);
    let p = start(state(&e)).await;
    let cl = client();
    let r = get(&cl, p.http, "/dead", &[]).await;
    assert_eq!(r.status, 502);
    assert_eq!(
        r.json(),
        json!({"message": "An invalid response was received from the upstream server"})
    );
    let t = Instant::now();
    let r = get(&cl, p.http, "/sleep/2000", &[]).await;
    assert_eq!(r.status, 504);
    assert_eq!(
        r.json(),
        json!({"message": "The upstream server is timing out"})
    );
    assert!(t.elapsed() < Duration::from_millis(1500));
    assert_eq!(get(&cl, p.http, "/sleep/10", &[]).await.status, 200);
}

fn upstream_entities(
    algorithm: &str,
    targets: &[(String, u32)],
    extra: serde_json::Value,
) -> Vec<(&'static str, serde_json::Value)> {
    let mut up = json!({"id": id(50), "name": "backend", "algorithm": algorithm});
    up.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let mut e = vec![("upstreams", up)];
    for (i, (t, w)) in targets.iter().enumerate() {
        e.push(("targets", json!({"id": id(60 + i as u128), "upstream": {"id": id(50)}, "target": t, "weight": w, "created_at": i})));
    }
    e.push((
        "services",
        json!({"id": id(1), "host": "backend", "retries": 3}),
    ));
    e.push((
        "routes",
        json!({"id": id(11), "paths": ["/"], "service": {"id": id(1)}}),
    ));
    e
}

#[tokio::test]
async fn weighted_round_robin_spreads_and_retries_skip_dead_targets() {
    let a = upstream("a").await;
    let b = upstream("b").await;
    let (dead, _held) = dead_addr();
    let e = upstream_entities(
        "round-robin",
        &[
            (a.addr.to_string(), 300),
            (b.addr.to_string(), 100),
            (dead.to_string(), 100),
        ],
        json!({}),
    );
    let p = start(state(&e)).await;
    let cl = client();
    let (mut na, mut nb) = (0, 0);
    for _ in 0..100 {
        let r = get(&cl, p.http, "/", &[]).await;
        assert_eq!(r.status, 200, "a dead target is retried on another");
        match r.header("x-upstream") {
            Some("a") => na += 1,
            Some("b") => nb += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(na > 2 * nb && nb > 10, "a={na} b={nb}");
}

#[tokio::test]
async fn consistent_hashing_on_header_is_sticky() {
    let a = upstream("a").await;
    let b = upstream("b").await;
    let e = upstream_entities(
        "consistent-hashing",
        &[(a.addr.to_string(), 100), (b.addr.to_string(), 100)],
        json!({"hash_on": "header", "hash_on_header": "x-user"}),
    );
    let p = start(state(&e)).await;
    let cl = client();
    let mut seen = std::collections::HashSet::new();
    for user in 0..20 {
        let u = user.to_string();
        let first = get(&cl, p.http, "/", &[("x-user", &u)])
            .await
            .header("x-upstream")
            .map(str::to_string);
        for _ in 0..3 {
            let again = get(&cl, p.http, "/", &[("x-user", &u)])
                .await
                .header("x-upstream")
                .map(str::to_string);
            assert_eq!(again, first);
        }
        seen.insert(first);
    }
    assert_eq!(seen.len(), 2);
}

#[tokio::test]
async fn target_goes_down_and_comes_back() {
    let a = upstream("a").await;
    let b = upstream("b").await;
    let b_addr = b.addr;
    let e = upstream_entities(
        "round-robin",
        &[(a.addr.to_string(), 100), (b_addr.to_string(), 100)],
        json!({"healthchecks": {
            "active": {"http_path": "/status/200", "timeout": 1,
                       "healthy": {"interval": 0, "successes": 1},
                       "unhealthy": {"interval": 1, "tcp_failures": 1}},
            "passive": {"unhealthy": {"tcp_failures": 1}}
        }}),
    );
    let p = start(state(&e)).await;
    let cl = client();
    drop(b);
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..20 {
        let r = get(&cl, p.http, "/", &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-upstream"), Some("a"));
    }
    // Back on the same port: the active probe (every 1 s) takes it back in.
    let _b = upstream_on("b", b_addr).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = get(&cl, p.http, "/", &[]).await;
        if r.header("x-upstream") == Some("b") {
            break;
        }
        assert!(Instant::now() < deadline, "b never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // All targets down: 503 from the balancer.
    drop(a);
    drop(_b);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut last = 0;
    for _ in 0..6 {
        last = get(&cl, p.http, "/", &[]).await.status;
    }
    assert_eq!(last, 503);
    let r = get(&cl, p.http, "/", &[]).await;
    assert_eq!(
        r.json(),
        json!({"message": "failure to get a peer from the ring-balancer"})
    );
}

#[tokio::test]
async fn request_size_limiting_plugin() {
    let u = upstream("u").await;
    let mut e = service_and_route(1, 11, &u.addr.to_string(), json!({"paths": ["/"]}));
    e.push((
        "plugins",
        json!({"id": id(70), "name": "request-size-limiting", "route": {"id": id(11)},
        "config": {"allowed_payload_size": 1, "size_unit": "kilobytes"}}),
    ));
    let p = start(state(&e)).await;
    let cl = client();
    let r = send(&cl, p.http, "POST", "/", &[], Bytes::from(vec![0u8; 2000])).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.json(), json!({"message": "Request size limit exceeded"}));
    let r = send(&cl, p.http, "POST", "/", &[], Bytes::from(vec![0u8; 1000])).await;
    assert_eq!(r.status, 200);

    // A chunked body with no length is counted as it streams.
    let mut s = TcpStream::connect(p.http).await.unwrap();
    let chunk = vec![b'a'; 1500];
    let mut req = b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    req.extend(format!("{:x}\r\n", chunk.len()).as_bytes());
    req.extend(&chunk);
    req.extend(b"\r\n0\r\n\r\n");
    s.write_all(&req).await.unwrap();
    let answer = read_head(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
}

/// Reads until the end of a response head (or EOF).
async fn read_head(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut byte)).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) => buf.extend_from_slice(&byte[..n]),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

async fn raw(proxy: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(bytes).await.unwrap();
    read_head(&mut s).await
}

#[tokio::test]
async fn malformed_requests_are_answered_and_the_proxy_keeps_serving() {
    let u = upstream("u").await;
    let e = service_and_route(1, 11, &u.addr.to_string(), json!({"paths": ["/"]}));
    let p = start(state(&e)).await;
    let cases: Vec<(&[u8], &str)> = vec![
        (b"GARBAGE\r\n\r\n", "400"),
        (
            b"GET / HTTP/1.1\r\nhost: x\r\nbad\x01header: v\r\n\r\n",
            "400",
        ),
        (b"GET / HTTP/9.9\r\nhost: x\r\n\r\n", "400"),
        (
            b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello",
            "400",
        ),
    ];
    for (bytes, status) in cases {
        let answer = raw(p.http, bytes).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{:?} → {answer:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    // Content-Length with Transfer-Encoding, in either order: 400 (RFC 9112
    // §6.1 lets a proxy reject it), nothing reaches the upstream, nothing
    // can be smuggled past the framing, and the connection is closed.
    for head in [
        "content-length: 5\r\ntransfer-encoding: chunked",
        "Transfer-Encoding: chunked\r\nContent-Length: 5",
    ] {
        let mut s = TcpStream::connect(p.http).await.unwrap();
        // A request before it on the same connection is served as usual.
        s.write_all(
            format!(
                "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\nabcdPOST / HTTP/1.1\r\nhost: x\r\n{head}\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut all = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut all)).await;
        let all = String::from_utf8_lossy(&all);
        assert_eq!(all.matches("HTTP/1.1 ").count(), 2, "{all}");
        let second = &all[all.rfind("HTTP/1.1 ").unwrap()..];
        assert!(all.starts_with("HTTP/1.1 200"), "{all}");
        assert!(
            second.starts_with("HTTP/1.1 400") && second.contains("connection: close"),
            "{all}"
        );
        assert!(!all.contains("smuggled"), "{all}");
    }
    let mut big = b"GET / HTTP/1.1\r\nhost: x\r\n".to_vec();
    big.extend(format!("x-big: {}\r\n\r\n", "a".repeat(64 * 1024)).as_bytes());
    let answer = raw(p.http, &big).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert_eq!(get(&client(), p.http, "/", &[]).await.status, 200);
}

#[tokio::test]
async fn slow_headers_get_408_and_extra_connections_503() {
    let mut s = settings();
    s.header_read_timeout = Duration::from_millis(300);
    s.max_connections = 2;
    let p = start_with(s, state(&[])).await;
    let t = Instant::now();
    let mut slow = TcpStream::connect(p.http).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let answer = read_head(&mut slow).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(t.elapsed() < Duration::from_secs(3));
    drop(slow);
    tokio::time::sleep(Duration::from_millis(50)).await;

    let _c1 = TcpStream::connect(p.http).await.unwrap();
    let _c2 = TcpStream::connect(p.http).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = Instant::now();
    let answer = raw(p.http, b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn websocket_upgrade_passes_through_both_ways() {
    // An upstream that accepts any upgrade and echoes bytes back.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let head = read_head(&mut s).await;
        assert!(
            head.to_ascii_lowercase().contains("upgrade: websocket"),
            "{head}"
        );
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 1024];
        loop {
            let n = s.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            s.write_all(&buf[..n]).await.unwrap();
        }
    });
    let e = service_and_route(1, 11, &up.to_string(), json!({"paths": ["/ws"]}));
    let p = start(state(&e)).await;
    let mut s = TcpStream::connect(p.http).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n").await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    for msg in [&b"hello"[..], b"second frame", &[0u8, 255, 10, 13]] {
        s.write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, msg);
    }
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served() {
    let u = upstream("u").await;
    let e = service_and_route(1, 11, &u.addr.to_string(), json!({"paths": ["/"]}));
    let p = start(state(&e)).await;
    let c: Client =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let r = get(&c, p.http, "/h2", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["uri"], "/h2");
}

#[tokio::test]
async fn config_change_under_load_fails_no_request() {
    let u = upstream("u").await;
    let u2 = upstream("u2").await;
    let base = service_and_route(1, 11, &u.addr.to_string(), json!({"paths": ["/"]}));
    let mut s = state(&base);
    let p = start(s.clone()).await;
    let stop = flag();
    let mut workers = Vec::new();
    for _ in 0..8 {
        let stop = stop.clone();
        let addr = p.http;
        workers.push(tokio::spawn(async move {
            let cl = client();
            let mut n = 0;
            while !is_set(&stop) {
                let r = get(&cl, addr, "/", &[]).await;
                assert_eq!(r.status, 200, "{:?}", r.body);
                n += 1;
            }
            n
        }));
    }
    for i in 0..20u128 {
        let target = if i % 2 == 0 { u2.addr } else { u.addr };
        let mut more = service_and_route(
            100 + i,
            200 + i,
            &target.to_string(),
            json!({"paths": [format!("/r{i}")]}),
        );
        // Also move the catch-all route between the two upstreams.
        more.extend(service_and_route(
            1,
            11,
            &target.to_string(),
            json!({"paths": ["/"]}),
        ));
        apply(&mut s, &more);
        p.publish(s.clone());
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut total = 0;
    for w in workers {
        total += w.await.expect("no worker saw a failure");
    }
    assert!(total > 100, "only {total} requests");
    assert_eq!(get(&client(), p.http, "/r3", &[]).await.status, 200);
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let u = upstream("u").await;
    let e = service_and_route(
        1,
        11,
        &u.addr.to_string(),
        json!({"paths": ["/"], "strip_path": false}),
    );
    let mut p = start(state(&e)).await;
    let addr = p.http;
    let slow = tokio::spawn(async move { get(&client(), addr, "/sleep/500", &[]).await.status });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    p.shutdown().await;
    assert_eq!(slow.await.unwrap(), 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn read_timeout_applies_between_body_reads() {
    // Sends its head and 3 of 100 promised bytes, then stalls.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let _ = read_head(&mut s).await;
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nabc")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
    });
    let mut e = service_and_route(1, 11, &up.to_string(), json!({"paths": ["/"]}));
    e[0].1["read_timeout"] = json!(300);
    let p = start(state(&e)).await;
    let resp = client()
        .get(format!("http://{}/", p.http).parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let t = Instant::now();
    let body = http_body_util::BodyExt::collect(resp.into_body()).await;
    assert!(body.is_err(), "the truncated body must fail, not hang");
    assert!(t.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn target_health_survives_a_config_change() {
    let a = upstream("a").await;
    let (dead, _held) = dead_addr();
    let mut e = upstream_entities(
        "round-robin",
        &[(a.addr.to_string(), 100), (dead.to_string(), 100)],
        json!({"healthchecks": {"passive": {"unhealthy": {"tcp_failures": 1}}}}),
    );
    e.push((
        "services",
        json!({"id": id(1), "host": "backend", "retries": 0}),
    ));
    let mut s = state(&e);
    let p = start(s.clone()).await;
    let cl = client();
    // Without retries, the dead target costs one 502 before it is out.
    let mut failures = 0;
    for _ in 0..4 {
        if get(&cl, p.http, "/", &[]).await.status == 502 {
            failures += 1;
        }
    }
    assert_eq!(failures, 1);
    // An unrelated change recompiles the balancer; the dead target stays out.
    apply(
        &mut s,
        &[(
            "routes",
            json!({"id": id(99), "paths": ["/other"], "service": {"id": id(1)}}),
        )],
    );
    p.publish(s);
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..10 {
        assert_eq!(get(&cl, p.http, "/", &[]).await.status, 200);
    }
}

#[tokio::test]
async fn tcp_probes_bring_a_target_back() {
    let a = upstream("a").await;
    let b_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let e = upstream_entities(
        "round-robin",
        &[(a.addr.to_string(), 100), (b_addr.to_string(), 100)],
        json!({"healthchecks": {
            "active": {"type": "tcp", "healthy": {"successes": 1}, "unhealthy": {"interval": 1}},
            "passive": {"unhealthy": {"tcp_failures": 1}}
        }}),
    );
    let p = start(state(&e)).await;
    let cl = client();
    for _ in 0..4 {
        assert_eq!(
            get(&cl, p.http, "/", &[]).await.header("x-upstream"),
            Some("a")
        );
    }
    let _b = upstream_on("b", b_addr).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(&cl, p.http, "/", &[]).await.header("x-upstream") != Some("b") {
        assert!(Instant::now() < deadline, "b never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn write_timeout_when_the_upstream_stops_reading() {
    // Reads the request head, then never reads again.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let _ = read_head(&mut s).await;
        tokio::time::sleep(Duration::from_secs(20)).await;
        drop(s);
    });
    let mut e = service_and_route(1, 11, &up.to_string(), json!({"paths": ["/"]}));
    e[0].1["write_timeout"] = json!(300);
    e[0].1["read_timeout"] = json!(20000);
    let p = start(state(&e)).await;
    let s = TcpStream::connect(p.http).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let total: usize = 256 * 1024 * 1024;
    tokio::spawn(async move {
        let head = format!("POST / HTTP/1.1\r\nhost: x\r\ncontent-length: {total}\r\n\r\n");
        wr.write_all(head.as_bytes()).await.ok();
        let chunk = vec![0u8; 64 * 1024];
        for _ in 0..total / chunk.len() {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let t = Instant::now();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), rd.read(&mut buf))
        .await
        .expect("an answer, not a hang")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert!(t.elapsed() < Duration::from_secs(5));
}

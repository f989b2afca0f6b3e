//! Traffic plugins (cors, ip-restriction, request- and response-transformer)
//! through a real proxy on port 0 in front of real upstream servers.

mod proxy_support;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use proxy_support::*;
use raftgate::plugins::Body;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// An upstream that answers with the request as JSON, body included:
/// `{"method","uri","headers","body"}`.
async fn body_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let method = req.method().to_string();
                    let uri = req.uri().to_string();
                    let mut headers = serde_json::Map::new();
                    for (k, v) in req.headers() {
                        headers.insert(
                            k.to_string(),
                            Value::String(v.to_str().unwrap_or("").to_string()),
                        );
                    }
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let out = json!({"method": method, "uri": uri, "headers": headers,
                                     "body": String::from_utf8_lossy(&body)});
                    let body: Body = Full::new(Bytes::from(out.to_string()))
                        .map_err(|n| match n {})
                        .boxed();
                    let mut r = Response::new(body);
                    r.headers_mut()
                        .insert("content-type", "application/json".parse().unwrap());
                    r.headers_mut().insert("x-up", "1".parse().unwrap());
                    Ok::<_, Infallible>(r)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A proxy with one service+route at `addr` (paths ["/"]) and a plugin on it.
async fn with_plugin(addr: SocketAddr, name: &str, config: Value) -> Running {
    let mut e = service_and_route(1, 11, &addr.to_string(), json!({"paths": ["/"]}));
    e.push((
        "plugins",
        json!({"id": id(21), "name": name, "route": {"id": id(11)}, "config": config}),
    ));
    start(state(&e)).await
}

#[tokio::test]
async fn cors_preflight_answered_and_headers_added() {
    let up = upstream("u").await;
    let p = with_plugin(
        up.addr,
        "cors",
        json!({"origins": ["http://a.example", "https://.*\\.b\\.example"],
               "methods": ["GET", "POST"], "headers": ["x-h"], "exposed_headers": ["x-up"],
               "credentials": true, "max_age": 600}),
    )
    .await;
    let c = client();
    let pre = send(
        &c,
        p.http,
        "OPTIONS",
        "/x",
        &[
            ("origin", "https://api.b.example"),
            ("access-control-request-method", "POST"),
        ],
        Bytes::new(),
    )
    .await;
    assert_eq!(pre.status, 200);
    assert!(
        pre.header("x-upstream").is_none(),
        "answered by the gateway"
    );
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("https://api.b.example")
    );
    assert_eq!(pre.header("access-control-allow-methods"), Some("GET,POST"));
    assert_eq!(pre.header("access-control-allow-headers"), Some("x-h"));
    assert_eq!(pre.header("access-control-max-age"), Some("600"));
    assert_eq!(pre.header("access-control-allow-credentials"), Some("true"));

    let r = get(&c, p.http, "/x", &[("origin", "http://a.example")]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-upstream"), Some("u"));
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://a.example")
    );
    assert_eq!(r.header("access-control-expose-headers"), Some("x-up"));
    assert_eq!(r.header("vary"), Some("Origin"));
    let r = get(&c, p.http, "/x", &[("origin", "http://evil.example")]).await;
    assert!(r.header("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn cors_preflight_continue_reaches_upstream() {
    let up = upstream("u").await;
    let p = with_plugin(up.addr, "cors", json!({"preflight_continue": true})).await;
    let r = send(
        &client(),
        p.http,
        "OPTIONS",
        "/",
        &[
            ("origin", "http://x"),
            ("access-control-request-method", "GET"),
        ],
        Bytes::new(),
    )
    .await;
    assert_eq!(r.header("x-upstream"), Some("u"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}

#[tokio::test]
async fn ip_restriction_deny_allow_and_custom_answer() {
    let up = upstream("u").await;
    let c = client();
    let p = with_plugin(up.addr, "ip-restriction", json!({"deny": ["127.0.0.0/8"]})).await;
    let r = get(&c, p.http, "/", &[]).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json(),
        json!({"message": "IP address not allowed: 127.0.0.1"})
    );
    assert!(r.header("x-upstream").is_none());

    let p = with_plugin(
        up.addr,
        "ip-restriction",
        json!({"allow": ["10.0.0.0/8", "127.0.0.1"]}),
    )
    .await;
    assert_eq!(get(&c, p.http, "/", &[]).await.status, 200);

    let p = with_plugin(
        up.addr,
        "ip-restriction",
        json!({"allow": ["::1", "192.168.0.0/16"], "status": 401, "message": "nope"}),
    )
    .await;
    let r = get(&c, p.http, "/", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json(), json!({"message": "nope"}));
}

/// A client whose connections come from `source` (a loopback address).
fn client_from(source: &str) -> Client {
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.set_local_address(Some(source.parse().unwrap()));
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(http)
}

/// `trusted_ips` = 127.0.0.1 and 10.0.0.0/8: requests from 127.0.0.1 (a
/// trusted proxy) are from the first untrusted X-Forwarded-For hop counted
/// from the right; requests from 127.0.0.2 are from 127.0.0.2 whatever
/// they claim. ip-restriction, rate-limiting by ip and the X-Real-IP /
/// X-Forwarded-For sent upstream all see that address.
#[tokio::test]
async fn client_ip_comes_through_trusted_proxies_only() {
    let up = upstream("u").await;
    let mut e = service_and_route(1, 11, &up.addr.to_string(), json!({"paths": ["/open"]}));
    for (route, path) in [(12, "/guarded"), (13, "/metered")] {
        e.push((
            "routes",
            json!({"id": id(route), "service": {"id": id(1)}, "paths": [path]}),
        ));
    }
    e.push((
        "routes",
        json!({"id": id(14), "service": {"id": id(1)}, "paths": ["/kept"], "strip_path": false}),
    ));
    e.push((
        "plugins",
        json!({"id": id(21), "name": "ip-restriction", "route": {"id": id(12)},
               "config": {"allow": ["203.0.113.0/24"]}}),
    ));
    e.push((
        "plugins",
        json!({"id": id(22), "name": "rate-limiting", "route": {"id": id(13)},
               "config": {"minute": 1, "limit_by": "ip", "policy": "local"}}),
    ));
    let mut config = settings();
    config.trusted_ips =
        raftgate::proxy::realip::TrustedIps::parse("127.0.0.1, 10.0.0.0/8").unwrap();
    let p = start_with(config, state(&e)).await;
    let proxy = client_from("127.0.0.1");
    let direct = client_from("127.0.0.2");
    let xff = |v: &'static str| [("x-forwarded-for", v)];
    let denied = |ip: &str| json!({"message": format!("IP address not allowed: {ip}")});

    // Upstream headers: X-Real-IP is the client, X-Forwarded-For gets the peer.
    let r = get(
        &proxy,
        p.http,
        "/open",
        &xff("198.51.100.9, 203.0.113.5, 10.1.2.3"),
    )
    .await;
    let h = &r.json()["headers"];
    assert_eq!(h["x-real-ip"], "203.0.113.5");
    assert_eq!(
        h["x-forwarded-for"],
        "198.51.100.9, 203.0.113.5, 10.1.2.3, 127.0.0.1"
    );
    let r = get(&direct, p.http, "/open", &xff("203.0.113.5")).await;
    let h = &r.json()["headers"];
    assert_eq!(
        h["x-real-ip"], "127.0.0.2",
        "an untrusted peer's XFF is not read"
    );
    assert_eq!(h["x-forwarded-for"], "203.0.113.5, 127.0.0.2");

    // The other forwarded headers: a trusted proxy's pass through as it
    // sent them; an untrusted peer's are replaced, or dropped where the
    // gateway has no value of its own (no prefix where strip_path is off).
    let sent = [
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "public.example"),
        ("x-forwarded-port", "443"),
        ("x-forwarded-path", "/api/open"),
        ("x-forwarded-prefix", "/api"),
    ];
    let h = get(&proxy, p.http, "/open", &sent).await.json()["headers"].clone();
    for (name, value) in sent {
        assert_eq!(h[name], value, "trusted peer's {name}");
    }
    let h = get(&direct, p.http, "/open", &sent).await.json()["headers"].clone();
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "127.0.0.1");
    assert_eq!(h["x-forwarded-port"], p.http.port().to_string());
    assert_eq!(h["x-forwarded-path"], "/open");
    assert_eq!(h["x-forwarded-prefix"], "/open", "strip_path removed /open");
    let h = get(&direct, p.http, "/kept", &sent).await.json()["headers"].clone();
    assert_eq!(h["x-forwarded-path"], "/kept");
    assert!(
        h.get("x-forwarded-prefix").is_none(),
        "untrusted X-Forwarded-Prefix dropped: {h}"
    );

    // ip-restriction sees the resolved client.
    assert_eq!(
        get(&proxy, p.http, "/guarded", &xff("203.0.113.5"))
            .await
            .status,
        200
    );
    let r = get(
        &proxy,
        p.http,
        "/guarded",
        &xff("203.0.113.5, 198.51.100.9"),
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (403, denied("198.51.100.9")),
        "the rightmost untrusted hop"
    );
    let r = get(&proxy, p.http, "/guarded", &[]).await;
    assert_eq!((r.status, r.json()), (403, denied("127.0.0.1")));
    // No spoofing from an untrusted peer, however the header is written.
    for spoof in [
        "203.0.113.5",
        "203.0.113.5, 10.1.2.3",
        "127.0.0.1, 203.0.113.5",
    ] {
        let r = get(&direct, p.http, "/guarded", &xff(spoof)).await;
        assert_eq!((r.status, r.json()), (403, denied("127.0.0.2")), "{spoof}");
        assert!(r.header("x-upstream").is_none());
    }

    // rate-limiting by ip: one a minute per resolved client.
    let http = p.http;
    let metered = |c: &Client, ip: &'static str| {
        let c = c.clone();
        async move { get(&c, http, "/metered", &xff(ip)).await.status }
    };
    assert_eq!(metered(&proxy, "203.0.113.5").await, 200);
    assert_eq!(metered(&proxy, "203.0.113.6").await, 200, "another client");
    assert_eq!(metered(&proxy, "203.0.113.5").await, 429);
    assert_eq!(metered(&direct, "203.0.113.7").await, 200);
    assert_eq!(
        metered(&direct, "203.0.113.8").await,
        429,
        "a new XFF does not make an untrusted peer a new client"
    );
}

#[tokio::test]
async fn request_transformer_every_target() {
    let up = body_echo().await;
    let p = with_plugin(
        up,
        "request-transformer",
        json!({
            "http_method": "PUT",
            "remove": {"headers": ["x-drop"], "querystring": ["q_drop"], "body": ["secret"]},
            "rename": {"headers": ["x-old:x-new"], "querystring": ["a:b"], "body": ["p:q"]},
            "replace": {"headers": ["x-rep:after"], "querystring": ["r:2"], "body": ["v:new"],
                        "uri": "/replaced"},
            "add": {"headers": ["x-add:yes"], "querystring": ["z:1"], "body": ["added:1"]},
            "append": {"headers": ["x-app:two"], "querystring": ["m:2"], "body": ["list:b"]}
        }),
    )
    .await;
    let r = send(
        &client(),
        p.http,
        "POST",
        "/orig?q_drop=1&a=x&r=1&m=1",
        &[
            ("x-drop", "1"),
            ("x-old", "o"),
            ("x-rep", "before"),
            ("x-app", "one"),
            ("content-type", "application/json"),
        ],
        Bytes::from_static(br#"{"secret":"s","p":1,"v":"old","list":"a"}"#),
    )
    .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["method"], "PUT");
    assert_eq!(v["uri"], "/replaced?b=x&m=1&r=2&z=1&m=2");
    let h = &v["headers"];
    assert!(h.get("x-drop").is_none());
    assert_eq!(h["x-new"], "o");
    assert_eq!(h["x-rep"], "after");
    assert_eq!(h["x-add"], "yes");
    // The echo keeps the last value of a repeated header.
    assert_eq!(h["x-app"], "two");
    let body: Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"q": 1, "v": "new", "added": "1", "list": ["a", "b"]})
    );
}

#[tokio::test]
async fn response_transformer_headers_and_json() {
    let up = body_echo().await;
    let p = with_plugin(
        up,
        "response-transformer",
        json!({
            "remove": {"headers": ["x-up"], "json": ["headers"]},
            "rename": {"json": ["method:verb"]},
            "replace": {"json": ["uri:hidden"]},
            "add": {"headers": ["x-added:1"], "json": ["n:42", "ok:true"],
                    "json_types": ["number", "boolean"]},
            "append": {"headers": ["x-added:2"], "json": ["body:more"]}
        }),
    )
    .await;
    let r = send(&client(), p.http, "GET", "/", &[], Bytes::new()).await;
    assert_eq!(r.status, 200);
    assert!(r.header("x-up").is_none());
    let added: Vec<_> = r.headers.get_all("x-added").iter().collect();
    assert_eq!(added, ["1", "2"]);
    assert_eq!(
        r.json(),
        json!({"verb": "GET", "uri": "hidden", "n": 42, "ok": true, "body": ["", "more"]})
    );
}

/// Three services (fast echo, slow, failing) and an aggregate route over
/// them with the given per-backend (key, service, path, timeout, required).
fn aggregate_state(addrs: [&SocketAddr; 3], backends: Value) -> raftgate::model::State {
    aggregate_state_mode(addrs, "nested", backends)
}

fn aggregate_state_mode(
    addrs: [&SocketAddr; 3],
    mode: &str,
    backends: Value,
) -> raftgate::model::State {
    let mut e = Vec::new();
    for (i, a) in addrs.iter().enumerate() {
        e.extend(service_and_route(
            i as u128 + 1,
            i as u128 + 11,
            &a.to_string(),
            json!({"paths": [format!("/direct{i}")]}),
        ));
    }
    e.push((
        "routes",
        json!({"id": id(20), "service": {"id": id(1)}, "paths": ["~/agg/(?P<id>\\d+)$"],
               "aggregate": {"mode": mode, "backends": backends}}),
    ));
    state(&e)
}

#[tokio::test]
async fn aggregate_answers_with_what_arrived() {
    let (a, b, c) = (
        upstream("a").await,
        upstream("b").await,
        upstream("c").await,
    );
    let s = aggregate_state(
        [&a.addr, &b.addr, &c.addr],
        json!([
            {"key": "user", "service": {"id": id(1)}, "path": "/users/{id}"},
            {"key": "slow", "service": {"id": id(2)}, "path": "/sleep/2000", "timeout": 150},
            {"key": "bad", "service": {"id": id(3)}, "path": "/status/500"}
        ]),
    );
    let p = start(s).await;
    let t = std::time::Instant::now();
    let r = get(&client(), p.http, "/agg/42?x=1", &[]).await;
    assert!(t.elapsed() < std::time::Duration::from_millis(1500));
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.header("x-aggregate-missing"), Some("slow,bad"));
    let v = r.json();
    assert_eq!(v["user"]["name"], "a");
    assert_eq!(v["user"]["uri"], "/users/42?x=1");
    assert_eq!(v["_missing"], json!(["slow", "bad"]));
}

#[tokio::test]
async fn aggregate_merge_mode_and_failures() {
    let (a, b, c) = (
        upstream("a").await,
        upstream("b").await,
        upstream("c").await,
    );
    let addrs = [&a.addr, &b.addr, &c.addr];
    let cl = client();
    // All failing: 502.
    let p = start(aggregate_state(
        addrs,
        json!([
            {"key": "slow", "service": {"id": id(2)}, "path": "/sleep/2000", "timeout": 100},
            {"key": "bad", "service": {"id": id(3)}, "path": "/status/503"}
        ]),
    ))
    .await;
    let r = get(&cl, p.http, "/agg/1", &[]).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-aggregate-missing"), Some("slow,bad"));
    // A required part timing out: 504, even though another arrived.
    let p = start(aggregate_state(
        addrs,
        json!([
            {"key": "user", "service": {"id": id(1)}, "path": "/u"},
            {"key": "slow", "service": {"id": id(2)}, "path": "/sleep/2000", "timeout": 100,
             "required": true}
        ]),
    ))
    .await;
    assert_eq!(get(&cl, p.http, "/agg/1", &[]).await.status, 504);
    // Merge mode: objects side by side at the top level.
    let p = start(aggregate_state_mode(
        addrs,
        "merge",
        json!([
            {"key": "one", "service": {"id": id(1)}, "path": "/one/{id}"},
            {"key": "two", "service": {"id": id(2)}, "path": "/sleep/10"}
        ]),
    ))
    .await;
    let r = get(&cl, p.http, "/agg/7", &[]).await;
    assert_eq!(r.status, 200);
    let v = r.json();
    // Both echo bodies merged: the later backend's fields win.
    assert_eq!(v["name"], "b");
    assert!(v.get("_missing").is_none());
}

#[tokio::test]
async fn aggregate_runs_access_plugins_once_before_fan_out() {
    let (a, b, c) = (
        upstream("a").await,
        upstream("b").await,
        upstream("c").await,
    );
    let mut s = aggregate_state(
        [&a.addr, &b.addr, &c.addr],
        json!([{"key": "user", "service": {"id": id(1)}, "path": "/u"}]),
    );
    apply(
        &mut s,
        &[(
            "plugins",
            json!({"id": id(30), "name": "ip-restriction", "route": {"id": id(20)},
                   "config": {"deny": ["127.0.0.1"]}}),
        )],
    );
    let p = start(s).await;
    let r = get(&client(), p.http, "/agg/1", &[]).await;
    assert_eq!(r.status, 403);
}

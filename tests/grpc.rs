//! gRPC through a real raftgate node (a one-node cluster started by the
//! harness), with tonic on both ends and messages written by hand with
//! prost (no protoc). The upstreams run in this process: hyper HTTP/2
//! servers (h2c, and h2 over TLS for a `grpcs` service) that hand each call
//! to tonic's server-side codec. Covered: a unary call with request and
//! response metadata and a custom trailer, a bidirectional stream where
//! each message is sent only after the reply to the previous one came back
//! (so the gateway cannot be buffering either body), an upstream's own
//! error passing through, and the gateway's own rejections as gRPC
//! statuses with Kong's messages.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Cluster;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};
use http::uri::PathAndQuery;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

/// The one message of the test service, both ways.
#[derive(Clone, PartialEq, prost::Message)]
struct Note {
    #[prost(string, tag = "1")]
    text: String,
    #[prost(uint32, tag = "2")]
    seq: u32,
}

fn note(text: &str, seq: u32) -> Note {
    Note {
        text: text.to_string(),
        seq,
    }
}

const UNARY: &str = "/test.Echo/Unary";
const CHAT: &str = "/test.Echo/Chat";
const DENY: &str = "/test.Echo/Deny";
const SLOW: &str = "/test.Echo/Slow";
/// How long `SLOW` (`UNARY`, delayed) takes to answer.
const SLOW_FOR: Duration = Duration::from_secs(5);
/// How long any single step may take before the test fails.
const STEP: Duration = Duration::from_secs(10);

// --- the upstream -----------------------------------------------------------

/// Unary: answers "hello <text>" plus the client's `x-client` metadata,
/// with the upstream's name in the `x-upstream` response header and the
/// `grpc-timeout` it was given in `x-upstream-grpc-timeout`, after
/// the given delay.
struct Unary(&'static str, Duration);

impl tonic::server::UnaryService<Note> for Unary {
    type Response = Note;
    type Future = BoxFuture<'static, Result<tonic::Response<Note>, Status>>;

    fn call(&mut self, req: tonic::Request<Note>) -> Self::Future {
        let (name, delay) = (self.0, self.1);
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            let client = req
                .metadata()
                .get("x-client")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string();
            let timeout = req.metadata().get("grpc-timeout").cloned();
            let n = req.into_inner();
            let mut resp =
                tonic::Response::new(note(&format!("hello {} ({client})", n.text), n.seq));
            resp.metadata_mut()
                .insert("x-upstream", name.parse().expect("ascii"));
            if let Some(t) = timeout {
                resp.metadata_mut().insert("x-upstream-grpc-timeout", t);
            }
            Ok(resp)
        })
    }
}

/// Bidirectional: one reply per message, as soon as it arrives.
struct Chat;

impl tonic::server::StreamingService<Note> for Chat {
    type Response = Note;
    type ResponseStream = BoxStream<'static, Result<Note, Status>>;
    type Future = BoxFuture<'static, Result<tonic::Response<Self::ResponseStream>, Status>>;

    fn call(&mut self, req: tonic::Request<tonic::Streaming<Note>>) -> Self::Future {
        Box::pin(async move {
            let replies = req
                .into_inner()
                .map(|m| m.map(|n| note(&format!("echo {}", n.text), n.seq)))
                .boxed();
            Ok(tonic::Response::new(replies))
        })
    }
}

/// Always fails, with a status and metadata of the upstream's own.
struct Deny;

impl tonic::server::UnaryService<Note> for Deny {
    type Response = Note;
    type Future = BoxFuture<'static, Result<tonic::Response<Note>, Status>>;

    fn call(&mut self, _: tonic::Request<Note>) -> Self::Future {
        Box::pin(async move {
            let mut meta = tonic::metadata::MetadataMap::new();
            meta.insert("x-reason", "policy".parse().expect("ascii"));
            Err(Status::with_metadata(
                Code::PermissionDenied,
                "upstream says no",
                meta,
            ))
        })
    }
}

/// Adds `x-upstream-trailer: <value>` to the trailers of a response.
fn with_trailer(
    resp: http::Response<tonic::body::Body>,
    value: &'static str,
) -> http::Response<tonic::body::Body> {
    resp.map(|body| {
        tonic::body::Body::new(body.map_frame(move |frame| match frame.into_trailers() {
            Ok(mut trailers) => {
                trailers.insert("x-upstream-trailer", http::HeaderValue::from_static(value));
                hyper::body::Frame::trailers(trailers)
            }
            Err(frame) => frame,
        }))
    })
}

async fn route_call(
    name: &'static str,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<tonic::body::Body>, Infallible> {
    let mut grpc = tonic::server::Grpc::new(ProstCodec::<Note, Note>::default());
    let path = req.uri().path().to_string();
    Ok(match path.as_str() {
        UNARY => with_trailer(grpc.unary(Unary(name, Duration::ZERO), req).await, "unary"),
        CHAT => with_trailer(grpc.streaming(Chat, req).await, "chat"),
        DENY => grpc.unary(Deny, req).await,
        SLOW => grpc.unary(Unary(name, SLOW_FOR), req).await,
        _ => Status::unimplemented(format!("no method {path}")).into_http(),
    })
}

/// Starts an HTTP/2-only gRPC upstream on a free loopback port: h2c, or
/// h2 over TLS (self-signed, ALPN h2) with `tls`.
fn start_upstream(rt: &Runtime, name: &'static str, tls: bool) -> SocketAddr {
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    let acceptor = tls.then(tls_acceptor);
    rt.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| route_call(name, req));
                let h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                match acceptor {
                    None => {
                        let _ = h2.serve_connection(TokioIo::new(stream), svc).await;
                    }
                    Some(acceptor) => {
                        if let Ok(s) = acceptor.accept(stream).await {
                            let _ = h2.serve_connection(TokioIo::new(s), svc).await;
                        }
                    }
                }
            });
        }
    });
    addr
}

fn tls_acceptor() -> tokio_rustls::TlsAcceptor {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("self-signed");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .expect("certificate");
    config.alpn_protocols = vec![b"h2".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

// --- the client and the gateway ---------------------------------------------

/// A running gateway (one node) and the runtime the upstreams and the
/// tonic client run on.
struct Env {
    rt: Runtime,
    cluster: Cluster,
}

impl Env {
    fn start() -> Env {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let cluster = Cluster::start(1, &[]);
        Env { rt, cluster }
    }

    /// A gateway with the h2c upstream as service `echo` and a `grpc`
    /// route `echo` for `/test.Echo/`.
    fn with_echo_route() -> Env {
        let env = Env::start();
        let plain = start_upstream(&env.rt, "plain", false);
        env.admin(
            "/services",
            json!({"name": "echo", "url": format!("grpc://127.0.0.1:{}", plain.port())}),
        );
        env.admin(
            "/services/echo/routes",
            json!({"name": "echo", "protocols": ["grpc"], "paths": ["/test.Echo/"]}),
        );
        env
    }

    fn admin(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self
            .cluster
            .post(&self.cluster.node(1).admin_url(path), &body);
        assert!(
            status == 201 || status == 200,
            "POST {path} {body}: {status} {answer}"
        );
        answer
    }

    fn proxy_port(&self) -> u16 {
        self.cluster.node(1).proxy
    }

    /// A channel to the gateway's proxy port (h2c).
    fn channel(&self) -> Channel {
        // A lazy channel spawns its connection task on this runtime.
        let _runtime = self.rt.enter();
        Endpoint::from_shared(format!("http://127.0.0.1:{}", self.proxy_port()))
            .expect("endpoint")
            .connect_timeout(STEP)
            .timeout(STEP)
            .connect_lazy()
    }

    /// Waits until a unary call on `metadata` succeeds: the proxy is
    /// listening and serves the config written so far (routes written
    /// before the one this call uses are part of the same snapshot).
    fn wait_serving(&self, metadata: &[(&'static str, &str)]) -> Channel {
        let deadline = Instant::now() + STEP;
        loop {
            let ch = self.channel();
            let last = self
                .rt
                .block_on(unary(&ch, UNARY, note("ping", 0), metadata));
            match last {
                Ok(_) => return ch,
                Err(status) => assert!(
                    Instant::now() < deadline,
                    "gateway not serving the gRPC route: {status:?}\n{}",
                    self.cluster.node(1).log_text()
                ),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

async fn unary(
    ch: &Channel,
    path: &'static str,
    msg: Note,
    metadata: &[(&'static str, &str)],
) -> Result<tonic::Response<Note>, Status> {
    let mut client = tonic::client::Grpc::new(ch.clone());
    client
        .ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut req = tonic::Request::new(msg);
    for (k, v) in metadata {
        req.metadata_mut()
            .insert(*k, v.parse().expect("ascii metadata"));
    }
    let call = client.unary(
        req,
        PathAndQuery::from_static(path),
        ProstCodec::<Note, Note>::default(),
    );
    tokio::time::timeout(STEP, call)
        .await
        .unwrap_or_else(|_| Err(Status::deadline_exceeded("test step timed out")))
}

fn meta<'a>(resp: &'a tonic::Response<Note>, key: &str) -> Option<&'a str> {
    resp.metadata().get(key).and_then(|v| v.to_str().ok())
}

fn assert_status(result: Result<tonic::Response<Note>, Status>, code: Code, message: &str) {
    match result {
        Ok(resp) => panic!("expected {code:?} \"{message}\", got {:?}", resp.get_ref()),
        Err(status) => {
            assert_eq!(status.code(), code, "{status:?}");
            assert_eq!(status.message(), message, "{status:?}");
        }
    }
}

// --- the tests ----------------------------------------------------------------

#[test]
fn unary_call_with_metadata_and_trailers_over_h2c_and_tls_upstreams() {
    let env = Env::start();
    let plain = start_upstream(&env.rt, "plain", false);
    let tls = start_upstream(&env.rt, "tls", true);
    env.admin(
        "/services",
        json!({"name": "echo-tls", "url": format!("grpcs://127.0.0.1:{}", tls.port())}),
    );
    env.admin(
        "/services/echo-tls/routes",
        json!({"name": "echo-tls", "protocols": ["grpc"], "paths": ["/test.Echo/"],
               "headers": {"x-via": ["tls"]}}),
    );
    env.admin(
        "/services",
        json!({"name": "echo", "url": format!("grpc://127.0.0.1:{}", plain.port())}),
    );
    let route = env.admin(
        "/services/echo/routes",
        json!({"name": "echo", "protocols": ["grpc", "grpcs"], "paths": ["/test.Echo/"]}),
    );
    assert_eq!(route["strip_path"], false, "Kong's default for grpc routes");
    let ch = env.wait_serving(&[]);

    for (via, upstream) in [(None, "plain"), (Some("tls"), "tls")] {
        let mut metadata = vec![("x-client", "c-42")];
        if let Some(v) = via {
            metadata.push(("x-via", v));
        }
        let resp = env
            .rt
            .block_on(unary(&ch, UNARY, note("world", 7), &metadata))
            .unwrap_or_else(|s| panic!("unary via {upstream}: {s:?}"));
        assert_eq!(resp.get_ref(), &note("hello world (c-42)", 7));
        assert_eq!(meta(&resp, "x-upstream"), Some(upstream), "response header");
        assert_eq!(meta(&resp, "x-upstream-trailer"), Some("unary"), "trailer");
        assert!(meta(&resp, "x-kong-upstream-latency").is_some());
    }

    // An upstream's own error status, message and metadata pass untouched.
    let denied = env.rt.block_on(unary(&ch, DENY, note("x", 1), &[]));
    let status = denied.expect_err("upstream denies");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(status.message(), "upstream says no");
    assert_eq!(
        status
            .metadata()
            .get("x-reason")
            .and_then(|v| v.to_str().ok()),
        Some("policy")
    );
}

#[test]
fn bidirectional_stream_is_not_buffered() {
    let env = Env::with_echo_route();
    let ch = env.wait_serving(&[]);

    env.rt.block_on(async {
        let (tx, rx) = tokio::sync::mpsc::channel::<Note>(1);
        let outbound =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|n| (n, rx)) });
        let mut client = tonic::client::Grpc::new(ch);
        client.ready().await.expect("ready");
        let call = client.streaming(
            tonic::Request::new(outbound),
            PathAndQuery::from_static(CHAT),
            ProstCodec::<Note, Note>::default(),
        );
        let mut inbound = tokio::time::timeout(STEP, call)
            .await
            .expect("no response head: is the gateway holding the request body?")
            .expect("stream opened")
            .into_inner();
        // The next message goes out only once the reply to the previous
        // one is back: a gateway holding either body would stall here.
        for seq in 1..=5u32 {
            let text = format!("message {seq}");
            tx.send(note(&text, seq)).await.expect("send");
            let reply = tokio::time::timeout(STEP, inbound.message())
                .await
                .unwrap_or_else(|_| panic!("no reply to message {seq}: buffered?"))
                .expect("stream healthy")
                .expect("a reply, not the end");
            assert_eq!(reply, note(&format!("echo {text}"), seq));
        }
        drop(tx);
        let end = tokio::time::timeout(STEP, inbound.message())
            .await
            .expect("end in time")
            .expect("clean end");
        assert_eq!(end, None);
        let trailers = tokio::time::timeout(STEP, inbound.trailers())
            .await
            .expect("trailers in time")
            .expect("trailers ok")
            .expect("trailers present");
        assert_eq!(
            trailers
                .get("x-upstream-trailer")
                .and_then(|v| v.to_str().ok()),
            Some("chat")
        );
    });
}

#[test]
fn gateway_rejections_are_grpc_statuses() {
    let env = Env::start();
    let plain = start_upstream(&env.rt, "plain", false);
    let closed = common::free_port();
    env.admin(
        "/services",
        json!({"name": "down", "url": format!("grpc://127.0.0.1:{closed}"), "retries": 0}),
    );
    env.admin(
        "/services/down/routes",
        json!({"name": "down", "protocols": ["grpc"], "paths": ["/test.Down/"]}),
    );
    env.admin(
        "/services",
        json!({"name": "echo", "url": format!("grpc://127.0.0.1:{}", plain.port())}),
    );
    // key-auth on calls that carry `x-tenant: locked`, a limit of one call
    // a minute on `x-tenant: metered`.
    env.admin(
        "/services/echo/routes",
        json!({"name": "locked", "protocols": ["grpc"], "paths": ["/test.Echo/"],
               "headers": {"x-tenant": ["locked"]}}),
    );
    env.admin("/routes/locked/plugins", json!({"name": "key-auth"}));
    env.admin("/consumers", json!({"username": "grpc-client"}));
    env.admin(
        "/consumers/grpc-client/key-auth",
        json!({"key": "the-right-key"}),
    );
    env.admin(
        "/services/echo/routes",
        json!({"name": "metered", "protocols": ["grpc"], "paths": ["/test.Echo/"],
               "headers": {"x-tenant": ["metered"]}}),
    );
    env.admin(
        "/routes/metered/plugins",
        json!({"name": "rate-limiting", "config": {"minute": 1, "policy": "local"}}),
    );
    env.admin(
        "/services/echo/routes",
        json!({"name": "secure-only", "protocols": ["grpcs"], "paths": ["/test.Secure/"]}),
    );
    env.admin(
        "/services/echo/routes",
        json!({"name": "echo", "protocols": ["grpc"], "paths": ["/test.Echo/"]}),
    );
    let ch = env.wait_serving(&[]);
    let call = |path: &'static str, metadata: &[(&'static str, &str)]| {
        env.rt.block_on(unary(&ch, path, note("hi", 1), metadata))
    };

    // Authentication: no key, a wrong key, then the right one.
    let locked = ("x-tenant", "locked");
    assert_status(
        call(UNARY, &[locked]),
        Code::Unauthenticated,
        "No API key found in request",
    );
    assert_status(
        call(UNARY, &[locked, ("apikey", "wrong")]),
        Code::Unauthenticated,
        "Unauthorized",
    );
    let ok = call(UNARY, &[locked, ("apikey", "the-right-key")]).expect("right key passes");
    assert_eq!(ok.get_ref().text, "hello hi (-)");

    // Rate limiting: the second call in the minute is refused.
    let metered = ("x-tenant", "metered");
    call(UNARY, &[metered]).expect("first metered call passes");
    assert_status(
        call(UNARY, &[metered]),
        Code::ResourceExhausted,
        "API rate limit exceeded",
    );

    // No route, an upstream that refuses connections, a grpcs-only route.
    assert_status(
        call("/test.Nowhere/Call", &[]),
        Code::Unimplemented,
        "no Route matched with those values",
    );
    assert_status(
        call("/test.Down/Call", &[]),
        Code::Unavailable,
        "An invalid response was received from the upstream server",
    );
    assert_status(
        call("/test.Secure/Call", &[]),
        Code::Cancelled,
        "gRPC request matched gRPCs route",
    );

    // The wire form of a rejection: trailers-only, HTTP 200, no body.
    env.rt.block_on(async {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", env.proxy_port()))
            .await
            .expect("connect");
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .expect("h2c handshake");
        tokio::spawn(conn);
        let req = http::Request::post(format!(
            "http://127.0.0.1:{}/test.Nowhere/Call",
            env.proxy_port()
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(Bytes::from_static(&[
            0, 0, 0, 0, 0,
        ])))
        .expect("request");
        let resp = sender.send_request(req).await.expect("response");
        assert_eq!(resp.status(), 200);
        let h = resp.headers();
        assert_eq!(h["content-type"], "application/grpc");
        assert_eq!(h["grpc-status"], "12");
        assert_eq!(h["grpc-message"], "no Route matched with those values");
        let body = resp.into_body().collect().await.expect("body");
        assert!(body.to_bytes().is_empty());
    });

    // The access log keeps the gateway's decision, not the 200 on the wire.
    let logged = |path: &str, status: u64| {
        env.cluster.node(1).log_text().lines().any(|line| {
            serde_json::from_str::<Value>(line)
                .is_ok_and(|v| v["path"] == path && v["status"] == status)
        })
    };
    let deadline = Instant::now() + STEP;
    while !(logged("/test.Nowhere/Call", 404) && logged(UNARY, 401) && logged(UNARY, 429)) {
        assert!(
            Instant::now() < deadline,
            "access log lines with 404, 401, 429"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Kong's answers to what is not a gRPC call on a gRPC route (HTTP/1.1).
    let url = env.cluster.node(1).proxy_url(UNARY);
    let (status, body) = env.cluster.post(&url, &json!({"not": "grpc"}));
    assert_eq!(status, 415);
    assert_eq!(
        body,
        json!({"message": "Non-gRPC request matched gRPC route"})
    );
    let resp = env
        .cluster
        .http
        .post(&url)
        .header("content-type", "application/grpc")
        .body(vec![0u8; 5])
        .send()
        .expect("http/1.1 call");
    assert_eq!(resp.status().as_u16(), 426);
    let body: Value = resp.json().expect("json");
    assert_eq!(body, json!({"message": "Please use HTTP2 protocol"}));
}

// --- the client's deadline ------------------------------------------------------

type CallBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// One gRPC message, length-prefixed as on the wire.
fn framed(msg: &Note) -> Bytes {
    let payload = prost::Message::encode_to_vec(msg);
    let mut out = vec![0u8];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    out.into()
}

/// A raw h2c call to the gateway with `grpc-timeout: <timeout>`. A tonic
/// client would enforce that deadline itself; this one leaves it to the
/// gateway.
async fn call_with_timeout(
    port: u16,
    path: &str,
    timeout: &str,
    body: CallBody,
) -> http::Response<hyper::body::Incoming> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2c handshake");
    tokio::spawn(conn);
    let req = http::Request::post(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", timeout)
        .body(body)
        .expect("request");
    tokio::time::timeout(STEP, sender.send_request(req))
        .await
        .expect("response head in time")
        .expect("response")
}

/// The data and the trailers of a response body.
async fn data_and_trailers(body: &mut hyper::body::Incoming) -> (Vec<u8>, Option<http::HeaderMap>) {
    let mut data = Vec::new();
    while let Some(frame) = tokio::time::timeout(STEP, body.frame())
        .await
        .expect("body in time")
    {
        let frame = frame.expect("body frame");
        match frame.into_data() {
            Ok(d) => data.extend_from_slice(&d),
            Err(frame) => return (data, frame.into_trailers().ok()),
        }
    }
    (data, None)
}

#[test]
fn grpc_timeout_caps_the_upstream_call() {
    let env = Env::with_echo_route();
    env.wait_serving(&[]);
    let port = env.proxy_port();
    let one = |msg: &Note| -> CallBody { http_body_util::Full::new(framed(msg)).boxed() };

    env.rt.block_on(async {
        // A deadline longer than the call changes nothing.
        let mut resp = call_with_timeout(port, UNARY, "5S", one(&note("in time", 1))).await;
        assert_eq!(resp.status(), 200);
        // The upstream is given what is left of the 5 s: the gateway's
        // time taken off, in milliseconds.
        let passed = resp.headers()["x-upstream-grpc-timeout"].to_str().unwrap();
        let ms: u64 = passed.strip_suffix('m').unwrap().parse().unwrap();
        assert!((4_000..5_000).contains(&ms), "{passed}");
        let (data, trailers) = data_and_trailers(resp.body_mut()).await;
        assert_eq!(&data[..], &framed(&note("hello in time (-)", 1))[..]);
        assert_eq!(trailers.expect("trailers")["grpc-status"], "0");

        // The upstream answers only after SLOW_FOR: the gateway answers
        // DEADLINE_EXCEEDED (trailers-only) once 300 ms are over.
        let t = Instant::now();
        let mut resp = call_with_timeout(port, SLOW, "300m", one(&note("late", 2))).await;
        let took = t.elapsed();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["grpc-status"], "4", "{:?}", resp.headers());
        assert_eq!(resp.headers()["grpc-message"], "Deadline Exceeded");
        assert!(
            took >= Duration::from_millis(250) && took < SLOW_FOR / 2,
            "answered after {took:?}"
        );
        let (data, _) = data_and_trailers(resp.body_mut()).await;
        assert!(data.is_empty());

        // A stream whose response has begun: at the deadline the rest is
        // cut and the client gets DEADLINE_EXCEEDED in the trailers.
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        let outbound = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|b| (Ok::<_, Infallible>(hyper::body::Frame::data(b)), rx))
        });
        let t = Instant::now();
        tx.send(framed(&note("first", 1))).await.expect("send");
        let mut resp = call_with_timeout(
            port,
            CHAT,
            "800m",
            BodyExt::boxed(http_body_util::StreamBody::new(outbound)),
        )
        .await;
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers().get("grpc-status").is_none(),
            "not trailers-only"
        );
        let (data, trailers) = data_and_trailers(resp.body_mut()).await;
        let took = t.elapsed();
        assert_eq!(&data[..], &framed(&note("echo first", 1))[..]);
        let trailers = trailers.expect("trailers");
        assert_eq!(trailers["grpc-status"], "4");
        assert_eq!(trailers["grpc-message"], "Deadline Exceeded");
        assert!(
            took >= Duration::from_millis(750) && took < STEP / 2,
            "cut after {took:?}"
        );
        drop(tx);
    });

    // The access log keeps the gateway's 504 for the trailers-only answer.
    let deadline = Instant::now() + STEP;
    while !env.cluster.node(1).log_text().lines().any(|line| {
        serde_json::from_str::<Value>(line).is_ok_and(|v| v["path"] == SLOW && v["status"] == 504)
    }) {
        assert!(Instant::now() < deadline, "access log line with 504");
        std::thread::sleep(Duration::from_millis(20));
    }
}

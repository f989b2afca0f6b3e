//! Helpers for the proxy tests: a real upstream HTTP server on 127.0.0.1:0,
//! states built through `State::apply`, and a proxy bound to port 0.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use raftgate::model::{Command, Entity, EntityKind, Proposal, State};
use raftgate::plugins::Body;
use raftgate::proxy::{Proxy, ProxySettings};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A running echo upstream. Paths:
/// `/sleep/<ms>` waits before answering; `/status/<code>` answers that
/// code; `/bytes/<n>` streams n bytes; anything else echoes the request as
/// JSON: `{"name","method","uri","headers":{…},"body_len"}`.
pub struct Upstream {
    pub addr: SocketAddr,
    pub name: String,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// An address that refuses connections, for as long as the socket
/// returned with it lives: bound but not listening, so no proxy or
/// upstream started by a test running alongside can be given its port
/// (as one could if it were bound, learned and closed).
pub fn dead_addr() -> (SocketAddr, tokio::net::TcpSocket) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().unwrap())
        .expect("bind port 0");
    (socket.local_addr().expect("bound"), socket)
}

pub async fn upstream(name: &str) -> Upstream {
    upstream_on(name, "127.0.0.1:0".parse().unwrap()).await
}

pub async fn upstream_on(name: &str, addr: SocketAddr) -> Upstream {
    let listener = TcpListener::bind(addr).await.expect("bind upstream");
    let addr = listener.local_addr().unwrap();
    let (tx, mut rx) = oneshot::channel::<()>();
    let n = name.to_string();
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let (stream, _) = tokio::select! {
                a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                _ = &mut rx => break,
            };
            let n = n.clone();
            conns.spawn(async move {
                let svc = service_fn(move |req| echo(n.clone(), req));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .await;
            });
        }
        // Dropping the set aborts every open connection: the upstream is gone.
        conns.abort_all();
    });
    Upstream {
        addr,
        name: name.to_string(),
        stop: Some(tx),
    }
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|n| match n {}).boxed()
}

async fn echo(name: String, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    if let Some(ms) = path.strip_prefix("/sleep/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let mut r = Response::new(full(name.clone()));
        *r.status_mut() = code.parse().unwrap_or(hyper::StatusCode::OK);
        return Ok(r);
    }
    if let Some(n) = path.strip_prefix("/bytes/") {
        let total: usize = n.parse().unwrap_or(0);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let stream = futures::stream::unfold(total, move |left| {
            let chunk = chunk.clone();
            async move {
                if left == 0 {
                    return None;
                }
                let n = left.min(chunk.len());
                Some((
                    Ok::<_, BoxError>(hyper::body::Frame::data(chunk.slice(..n))),
                    left - n,
                ))
            }
        });
        let body = http_body_util::StreamBody::new(stream).boxed();
        let mut r = Response::new(body);
        r.headers_mut()
            .insert("content-length", total.to_string().parse().unwrap());
        return Ok(r);
    }
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let mut headers = serde_json::Map::new();
    for (k, v) in req.headers() {
        headers.insert(
            k.as_str().to_string(),
            Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
        );
    }
    let mut body = req.into_body();
    let mut body_len = 0usize;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => body_len += f.data_ref().map_or(0, |d| d.len()),
            Err(_) => break,
        }
    }
    let out = json!({"name": name, "method": method, "uri": uri, "headers": headers, "body_len": body_len});
    let mut r = Response::new(full(out.to_string()));
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r.headers_mut().insert("x-upstream", name.parse().unwrap());
    Ok(r)
}

/// Builds a state by applying upserts of (collection, json) pairs.
pub fn state(entities: &[(&str, Value)]) -> State {
    let mut s = State::default();
    apply(&mut s, entities);
    s
}

pub fn apply(s: &mut State, entities: &[(&str, Value)]) {
    for (collection, value) in entities {
        let kind = EntityKind::from_collection(collection).expect("collection");
        let entity = Entity::from_json(kind, value.clone()).expect("entity json");
        s.apply(&Proposal {
            request_id: Uuid::new_v4(),
            command: Command::Upsert { entity },
        })
        .expect("apply");
    }
}

pub fn id(n: u128) -> String {
    Uuid::from_u128(n).to_string()
}

pub struct Running {
    pub http: SocketAddr,
    pub tls: Option<SocketAddr>,
    pub states: watch::Sender<Arc<State>>,
    stop: Option<oneshot::Sender<()>>,
    pub done: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    pub fn publish(&self, s: State) {
        self.states.send_replace(Arc::new(s));
    }

    /// Asks for shutdown and waits for `run` to return.
    pub async fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(d) = self.done.take() {
            d.await.expect("join").expect("run");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub fn settings() -> ProxySettings {
    ProxySettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls_listen: Some("127.0.0.1:0".parse().unwrap()),
        max_header_bytes: 16 * 1024,
        header_read_timeout: Duration::from_secs(5),
        max_connections: 1024,
        drain_grace: Duration::from_secs(5),
        trusted_ips: Default::default(),
        // More than one, so that every test runs on several workers.
        workers: 2,
    }
}

pub async fn start(s: State) -> Running {
    start_with(settings(), s).await
}

pub async fn start_with(settings: ProxySettings, s: State) -> Running {
    let (tx, rx) = watch::channel(Arc::new(s));
    let proxy = Proxy::bind(settings, rx).await.expect("bind proxy");
    let http = proxy.local_addr();
    let tls = proxy.tls_local_addr();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let done = tokio::spawn(proxy.run(async move {
        let _ = stop_rx.await;
    }));
    Running {
        http,
        tls,
        states: tx,
        stop: Some(stop_tx),
        done: Some(done),
    }
}

pub type Client =
    hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Body>;

pub fn client() -> Client {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new())
}

pub struct Answer {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// GET `path` on the proxy with optional extra headers (Host included).
pub async fn get(c: &Client, proxy: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    send(c, proxy, "GET", path, headers, Bytes::new()).await
}

pub async fn send(
    c: &Client,
    proxy: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Answer {
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://{proxy}{path}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = c
        .request(b.body(full(body)).unwrap())
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

/// A service at `addr` with one route; extra route fields merged in.
pub fn service_and_route(
    svc: u128,
    route: u128,
    addr: &str,
    route_extra: Value,
) -> Vec<(&'static str, Value)> {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let mut r = json!({"id": id(route), "service": {"id": id(svc)}, "created_at": route as i64});
    r.as_object_mut()
        .unwrap()
        .extend(route_extra.as_object().unwrap().clone());
    vec![
        (
            "services",
            json!({"id": id(svc), "host": host, "port": port.parse::<u16>().unwrap()}),
        ),
        ("routes", r),
    ]
}

/// Set by a test that wants to know a flag flipped somewhere.
pub fn flag() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}

pub fn is_set(f: &AtomicBool) -> bool {
    f.load(Ordering::SeqCst)
}

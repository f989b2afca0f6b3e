//! Talking to the upstream: the pooled keep-alive client (HTTP/1.1, or
//! HTTP/2 for `grpc`/`grpcs` services), the upstream request head (path
//! joining, Host, hop-by-hop removal, X-Forwarded-*), sending with retries
//! on connection failure while the request body is still untouched, the
//! service's timeouts, and passive health counting.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, Uri, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::balancer::HashInput;
use super::connector::Connector;
use super::health::{InFlight, Outcome, TargetHealth, Thresholds};
use super::pool::{Pool, PooledBody};
use super::snapshot::ServiceEntry;
use crate::plugins::{Body, BodyRejected, BoxError, Reply};

type H2Client = Client<Connector, RetryBody>;

/// How a service reaches its upstream: HTTP/1.1 through our pool, or
/// HTTP/2 (gRPC services) through hyper's pooled client.
#[derive(Clone)]
pub enum UpstreamClient {
    H1(Arc<Pool>),
    H2(Box<H2Client>),
}

/// One pooled client per (connect timeout, write timeout, tls_verify,
/// HTTP/2): the compiler keeps them. An HTTP/2 client (gRPC services)
/// speaks h2 with prior knowledge on plain TCP and asks for `h2` by ALPN
/// over TLS; its calls share one multiplexed connection per target.
pub fn client(
    connect_timeout: Duration,
    write_timeout: Duration,
    tls_verify: bool,
    http2: bool,
) -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(60)));
    let connector = Connector::new(http, tls_verify, write_timeout, http2);
    if !http2 {
        return UpstreamClient::H1(Pool::new(connector));
    }
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1024)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .http2_only(true);
    UpstreamClient::H2(Box::new(builder.build(connector)))
}

/// Why forwarding failed, each mapped to Kong's answer by the pipeline.
#[derive(Debug)]
pub enum ForwardError {
    /// No healthy target (503).
    NoPeer,
    /// Connect or read timeout (504).
    Timeout,
    /// Refused, reset, or not HTTP (502).
    Bad,
    /// A plugin's body wrapper aborted the request body.
    Rejected(Reply),
}

/// The upstream request head, built once and reused by retries.
pub struct UpstreamHead {
    pub method: Method,
    pub path_and_query: String,
    pub headers: HeaderMap,
}

/// The facts the forwarded headers carry, as header values ready to copy
/// (the connection's are formatted once per connection).
pub struct ClientFacts<'a> {
    /// The connection's peer (appended to `X-Forwarded-For`).
    pub ip: &'a HeaderValue,
    /// The client as resolved through trusted proxies (`X-Real-IP`).
    pub real_ip: &'a HeaderValue,
    /// The port the client connected to.
    pub local_port: &'a HeaderValue,
    pub scheme: &'static str,
    /// The request's Host (or authority), as sent.
    pub host: Option<&'a HeaderValue>,
    pub path: &'a str,
    /// What strip_path removed, for X-Forwarded-Prefix.
    pub prefix: Option<&'a str>,
    /// The connection's peer is one of `trusted_ips`: the
    /// `X-Forwarded-Proto/-Host/-Port/-Path/-Prefix` it sent pass through
    /// (Kong's rule); anyone else's are replaced or dropped.
    pub trusted_peer: bool,
}

/// Kong's path_handling v0: the service path, then what is left of the
/// request path (after strip_path), without doubling the slash between.
pub fn join_path(service_path: Option<&str>, rest: &str) -> String {
    let sp = service_path.filter(|p| !p.is_empty()).unwrap_or("/");
    if rest.is_empty() {
        return sp.to_string();
    }
    if sp == "/" {
        if rest.starts_with('/') {
            rest.to_string()
        } else {
            format!("/{rest}")
        }
    } else if sp.ends_with('/') && rest.starts_with('/') {
        format!("{sp}{}", &rest[1..])
    } else {
        format!("{sp}{rest}")
    }
}

const HOPS: usize = 8;
static HOP_BY_HOP: [HeaderName; HOPS] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_FORWARDED_PATH: HeaderName = HeaderName::from_static("x-forwarded-path");
const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");

/// Connection options that name no header of their own (or one removed
/// anyway): no need to look them up.
fn is_plain_option(token: &str) -> bool {
    ["keep-alive", "close", "upgrade", "te", "trailer"]
        .iter()
        .any(|o| token.eq_ignore_ascii_case(o))
}

/// Removes hop-by-hop headers (and those the Connection header names);
/// with `upgrade`, keeps `Upgrade` and sends `Connection: upgrade`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Most messages carry none: look once over the few names there are
    // rather than hash eight names to remove.
    let mut present = [false; HOPS];
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present[i] = true;
        }
    }
    if !present.contains(&true) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty() && !is_plain_option(t))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    let upgrade_value = if upgrade {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    let hop = HOP_BY_HOP.iter().zip(present).filter(|(_, p)| *p);
    for name in named.iter().chain(hop.map(|(h, _)| h)) {
        headers.remove(name);
    }
    if let Some(v) = upgrade_value {
        headers.insert(header::UPGRADE, v);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

fn set_or_remove(headers: &mut HeaderMap, name: HeaderName, value: Option<HeaderValue>) {
    match value {
        Some(v) => {
            headers.insert(name, v);
        }
        None => {
            headers.remove(name);
        }
    }
}

/// The headers the upstream receives.
pub fn upstream_headers(
    mut headers: HeaderMap,
    facts: &ClientFacts<'_>,
    upstream_host: HeaderValue,
    upgrade: bool,
) -> HeaderMap {
    strip_hop_by_hop(&mut headers, upgrade);
    // Room for what is added below, in one growth.
    headers.reserve(8);
    let xff = match headers.get(X_FORWARDED_FOR).map(HeaderValue::as_bytes) {
        Some(prev) => {
            let mut v = Vec::with_capacity(prev.len() + 2 + facts.ip.len());
            v.extend_from_slice(prev);
            v.extend_from_slice(b", ");
            v.extend_from_slice(facts.ip.as_bytes());
            HeaderValue::from_maybe_shared(Bytes::from(v)).ok()
        }
        None => Some(facts.ip.clone()),
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR, v);
    }
    headers.insert(X_REAL_IP, facts.real_ip.clone());
    // A trusted proxy in front of us knows these better than we do; from
    // anyone else they are replaced, or dropped when we have no value.
    let keep =
        |headers: &HeaderMap, name: &HeaderName| facts.trusted_peer && headers.contains_key(name);
    if !keep(&headers, &X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(facts.scheme));
    }
    if !keep(&headers, &X_FORWARDED_HOST) {
        let value = facts.host.and_then(|h| match h.to_str() {
            Ok(s) if strip_port(s).len() < s.len() => HeaderValue::from_str(strip_port(s)).ok(),
            _ => Some(h.clone()),
        });
        set_or_remove(&mut headers, X_FORWARDED_HOST, value);
    }
    if !keep(&headers, &X_FORWARDED_PORT) {
        headers.insert(X_FORWARDED_PORT, facts.local_port.clone());
    }
    if !keep(&headers, &X_FORWARDED_PATH) {
        set_or_remove(
            &mut headers,
            X_FORWARDED_PATH,
            HeaderValue::from_str(facts.path).ok(),
        );
    }
    if !keep(&headers, &X_FORWARDED_PREFIX) {
        let value = facts.prefix.and_then(|p| HeaderValue::from_str(p).ok());
        set_or_remove(&mut headers, X_FORWARDED_PREFIX, value);
    }
    headers.insert(header::HOST, upstream_host);
    headers
}

/// Sends the request, picking a target per attempt; retries (up to the
/// service's `retries`) only failures to connect, and only while the
/// request body has not started to flow. For callers that keep the head
/// (aggregate routes): it is copied into the request.
pub async fn send(
    entry: &ServiceEntry,
    head: &UpstreamHead,
    body: Body,
    hash: &HashInput<'_>,
) -> Result<(Response<Upstream>, Option<InFlight>), ForwardError> {
    let Ok(uri) = Uri::try_from(head.path_and_query.as_str()) else {
        return Err(ForwardError::Bad);
    };
    let mut req = Request::new(body);
    *req.method_mut() = head.method.clone();
    *req.uri_mut() = uri;
    *req.headers_mut() = head.headers.clone();
    send_request(entry, req, hash.consumer, hash.ip).await
}

/// Where one attempt goes: a target of the balancer, or the service's host.
/// `None`: no healthy target.
type Picked<'e> = Option<(&'e str, Option<&'e Arc<TargetHealth>>)>;

fn pick<'e>(
    entry: &'e ServiceEntry,
    consumer: Option<uuid::Uuid>,
    ip: Option<std::net::IpAddr>,
    headers: &HeaderMap,
) -> Picked<'e> {
    let hash = HashInput {
        consumer,
        ip,
        headers,
    };
    match &entry.balancer {
        Some(b) => b
            .pick(&hash)
            .map(|i| (b.targets[i].addr.as_str(), Some(&b.targets[i].health))),
        None => Some((&entry.static_addr, None)),
    }
}

/// Passive health counting for one attempt on one target.
struct Passive<'e> {
    health: Option<&'e Arc<TargetHealth>>,
    thresholds: Option<Thresholds>,
    unhealthy_statuses: &'e [u16],
}

impl Passive<'_> {
    fn new<'e>(entry: &'e ServiceEntry, health: Option<&'e Arc<TargetHealth>>) -> Passive<'e> {
        let passive = entry.balancer.as_ref().map(|b| &b.healthchecks.passive);
        Passive {
            health,
            thresholds: passive.map(|p| Thresholds::new(&p.healthy, &p.unhealthy)),
            unhealthy_statuses: passive.map_or(&[], |p| &p.unhealthy.http_statuses),
        }
    }

    fn record(&self, o: Outcome) {
        if let (Some(h), Some(t)) = (self.health, self.thresholds.as_ref()) {
            h.record(o, t);
        }
    }

    fn answered(&self, status: http::StatusCode) {
        if self.health.is_some() {
            if self.unhealthy_statuses.contains(&status.as_u16()) {
                self.record(Outcome::HttpFailure);
            } else {
                self.record(Outcome::Success);
            }
        }
    }

    /// Counts a failure; whether it was a timeout.
    fn failed(&self, e: &(dyn std::error::Error + 'static)) -> ForwardError {
        if caused_by_timeout(e) {
            self.record(Outcome::Timeout);
            ForwardError::Timeout
        } else {
            self.record(Outcome::TcpFailure);
            ForwardError::Bad
        }
    }
}

/// Sends `req` (origin-form URI, upstream headers set), picking a target
/// per attempt; retries (up to the service's `retries`) only requests
/// that did not reach the upstream: a failed connect, or a connection lost
/// before the request was written. The request travels whole from one
/// attempt to the next; nothing is copied.
pub async fn send_request(
    entry: &ServiceEntry,
    req: Request<Body>,
    consumer: Option<uuid::Uuid>,
    ip: Option<std::net::IpAddr>,
) -> Result<(Response<Upstream>, Option<InFlight>), ForwardError> {
    let pool = match &entry.client {
        UpstreamClient::H1(pool) => pool,
        UpstreamClient::H2(client) => return send_h2(entry, client, req, consumer, ip).await,
    };
    let read_timeout = Duration::from_millis(entry.service.read_timeout.max(1));
    let https = entry.service.protocol == "https";
    let mut req = req;
    let mut last = ForwardError::Bad;
    for _attempt in 0..=entry.service.retries {
        let (addr, health) =
            pick(entry, consumer, ip, req.headers()).ok_or(ForwardError::NoPeer)?;
        let passive = Passive::new(entry, health);
        let in_flight = health.map(|h| InFlight::new(h.clone()));
        match tokio::time::timeout(read_timeout, pool.send(https, addr, req)).await {
            Ok(Ok(resp)) => {
                passive.answered(resp.status());
                return Ok((resp.map(Upstream::H1), in_flight));
            }
            Ok(Err(e)) => {
                if let Some(reply) = rejected_by_plugin(&*e.error) {
                    return Err(ForwardError::Rejected(reply));
                }
                last = passive.failed(&*e.error);
                match e.unsent {
                    Some(r) if e.connect => req = r,
                    _ => return Err(last),
                }
                tracing::debug!(%addr, error = %e.error, "upstream connect failed; retrying");
            }
            Err(_) => {
                passive.record(Outcome::Timeout);
                return Err(ForwardError::Timeout);
            }
        }
    }
    Err(last)
}

/// HTTP/2 (gRPC) through hyper's pooled client: the head is copied per
/// attempt, the body waits in a shared slot until first polled.
async fn send_h2(
    entry: &ServiceEntry,
    client: &H2Client,
    req: Request<Body>,
    consumer: Option<uuid::Uuid>,
    ip: Option<std::net::IpAddr>,
) -> Result<(Response<Upstream>, Option<InFlight>), ForwardError> {
    let (head, body) = req.into_parts();
    let slot = Arc::new(Mutex::new(Some(body)));
    let read_timeout = Duration::from_millis(entry.service.read_timeout.max(1));
    let scheme = if entry.service.protocol == "grpcs" {
        "https"
    } else {
        "http"
    };
    let path_and_query = head.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut last = ForwardError::Bad;
    for _attempt in 0..=entry.service.retries {
        let (addr, health) =
            pick(entry, consumer, ip, &head.headers).ok_or(ForwardError::NoPeer)?;
        let Ok(uri) = format!("{scheme}://{addr}{path_and_query}").parse::<Uri>() else {
            return Err(ForwardError::Bad);
        };
        let mut req = Request::new(RetryBody {
            slot: slot.clone(),
            body: None,
        });
        *req.method_mut() = head.method.clone();
        *req.uri_mut() = uri;
        *req.headers_mut() = head.headers.clone();
        *req.version_mut() = Version::HTTP_2;
        // :authority (the target's address) says where the call goes;
        // a Host beside it that differs is forbidden (RFC 9113 8.3.1),
        // and gRPC servers drop it anyway (gRFC A41). gRPC servers may
        // check `te: trailers`, which the hop-by-hop rules removed.
        req.headers_mut().remove(header::HOST);
        req.headers_mut()
            .insert(header::TE, HeaderValue::from_static("trailers"));
        let passive = Passive::new(entry, health);
        let in_flight = health.map(|h| InFlight::new(h.clone()));
        match tokio::time::timeout(read_timeout, client.request(req)).await {
            Ok(Ok(resp)) => {
                passive.answered(resp.status());
                return Ok((resp.map(Upstream::H2), in_flight));
            }
            Ok(Err(e)) => {
                if let Some(reply) = rejected_by_plugin(&e) {
                    return Err(ForwardError::Rejected(reply));
                }
                last = passive.failed(&e);
                let body_untouched = slot.lock().map(|s| s.is_some()).unwrap_or(false);
                if !(e.is_connect() && body_untouched) {
                    return Err(last);
                }
                tracing::debug!(%addr, error = %e, "upstream connect failed; retrying");
            }
            Err(_) => {
                passive.record(Outcome::Timeout);
                return Err(ForwardError::Timeout);
            }
        }
    }
    Err(last)
}

/// An upstream response body: from the HTTP/1.1 pool or the HTTP/2 client.
pub enum Upstream {
    H1(PooledBody),
    H2(Incoming),
}

impl HttpBody for Upstream {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Upstream::H1(b) => Pin::new(b).poll_frame(cx),
            Upstream::H2(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Upstream::H1(b) => b.is_end_stream(),
            Upstream::H2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Upstream::H1(b) => b.size_hint(),
            Upstream::H2(b) => b.size_hint(),
        }
    }
}

fn sources<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| e.source())
}

fn rejected_by_plugin(e: &(dyn std::error::Error + 'static)) -> Option<Reply> {
    sources(e).find_map(|s| s.downcast_ref::<BodyRejected>().map(|r| r.0.clone()))
}

fn caused_by_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    sources(e).any(|s| {
        s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    })
}

/// The request body, parked in a shared slot until the client first polls
/// it: a connection that failed before that leaves it for the next try.
pub struct RetryBody {
    slot: Arc<Mutex<Option<Body>>>,
    body: Option<Body>,
}

impl HttpBody for RetryBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.body.is_none() {
            let taken = self.slot.lock().ok().and_then(|mut s| s.take());
            match taken {
                Some(b) => self.body = Some(b),
                None => return Poll::Ready(None),
            }
        }
        match self.body.as_mut() {
            Some(b) => Pin::new(b).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.body {
            Some(b) => b.is_end_stream(),
            None => self
                .slot
                .lock()
                .map(|s| s.as_ref().is_none_or(|b| b.is_end_stream()))
                .unwrap_or(true),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.body {
            Some(b) => b.size_hint(),
            None => self
                .slot
                .lock()
                .ok()
                .and_then(|s| s.as_ref().map(|b| b.size_hint()))
                .unwrap_or_else(|| SizeHint::with_exact(0)),
        }
    }
}

/// The upstream's response body, holding the target's in-flight count
/// until the body is done, and enforcing the service's read timeout
/// between two reads (the timer is armed only while waiting).
pub struct Guarded {
    inner: Upstream,
    _in_flight: Option<InFlight>,
    read_timeout: Duration,
    waiting: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Guarded {
    pub fn new(inner: Upstream, in_flight: Option<InFlight>, read_timeout: Duration) -> Guarded {
        Guarded {
            inner,
            _in_flight: in_flight,
            read_timeout,
            waiting: None,
        }
    }
}

/// The upstream sent nothing for longer than the read timeout.
#[derive(Debug)]
pub struct ReadTimeout;

impl std::fmt::Display for ReadTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("upstream read timeout")
    }
}

impl std::error::Error for ReadTimeout {}

impl HttpBody for Guarded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                this.waiting = None;
                Poll::Ready(r.map(|f| f.map_err(|e| Box::new(e) as BoxError)))
            }
            Poll::Pending => {
                let timeout = this.read_timeout;
                let timer = this
                    .waiting
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(ReadTimeout)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_joining_v0() {
        // Kong's path_handling v0 table (service path, remaining path).
        assert_eq!(join_path(Some("/s"), "req"), "/sreq");
        assert_eq!(join_path(Some("/s"), "/req"), "/s/req");
        assert_eq!(join_path(Some("/s/"), "/req"), "/s/req");
        assert_eq!(join_path(Some("/s"), ""), "/s");
        assert_eq!(join_path(None, ""), "/");
        assert_eq!(join_path(None, "foo"), "/foo");
        assert_eq!(join_path(None, "/a/b"), "/a/b");
        assert_eq!(join_path(Some("/s"), "/fv0/req"), "/s/fv0/req");
    }

    #[test]
    fn hop_by_hop_headers_go() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }
}

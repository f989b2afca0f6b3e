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
use super::h1::{Upgraded, UpstreamBody};
use super::h1parse::RawFields;
use super::health::{InFlight, Outcome, TargetHealth, Thresholds};
use super::pool::Pool;
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

/// The index in `HOP_BY_HOP` of a hop-by-hop header's name. By its
/// text, which for the standard names is a table lookup: cheaper than
/// comparing each name against the eight.
fn hop_index(name: &HeaderName) -> Option<usize> {
    match name.as_str() {
        "connection" => Some(0),
        "keep-alive" => Some(1),
        "proxy-connection" => Some(2),
        "te" => Some(3),
        "trailer" => Some(4),
        "transfer-encoding" => Some(5),
        "upgrade" => Some(6),
        "proxy-authenticate" => Some(7),
        _ => None,
    }
}

/// Whether a field's name, in any case, is one of `HOP_BY_HOP`.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    let is = |known: &HeaderName| name.eq_ignore_ascii_case(known.as_str().as_bytes());
    match name.len() {
        2 | 7 | 10 | 16 | 17 | 18 => HOP_BY_HOP.iter().any(is),
        _ => false,
    }
}

/// Removes hop-by-hop headers (and those the Connection header names);
/// with `upgrade`, keeps `Upgrade` and sends `Connection: upgrade`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Most messages carry none or only `Connection`: look once over the
    // few names there are rather than hash eight names to remove.
    let mut present = [false; HOPS];
    for name in headers.keys() {
        if let Some(i) = hop_index(name) {
            present[i] = true;
        }
    }
    if !present.contains(&true) {
        return;
    }
    let named: Vec<HeaderName> = if present[0] {
        headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty() && !is_plain_option(t))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect()
    } else {
        Vec::new()
    };
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
    // By bytes: `rsplit_once(':')` costs a searcher set up per call.
    match host.bytes().rposition(|b| b == b':') {
        Some(i) if host.as_bytes()[i + 1..].iter().all(u8::is_ascii_digit) => &host[..i],
        _ => host,
    }
}

/// The headers the gateway sets on the upstream request (Host and the
/// `X-Forwarded-*` family), replacing those of the same names the client
/// sent. Kept apart from the client's headers: the HTTP/1.1 client writes
/// them straight into the request head (no map insertion, no copy), the
/// HTTP/2 client and aggregate routes `apply` them to the map.
pub struct Forwarded<'a> {
    facts: ClientFacts<'a>,
    /// The client's first X-Forwarded-For, which the peer's address follows.
    prior_xff: Option<HeaderValue>,
    upstream_host: HeaderValue,
    /// The client's host without its port (X-Forwarded-Host).
    host: Option<&'a [u8]>,
    /// Whether the path and the prefix can be header values.
    path_ok: bool,
    prefix_ok: bool,
    /// Bit i: the client's `FORWARDED[i]` passes untouched (a trusted
    /// peer's X-Forwarded-Proto/-Host/-Port/-Path/-Prefix, Kong's rule).
    kept: u8,
}

/// The names `Forwarded` sets, in the order it writes them.
static FORWARDED: [HeaderName; 8] = [
    header::HOST,
    X_FORWARDED_FOR,
    X_REAL_IP,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    X_FORWARDED_PORT,
    X_FORWARDED_PATH,
    X_FORWARDED_PREFIX,
];

/// What `HeaderValue` accepts: visible ASCII, obs-text, space and tab.
fn valid_value(v: &[u8]) -> bool {
    v.iter().all(|&b| (b >= 32 && b != 127) || b == b'\t')
}

impl<'a> Forwarded<'a> {
    /// `client` is the client's request headers, hop-by-hop ones removed.
    pub fn new(client: &HeaderMap, facts: ClientFacts<'a>, upstream_host: HeaderValue) -> Self {
        let host = facts.host.map(|h| {
            h.to_str()
                .map_or(h.as_bytes(), |s| strip_port(s).as_bytes())
        });
        let mut kept = 0;
        if facts.trusted_peer {
            for (i, name) in FORWARDED.iter().enumerate().skip(3) {
                if client.contains_key(name) {
                    kept |= 1 << i;
                }
            }
        }
        Forwarded {
            kept,
            prior_xff: client.get(X_FORWARDED_FOR).cloned(),
            upstream_host,
            host,
            path_ok: valid_value(facts.path.as_bytes()),
            prefix_ok: facts.prefix.is_some_and(|p| valid_value(p.as_bytes())),
            facts,
        }
    }

    /// Each header set: its index in `FORWARDED` and its value in pieces.
    /// Left out: one the gateway has no value for (no Host, a path that
    /// cannot be a header value), and a trusted peer's that passes.
    pub fn each(&self, mut f: impl FnMut(usize, &[&[u8]])) {
        let mut emit = |i: usize, pieces: &[&[u8]]| {
            if self.kept & (1 << i) == 0 {
                f(i, pieces);
            }
        };
        let facts = &self.facts;
        emit(0, &[self.upstream_host.as_bytes()]);
        match &self.prior_xff {
            Some(prior) => emit(1, &[prior.as_bytes(), b", ", facts.ip.as_bytes()]),
            None => emit(1, &[facts.ip.as_bytes()]),
        }
        emit(2, &[facts.real_ip.as_bytes()]);
        emit(3, &[facts.scheme.as_bytes()]);
        if let Some(host) = self.host {
            emit(4, &[host]);
        }
        emit(5, &[facts.local_port.as_bytes()]);
        if self.path_ok {
            emit(6, &[facts.path.as_bytes()]);
        }
        if let (Some(p), true) = (facts.prefix, self.prefix_ok) {
            emit(7, &[p.as_bytes()]);
        }
    }

    /// Which of the client's headers do not pass (replaced, or dropped
    /// when the gateway has no value): bit i for `FORWARDED[i]`.
    pub fn replaced(&self) -> u8 {
        !self.kept
    }

    /// Whether a client's header of this name does not pass (`mask` from
    /// `replaced`).
    pub fn replaces(mask: u8, name: &HeaderName) -> bool {
        FORWARDED
            .iter()
            .enumerate()
            .any(|(i, n)| mask & (1 << i) != 0 && n == name)
    }

    /// Writes each header as `name: value\r\n`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        self.each(|i, pieces| {
            out.extend_from_slice(FORWARDED[i].as_str().as_bytes());
            out.extend_from_slice(b": ");
            for p in pieces {
                out.extend_from_slice(p);
            }
            out.extend_from_slice(b"\r\n");
        });
    }

    /// Sets the headers in `headers` (and removes the client's that do
    /// not pass and get no value).
    pub fn apply(&self, headers: &mut HeaderMap) {
        let mut written = 0u8;
        self.each(|i, _| written |= 1 << i);
        for (i, name) in FORWARDED.iter().enumerate() {
            if self.replaced() & !written & (1 << i) != 0 {
                headers.remove(name);
            }
        }
        headers.reserve(FORWARDED.len());
        self.each(|i, pieces| {
            let value = match pieces {
                [one] => HeaderValue::from_bytes(one),
                _ => HeaderValue::from_maybe_shared(Bytes::from(pieces.concat())),
            };
            if let Ok(v) = value {
                headers.insert(FORWARDED[i].clone(), v);
            }
        });
    }
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
    send_request(entry, req, None, hash.consumer, hash.ip, false).await
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

/// Sends `req` (origin-form URI, the client's headers less hop-by-hop
/// ones) with the `forwarded` headers, picking a target per attempt
/// (hashing on the client's headers); retries (up to the service's `retries`) only requests
/// that did not reach the upstream: a failed connect, or a connection lost
/// before the request was written. The request travels whole from one
/// attempt to the next; nothing is copied. `pass_fields`: an HTTP/1.1
/// upstream's response fields may be left out of its map
/// (`Upstream::take_fields`).
pub async fn send_request(
    entry: &ServiceEntry,
    mut req: Request<Body>,
    forwarded: Option<&Forwarded<'_>>,
    consumer: Option<uuid::Uuid>,
    ip: Option<std::net::IpAddr>,
    pass_fields: bool,
) -> Result<(Response<Upstream>, Option<InFlight>), ForwardError> {
    let pool = match &entry.client {
        UpstreamClient::H1(pool) => pool,
        UpstreamClient::H2(client) => {
            if let Some(f) = forwarded {
                f.apply(req.headers_mut());
            }
            return send_h2(entry, client, req, consumer, ip).await;
        }
    };
    let read_timeout = Duration::from_millis(entry.service.read_timeout.max(1));
    let https = entry.service.protocol == "https";
    let mut last = ForwardError::Bad;
    for _attempt in 0..=entry.service.retries {
        let (addr, health) =
            pick(entry, consumer, ip, req.headers()).ok_or(ForwardError::NoPeer)?;
        let passive = Passive::new(entry, health);
        let in_flight = health.map(|h| InFlight::new(h.clone()));
        match pool
            .send(https, addr, req, read_timeout, forwarded, pass_fields)
            .await
        {
            Ok(resp) => {
                passive.answered(resp.status());
                return Ok((resp.map(Upstream::H1), in_flight));
            }
            Err(e) => {
                if let Some(reply) = rejected_by_plugin(&*e.error) {
                    return Err(ForwardError::Rejected(reply));
                }
                // A timeout counts as one and answers 504.
                last = passive.failed(&*e.error);
                match e.unsent {
                    Some(r) if e.connect => req = r,
                    _ => return Err(last),
                }
                tracing::debug!(%addr, error = %e.error, "upstream connect failed; retrying");
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
/// Not boxed per variant: the pipeline boxes the whole body once anyway.
#[allow(clippy::large_enum_variant)]
pub enum Upstream {
    H1(UpstreamBody),
    H2(Incoming),
}

impl Upstream {
    /// The response head's fields, when they were left out of its map.
    pub fn take_fields(&mut self) -> Option<RawFields> {
        match self {
            Upstream::H1(b) => b.take_fields(),
            Upstream::H2(_) => None,
        }
    }

    /// After a 101 from an HTTP/1.1 upstream: its connection.
    pub fn take_upgrade(&mut self) -> Option<Upgraded> {
        match self {
            Upstream::H1(b) => b.take_upgrade(),
            Upstream::H2(_) => None,
        }
    }
}

impl HttpBody for Upstream {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Upstream::H1(b) => Pin::new(b).poll_frame(cx),
            Upstream::H2(b) => Pin::new(b)
                .poll_frame(cx)
                .map_err(|e| Box::new(e) as BoxError),
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
                Poll::Ready(r)
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
    fn forwarded_headers_written_or_applied_alike() {
        let ip = HeaderValue::from_static("10.0.0.1");
        let port = HeaderValue::from_static("8000");
        let host = HeaderValue::from_static("example.com:8000");
        let mut client = HeaderMap::new();
        client.insert("x-forwarded-for", "1.2.3.4".parse().unwrap());
        client.insert("x-forwarded-path", "/spoofed".parse().unwrap());
        client.insert("host", "example.com:8000".parse().unwrap());
        client.insert("x-keep", "1".parse().unwrap());
        let facts = |path, trusted_peer| ClientFacts {
            ip: &ip,
            real_ip: &ip,
            local_port: &port,
            scheme: "http",
            host: Some(&host),
            path,
            prefix: None,
            trusted_peer,
        };
        let f = Forwarded::new(
            &client,
            facts("/a", false),
            HeaderValue::from_static("up:80"),
        );
        let mut applied = client.clone();
        f.apply(&mut applied);
        assert_eq!(applied["host"], "up:80");
        assert_eq!(applied["x-forwarded-for"], "1.2.3.4, 10.0.0.1");
        assert_eq!(applied["x-forwarded-host"], "example.com");
        assert_eq!(applied["x-forwarded-path"], "/a");
        assert_eq!(applied["x-keep"], "1");
        // Written: the client's replaced headers skipped, ours after.
        let mask = f.replaced();
        let mut out = Vec::new();
        for (name, value) in &client {
            if !Forwarded::replaces(mask, name) {
                out.extend_from_slice(format!("{}: ", name).as_bytes());
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        f.write_to(&mut out);
        let written = String::from_utf8(out).unwrap();
        for (name, value) in &applied {
            let line = format!("{}: {}\r\n", name, value.to_str().unwrap());
            assert!(written.contains(&line), "{line} in {written}");
        }
        assert_eq!(written.lines().count(), applied.len());
        // A path that cannot be a header value is not sent, nor is the
        // untrusted client's header of that name.
        let f = Forwarded::new(
            &client,
            facts("/a\r\nx: y", false),
            HeaderValue::from_static("up"),
        );
        assert!(Forwarded::replaces(f.replaced(), &X_FORWARDED_PATH));
        let mut out = Vec::new();
        f.write_to(&mut out);
        let out = String::from_utf8_lossy(&out).into_owned();
        assert!(
            !out.contains("x: y") && !out.contains("x-forwarded-path"),
            "{out}"
        );
        let mut applied = client.clone();
        f.apply(&mut applied);
        assert!(!applied.contains_key("x-forwarded-path"));
        // A trusted peer's X-Forwarded-Path passes; its X-Forwarded-For
        // is still appended to.
        let f = Forwarded::new(&client, facts("/a", true), HeaderValue::from_static("up"));
        assert!(!Forwarded::replaces(f.replaced(), &X_FORWARDED_PATH));
        let mut applied = client.clone();
        f.apply(&mut applied);
        assert_eq!(applied["x-forwarded-path"], "/spoofed");
        assert_eq!(applied["x-forwarded-for"], "1.2.3.4, 10.0.0.1");
    }

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("example.com:8000"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("example.com:"), "example.com");
        assert_eq!(strip_port("[::1]:8000"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("a:b"), "a:b");
    }

    #[test]
    fn hop_index_names_the_hop_by_hop_headers() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_index(name), Some(i), "{name}");
        }
        assert_eq!(hop_index(&header::CONTENT_LENGTH), None);
        assert_eq!(hop_index(&HeaderName::from_static("x-connection")), None);
        for name in &HOP_BY_HOP {
            assert!(is_hop_by_hop(name.as_str().as_bytes()), "{name}");
            assert!(is_hop_by_hop(name.as_str().to_uppercase().as_bytes()));
        }
        assert!(!is_hop_by_hop(b"content-length"));
        assert!(!is_hop_by_hop(b"x-connection"));
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

//! Talking to the upstream: the pooled keep-alive client (HTTP/1.1, or
//! HTTP/2 for `grpc`/`grpcs` services), the upstream request head (path
//! joining, Host, hop-by-hop removal, X-Forwarded-*), sending with retries
//! on connection failure while the request body is still untouched, the
//! service's timeouts, and passive health counting.

use std::future::Future;
use std::net::SocketAddr;
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
use super::snapshot::ServiceEntry;
use crate::plugins::{Body, BodyRejected, BoxError, Reply};

pub type UpstreamClient = Client<Connector, RetryBody>;

/// One pooled client per (connect timeout, write timeout, tls_verify,
/// HTTP/2): the connector owns them. An HTTP/2 client (gRPC services)
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
    let mut builder = Client::builder(TokioExecutor::new());
    builder
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1024)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .http2_only(http2);
    builder.build(Connector::new(http, tls_verify, write_timeout, http2))
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

/// The connection-level facts the forwarded headers carry.
pub struct ClientFacts<'a> {
    /// The connection's peer (appended to `X-Forwarded-For`).
    pub remote: SocketAddr,
    /// The client as resolved through trusted proxies (`X-Real-IP`).
    pub client_ip: std::net::IpAddr,
    pub local_port: u16,
    pub scheme: &'static str,
    /// The request's Host (or authority), as sent.
    pub host: Option<&'a str>,
    pub path: &'a str,
    /// What strip_path removed, for X-Forwarded-Prefix.
    pub prefix: Option<&'a str>,
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

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
];

/// Removes hop-by-hop headers (and those the Connection header names);
/// with `upgrade`, keeps `Upgrade` and sends `Connection: upgrade`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    let upgrade_value = if upgrade {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
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

/// The headers the upstream receives.
pub fn upstream_headers(
    mut headers: HeaderMap,
    facts: &ClientFacts<'_>,
    upstream_host: &str,
    upgrade: bool,
) -> HeaderMap {
    strip_hop_by_hop(&mut headers, upgrade);
    let ip = facts.remote.ip().to_string();
    let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {ip}"),
        None => ip.clone(),
    };
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    set("x-forwarded-for", &xff);
    set("x-real-ip", &facts.client_ip.to_string());
    set("x-forwarded-proto", facts.scheme);
    if let Some(h) = facts.host {
        set("x-forwarded-host", strip_port(h));
    }
    set("x-forwarded-port", &facts.local_port.to_string());
    set("x-forwarded-path", facts.path);
    if let Some(p) = facts.prefix {
        set("x-forwarded-prefix", p);
    }
    set("host", upstream_host);
    headers
}

/// Sends the request, picking a target per attempt; retries (up to the
/// service's `retries`) only failures to connect, and only while the
/// request body has not started to flow.
pub async fn send(
    entry: &ServiceEntry,
    head: &UpstreamHead,
    body: Body,
    hash: &HashInput<'_>,
) -> Result<(Response<Incoming>, Option<InFlight>), ForwardError> {
    let slot = Arc::new(Mutex::new(Some(body)));
    let passive = entry.balancer.as_ref().map(|b| {
        Thresholds::new(
            &b.healthchecks.passive.healthy,
            &b.healthchecks.passive.unhealthy,
        )
    });
    let unhealthy_statuses = entry
        .balancer
        .as_ref()
        .map(|b| b.healthchecks.passive.unhealthy.http_statuses.clone())
        .unwrap_or_default();
    let read_timeout = Duration::from_millis(entry.service.read_timeout.max(1));
    let http2 = super::grpc::is_h2_service(&entry.service.protocol);
    let mut last = ForwardError::Bad;
    for _attempt in 0..=entry.service.retries {
        let (addr, health): (&str, Option<&Arc<TargetHealth>>) = match &entry.balancer {
            Some(b) => match b.pick(hash) {
                Some(i) => (&b.targets[i].addr, Some(&b.targets[i].health)),
                None => return Err(ForwardError::NoPeer),
            },
            None => (&entry.static_addr, None),
        };
        let scheme = if matches!(entry.service.protocol.as_str(), "https" | "grpcs") {
            "https"
        } else {
            "http"
        };
        let Ok(uri) = format!("{scheme}://{addr}{}", head.path_and_query).parse::<Uri>() else {
            return Err(ForwardError::Bad);
        };
        let mut req = Request::new(RetryBody {
            slot: slot.clone(),
            body: None,
        });
        *req.method_mut() = head.method.clone();
        *req.uri_mut() = uri;
        *req.headers_mut() = head.headers.clone();
        if http2 {
            *req.version_mut() = Version::HTTP_2;
            // :authority (the target's address) says where the call goes;
            // a Host beside it that differs is forbidden (RFC 9113 8.3.1),
            // and gRPC servers drop it anyway (gRFC A41). gRPC servers may
            // check `te: trailers`, which the hop-by-hop rules removed.
            req.headers_mut().remove(header::HOST);
            req.headers_mut()
                .insert(header::TE, HeaderValue::from_static("trailers"));
        } else {
            *req.version_mut() = Version::HTTP_11;
        }
        let in_flight = health.map(|h| InFlight::new(h.clone()));
        let record = |o: Outcome| {
            if let (Some(h), Some(t)) = (health, passive.as_ref()) {
                h.record(o, t);
            }
        };
        match tokio::time::timeout(read_timeout, entry.client.request(req)).await {
            Ok(Ok(resp)) => {
                if unhealthy_statuses.contains(&resp.status().as_u16()) {
                    record(Outcome::HttpFailure);
                } else {
                    record(Outcome::Success);
                }
                return Ok((resp, in_flight));
            }
            Ok(Err(e)) => {
                if let Some(reply) = rejected_by_plugin(&e) {
                    return Err(ForwardError::Rejected(reply));
                }
                let timed_out = caused_by_timeout(&e);
                record(if timed_out {
                    Outcome::Timeout
                } else {
                    Outcome::TcpFailure
                });
                last = if timed_out {
                    ForwardError::Timeout
                } else {
                    ForwardError::Bad
                };
                let body_untouched = slot.lock().map(|s| s.is_some()).unwrap_or(false);
                if !(e.is_connect() && body_untouched) {
                    return Err(last);
                }
                tracing::debug!(%addr, error = %e, "upstream connect failed; retrying");
            }
            Err(_) => {
                record(Outcome::Timeout);
                return Err(ForwardError::Timeout);
            }
        }
    }
    Err(last)
}

fn sources<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| e.source())
}

fn rejected_by_plugin(e: &hyper_util::client::legacy::Error) -> Option<Reply> {
    sources(e).find_map(|s| s.downcast_ref::<BodyRejected>().map(|r| r.0.clone()))
}

fn caused_by_timeout(e: &hyper_util::client::legacy::Error) -> bool {
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
    inner: Incoming,
    _in_flight: Option<InFlight>,
    read_timeout: Duration,
    waiting: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Guarded {
    pub fn new(inner: Incoming, in_flight: Option<InFlight>, read_timeout: Duration) -> Guarded {
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

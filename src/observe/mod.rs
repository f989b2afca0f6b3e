//! What operators see: the status listener (`/status`, `/status/ready`,
//! `/status/live`, `/metrics`), metrics (`metrics`), the structured access
//! log (`access_log`), and what the data plane reports to them: connection
//! counters (`ServerCounters`) and per-request facts (`RequestFacts`,
//! `Observed`).

pub mod access_log;
pub mod metrics;
pub mod status;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use access_log::{AccessLog, Entry, Latencies};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// Kong's `/status` `server` counters, kept by the proxy's listener.
#[derive(Debug, Default)]
pub struct ServerCounters {
    pub accepted: AtomicU64,
    pub handled: AtomicU64,
    pub active: AtomicI64,
    /// Connections accepted whose first request (or TLS handshake) is
    /// still being read.
    pub reading: AtomicI64,
    /// Requests in flight (from their head to the end of the response).
    pub writing: AtomicI64,
    pub total_requests: AtomicU64,
}

impl ServerCounters {
    /// `/status`'s `server` object.
    pub fn to_json(&self) -> serde_json::Value {
        let active = self.active.load(Ordering::Relaxed).max(0);
        let reading = self.reading.load(Ordering::Relaxed).max(0);
        let writing = self.writing.load(Ordering::Relaxed).max(0);
        serde_json::json!({
            "connections_active": active,
            "connections_reading": reading,
            "connections_writing": writing,
            "connections_waiting": (active - reading - writing).max(0),
            "connections_accepted": self.accepted.load(Ordering::Relaxed),
            "connections_handled": self.handled.load(Ordering::Relaxed),
            "total_requests": self.total_requests.load(Ordering::Relaxed),
        })
    }

    /// Mirrors the counters into `raftgate_http_connections{state}` and
    /// `raftgate_http_requests_total` (at scrape time).
    pub fn export(&self) {
        let m = metrics::global();
        let v = self.to_json();
        for state in ["active", "reading", "writing", "waiting"] {
            let n = v[format!("connections_{state}")].as_i64().unwrap_or(0);
            m.connections.with_label_values(&[state]).set(n);
        }
        let total = self.total_requests.load(Ordering::Relaxed);
        let seen = m.requests_total.get();
        if total > seen {
            m.requests_total.inc_by(total - seen);
        }
    }
}

/// Decrements a gauge when dropped.
pub struct GaugeGuard<'a>(&'a AtomicI64);

impl<'a> GaugeGuard<'a> {
    pub fn enter(g: &'a AtomicI64) -> GaugeGuard<'a> {
        g.fetch_add(1, Ordering::Relaxed);
        GaugeGuard(g)
    }
}

impl Drop for GaugeGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the data plane reports to: shared by every connection.
#[derive(Debug, Default)]
pub struct Observer {
    pub access_log: AccessLog,
    pub server: Arc<ServerCounters>,
    next_id: AtomicU64,
    id_prefix: String,
}

impl Observer {
    pub fn new(access_log: AccessLog, server: Arc<ServerCounters>) -> Observer {
        Observer {
            access_log,
            server,
            next_id: AtomicU64::new(1),
            id_prefix: format!("{:08x}", rand::random::<u32>()),
        }
    }

    /// A request id unique to this process run: cheap, no UUID per request.
    pub fn request_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n:x}", self.id_prefix)
    }
}

/// Facts about one request that the log phase needs; the pipeline puts
/// them in `RequestCtx::extensions` for the plugins (prometheus) to read.
#[derive(Clone, Debug)]
pub struct RequestFacts {
    pub start: Instant,
    pub route: Option<String>,
    pub service: Option<String>,
    /// "service" when the upstream answered, "kong" when the gateway did.
    pub source: &'static str,
    /// Time the gateway spent before sending upstream (or answering itself).
    pub kong_latency: Duration,
    pub upstream_latency: Option<Duration>,
    pub upstream_addr: Option<String>,
    /// Request body bytes received so far.
    pub bytes_in: Arc<AtomicU64>,
}

impl RequestFacts {
    pub fn new(start: Instant) -> RequestFacts {
        RequestFacts {
            start,
            route: None,
            service: None,
            source: "kong",
            kong_latency: Duration::ZERO,
            upstream_latency: None,
            upstream_addr: None,
            bytes_in: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// Counts request body bytes into `RequestFacts::bytes_in`.
pub fn count_request_body(body: Body, counter: Arc<AtomicU64>) -> Body {
    http_body_util::BodyExt::boxed(Counted {
        inner: body,
        counter,
    })
}

struct Counted {
    inner: Body,
    counter: Arc<AtomicU64>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(frame))) = &polled {
            let n = frame.data_ref().map_or(0, |d| d.len() as u64);
            self.counter.fetch_add(n, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The response body as the client receives it; writes the access log
/// line and ends the request's `writing` count when it ends or is dropped.
/// Generic over the body it wraps, so that a body nothing else wraps is
/// boxed once, with this.
pub struct Observed<B: http_body::Body = Body> {
    inner: B,
    observer: Arc<Observer>,
    entry: Entry,
    facts: RequestFacts,
}

impl Observed {
    /// `entry` carries what the pipeline knew (ids, names, status); bytes,
    /// latencies and completion are filled in at the end.
    pub fn wrap<B>(inner: B, observer: Arc<Observer>, entry: Entry, facts: RequestFacts) -> Body
    where
        B: http_body::Body<Data = Bytes, Error = BoxError> + Send + Sync + Unpin + 'static,
    {
        observer.server.writing.fetch_add(1, Ordering::Relaxed);
        http_body_util::BodyExt::boxed(Observed {
            inner,
            observer,
            entry,
            facts,
        })
    }
}

impl<B> http_body::Body for Observed<B>
where
    B: http_body::Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            std::task::Poll::Ready(Some(Ok(frame))) => {
                self.entry.bytes_out += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            std::task::Poll::Ready(None) => self.entry.complete = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<B: http_body::Body> Drop for Observed<B> {
    fn drop(&mut self) {
        self.observer.server.writing.fetch_sub(1, Ordering::Relaxed);
        if !self.observer.access_log.enabled() {
            return;
        }
        if http_body::Body::is_end_stream(&self.inner) {
            self.entry.complete = true;
        }
        let facts = &self.facts;
        self.entry.bytes_in = facts.bytes_in.load(Ordering::Relaxed);
        self.entry.latencies = Latencies {
            request: facts.start.elapsed().as_millis() as u64,
            proxy: facts.upstream_latency.map(|d| d.as_millis() as u64),
            kong: facts.kong_latency.as_millis() as u64,
        };
        self.entry.source = facts.source;
        self.entry.upstream = facts.upstream_addr.clone();
        self.entry.time = access_log::now_rfc3339();
        self.observer.access_log.write(&self.entry);
    }
}

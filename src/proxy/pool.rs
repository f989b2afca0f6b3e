//! The HTTP/1.1 upstream connection pool: idle keep-alive connections per
//! upstream address (plain and TLS apart), made with hyper's
//! connection-level client (`hyper::client::conn::http1`). A request takes
//! an idle connection or opens one; the connection goes back to the pool
//! when the response body has been read to its end, from the response
//! body's own drop: no task is spawned per request (only one per
//! connection, the one that drives it). A request that a connection could
//! not even start to send comes back to the caller whole, so retrying it
//! needs no copy of its head. gRPC (HTTP/2) services do not use this pool.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use http::{Request, Response, StatusCode, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};

use super::connector::Connector;
use crate::plugins::{Body, BoxError};

/// Idle connections kept per upstream address.
const MAX_IDLE_PER_ADDR: usize = 1024;
/// An idle connection older than this is closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

type Conn = SendRequest<Body>;
type IdleMap = HashMap<Arc<str>, Slot>;

/// The idle connections to one address, with the map's key beside them
/// so that a lease can name its address without allocating.
struct Slot {
    key: Arc<str>,
    /// Oldest first.
    list: Vec<Idle>,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// Pooled HTTP/1.1 connections made by one connector (one set of connect
/// and write timeouts and TLS settings).
pub struct Pool {
    connector: Connector,
    /// Indexed by `https as usize`.
    idle: [Mutex<IdleMap>; 2],
}

/// Why a request failed; `unsent` gives the request back when no byte of
/// it reached the upstream (and its body was not polled).
pub struct SendError {
    pub error: BoxError,
    /// The connection could not be made (or was lost before use).
    pub connect: bool,
    pub unsent: Option<Request<Body>>,
}

impl Pool {
    pub fn new(connector: Connector) -> Arc<Pool> {
        Arc::new(Pool {
            connector,
            idle: Default::default(),
        })
    }

    /// Sends `req` (origin-form URI, Host set) to `addr`.
    pub async fn send(
        self: &Arc<Self>,
        https: bool,
        addr: &str,
        mut req: Request<Body>,
    ) -> Result<Response<PooledBody>, SendError> {
        // An idle connection first; one that turns out dead gives the
        // request back, and the next one is tried.
        while let Some((key, mut conn)) = self.take(https, addr) {
            match conn.try_send_request(req).await {
                Ok(resp) => return Ok(self.lease(resp, https, key, conn)),
                Err(mut e) => match e.take_message() {
                    Some(r) => req = r,
                    None => {
                        return Err(SendError {
                            error: Box::new(e.into_error()),
                            connect: false,
                            unsent: None,
                        })
                    }
                },
            }
        }
        let mut conn = match self.connect(https, addr).await {
            Ok(c) => c,
            Err(error) => {
                return Err(SendError {
                    error,
                    connect: true,
                    unsent: Some(req),
                })
            }
        };
        match conn.try_send_request(req).await {
            Ok(resp) => {
                let key = self.key(https, addr);
                Ok(self.lease(resp, https, key, conn))
            }
            Err(mut e) => {
                let unsent = e.take_message();
                Err(SendError {
                    error: Box::new(e.into_error()),
                    connect: unsent.is_some(),
                    unsent,
                })
            }
        }
    }

    fn lease(
        self: &Arc<Self>,
        resp: Response<Incoming>,
        https: bool,
        key: Arc<str>,
        conn: Conn,
    ) -> Response<PooledBody> {
        // A switched connection belongs to the upgrade, never to the pool.
        let back = (resp.status() != StatusCode::SWITCHING_PROTOCOLS).then(|| Back {
            pool: self.clone(),
            https,
            key,
            conn,
        });
        resp.map(|inner| PooledBody {
            inner,
            back,
            ended: false,
        })
    }

    /// The map's own key for `addr` (no allocation once it exists).
    fn key(&self, https: bool, addr: &str) -> Arc<str> {
        let idle = self.idle[https as usize]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match idle.get(addr) {
            Some(slot) => slot.key.clone(),
            None => Arc::from(addr),
        }
    }

    /// The most recently used idle connection that is still open and ready.
    fn take(&self, https: bool, addr: &str) -> Option<(Arc<str>, Conn)> {
        let mut idle = self.idle[https as usize]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let slot = idle.get_mut(addr)?;
        while let Some(mut c) = slot.list.pop() {
            if c.since.elapsed() > IDLE_TIMEOUT {
                // The rest are older still.
                slot.list.clear();
                return None;
            }
            // Ready at once or not used: a connection still busy (an
            // upload the upstream answered early) is let go.
            if let Some(Ok(())) = c.conn.ready().now_or_never() {
                return Some((slot.key.clone(), c.conn));
            }
        }
        None
    }

    fn put_back(&self, https: bool, key: Arc<str>, conn: Conn) {
        if conn.is_closed() {
            return;
        }
        let mut idle = self.idle[https as usize]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let slot = idle.entry(key.clone()).or_insert_with(|| Slot {
            key,
            list: Vec::new(),
        });
        let list = &mut slot.list;
        if list.len() >= MAX_IDLE_PER_ADDR {
            return;
        }
        let now = Instant::now();
        // Oldest first: drop the ones that outlived the idle timeout.
        let stale = list.partition_point(|c| now.duration_since(c.since) > IDLE_TIMEOUT);
        list.drain(..stale);
        list.push(Idle { conn, since: now });
    }

    async fn connect(&self, https: bool, addr: &str) -> Result<Conn, BoxError> {
        let scheme = if https { "https" } else { "http" };
        let uri: Uri = format!("{scheme}://{addr}/").parse()?;
        let mut connector = self.connector.clone();
        let io = tower::Service::call(&mut connector, uri).await?;
        let (conn, driver) = http1::Builder::new().handshake(io).await?;
        tokio::spawn(async move {
            if let Err(e) = driver.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(conn)
    }
}

struct Back {
    pool: Arc<Pool>,
    https: bool,
    key: Arc<str>,
    conn: Conn,
}

/// An upstream response body; its connection goes back to the pool when
/// the body was read to its end (dropped earlier, the connection closes).
pub struct PooledBody {
    inner: Incoming,
    back: Option<Back>,
    ended: bool,
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        if let Some(b) = self.back.take() {
            if self.ended || self.inner.is_end_stream() {
                b.pool.put_back(b.https, b.key, b.conn);
            }
        }
    }
}

impl HttpBody for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

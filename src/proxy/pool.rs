//! The HTTP/1.1 upstream connection pool: idle keep-alive connections per
//! thread and upstream address (plain and TLS apart), each used by our own inline
//! client (`h1`). A request takes an idle connection or opens one; the
//! connection comes back (`Back`) when the response body ended cleanly
//! and the connection is fit for another request. No task is spawned,
//! per request or per connection: the exchange runs in the task of the
//! client connection that asked for it. An idle connection that the
//! upstream closed (or sent stray bytes on) is skipped when taken. A
//! request that a connection could not even start to send comes back to
//! the caller whole, so retrying it needs no copy of its head. gRPC
//! (HTTP/2) services do not use this pool.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response, Uri};

use super::connector::Connector;
use super::forward::Forwarded;
use super::h1::{self, Conn, UpstreamBody};
use crate::plugins::{Body, BoxError};

/// Idle connections kept per upstream address.
const MAX_IDLE_PER_ADDR: usize = 1024;
/// An idle connection older than this is closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

type IdleMap = HashMap<Arc<str>, Slot, BuildHasherDefault<AddrHasher>>;

/// FNV-1a over the address: the keys are the configured upstream
/// addresses, few and not chosen by clients, so a keyed hash (SipHash,
/// looked up twice per request) buys nothing here.
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The idle connections to one address, with the map's key beside them
/// so that a lease can name its address without allocating.
struct Slot {
    key: Arc<str>,
    /// Oldest first.
    list: Vec<Idle>,
}

struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

/// Idle lists per thread, by the number each thread draws once: a
/// connection is registered with the I/O driver of the runtime that
/// opened it, and each proxy worker's runtime is a thread of its own
/// (`workers`), so a connection is reused on the thread where its
/// readiness events arrive, never handed to another worker.
const SHARDS: usize = 64;

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

/// Pooled HTTP/1.1 connections made by one connector (one set of connect
/// and write timeouts and TLS settings).
pub struct Pool {
    connector: Connector,
    /// Per thread (`SHARDS`), then indexed by `https as usize`.
    idle: Box<[[Mutex<IdleMap>; 2]]>,
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
            idle: (0..SHARDS).map(|_| Default::default()).collect(),
        })
    }

    /// This thread's idle connections, plain or TLS.
    fn idle(&self, https: bool) -> std::sync::MutexGuard<'_, IdleMap> {
        let shard = SHARD.with(|s| *s);
        self.idle[shard][https as usize]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `req` (origin-form URI, Host set) to `addr`; its response
    /// head must come within `read_timeout` (connecting included), else
    /// the error is of kind `TimedOut` and the request is not given back.
    /// `pass_fields`: as `h1::exchange`'s.
    pub async fn send(
        self: &Arc<Self>,
        https: bool,
        addr: &str,
        mut req: Request<Body>,
        read_timeout: Duration,
        forwarded: Option<&Forwarded<'_>>,
        pass_fields: bool,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let now = tokio::time::Instant::now();
        // Validated timeouts are far below any overflow; be safe anyway.
        let deadline = now
            .checked_add(read_timeout)
            .unwrap_or_else(|| now + Duration::from_secs(30 * 24 * 3600));
        // An idle connection first; one that turns out dead gives the
        // request back, and the next one is tried.
        while let Some((key, conn)) = self.take(https, addr) {
            let back = self.back(https, key);
            match h1::exchange(conn, req, forwarded, back, deadline, pass_fields).await {
                Ok(resp) => return Ok(resp),
                Err(f) => match f.unsent {
                    Some(r) => req = r,
                    None => {
                        return Err(SendError {
                            error: f.error,
                            connect: false,
                            unsent: None,
                        })
                    }
                },
            }
        }
        let conn = match tokio::time::timeout_at(deadline, self.connect(https, addr)).await {
            Ok(Ok(c)) => c,
            Err(_) => {
                return Err(SendError {
                    error: Box::new(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "upstream read timeout",
                    )),
                    connect: false,
                    unsent: None,
                })
            }
            Ok(Err(error)) => {
                return Err(SendError {
                    error,
                    connect: true,
                    unsent: Some(req),
                })
            }
        };
        let key = self.key(https, addr);
        h1::exchange(
            conn,
            req,
            forwarded,
            self.back(https, key),
            deadline,
            pass_fields,
        )
        .await
        .map_err(|f| SendError {
            error: f.error,
            connect: f.unsent.is_some(),
            unsent: f.unsent,
        })
    }

    fn back(self: &Arc<Self>, https: bool, key: Arc<str>) -> Back {
        Back {
            pool: self.clone(),
            https,
            key,
        }
    }

    /// The map's own key for `addr` (no allocation once it exists).
    fn key(&self, https: bool, addr: &str) -> Arc<str> {
        let idle = self.idle(https);
        match idle.get(addr) {
            Some(slot) => slot.key.clone(),
            None => Arc::from(addr),
        }
    }

    /// The most recently used idle connection that is still open and ready.
    fn take(&self, https: bool, addr: &str) -> Option<(Arc<str>, Box<Conn>)> {
        let mut idle = self.idle(https);
        let slot = idle.get_mut(addr)?;
        while let Some(mut c) = slot.list.pop() {
            if c.since.elapsed() > IDLE_TIMEOUT {
                // The rest are older still.
                slot.list.clear();
                return None;
            }
            if c.conn.idle_ok() {
                return Some((slot.key.clone(), c.conn));
            }
        }
        None
    }

    fn put_back(&self, https: bool, key: Arc<str>, conn: Box<Conn>) {
        let mut idle = self.idle(https);
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

    async fn connect(&self, https: bool, addr: &str) -> Result<Box<Conn>, BoxError> {
        let scheme = if https { "https" } else { "http" };
        let uri: Uri = format!("{scheme}://{addr}/").parse()?;
        let mut connector = self.connector.clone();
        let io = tower::Service::call(&mut connector, uri).await?;
        Ok(Conn::new(io.into_inner()))
    }
}

/// Where a connection goes back once its exchange is over.
pub struct Back {
    pool: Arc<Pool>,
    https: bool,
    key: Arc<str>,
}

impl Back {
    pub fn put(self, conn: Box<Conn>) {
        self.pool.put_back(self.https, self.key, conn);
    }
}

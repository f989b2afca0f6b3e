//! Target health: the counters Kong keeps per target (consecutive
//! successes, HTTP failures, TCP failures, timeouts), fed by proxied
//! traffic (passive checks) and by HTTP, HTTPS or TCP probes (active
//! checks), and the
//! registry that lets a target keep its health across config changes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use uuid::Uuid;

use super::balancer::Balancer;
use super::connector::Connector;
use crate::model::{HealthyRule, UnhealthyRule};

/// What one exchange with a target taught us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    HttpFailure,
    TcpFailure,
    Timeout,
}

/// Thresholds of one check kind (active or passive); 0 disables a counter.
#[derive(Clone, Copy, Debug, Default)]
pub struct Thresholds {
    pub successes: u32,
    pub http_failures: u32,
    pub tcp_failures: u32,
    pub timeouts: u32,
}

impl Thresholds {
    pub fn new(healthy: &HealthyRule, unhealthy: &UnhealthyRule) -> Thresholds {
        Thresholds {
            successes: healthy.successes,
            http_failures: unhealthy.http_failures,
            tcp_failures: unhealthy.tcp_failures,
            timeouts: unhealthy.timeouts,
        }
    }
}

/// The live health of one target.
#[derive(Debug)]
pub struct TargetHealth {
    healthy: AtomicBool,
    successes: AtomicU32,
    http_failures: AtomicU32,
    tcp_failures: AtomicU32,
    timeouts: AtomicU32,
    /// Requests in flight to this target (least-connections).
    pub active: AtomicUsize,
}

impl Default for TargetHealth {
    fn default() -> Self {
        TargetHealth {
            healthy: AtomicBool::new(true),
            successes: AtomicU32::new(0),
            http_failures: AtomicU32::new(0),
            tcp_failures: AtomicU32::new(0),
            timeouts: AtomicU32::new(0),
            active: AtomicUsize::new(0),
        }
    }
}

impl TargetHealth {
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    fn reset_failures(&self) {
        self.http_failures.store(0, Ordering::Relaxed);
        self.tcp_failures.store(0, Ordering::Relaxed);
        self.timeouts.store(0, Ordering::Relaxed);
    }

    /// Counts one outcome; flips the target's health when a threshold is
    /// reached.
    pub fn record(&self, outcome: Outcome, t: &Thresholds) {
        let (counter, threshold) = match outcome {
            Outcome::Success => {
                self.reset_failures();
                let n = self.successes.fetch_add(1, Ordering::Relaxed) + 1;
                if !self.is_healthy() && t.successes > 0 && n >= t.successes {
                    self.healthy.store(true, Ordering::Relaxed);
                    self.successes.store(0, Ordering::Relaxed);
                    tracing::info!("target back to healthy");
                }
                return;
            }
            Outcome::HttpFailure => (&self.http_failures, t.http_failures),
            Outcome::TcpFailure => (&self.tcp_failures, t.tcp_failures),
            Outcome::Timeout => (&self.timeouts, t.timeouts),
        };
        self.successes.store(0, Ordering::Relaxed);
        let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
        if self.is_healthy() && threshold > 0 && n >= threshold {
            self.healthy.store(false, Ordering::Relaxed);
            self.reset_failures();
            tracing::warn!(?outcome, "target marked unhealthy");
        }
    }
}

/// Holds a target's in-flight count up while a request uses it.
pub struct InFlight(Arc<TargetHealth>);

impl InFlight {
    pub fn new(health: Arc<TargetHealth>) -> InFlight {
        health.active.fetch_add(1, Ordering::Relaxed);
        InFlight(health)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Health by (upstream, target address), shared by successive configs so
/// an unchanged target keeps its state.
#[derive(Default)]
pub struct HealthRegistry {
    map: Mutex<HashMap<(Uuid, String), Weak<TargetHealth>>>,
}

impl HealthRegistry {
    pub fn get(&self, upstream: Uuid, addr: &str) -> Arc<TargetHealth> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        let key = (upstream, addr.to_string());
        if let Some(h) = map.get(&key).and_then(Weak::upgrade) {
            return h;
        }
        let h = Arc::new(TargetHealth::default());
        map.insert(key, Arc::downgrade(&h));
        h
    }
}

/// Starts one probe loop per target of `balancer` when its active checks
/// are on. A loop ends once the balancer is dropped (replaced by a newer
/// config and no request still uses it).
pub fn spawn_active_checks(balancer: &Arc<Balancer>) {
    let active = &balancer.healthchecks.active;
    if active.healthy.interval == 0 && active.unhealthy.interval == 0 {
        return;
    }
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(Duration::from_secs(active.timeout.max(1))));
    let client: ProbeClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(Connector::new(
            http,
            false,
            Duration::from_secs(active.timeout.max(1)),
            false,
        ));
    for index in 0..balancer.targets.len() {
        let weak = Arc::downgrade(balancer);
        let client = client.clone();
        tokio::spawn(async move { probe_loop(weak, index, client).await });
    }
}

type ProbeClient = Client<Connector, Empty<Bytes>>;

/// Probes one target: an HTTP(S) GET of `http_path`, or for `type: tcp`
/// a bare connect.
async fn probe_loop(weak: Weak<Balancer>, index: usize, client: ProbeClient) {
    loop {
        let (interval, uri, timeout, tcp) = {
            let Some(b) = weak.upgrade() else { return };
            let Some(t) = b.targets.get(index) else {
                return;
            };
            let a = &b.healthchecks.active;
            let interval = if t.health.is_healthy() {
                a.healthy.interval
            } else {
                a.unhealthy.interval
            };
            let scheme = if a.kind == "https" { "https" } else { "http" };
            (
                interval,
                format!("{scheme}://{}{}", t.addr, a.http_path),
                Duration::from_secs(a.timeout.max(1)),
                (a.kind == "tcp").then(|| t.addr.clone()),
            )
        };
        if interval == 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        tokio::time::sleep(Duration::from_secs(interval)).await;
        if let Some(addr) = tcp {
            let connected =
                tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await;
            let Some(b) = weak.upgrade() else { return };
            let Some(t) = b.targets.get(index) else {
                return;
            };
            let a = &b.healthchecks.active;
            let outcome = match connected {
                Ok(Ok(_)) => Outcome::Success,
                Ok(Err(_)) => Outcome::TcpFailure,
                Err(_) => Outcome::Timeout,
            };
            t.health
                .record(outcome, &Thresholds::new(&a.healthy, &a.unhealthy));
            continue;
        }
        let result = match uri.parse::<http::Uri>() {
            Ok(uri) => tokio::time::timeout(timeout, client.get(uri)).await,
            Err(_) => return,
        };
        let Some(b) = weak.upgrade() else { return };
        let Some(t) = b.targets.get(index) else {
            return;
        };
        let a = &b.healthchecks.active;
        let thresholds = Thresholds::new(&a.healthy, &a.unhealthy);
        let outcome = match result {
            Err(_) => Outcome::Timeout,
            Ok(Err(_)) => Outcome::TcpFailure,
            Ok(Ok(resp)) => {
                let code = resp.status().as_u16();
                if a.healthy.http_statuses.contains(&code) {
                    Outcome::Success
                } else if a.unhealthy.http_statuses.contains(&code) {
                    Outcome::HttpFailure
                } else {
                    continue;
                }
            }
        };
        t.health.record(outcome, &thresholds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_flip_health_both_ways() {
        let h = TargetHealth::default();
        let t = Thresholds {
            successes: 2,
            http_failures: 3,
            tcp_failures: 1,
            timeouts: 0,
        };
        h.record(Outcome::HttpFailure, &t);
        h.record(Outcome::HttpFailure, &t);
        h.record(Outcome::Success, &t); // resets the streak
        h.record(Outcome::HttpFailure, &t);
        h.record(Outcome::HttpFailure, &t);
        assert!(h.is_healthy());
        h.record(Outcome::HttpFailure, &t);
        assert!(!h.is_healthy());
        h.record(Outcome::Success, &t);
        assert!(!h.is_healthy());
        h.record(Outcome::Success, &t);
        assert!(h.is_healthy());
        h.record(Outcome::Timeout, &t); // timeouts counter disabled
        assert!(h.is_healthy());
        h.record(Outcome::TcpFailure, &t);
        assert!(!h.is_healthy());
    }

    #[test]
    fn registry_keeps_state_while_referenced() {
        let r = HealthRegistry::default();
        let u = Uuid::from_u128(1);
        let a = r.get(u, "127.0.0.1:1");
        a.record(
            Outcome::TcpFailure,
            &Thresholds {
                tcp_failures: 1,
                ..Default::default()
            },
        );
        assert!(!r.get(u, "127.0.0.1:1").is_healthy());
        drop(a);
        assert!(r.get(u, "127.0.0.1:1").is_healthy());
    }
}

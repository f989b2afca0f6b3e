//! Upstream balancers, one per upstream entity, compiled per config:
//! weighted round-robin (a precomputed smooth wheel walked by an atomic
//! counter), least-connections, and consistent hashing (weighted
//! rendezvous hashing on the consumer, the client IP or a header).
//! Unhealthy and zero-weight targets are skipped.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::{HeaderMap, HeaderName};
use uuid::Uuid;

use super::health::{HealthRegistry, TargetHealth};
use crate::model::{Healthchecks, Target, Upstream};

/// Longest round-robin wheel; larger weight sums are scaled down.
const MAX_WHEEL: u64 = 10_000;

#[derive(Debug)]
pub struct TargetEntry {
    /// `host:port`.
    pub addr: String,
    pub weight: u32,
    pub health: Arc<TargetHealth>,
}

#[derive(Debug, Clone, PartialEq)]
enum HashOn {
    None,
    Consumer,
    Ip,
    Header(HeaderName),
}

impl HashOn {
    fn parse(kind: &str, header: Option<&String>) -> HashOn {
        match kind {
            "consumer" => HashOn::Consumer,
            "ip" => HashOn::Ip,
            "header" => match header.and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()) {
                Some(h) => HashOn::Header(h),
                None => HashOn::None,
            },
            _ => HashOn::None,
        }
    }

    fn key(&self, input: &HashInput<'_>) -> Option<Vec<u8>> {
        match self {
            HashOn::None => None,
            HashOn::Consumer => input.consumer.map(|c| c.as_bytes().to_vec()),
            HashOn::Ip => input.ip.map(|ip| ip.to_string().into_bytes()),
            HashOn::Header(h) => input.headers.get(h).map(|v| v.as_bytes().to_vec()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Algorithm {
    RoundRobin,
    LeastConnections,
    ConsistentHashing,
}

/// What consistent hashing may hash on.
pub struct HashInput<'a> {
    pub consumer: Option<Uuid>,
    pub ip: Option<IpAddr>,
    pub headers: &'a HeaderMap,
}

#[derive(Debug)]
pub struct Balancer {
    pub upstream_id: Uuid,
    pub host_header: Option<String>,
    pub healthchecks: Healthchecks,
    pub targets: Vec<TargetEntry>,
    algorithm: Algorithm,
    hash_on: HashOn,
    hash_fallback: HashOn,
    wheel: Vec<usize>,
    next: AtomicUsize,
}

/// `host` → `host:8000` (Kong's default target port).
pub fn normalize_target(target: &str) -> String {
    let has_port = if let Some(rest) = target.strip_prefix('[') {
        rest.contains("]:")
    } else {
        matches!(target.rsplit_once(':'), Some((h, p)) if !h.contains(':') && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    };
    if has_port {
        target.to_string()
    } else if target.contains(':') && !target.starts_with('[') {
        format!("[{target}]:8000")
    } else {
        format!("{target}:8000")
    }
}

impl Balancer {
    pub fn new(upstream: &Upstream, targets: &[&Target], registry: &HealthRegistry) -> Balancer {
        let mut entries: Vec<TargetEntry> = Vec::new();
        for t in targets {
            let addr = normalize_target(&t.target);
            // The newest entry for an address wins, as in Kong.
            entries.retain(|e| e.addr != addr);
            entries.push(TargetEntry {
                health: registry.get(upstream.id, &addr),
                addr,
                weight: t.weight,
            });
        }
        entries.sort_by(|a, b| a.addr.cmp(&b.addr));
        let algorithm = match upstream.algorithm.as_str() {
            "least-connections" => Algorithm::LeastConnections,
            "consistent-hashing" => Algorithm::ConsistentHashing,
            _ => Algorithm::RoundRobin,
        };
        Balancer {
            upstream_id: upstream.id,
            host_header: upstream.host_header.clone(),
            healthchecks: upstream.healthchecks.clone(),
            wheel: smooth_wheel(&entries),
            targets: entries,
            algorithm,
            hash_on: HashOn::parse(&upstream.hash_on, upstream.hash_on_header.as_ref()),
            hash_fallback: HashOn::parse(
                &upstream.hash_fallback,
                upstream.hash_fallback_header.as_ref(),
            ),
            next: AtomicUsize::new(0),
        }
    }

    fn usable(&self, i: usize) -> bool {
        let t = &self.targets[i];
        t.weight > 0 && t.health.is_healthy()
    }

    /// The index of the target to use, or `None` when no target is
    /// healthy.
    pub fn pick(&self, input: &HashInput<'_>) -> Option<usize> {
        if self.algorithm == Algorithm::ConsistentHashing {
            let key = self
                .hash_on
                .key(input)
                .or_else(|| self.hash_fallback.key(input));
            if let Some(key) = key {
                return self.rendezvous(&key);
            }
        }
        if self.algorithm == Algorithm::LeastConnections {
            return self.least_connections();
        }
        self.round_robin()
    }

    fn round_robin(&self) -> Option<usize> {
        if self.wheel.is_empty() {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        (0..self.wheel.len())
            .map(|k| self.wheel[start.wrapping_add(k) % self.wheel.len()])
            .find(|&i| self.usable(i))
    }

    fn least_connections(&self) -> Option<usize> {
        let n = self.targets.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut best: Option<(usize, u64, u64)> = None;
        for k in 0..n {
            let i = start.wrapping_add(k) % n;
            if !self.usable(i) {
                continue;
            }
            let t = &self.targets[i];
            let load = t.health.active.load(Ordering::Relaxed) as u64;
            let w = u64::from(t.weight);
            // load/w < best_load/best_w, without division.
            let better = match best {
                None => true,
                Some((_, bl, bw)) => load.saturating_mul(bw) < bl.saturating_mul(w),
            };
            if better {
                best = Some((i, load, w));
            }
        }
        best.map(|(i, _, _)| i)
    }

    fn rendezvous(&self, key: &[u8]) -> Option<usize> {
        let mut best: Option<(usize, f64)> = None;
        for (i, t) in self.targets.iter().enumerate() {
            if !self.usable(i) {
                continue;
            }
            let mut h = std::collections::hash_map::DefaultHasher::new();
            key.hash(&mut h);
            t.addr.hash(&mut h);
            // Uniform in (0, 1); weighted score -w / ln(u).
            let u = ((h.finish() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            let score = -f64::from(t.weight) / u.ln();
            if best.is_none_or(|(_, s)| score > s) {
                best = Some((i, score));
            }
        }
        best.map(|(i, _)| i)
    }
}

/// A smooth weighted round-robin sequence (nginx's algorithm) over the
/// targets, so that weights 5/1/1 give a b a c a a a rather than bursts.
fn smooth_wheel(targets: &[TargetEntry]) -> Vec<usize> {
    let mut weights: Vec<u64> = targets.iter().map(|t| u64::from(t.weight)).collect();
    let g = weights.iter().copied().filter(|w| *w > 0).fold(0, gcd);
    if g == 0 {
        return Vec::new();
    }
    weights.iter_mut().for_each(|w| *w /= g);
    let total: u64 = weights.iter().sum();
    if total > MAX_WHEEL {
        weights
            .iter_mut()
            .filter(|w| **w > 0)
            .for_each(|w| *w = (*w * MAX_WHEEL / total).max(1));
    }
    let total: i64 = weights.iter().sum::<u64>() as i64;
    let mut current = vec![0i64; weights.len()];
    let mut wheel = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..weights.len() {
            current[i] += weights[i] as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        wheel.push(best);
    }
    wheel
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::health::{Outcome, Thresholds};
    use serde_json::json;

    fn balancer(algorithm: &str, targets: &[(&str, u32)], extra: serde_json::Value) -> Balancer {
        let mut u =
            json!({"id": Uuid::from_u128(1).to_string(), "name": "up", "algorithm": algorithm});
        if let (Some(o), Some(e)) = (u.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        let upstream: Upstream = serde_json::from_value(u).unwrap();
        let targets: Vec<Target> = targets
            .iter()
            .enumerate()
            .map(|(i, (t, w))| {
                serde_json::from_value(json!({
                    "id": Uuid::from_u128(10 + i as u128).to_string(),
                    "upstream": {"id": upstream.id.to_string()},
                    "target": t, "weight": w
                }))
                .unwrap()
            })
            .collect();
        let refs: Vec<&Target> = targets.iter().collect();
        Balancer::new(&upstream, &refs, &HealthRegistry::default())
    }

    fn no_input() -> HashInput<'static> {
        static EMPTY: std::sync::OnceLock<HeaderMap> = std::sync::OnceLock::new();
        HashInput {
            consumer: None,
            ip: None,
            headers: EMPTY.get_or_init(HeaderMap::new),
        }
    }

    #[test]
    fn weighted_round_robin_spreads_by_weight() {
        let b = balancer(
            "round-robin",
            &[("a:1", 300), ("b:1", 100), ("c:1", 0)],
            json!({}),
        );
        let mut counts = [0; 3];
        for _ in 0..400 {
            counts[b.pick(&no_input()).unwrap()] += 1;
        }
        assert_eq!(counts, [300, 100, 0]);
    }

    #[test]
    fn unhealthy_targets_are_skipped_and_none_left_is_none() {
        let b = balancer("round-robin", &[("a:1", 100), ("b:1", 100)], json!({}));
        let down = Thresholds {
            tcp_failures: 1,
            ..Default::default()
        };
        b.targets[0].health.record(Outcome::TcpFailure, &down);
        for _ in 0..10 {
            assert_eq!(b.pick(&no_input()), Some(1));
        }
        b.targets[1].health.record(Outcome::TcpFailure, &down);
        assert_eq!(b.pick(&no_input()), None);
    }

    #[test]
    fn least_connections_prefers_idle() {
        let b = balancer(
            "least-connections",
            &[("a:1", 100), ("b:1", 100)],
            json!({}),
        );
        let _busy = crate::proxy::health::InFlight::new(b.targets[0].health.clone());
        for _ in 0..5 {
            assert_eq!(b.pick(&no_input()), Some(1));
        }
    }

    #[test]
    fn consistent_hashing_is_sticky_and_spreads() {
        let b = balancer(
            "consistent-hashing",
            &[("a:1", 100), ("b:1", 100), ("c:1", 100)],
            json!({"hash_on": "header", "hash_on_header": "x-user"}),
        );
        let mut seen = std::collections::HashSet::new();
        for user in 0..60 {
            let mut h = HeaderMap::new();
            h.insert("x-user", user.to_string().parse().unwrap());
            let input = HashInput {
                consumer: None,
                ip: None,
                headers: &h,
            };
            let first = b.pick(&input).unwrap();
            assert_eq!(b.pick(&input), Some(first));
            seen.insert(first);
        }
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn target_ports_default_to_8000() {
        assert_eq!(normalize_target("example.com"), "example.com:8000");
        assert_eq!(normalize_target("10.0.0.1:81"), "10.0.0.1:81");
        assert_eq!(normalize_target("::1"), "[::1]:8000");
        assert_eq!(normalize_target("[::1]:9"), "[::1]:9");
    }
}

//! What the data plane runs on: one `Snapshot` compiled from one applied
//! `State` (router, plugins, services with their clients and balancers),
//! built by the `Compiler`, which keeps what must outlive a config change
//! (target health, pooled clients).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use uuid::Uuid;

use super::balancer::Balancer;
use super::forward::{self, UpstreamClient};
use super::grpc;
use super::health::{self, HealthRegistry};
use crate::model::{Entity, EntityKind, Service, State, Target};
use crate::plugins::Plugins;
use crate::router::{self, Router};

/// A service, ready to forward to.
pub struct ServiceEntry {
    pub service: Service,
    pub client: UpstreamClient,
    /// Set when the service's host names an upstream.
    pub balancer: Option<Arc<Balancer>>,
    /// `host:port` when the service points straight at a host.
    pub static_addr: String,
    /// The Host header sent upstream when the route does not preserve it.
    pub host_header: String,
}

/// The compiled form of one config.
#[derive(Default)]
pub struct Snapshot {
    pub version: u64,
    pub router: Router,
    pub plugins: Plugins,
    pub services: HashMap<Uuid, Arc<ServiceEntry>>,
}

/// Builds snapshots; shared by successive configs.
#[derive(Default)]
pub struct Compiler {
    health: HealthRegistry,
    /// By (connect timeout, write timeout, tls_verify, HTTP/2).
    clients: Mutex<HashMap<(u64, u64, bool, bool), UpstreamClient>>,
}

impl Compiler {
    fn client(&self, s: &Service) -> UpstreamClient {
        let verify = s.tls_verify == Some(true);
        let http2 = grpc::is_h2_service(&s.protocol);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients
            .entry((s.connect_timeout, s.write_timeout, verify, http2))
            .or_insert_with(|| {
                forward::client(
                    Duration::from_millis(s.connect_timeout.max(1)),
                    Duration::from_millis(s.write_timeout.max(1)),
                    verify,
                    http2,
                )
            })
            .clone()
    }

    /// Compiles `state`. Must run inside the Tokio runtime (active health
    /// checks are spawned for new balancers).
    pub fn compile(&self, state: &State) -> Snapshot {
        let mut targets: HashMap<Uuid, Vec<&Target>> = HashMap::new();
        for e in state.iter(EntityKind::Target) {
            if let Entity::Target(t) = e {
                targets.entry(t.upstream.id).or_default().push(t);
            }
        }
        let mut balancers: HashMap<String, Arc<Balancer>> = HashMap::new();
        for e in state.iter(EntityKind::Upstream) {
            if let Entity::Upstream(u) = e {
                let mut ts = targets.remove(&u.id).unwrap_or_default();
                ts.sort_by_key(|t| (t.created_at, t.id));
                let b = Arc::new(Balancer::new(u, &ts, &self.health));
                health::spawn_active_checks(&b);
                balancers.insert(u.name.clone(), b);
            }
        }
        let mut services = HashMap::new();
        for e in state.iter(EntityKind::Service) {
            let Entity::Service(s) = e else { continue };
            let balancer = balancers.get(&s.host).cloned();
            let default_port = if matches!(s.protocol.as_str(), "https" | "grpcs") {
                443
            } else {
                80
            };
            let host_header = match balancer.as_ref().and_then(|b| b.host_header.clone()) {
                Some(h) => h,
                None if s.port == default_port => s.host.clone(),
                None => format!("{}:{}", s.host, s.port),
            };
            let static_addr = if s.host.contains(':') && !s.host.starts_with('[') {
                format!("[{}]:{}", s.host, s.port)
            } else {
                format!("{}:{}", s.host, s.port)
            };
            services.insert(
                s.id,
                Arc::new(ServiceEntry {
                    client: self.client(s),
                    service: s.clone(),
                    balancer,
                    static_addr,
                    host_header,
                }),
            );
        }
        Snapshot {
            version: state.version(),
            router: router::compile(state),
            plugins: Plugins::compile(state),
            services,
        }
    }
}

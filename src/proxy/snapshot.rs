//! What the data plane runs on: one `Snapshot` compiled from one applied
//! `State` (router, plugins, services with their clients and balancers),
//! built by the `Compiler`, which keeps what must outlive a config change
//! (target health, pooled clients).
//!
//! Compiling is incremental: the parts whose tables did not change since the
//! previous compile are shared with the previous snapshot (O(1) test per
//! table), and a change to some services rebuilds only those services. A
//! cluster taking hundreds of writes a second thus spends on each new config
//! a cost that follows the change, not the size of the configuration.

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
    /// `host_header` as a header value, made once.
    pub host_value: http::HeaderValue,
}

type Services = HashMap<Uuid, Arc<ServiceEntry>>;
type Balancers = HashMap<String, Arc<Balancer>>;

/// The compiled form of one config.
#[derive(Default)]
pub struct Snapshot {
    pub version: u64,
    pub router: Arc<Router>,
    pub plugins: Plugins,
    pub services: Arc<Services>,
}

/// What the previous compile produced, to share with the next.
struct Previous {
    state: State,
    router: Arc<Router>,
    balancers: Arc<Balancers>,
    services: Arc<Services>,
}

/// Builds snapshots; shared by successive configs.
#[derive(Default)]
pub struct Compiler {
    health: HealthRegistry,
    /// By (connect timeout, write timeout, tls_verify, HTTP/2).
    clients: Mutex<HashMap<(u64, u64, bool, bool), UpstreamClient>>,
    previous: Mutex<Option<Previous>>,
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
        let mut previous = self.previous.lock().unwrap_or_else(|p| p.into_inner());
        let same = |kinds: &[EntityKind]| {
            previous
                .as_ref()
                .is_some_and(|p| kinds.iter().all(|k| state.same_table(&p.state, *k)))
        };
        let same_balancers = same(&[EntityKind::Upstream, EntityKind::Target]);
        let same_services = same(&[EntityKind::Service]);
        let same_router = same(&[EntityKind::Route, EntityKind::Service]);

        let balancers = match previous.as_ref() {
            Some(p) if same_balancers => p.balancers.clone(),
            _ => Arc::new(self.balancers(state)),
        };
        let services = match previous.as_ref() {
            Some(p) if same_balancers && same_services => p.services.clone(),
            Some(p) if same_balancers => {
                let mut services = Services::clone(&p.services);
                for (before, after) in state.changes_since(&p.state, EntityKind::Service) {
                    if let Some(before) = before {
                        services.remove(&before.id());
                    }
                    if let Some(Entity::Service(s)) = after.as_deref() {
                        services.insert(s.id, Arc::new(self.service_entry(s, &balancers)));
                    }
                }
                Arc::new(services)
            }
            _ => Arc::new(
                state
                    .iter(EntityKind::Service)
                    .filter_map(|e| match e {
                        Entity::Service(s) => {
                            Some((s.id, Arc::new(self.service_entry(s, &balancers))))
                        }
                        _ => None,
                    })
                    .collect(),
            ),
        };
        let router = match previous.as_ref() {
            Some(p) if same_router => p.router.clone(),
            _ => Arc::new(router::compile(state)),
        };
        *previous = Some(Previous {
            state: state.clone(),
            router: router.clone(),
            balancers,
            services: services.clone(),
        });
        Snapshot {
            version: state.version(),
            router,
            plugins: Plugins::compile(state),
            services,
        }
    }

    /// One balancer per upstream, by upstream name.
    fn balancers(&self, state: &State) -> Balancers {
        let mut targets: HashMap<Uuid, Vec<&Target>> = HashMap::new();
        for e in state.iter(EntityKind::Target) {
            if let Entity::Target(t) = e {
                targets.entry(t.upstream.id).or_default().push(t);
            }
        }
        let mut balancers = Balancers::new();
        for e in state.iter(EntityKind::Upstream) {
            if let Entity::Upstream(u) = e {
                let mut ts = targets.remove(&u.id).unwrap_or_default();
                ts.sort_by_key(|t| (t.created_at, t.id));
                let b = Arc::new(Balancer::new(u, &ts, &self.health));
                health::spawn_active_checks(&b);
                balancers.insert(u.name.clone(), b);
            }
        }
        balancers
    }

    fn service_entry(&self, s: &Service, balancers: &Balancers) -> ServiceEntry {
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
        ServiceEntry {
            host_value: http::HeaderValue::from_str(&host_header)
                .unwrap_or(http::HeaderValue::from_static("")),
            client: self.client(s),
            service: s.clone(),
            balancer,
            static_addr,
            host_header,
        }
    }
}

//! The plugin interface and the chain that runs plugins in Kong's order.
//!
//! A plugin is compiled once per config change from its entity's `config`
//! (`PluginSpec::build`), then called on each request in phases:
//! `access` (may answer early with a `Reply`; a plugin that must look into
//! the request body says so with `wants_body`, and the pipeline reads it
//! first into `RequestCtx::body`), `request_body` (may wrap the
//! streaming request body), `header_filter` (may edit the response head)
//! and `log`. `Plugins::compile` indexes every enabled plugin entity by its
//! scope; `Plugins::resolve` picks, for one plugin name, the most specific
//! instance for the request as Kong does, *at the moment that plugin's turn
//! comes*, so that consumer-scoped plugins apply once an auth plugin (higher
//! priority) has put the consumer in `RequestCtx`. An instance runs only
//! for requests whose protocol (`RequestCtx::protocol`) its `protocols`
//! list names; the most specific instance decides, so a route-scoped
//! instance limited to `https` leaves plain `http` requests on that route
//! without the plugin rather than falling back to a wider instance.
//!
//! Adding a plugin: one file in this folder implementing `Plugin` plus a
//! `build` function, and one line in `REGISTRY`.

pub mod acl;
pub mod auth_common;
pub mod body_fields;
pub mod correlation_id;
pub mod cors;
pub mod ip_restriction;
pub mod jwt;
pub mod key_auth;
pub mod prometheus;
pub mod rate_limiting;
pub mod request_size_limiting;
pub mod request_transformer;
pub mod response_transformer;
pub mod revocations;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::combinators::BoxBody;
use uuid::Uuid;

use crate::model::{Entity, EntityKind, State};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A streaming body as it flows through the gateway (either direction).
pub type Body = BoxBody<Bytes, BoxError>;

/// A body with nothing in it (boxing it allocates nothing).
pub fn empty_body() -> Body {
    use http_body_util::BodyExt;
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}

/// An answer produced by the gateway itself (a plugin short-circuiting, or
/// an error). Small and fully buffered by nature.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// `{"message": "..."}`, Kong's error shape.
    pub fn message(status: StatusCode, message: &str) -> Reply {
        let body = serde_json::to_vec(&serde_json::json!({ "message": message }))
            .unwrap_or_default()
            .into();
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json; charset=utf-8"),
        );
        Reply {
            status,
            headers,
            body,
        }
    }
}

/// The error a plugin's body wrapper returns to abort a streaming request
/// body; the pipeline answers the client with `reply`.
#[derive(Debug)]
pub struct BodyRejected(pub Reply);

impl std::fmt::Display for BodyRejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "request body rejected with {}", self.0.status)
    }
}

impl std::error::Error for BodyRejected {}

/// A request body read before the access phase (see `Plugin::wants_body`).
#[derive(Clone, Debug, Default)]
pub struct PeekedBody {
    /// The whole body, or its first bytes when it is longer than the
    /// pipeline reads ahead (`complete` is then false and the rest still
    /// streams to the upstream after these bytes).
    pub bytes: Bytes,
    pub complete: bool,
    /// Set by a plugin that replaced `bytes` (only a complete body may be
    /// replaced); the upstream then gets the new body and its length.
    pub modified: bool,
}

impl PeekedBody {
    /// Replaces a complete body (e.g. without a credential field).
    pub fn replace(&mut self, bytes: Bytes) {
        if self.complete {
            self.bytes = bytes;
            self.modified = true;
        }
    }
}

/// The consumer an auth plugin identified.
#[derive(Clone, Debug, PartialEq)]
pub struct ConsumerInfo {
    pub id: Uuid,
    pub username: Option<String>,
    pub custom_id: Option<String>,
}

/// The credential that authenticated the request.
#[derive(Clone, Debug, PartialEq)]
pub struct CredentialInfo {
    pub id: Uuid,
    /// What Kong sends as `X-Credential-Identifier` (the jwt `key`, the key-auth id…).
    pub identifier: String,
}

/// A request's protocol, as a plugin's `protocols` names it: the family
/// of the route it matched (gRPC, WebSocket, else HTTP), over TLS or not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    #[default]
    Http,
    Https,
    Grpc,
    Grpcs,
    Ws,
    Wss,
}

impl Protocol {
    const ALL: [Protocol; 6] = [
        Protocol::Http,
        Protocol::Https,
        Protocol::Grpc,
        Protocol::Grpcs,
        Protocol::Ws,
        Protocol::Wss,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Grpc => "grpc",
            Protocol::Grpcs => "grpcs",
            Protocol::Ws => "ws",
            Protocol::Wss => "wss",
        }
    }

    /// The protocol of a request that matched a route with `route_protocols`
    /// (one family, as validation ensures), over TLS or not.
    pub fn of_request(route_protocols: &[String], tls: bool) -> Protocol {
        let has = |names: [&str; 2]| route_protocols.iter().any(|p| names.contains(&p.as_str()));
        match (has(["grpc", "grpcs"]), has(["ws", "wss"]), tls) {
            (true, _, false) => Protocol::Grpc,
            (true, _, true) => Protocol::Grpcs,
            (false, true, false) => Protocol::Ws,
            (false, true, true) => Protocol::Wss,
            (false, false, false) => Protocol::Http,
            (false, false, true) => Protocol::Https,
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// The protocols one plugin instance runs for, as a bit set; names that
/// are no request protocol here (`tcp`, `tls`…) select nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Protocols(u8);

impl Protocols {
    fn of(names: &[String]) -> Protocols {
        Protocols(
            Protocol::ALL
                .iter()
                .filter(|p| names.iter().any(|n| n == p.name()))
                .fold(0, |set, p| set | p.bit()),
        )
    }

    fn contains(self, p: Protocol) -> bool {
        self.0 & p.bit() != 0
    }
}

/// Per-request state shared by the plugins and the pipeline.
#[derive(Debug, Default)]
pub struct RequestCtx {
    pub route_id: Option<Uuid>,
    pub service_id: Option<Uuid>,
    /// The client's address: the connection's, or the one trusted proxies
    /// forwarded (see `proxy::realip`).
    pub client_ip: Option<IpAddr>,
    /// "http" or "https" as the client spoke to us.
    pub scheme: &'static str,
    /// What plugin instances' `protocols` are checked against.
    pub protocol: Protocol,
    /// Set by auth plugins; consumer-scoped plugins resolve after this.
    pub consumer: Option<ConsumerInfo>,
    pub credential: Option<CredentialInfo>,
    /// The consumer's consumer groups (ids), for group-scoped plugins.
    pub consumer_groups: Vec<Uuid>,
    /// ACL group names of the consumer (`X-Consumer-Groups`).
    pub acl_groups: Vec<String>,
    /// Set when an auth plugin let the request in as its `anonymous` consumer.
    pub anonymous: bool,
    /// The token that authenticated the request (e.g. a JWT), as presented.
    pub authenticated_token: Option<String>,
    /// The decoded claims of that token, when it has any.
    pub token_claims: Option<serde_json::Value>,
    /// The request body, when a plugin asked to read it in the access
    /// phase (`Plugin::wants_body`); `None` otherwise.
    pub body: Option<PeekedBody>,
    /// Typed scratch space for plugins to pass data between phases.
    pub extensions: http::Extensions,
}

/// One compiled plugin instance.
pub trait Plugin: Send + Sync + 'static {
    /// Access phase: inspect or edit the request head; return `Some` to
    /// answer the client now and skip the upstream.
    fn access(&self, _ctx: &mut RequestCtx, _req: &mut http::request::Parts) -> Option<Reply> {
        None
    }

    /// Whether `access` needs the request body in `RequestCtx::body`. The
    /// pipeline then reads it (up to a bound) before calling `access`, and
    /// sends it upstream afterwards, whole, or as a plugin replaced it.
    fn wants_body(&self, _ctx: &RequestCtx, _req: &http::request::Parts) -> bool {
        false
    }

    /// Wraps the streaming request body (after `access` passed).
    fn request_body(&self, _ctx: &RequestCtx, body: Body) -> Body {
        body
    }

    /// Response head on its way to the client (upstream's or a `Reply`).
    fn header_filter(&self, _ctx: &mut RequestCtx, _resp: &mut http::response::Parts) {}

    /// Wraps the streaming response body (after `header_filter`); a
    /// plugin that rewrites it must also fix `Content-Length` there.
    fn response_body(&self, _ctx: &RequestCtx, body: Body) -> Body {
        body
    }

    /// Once the response is over: its body fully sent, or the client gone.
    fn log(&self, _ctx: &RequestCtx, _done: &Done) {}
}

/// What the log phase learns about a finished response.
#[derive(Clone, Debug)]
pub struct Done {
    pub status: StatusCode,
    /// Response body bytes that went out.
    pub bytes_sent: u64,
    /// Whether the body ended normally (false: the client left, or the
    /// upstream failed mid-body).
    pub complete: bool,
}

/// The response body as the client receives it; runs the log phase of the
/// plugins that ran when it ends or is dropped.
pub struct Logged {
    inner: Body,
    plugins: Vec<Arc<dyn Plugin>>,
    ctx: RequestCtx,
    done: Done,
}

impl Logged {
    pub fn wrap(
        inner: Body,
        plugins: Vec<Arc<dyn Plugin>>,
        ctx: RequestCtx,
        status: StatusCode,
    ) -> Body {
        if plugins.is_empty() {
            return inner;
        }
        http_body_util::BodyExt::boxed(Logged {
            inner,
            plugins,
            ctx,
            done: Done {
                status,
                bytes_sent: 0,
                complete: false,
            },
        })
    }
}

impl http_body::Body for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            std::task::Poll::Ready(Some(Ok(frame))) => {
                let n = frame.data_ref().map_or(0, |d| d.len() as u64);
                self.done.bytes_sent += n;
            }
            std::task::Poll::Ready(None) => self.done.complete = true,
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

impl Drop for Logged {
    fn drop(&mut self) {
        if http_body::Body::is_end_stream(&self.inner) {
            self.done.complete = true;
        }
        for plugin in &self.plugins {
            plugin.log(&self.ctx, &self.done);
        }
    }
}

/// How to build a plugin from its entity's `config`; `state` gives access
/// to credentials and other entities a plugin may index.
pub type BuildFn = fn(&serde_json::Value, &State) -> Result<Arc<dyn Plugin>, String>;

/// A plugin the gateway knows.
pub struct PluginSpec {
    pub name: &'static str,
    /// Kong's priority: higher runs first.
    pub priority: i32,
    pub build: BuildFn,
}

/// Every plugin implemented, one line each.
pub static REGISTRY: &[PluginSpec] = &[
    PluginSpec {
        name: "correlation-id",
        priority: 100_001,
        build: correlation_id::build,
    },
    PluginSpec {
        name: "cors",
        priority: 2000,
        build: cors::build,
    },
    PluginSpec {
        name: "ip-restriction",
        priority: 990,
        build: ip_restriction::build,
    },
    PluginSpec {
        name: "request-size-limiting",
        priority: 951,
        build: request_size_limiting::build,
    },
    PluginSpec {
        name: "prometheus",
        priority: 13,
        build: prometheus::build,
    },
    PluginSpec {
        name: "jwt",
        priority: 1450,
        build: jwt::build,
    },
    PluginSpec {
        name: "key-auth",
        priority: 1250,
        build: key_auth::build,
    },
    PluginSpec {
        name: "acl",
        priority: 950,
        build: acl::build,
    },
    PluginSpec {
        name: "request-transformer",
        priority: 801,
        build: request_transformer::build,
    },
    PluginSpec {
        name: "response-transformer",
        priority: 800,
        build: response_transformer::build,
    },
    PluginSpec {
        name: "rate-limiting",
        priority: 910,
        build: rate_limiting::build,
    },
];

/// A plugin entity's scope: which of route/service/consumer/group it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
struct Scope {
    route: Option<Uuid>,
    service: Option<Uuid>,
    consumer: Option<Uuid>,
    group: Option<Uuid>,
}

/// One compiled instance and the protocols it runs for.
struct Instance {
    plugin: Arc<dyn Plugin>,
    protocols: Protocols,
}

/// The instances of one plugin name, by scope.
struct Slot {
    name: &'static str,
    instances: HashMap<Scope, Instance>,
    has_consumer_scope: bool,
    has_group_scope: bool,
}

/// All compiled plugins of one state, in priority order.
#[derive(Default)]
pub struct Plugins {
    slots: Vec<Slot>,
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.slots.iter().map(|s| (s.name, s.instances.len())))
            .finish()
    }
}

impl Plugins {
    /// Builds every enabled plugin of `state` whose name is registered.
    /// One that fails to build is left out and logged (validation on the
    /// Admin API is meant to have refused it already).
    pub fn compile(state: &State) -> Plugins {
        let mut slots: Vec<(i32, Slot)> = Vec::new();
        for entity in state.iter(EntityKind::Plugin) {
            let Entity::Plugin(p) = entity else { continue };
            if !p.enabled {
                continue;
            }
            let Some(spec) = REGISTRY.iter().find(|s| s.name == p.name) else {
                tracing::warn!(plugin = %p.name, id = %p.id, "plugin not implemented; ignored");
                continue;
            };
            let instance = match (spec.build)(&p.config, state) {
                Ok(i) => i,
                Err(e) => {
                    tracing::warn!(plugin = %p.name, id = %p.id, error = %e, "plugin failed to build");
                    continue;
                }
            };
            let scope = Scope {
                route: p.route.as_ref().map(|f| f.id),
                service: p.service.as_ref().map(|f| f.id),
                consumer: p.consumer.as_ref().map(|f| f.id),
                group: p.consumer_group.as_ref().map(|f| f.id),
            };
            let slot = match slots.iter_mut().find(|(_, s)| s.name == spec.name) {
                Some((_, s)) => s,
                None => {
                    slots.push((
                        spec.priority,
                        Slot {
                            name: spec.name,
                            instances: HashMap::new(),
                            has_consumer_scope: false,
                            has_group_scope: false,
                        },
                    ));
                    &mut slots.last_mut().expect("just pushed").1
                }
            };
            slot.has_consumer_scope |= scope.consumer.is_some();
            slot.has_group_scope |= scope.group.is_some();
            slot.instances.insert(
                scope,
                Instance {
                    plugin: instance,
                    protocols: Protocols::of(&p.protocols),
                },
            );
        }
        slots.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.name.cmp(b.1.name)));
        Plugins {
            slots: slots.into_iter().map(|(_, s)| s).collect(),
        }
    }

    /// How many plugin names have at least one instance.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The instance of the `index`-th plugin (priority order) that applies
    /// to this request now, by Kong's precedence: consumer+route+service,
    /// group+route+service, consumer+route, consumer+service, group+route,
    /// group+service, route+service, consumer, group, route, service,
    /// global. `None` also when that instance's `protocols` leave out the
    /// request's protocol.
    pub fn resolve(&self, index: usize, ctx: &RequestCtx) -> Option<Arc<dyn Plugin>> {
        let slot = self.slots.get(index)?;
        let r = ctx.route_id;
        let s = ctx.service_id;
        let c = if slot.has_consumer_scope {
            ctx.consumer.as_ref().map(|c| c.id)
        } else {
            None
        };
        let groups: &[Uuid] = if slot.has_group_scope {
            &ctx.consumer_groups
        } else {
            &[]
        };
        let get = |route: Option<Uuid>,
                   service: Option<Uuid>,
                   consumer: Option<Uuid>,
                   group: Option<Uuid>| {
            slot.instances.get(&Scope {
                route,
                service,
                consumer,
                group,
            })
        };
        let by_group = |route: Option<Uuid>, service: Option<Uuid>| {
            groups
                .iter()
                .find_map(|g| get(route, service, None, Some(*g)))
        };
        let present = |x: Option<Uuid>| x.is_some();
        let mut found = None;
        if present(c) && present(r) && present(s) {
            found = get(r, s, c, None);
        }
        found = found.or_else(|| {
            if present(r) && present(s) {
                by_group(r, s)
            } else {
                None
            }
        });
        if present(c) {
            found = found
                .or_else(|| r.and_then(|_| get(r, None, c, None)))
                .or_else(|| s.and_then(|_| get(None, s, c, None)));
        }
        found = found
            .or_else(|| r.and_then(|_| by_group(r, None)))
            .or_else(|| s.and_then(|_| by_group(None, s)));
        if present(r) && present(s) {
            found = found.or_else(|| get(r, s, None, None));
        }
        if present(c) {
            found = found.or_else(|| get(None, None, c, None));
        }
        found
            .or_else(|| by_group(None, None))
            .or_else(|| r.and_then(|_| get(r, None, None, None)))
            .or_else(|| s.and_then(|_| get(None, s, None, None)))
            .or_else(|| get(None, None, None, None))
            .filter(|i| i.protocols.contains(ctx.protocol))
            .map(|i| i.plugin.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Command, Proposal};
    use serde_json::json;

    /// A state with route 100 (of service 300) and consumer 200, plus the
    /// given plugins.
    fn with_plugins(plugins: Vec<serde_json::Value>) -> State {
        let mut s = State::default();
        let mut entities = vec![
            (
                EntityKind::Service,
                json!({"id": Uuid::from_u128(300), "host": "example.com"}),
            ),
            (
                EntityKind::Route,
                json!({"id": Uuid::from_u128(100), "paths": ["/"], "service": {"id": Uuid::from_u128(300)}}),
            ),
            (
                EntityKind::Consumer,
                json!({"id": Uuid::from_u128(200), "username": "c"}),
            ),
        ];
        for (i, mut p) in plugins.into_iter().enumerate() {
            p["id"] = json!(Uuid::from_u128(i as u128 + 1).to_string());
            entities.push((EntityKind::Plugin, p));
        }
        for (kind, value) in entities {
            let entity = Entity::from_json(kind, value).expect("entity json");
            s.apply(&Proposal {
                request_id: Uuid::new_v4(),
                command: Command::Upsert { entity },
            })
            .expect("apply");
        }
        s
    }

    fn limit_of(p: &Arc<dyn Plugin>) -> Option<Reply> {
        // Probe the instance through its public behaviour: a request with
        // a Content-Length of 1500 bytes.
        let (mut parts, _) = http::Request::builder()
            .header("content-length", "1500")
            .body(())
            .unwrap()
            .into_parts();
        p.access(&mut RequestCtx::default(), &mut parts)
    }

    #[test]
    fn most_specific_scope_wins_and_consumer_resolves_late() {
        let route = Uuid::from_u128(100);
        let consumer = Uuid::from_u128(200);
        let s = with_plugins(vec![
            json!({"name":"request-size-limiting","config":{"allowed_payload_size":1,"size_unit":"kilobytes"}}),
            json!({"name":"request-size-limiting","route":{"id":route.to_string()},"config":{"allowed_payload_size":1,"size_unit":"megabytes"}}),
            json!({"name":"request-size-limiting","consumer":{"id":consumer.to_string()},"config":{"allowed_payload_size":1,"size_unit":"bytes"}}),
        ]);
        let plugins = Plugins::compile(&s);
        assert_eq!(plugins.len(), 1);
        let mut ctx = RequestCtx::default();
        // Global: 1 KB → 1500 bytes rejected.
        assert!(limit_of(&plugins.resolve(0, &ctx).unwrap()).is_some());
        // Route-scoped: 1 MB → accepted.
        ctx.route_id = Some(route);
        assert!(limit_of(&plugins.resolve(0, &ctx).unwrap()).is_none());
        // Consumer-scoped beats route-scoped once the consumer is known.
        ctx.consumer = Some(ConsumerInfo {
            id: consumer,
            username: None,
            custom_id: None,
        });
        assert!(limit_of(&plugins.resolve(0, &ctx).unwrap()).is_some());
    }

    struct Recorder(std::sync::Mutex<Vec<Done>>);

    impl Plugin for Recorder {
        fn log(&self, _ctx: &RequestCtx, done: &Done) {
            self.0.lock().unwrap().push(done.clone());
        }
    }

    #[tokio::test]
    async fn log_phase_runs_once_the_body_is_over() {
        use http_body_util::{BodyExt, Full};
        let rec = Arc::new(Recorder(Default::default()));
        let body: Body = Full::new(Bytes::from_static(b"hello"))
            .map_err(|never| match never {})
            .boxed();
        let plugins: Vec<Arc<dyn Plugin>> = vec![rec.clone()];
        let logged = Logged::wrap(body, plugins, RequestCtx::default(), StatusCode::OK);
        assert!(
            rec.0.lock().unwrap().is_empty(),
            "not before the body is sent"
        );
        let got = logged.collect().await.unwrap().to_bytes();
        assert_eq!(&got[..], b"hello");
        let done = rec.0.lock().unwrap().clone();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].bytes_sent, 5);
        assert!(done[0].complete);
    }

    #[test]
    fn an_instance_runs_only_for_its_protocols() {
        let route = Uuid::from_u128(100);
        let s = with_plugins(vec![
            json!({"name":"request-size-limiting","protocols":["http","https"],
                   "config":{"allowed_payload_size":1,"size_unit":"megabytes"}}),
            json!({"name":"request-size-limiting","route":{"id":route.to_string()},
                   "protocols":["https"],
                   "config":{"allowed_payload_size":1,"size_unit":"kilobytes"}}),
        ]);
        let plugins = Plugins::compile(&s);
        let mut ctx = RequestCtx {
            route_id: Some(route),
            protocol: Protocol::Https,
            ..RequestCtx::default()
        };
        assert!(limit_of(&plugins.resolve(0, &ctx).unwrap()).is_some());
        // Plain http: the route's instance decides, and it is not for http
        // (no fallback to the global one).
        ctx.protocol = Protocol::Http;
        assert!(plugins.resolve(0, &ctx).is_none());
        // Another route: the global instance, for http but not for grpc.
        ctx.route_id = Some(Uuid::from_u128(101));
        assert!(limit_of(&plugins.resolve(0, &ctx).unwrap()).is_none());
        ctx.protocol = Protocol::Grpc;
        assert!(plugins.resolve(0, &ctx).is_none());
    }

    #[test]
    fn the_request_protocol_follows_the_route_family_and_tls() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cases = [
            (&["http", "https"][..], false, Protocol::Http),
            (&["https"][..], true, Protocol::Https),
            (&["grpc", "grpcs"][..], false, Protocol::Grpc),
            (&["grpcs"][..], true, Protocol::Grpcs),
            (&["ws", "wss"][..], false, Protocol::Ws),
            (&["wss"][..], true, Protocol::Wss),
        ];
        for (route, tls, expected) in cases {
            assert_eq!(
                Protocol::of_request(&names(route), tls),
                expected,
                "{route:?}"
            );
        }
        let set = Protocols::of(&names(&["grpc", "wss", "tcp"]));
        let members: Vec<_> = Protocol::ALL.iter().filter(|p| set.contains(**p)).collect();
        assert_eq!(members, [&Protocol::Grpc, &Protocol::Wss]);
    }

    #[test]
    fn disabled_plugins_are_skipped() {
        let s = with_plugins(vec![
            json!({"name":"request-size-limiting","enabled":false}),
        ]);
        assert!(Plugins::compile(&s).is_empty());
    }
}

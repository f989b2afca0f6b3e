//! The route table: every path and method the Admin API answers, and what
//! each does. Both the axum router and `/openapi.json` are generated from
//! it, so they cannot disagree.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::routing::{MethodFilter, MethodRouter};
use axum::Router;

use super::backend::Backend;
use super::errors::AdminError;
use super::handlers::{self, App};
use crate::model::EntityKind;

/// A collection nested under a parent entity: the parent's kind and the
/// child's foreign-key field pointing at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    pub kind: EntityKind,
    pub field: &'static str,
}

/// Which entities an endpoint works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    pub kind: EntityKind,
    pub parent: Option<Parent>,
}

/// What an endpoint does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    List(Scope),
    Create(Scope),
    Get(Scope),
    Put(Scope),
    Patch(Scope),
    Delete(Scope),
    /// Consumer group membership (`groups.rs`).
    Members(Members),
    /// `GET /tags` and `GET /tags/{tag}`.
    Tags,
    /// `GET /plugins/enabled`.
    PluginsEnabled,
    Root,
    Status,
    Cluster,
    AddNode,
    RemoveNode,
    ConfigGet,
    ConfigPost,
    OpenApi,
}

impl Op {
    /// True for the operations that change the configuration through a
    /// resolved entity (and so depend on how fresh the local state is).
    pub fn is_write(self) -> bool {
        match self {
            Op::Create(_) | Op::Put(_) | Op::Patch(_) | Op::Delete(_) => true,
            Op::Members(m) => matches!(
                m,
                Members::Add { .. } | Members::RemoveAll { .. } | Members::Remove { .. }
            ),
            _ => false,
        }
    }
}

/// Membership endpoints. `of_group`: the path starts at the group
/// (`/consumer_groups/{parent}/consumers…`) rather than at the consumer
/// (`/consumers/{parent}/consumer_groups…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Members {
    /// `GET /consumer_groups/{id}`: the group, its consumers and plugins.
    Detail,
    List {
        of_group: bool,
    },
    Add {
        of_group: bool,
    },
    RemoveAll {
        of_group: bool,
    },
    Get {
        of_group: bool,
    },
    Remove {
        of_group: bool,
    },
}

/// One path of the table with its methods.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// axum / OpenAPI path syntax (`/services/{id}`).
    pub path: String,
    pub ops: Vec<(Method, Op)>,
    /// OpenAPI tag grouping this path.
    pub group: String,
}

/// Top-level collections: URL segment and kind.
const COLLECTIONS: &[(&str, EntityKind)] = &[
    ("services", EntityKind::Service),
    ("routes", EntityKind::Route),
    ("consumers", EntityKind::Consumer),
    ("consumer_groups", EntityKind::ConsumerGroup),
    ("plugins", EntityKind::Plugin),
    ("upstreams", EntityKind::Upstream),
    ("certificates", EntityKind::Certificate),
    ("snis", EntityKind::Sni),
    ("jwts", EntityKind::JwtCredential),
    ("key-auths", EntityKind::KeyAuthCredential),
    ("acls", EntityKind::AclCredential),
];

/// Nested collections: parent segment, child segment, child kind, the
/// child's foreign key field, parent kind.
const NESTED: &[(&str, &str, EntityKind, &str, EntityKind)] = &[
    (
        "services",
        "routes",
        EntityKind::Route,
        "service",
        EntityKind::Service,
    ),
    (
        "services",
        "plugins",
        EntityKind::Plugin,
        "service",
        EntityKind::Service,
    ),
    (
        "routes",
        "plugins",
        EntityKind::Plugin,
        "route",
        EntityKind::Route,
    ),
    (
        "consumers",
        "plugins",
        EntityKind::Plugin,
        "consumer",
        EntityKind::Consumer,
    ),
    (
        "consumer_groups",
        "plugins",
        EntityKind::Plugin,
        "consumer_group",
        EntityKind::ConsumerGroup,
    ),
    (
        "upstreams",
        "targets",
        EntityKind::Target,
        "upstream",
        EntityKind::Upstream,
    ),
    (
        "consumers",
        "jwt",
        EntityKind::JwtCredential,
        "consumer",
        EntityKind::Consumer,
    ),
    (
        "consumers",
        "key-auth",
        EntityKind::KeyAuthCredential,
        "consumer",
        EntityKind::Consumer,
    ),
    (
        "consumers",
        "acls",
        EntityKind::AclCredential,
        "consumer",
        EntityKind::Consumer,
    ),
    (
        "certificates",
        "snis",
        EntityKind::Sni,
        "certificate",
        EntityKind::Certificate,
    ),
];

fn spec(path: impl Into<String>, group: &str, ops: Vec<(Method, Op)>) -> RouteSpec {
    RouteSpec {
        path: path.into(),
        ops,
        group: group.to_string(),
    }
}

/// The methods of one path.
type Methods = Vec<(Method, Op)>;

/// The collection and the entity endpoints of a scope.
fn crud(scope: Scope) -> (Methods, Methods) {
    (
        vec![
            (Method::GET, Op::List(scope)),
            (Method::POST, Op::Create(scope)),
        ],
        vec![
            (Method::GET, Op::Get(scope)),
            (Method::PUT, Op::Put(scope)),
            (Method::PATCH, Op::Patch(scope)),
            (Method::DELETE, Op::Delete(scope)),
        ],
    )
}

/// The whole table.
pub fn table() -> Vec<RouteSpec> {
    let mut t = vec![
        spec("/", "information", vec![(Method::GET, Op::Root)]),
        spec("/status", "information", vec![(Method::GET, Op::Status)]),
        spec(
            "/openapi.json",
            "information",
            vec![(Method::GET, Op::OpenApi)],
        ),
        spec("/cluster", "cluster", vec![(Method::GET, Op::Cluster)]),
        spec(
            "/cluster/nodes",
            "cluster",
            vec![(Method::POST, Op::AddNode)],
        ),
        spec(
            "/cluster/nodes/{id}",
            "cluster",
            vec![(Method::DELETE, Op::RemoveNode)],
        ),
        spec(
            "/config",
            "config",
            vec![(Method::GET, Op::ConfigGet), (Method::POST, Op::ConfigPost)],
        ),
        spec("/tags", "tags", vec![(Method::GET, Op::Tags)]),
        spec("/tags/{tag}", "tags", vec![(Method::GET, Op::Tags)]),
        spec(
            "/plugins/enabled",
            "plugins",
            vec![(Method::GET, Op::PluginsEnabled)],
        ),
    ];
    for &(segment, kind) in COLLECTIONS {
        let (coll, mut item) = crud(Scope { kind, parent: None });
        if kind == EntityKind::ConsumerGroup {
            // Kong shows a group with its consumers and plugins.
            item[0] = (Method::GET, Op::Members(Members::Detail));
        }
        t.push(spec(format!("/{segment}"), segment, coll));
        t.push(spec(format!("/{segment}/{{id}}"), segment, item));
    }
    for &(parent_seg, child_seg, kind, field, parent_kind) in NESTED {
        let parent = Some(Parent {
            kind: parent_kind,
            field,
        });
        let (coll, item) = crud(Scope { kind, parent });
        t.push(spec(
            format!("/{parent_seg}/{{parent}}/{child_seg}"),
            parent_seg,
            coll,
        ));
        t.push(spec(
            format!("/{parent_seg}/{{parent}}/{child_seg}/{{id}}"),
            parent_seg,
            item,
        ));
    }
    for (of_group, path) in [
        (true, "/consumer_groups/{parent}/consumers"),
        (false, "/consumers/{parent}/consumer_groups"),
    ] {
        let group = if of_group {
            "consumer_groups"
        } else {
            "consumers"
        };
        t.push(spec(
            path,
            group,
            vec![
                (Method::GET, Op::Members(Members::List { of_group })),
                (Method::POST, Op::Members(Members::Add { of_group })),
                (Method::DELETE, Op::Members(Members::RemoveAll { of_group })),
            ],
        ));
        t.push(spec(
            format!("{path}/{{id}}"),
            group,
            vec![
                (Method::GET, Op::Members(Members::Get { of_group })),
                (Method::DELETE, Op::Members(Members::Remove { of_group })),
            ],
        ));
    }
    // Revocations are created and lifted, never edited.
    let revocations = Scope {
        kind: EntityKind::JwtRevocation,
        parent: None,
    };
    t.push(spec(
        "/jwt-revocations",
        "jwt-revocations",
        vec![
            (Method::GET, Op::List(revocations)),
            (Method::POST, Op::Create(revocations)),
        ],
    ));
    t.push(spec(
        "/jwt-revocations/{id}",
        "jwt-revocations",
        vec![
            (Method::GET, Op::Get(revocations)),
            (Method::DELETE, Op::Delete(revocations)),
        ],
    ));
    t
}

fn filter(method: &Method) -> Option<MethodFilter> {
    Some(match *method {
        Method::GET => MethodFilter::GET,
        Method::POST => MethodFilter::POST,
        Method::PUT => MethodFilter::PUT,
        Method::PATCH => MethodFilter::PATCH,
        Method::DELETE => MethodFilter::DELETE,
        _ => return None,
    })
}

async fn method_not_allowed() -> AdminError {
    AdminError::message(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
}

async fn not_found() -> AdminError {
    AdminError::not_found()
}

/// The axum router for `table`, answering 404 and 405 in Kong's shape.
pub fn build<B: Backend>(table: &[RouteSpec], app: App<B>) -> Router {
    let mut router: Router<App<B>> = Router::new();
    for spec in table {
        let mut methods: MethodRouter<App<B>> = MethodRouter::new();
        for (method, op) in &spec.ops {
            let Some(f) = filter(method) else { continue };
            let op = *op;
            methods = methods.on(f, move |State(app): State<App<B>>, req: Request| {
                // Boxed: keeps the futures of the tower stack small.
                Box::pin(handlers::dispatch(app, op, req))
            });
        }
        router = router.route(&spec.path, methods.fallback(method_not_allowed));
    }
    router.fallback(not_found).with_state(app)
}

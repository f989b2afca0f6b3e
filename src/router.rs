//! The router: `compile(&State)` turns the routes of one applied state into
//! an ordered list of matchers, once per config change; `Router::find`
//! picks the route for a request with Kong's semantics (hosts with
//! wildcards, prefix and `~` regex paths, methods, headers, SNIs) and
//! Kong's priority order. A request over TLS matches only routes that
//! accept a TLS protocol; a plain request matches https-only routes too,
//! and the caller answers it 426 as Kong does.

use std::cmp::Reverse;
use std::sync::Arc;

use http::HeaderMap;
use regex::Regex;
use uuid::Uuid;

use crate::model::{Entity, EntityKind, Route, State};

/// What the router looks at in a request.
#[derive(Clone, Copy, Debug)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// The Host header (or `:authority`), possibly with a port.
    pub host: Option<&'a str>,
    /// The path, without the query string.
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    /// The TLS server name the client asked for, when over TLS.
    pub sni: Option<&'a str>,
    /// Whether the request came over TLS.
    pub tls: bool,
}

/// The route a request matched, and how much of its path the route's path
/// matcher consumed (what `strip_path` removes).
#[derive(Clone, Debug)]
pub struct Match {
    pub route: Arc<Route>,
    /// Length in bytes of the matched path prefix (0 when the route has
    /// no path matcher).
    pub matched_len: usize,
    /// The route's `~` regex paths, compiled (anchored at the start), in
    /// the order the route lists them: aggregation takes its `{name}`
    /// parameters from their captures without compiling anything per
    /// request.
    pub regex_paths: Arc<[Regex]>,
}

#[derive(Debug)]
enum HostMatcher {
    /// Lowercased; `with_port` when the route names a port too.
    Exact { host: String, with_port: bool },
    /// `*.example.com`, kept as `.example.com`.
    AnyPrefix(String),
    /// `example.*`, kept as `example.`.
    AnySuffix(String),
}

impl HostMatcher {
    fn parse(raw: &str) -> HostMatcher {
        let lower = raw.to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix('*') {
            HostMatcher::AnyPrefix(rest.to_string())
        } else if let Some(rest) = lower.strip_suffix('*') {
            HostMatcher::AnySuffix(rest.to_string())
        } else {
            let with_port = lower.rsplit_once(':').is_some_and(|(_, p)| {
                !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !lower.ends_with(']')
            });
            HostMatcher::Exact {
                host: lower,
                with_port,
            }
        }
    }

    fn is_wildcard(&self) -> bool {
        !matches!(self, HostMatcher::Exact { .. })
    }

    /// `full` is the lowercased Host with its port, `bare` without.
    fn matches(&self, full: &str, bare: &str) -> bool {
        match self {
            HostMatcher::Exact { host, with_port } => {
                if *with_port {
                    host == full
                } else {
                    host == bare
                }
            }
            HostMatcher::AnyPrefix(suffix) => bare.len() > suffix.len() && bare.ends_with(suffix),
            HostMatcher::AnySuffix(prefix) => bare.len() > prefix.len() && bare.starts_with(prefix),
        }
    }
}

#[derive(Debug)]
enum PathMatcher {
    Prefix(String),
    /// Anchored at the start of the path, as Kong does.
    Regex(Regex),
}

impl PathMatcher {
    /// The length of the matched part of `path`, if it matches.
    fn matches(&self, path: &str) -> Option<usize> {
        match self {
            PathMatcher::Prefix(p) => path.starts_with(p.as_str()).then_some(p.len()),
            PathMatcher::Regex(re) => re.find(path).map(|m| m.end()),
        }
    }
}

#[derive(Debug)]
enum HeaderValueMatcher {
    /// Compared case-insensitively.
    Exact(String),
    /// `~*` values: a case-insensitive regex.
    Regex(Regex),
}

#[derive(Debug)]
struct HeaderMatcher {
    name: http::HeaderName,
    values: Vec<HeaderValueMatcher>,
}

impl HeaderMatcher {
    fn matches(&self, headers: &HeaderMap) -> bool {
        headers.get_all(&self.name).iter().any(|v| {
            let Ok(v) = v.to_str() else { return false };
            self.values.iter().any(|m| match m {
                HeaderValueMatcher::Exact(e) => e.eq_ignore_ascii_case(v),
                HeaderValueMatcher::Regex(re) => re.is_match(v),
            })
        })
    }
}

/// One (route, path) pair: Kong splits a route with several paths into
/// one matcher per path, each with its own priority.
#[derive(Debug)]
struct Entry {
    route: Arc<Route>,
    /// Shared by every entry of the route (see `Match::regex_paths`).
    regex_paths: Arc<[Regex]>,
    hosts: Vec<HostMatcher>,
    path: Option<PathMatcher>,
    methods: Vec<String>,
    headers: Vec<HeaderMatcher>,
    snis: Vec<String>,
    accepts_tls: bool,
}

impl Entry {
    fn find(&self, req: &RequestParts<'_>, host_full: &str, host_bare: &str) -> Option<usize> {
        if req.tls && !self.accepts_tls {
            return None;
        }
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == req.method) {
            return None;
        }
        if !self.hosts.is_empty() && !self.hosts.iter().any(|h| h.matches(host_full, host_bare)) {
            return None;
        }
        if !self.snis.is_empty() {
            let sni = req.sni?;
            if !self.snis.iter().any(|s| s.eq_ignore_ascii_case(sni)) {
                return None;
            }
        }
        if !self.headers.iter().all(|h| h.matches(req.headers)) {
            return None;
        }
        match &self.path {
            None => Some(0),
            Some(p) => p.matches(req.path),
        }
    }
}

/// The compiled routing table of one state.
#[derive(Debug, Default)]
pub struct Router {
    entries: Vec<Entry>,
}

/// Kong's priority: more matcher kinds, plain hosts, more headers, regex
/// before prefix, higher `regex_priority`, longer path; then oldest first
/// and by id so that the order is total and the same on every node.
type SortKey = (
    Reverse<usize>,
    Reverse<bool>,
    Reverse<usize>,
    Reverse<bool>,
    Reverse<i64>,
    Reverse<usize>,
    i64,
    Uuid,
);

fn sort_key(route: &Route, hosts: &[HostMatcher], path: Option<&str>) -> SortKey {
    let kinds = [
        route.hosts.as_ref().is_some_and(|v| !v.is_empty()),
        route.paths.as_ref().is_some_and(|v| !v.is_empty()),
        route.methods.as_ref().is_some_and(|v| !v.is_empty()),
        route.headers.as_ref().is_some_and(|v| !v.is_empty()),
        route.snis.as_ref().is_some_and(|v| !v.is_empty()),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    let plain_hosts = !hosts.is_empty() && hosts.iter().all(|h| !h.is_wildcard());
    let header_count = route.headers.as_ref().map_or(0, |h| h.len());
    let is_regex = path.is_some_and(|p| p.starts_with('~'));
    let regex_priority = if is_regex { route.regex_priority } else { 0 };
    let path_len = path.map_or(0, str::len);
    (
        Reverse(kinds),
        Reverse(plain_hosts),
        Reverse(header_count),
        Reverse(is_regex),
        Reverse(regex_priority),
        Reverse(path_len),
        route.created_at,
        route.id,
    )
}

/// Compiles the routes of `state`. Routes that cannot be compiled (a bad
/// regex slipped past validation) and routes of disabled services are
/// left out rather than failing the whole table.
pub fn compile(state: &State) -> Router {
    let mut keyed: Vec<(SortKey, Entry)> = Vec::new();
    for entity in state.iter(EntityKind::Route) {
        let Entity::Route(route) = entity else {
            continue;
        };
        let service_disabled = route.service.as_ref().is_some_and(|fk| {
            matches!(state.get(EntityKind::Service, fk.id), Some(Entity::Service(s)) if !s.enabled)
        });
        if service_disabled {
            continue;
        }
        match compile_route(route) {
            Ok(entries) => keyed.extend(entries),
            Err(e) => tracing::warn!(route = %route.id, error = %e, "route left out of the router"),
        }
    }
    keyed.sort_by_key(|e| e.0);
    Router {
        entries: keyed.into_iter().map(|(_, e)| e).collect(),
    }
}

fn compile_route(route: &Route) -> Result<Vec<(SortKey, Entry)>, regex::Error> {
    let route_arc = Arc::new(route.clone());
    let hosts = || -> Vec<HostMatcher> {
        route
            .hosts
            .iter()
            .flatten()
            .map(|h| HostMatcher::parse(h))
            .collect()
    };
    let methods: Vec<String> = route
        .methods
        .iter()
        .flatten()
        .map(|m| m.to_ascii_uppercase())
        .collect();
    let mut headers = Vec::new();
    for (name, values) in route.headers.iter().flatten() {
        let Ok(name) = http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) else {
            continue;
        };
        let mut matchers = Vec::new();
        for v in values {
            matchers.push(match v.strip_prefix("~*") {
                Some(re) => HeaderValueMatcher::Regex(Regex::new(&format!("(?i){re}"))?),
                None => HeaderValueMatcher::Exact(v.clone()),
            });
        }
        headers.push(HeaderMatcher {
            name,
            values: matchers,
        });
    }
    let snis: Vec<String> = route
        .snis
        .iter()
        .flatten()
        .map(|s| s.to_ascii_lowercase())
        .collect();

    let paths: Vec<Option<&String>> = match route.paths.as_ref() {
        Some(p) if !p.is_empty() => p.iter().map(Some).collect(),
        _ => vec![None],
    };
    let mut matchers = Vec::with_capacity(paths.len());
    for raw in &paths {
        matchers.push(match raw {
            Some(p) => Some(match p.strip_prefix('~') {
                Some(re) => PathMatcher::Regex(Regex::new(&format!("^(?:{re})"))?),
                None => PathMatcher::Prefix(p.to_string()),
            }),
            None => None,
        });
    }
    let regex_paths: Arc<[Regex]> = matchers
        .iter()
        .filter_map(|m| match m {
            Some(PathMatcher::Regex(re)) => Some(re.clone()),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    for (raw, path) in paths.into_iter().zip(matchers) {
        let hosts = hosts();
        let key = sort_key(route, &hosts, raw.map(String::as_str));
        let headers = headers
            .iter()
            .map(|h| HeaderMatcher {
                name: h.name.clone(),
                values: h
                    .values
                    .iter()
                    .map(|v| match v {
                        HeaderValueMatcher::Exact(s) => HeaderValueMatcher::Exact(s.clone()),
                        HeaderValueMatcher::Regex(r) => HeaderValueMatcher::Regex(r.clone()),
                    })
                    .collect(),
            })
            .collect();
        out.push((
            key,
            Entry {
                route: route_arc.clone(),
                regex_paths: regex_paths.clone(),
                hosts,
                path,
                methods: methods.clone(),
                headers,
                snis: snis.clone(),
                accepts_tls: accepts_tls(route),
            },
        ));
    }
    Ok(out)
}

/// Whether a route takes requests that arrive over TLS.
pub fn accepts_tls(route: &Route) -> bool {
    route
        .protocols
        .iter()
        .any(|p| matches!(p.as_str(), "https" | "grpcs" | "tls" | "wss"))
}

/// Whether a route takes plain-text requests.
pub fn accepts_plain(route: &Route) -> bool {
    route
        .protocols
        .iter()
        .any(|p| matches!(p.as_str(), "http" | "grpc" | "ws"))
}

impl Router {
    /// The highest-priority route matching `req`.
    pub fn find(&self, req: &RequestParts<'_>) -> Option<Match> {
        let full = req.host.unwrap_or("").to_ascii_lowercase();
        let bare = strip_port(&full);
        self.entries.iter().find_map(|e| {
            e.find(req, &full, bare).map(|matched_len| Match {
                route: e.route.clone(),
                matched_len,
                regex_paths: e.regex_paths.clone(),
            })
        })
    }

    /// How many (route, path) matchers the table holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The path as routes see it (and as it is forwarded): percent-encoded
/// unreserved characters decoded and `.`/`..` segments resolved, as Kong
/// normalizes before matching, so `/public/../admin` or `/%61dmin` cannot
/// slip past a route meant for `/admin`. Other escapes are kept.
pub fn normalize_path(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.contains('%') && !path.contains("/.") {
        return std::borrow::Cow::Borrowed(path);
    }
    let decoded = decode_unreserved(path);
    let mut out: Vec<&str> = Vec::new();
    let trailing = decoded.ends_with("/.")
        || decoded.ends_with("/..")
        || (decoded.ends_with('/') && decoded.len() > 1);
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut joined = String::with_capacity(decoded.len());
    for s in &out {
        joined.push('/');
        joined.push_str(s);
    }
    if joined.is_empty() || trailing {
        joined.push('/');
    }
    std::borrow::Cow::Owned(joined)
}

fn decode_unreserved(path: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                let b = h * 16 + l;
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                    out.push(b);
                } else {
                    out.push(b'%');
                    out.push(bytes[i + 1].to_ascii_uppercase());
                    out.push(bytes[i + 2].to_ascii_uppercase());
                }
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    // Only ASCII bytes were replaced, so valid UTF-8 stays valid.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// `example.com:8000` → `example.com`; `[::1]:80` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Command, Proposal};
    use serde_json::json;

    fn state(routes: Vec<serde_json::Value>) -> State {
        let mut s = State::default();
        for (i, mut r) in routes.into_iter().enumerate() {
            if r.get("id").is_none() {
                r["id"] = json!(Uuid::from_u128(i as u128 + 1).to_string());
            }
            if r.get("created_at").is_none() {
                r["created_at"] = json!(i as i64);
            }
            let entity = Entity::from_json(EntityKind::Route, r).expect("route json");
            s.apply(&Proposal {
                request_id: Uuid::new_v4(),
                command: Command::Create { entity },
            })
            .expect("apply");
        }
        s
    }

    fn find(
        router: &Router,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Option<(String, usize)> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        router
            .find(&RequestParts {
                method,
                host: Some(host),
                path,
                headers: &map,
                sni: None,
                tls: false,
            })
            .map(|m| (m.route.name.clone().unwrap_or_default(), m.matched_len))
    }

    fn name(r: Option<(String, usize)>) -> Option<String> {
        r.map(|(n, _)| n)
    }

    #[test]
    fn a_match_carries_the_routes_compiled_regex_paths_in_order() {
        let router = compile(&state(vec![json!({
            "name": "r",
            "paths": ["/plain", "~/a/(?P<x>\\d+)", "~/a/(?P<y>\\d+)/longer"]
        })]));
        let headers = HeaderMap::new();
        let m = router
            .find(&RequestParts {
                method: "GET",
                host: None,
                path: "/a/5/longer",
                headers: &headers,
                sni: None,
                tls: false,
            })
            .expect("match");
        let listed: Vec<&str> = m.regex_paths.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            listed,
            ["^(?:/a/(?P<x>\\d+))", "^(?:/a/(?P<y>\\d+)/longer)"],
            "the route's order, not the router's priority order"
        );
    }

    #[test]
    fn no_route_no_match() {
        let r = compile(&State::default());
        assert!(find(&r, "GET", "a", "/", &[]).is_none());
    }

    #[test]
    fn exact_and_wildcard_hosts() {
        let r = compile(&state(vec![
            json!({"name":"exact","hosts":["api.example.com"]}),
            json!({"name":"star-left","hosts":["*.example.com"]}),
            json!({"name":"star-right","hosts":["example.*"]}),
            json!({"name":"with-port","hosts":["p.example.org:8080"]}),
        ]));
        assert_eq!(
            name(find(&r, "GET", "API.example.com:8000", "/", &[])),
            Some("exact".into())
        );
        assert_eq!(
            name(find(&r, "GET", "x.y.example.com", "/", &[])),
            Some("star-left".into())
        );
        assert_eq!(
            name(find(&r, "GET", "example.net", "/", &[])),
            Some("star-right".into())
        );
        assert_eq!(
            name(find(&r, "GET", "p.example.org:8080", "/", &[])),
            Some("with-port".into())
        );
        assert_eq!(find(&r, "GET", "p.example.org:9090", "/", &[]), None);
        assert_eq!(find(&r, "GET", "evilexample.com", "/", &[]), None);
        assert_eq!(find(&r, "GET", "other.org", "/", &[]), None);
    }

    #[test]
    fn plain_host_beats_wildcard() {
        let r = compile(&state(vec![
            json!({"name":"wild","hosts":["*.example.com"]}),
            json!({"name":"plain","hosts":["a.example.com"]}),
        ]));
        assert_eq!(
            name(find(&r, "GET", "a.example.com", "/", &[])),
            Some("plain".into())
        );
        assert_eq!(
            name(find(&r, "GET", "b.example.com", "/", &[])),
            Some("wild".into())
        );
    }

    #[test]
    fn prefix_paths_longest_first() {
        let r = compile(&state(vec![
            json!({"name":"short","paths":["/api"]}),
            json!({"name":"long","paths":["/api/v1"]}),
        ]));
        assert_eq!(
            find(&r, "GET", "h", "/api/v1/x", &[]),
            Some(("long".into(), 7))
        );
        assert_eq!(
            find(&r, "GET", "h", "/api/v2", &[]),
            Some(("short".into(), 4))
        );
        assert_eq!(find(&r, "GET", "h", "/other", &[]), None);
    }

    #[test]
    fn regex_before_prefix_and_regex_priority() {
        let r = compile(&state(vec![
            json!({"name":"prefix","paths":["/users/123"]}),
            json!({"name":"re-low","paths":["~/users/\\d+"]}),
            json!({"name":"re-high","paths":["~/users/1\\d*"],"regex_priority":10}),
        ]));
        assert_eq!(
            find(&r, "GET", "h", "/users/123/x", &[]),
            Some(("re-high".into(), 10))
        );
        assert_eq!(
            name(find(&r, "GET", "h", "/users/9", &[])),
            Some("re-low".into())
        );
        // Regex paths are anchored at the start.
        assert_eq!(find(&r, "GET", "h", "/x/users/9", &[]), None);
    }

    #[test]
    fn methods_and_more_matchers_win() {
        let r = compile(&state(vec![
            json!({"name":"path-only","paths":["/"]}),
            json!({"name":"path-method","paths":["/"],"methods":["POST"]}),
        ]));
        assert_eq!(
            name(find(&r, "POST", "h", "/a", &[])),
            Some("path-method".into())
        );
        assert_eq!(
            name(find(&r, "GET", "h", "/a", &[])),
            Some("path-only".into())
        );
    }

    #[test]
    fn headers_exact_regex_and_count() {
        let r = compile(&state(vec![
            json!({"name":"one","paths":["/"],"headers":{"x-version":["v1","V2"]}}),
            json!({"name":"two","paths":["/"],"headers":{"x-version":["v1"],"x-tier":["~*^gold|silver$"]}}),
        ]));
        assert_eq!(
            name(find(&r, "GET", "h", "/", &[("X-Version", "v2")])),
            Some("one".into())
        );
        assert_eq!(
            name(find(
                &r,
                "GET",
                "h",
                "/",
                &[("x-version", "v1"), ("x-tier", "GOLD")]
            )),
            Some("two".into())
        );
        assert_eq!(
            name(find(
                &r,
                "GET",
                "h",
                "/",
                &[("x-version", "v1"), ("x-tier", "bronze")]
            )),
            Some("one".into())
        );
        assert_eq!(find(&r, "GET", "h", "/", &[("x-version", "v3")]), None);
    }

    #[test]
    fn snis_need_tls() {
        let r = compile(&state(vec![
            json!({"name":"s","snis":["secure.test"],"protocols":["https"]}),
        ]));
        let h = HeaderMap::new();
        let mut req = RequestParts {
            method: "GET",
            host: Some("secure.test"),
            path: "/",
            headers: &h,
            sni: None,
            tls: true,
        };
        assert!(r.find(&req).is_none());
        req.sni = Some("secure.test");
        assert!(r.find(&req).is_some());
        req.sni = Some("other.test");
        assert!(r.find(&req).is_none());
    }

    #[test]
    fn tls_requests_skip_plain_only_routes() {
        let r = compile(&state(vec![
            json!({"name":"plain","paths":["/x"],"protocols":["http"]}),
            json!({"name":"any","paths":["/"]}),
        ]));
        let h = HeaderMap::new();
        let mut req = RequestParts {
            method: "GET",
            host: None,
            path: "/x",
            headers: &h,
            sni: None,
            tls: false,
        };
        assert_eq!(r.find(&req).unwrap().route.name.as_deref(), Some("plain"));
        req.tls = true;
        assert_eq!(r.find(&req).unwrap().route.name.as_deref(), Some("any"));
    }

    #[test]
    fn multiple_paths_split_by_priority() {
        let r = compile(&state(vec![
            json!({"name":"a","paths":["/x","/shop/cart"]}),
            json!({"name":"b","paths":["/shop"]}),
        ]));
        assert_eq!(
            name(find(&r, "GET", "h", "/shop/cart/1", &[])),
            Some("a".into())
        );
        assert_eq!(
            name(find(&r, "GET", "h", "/shop/list", &[])),
            Some("b".into())
        );
        assert_eq!(name(find(&r, "GET", "h", "/x", &[])), Some("a".into()));
    }

    #[test]
    fn disabled_service_routes_are_left_out() {
        let mut s = State::default();
        let sid = Uuid::from_u128(99);
        let svc = Entity::from_json(
            EntityKind::Service,
            json!({"id": sid.to_string(), "host": "127.0.0.1", "enabled": false}),
        )
        .unwrap();
        s.apply(&Proposal {
            request_id: Uuid::new_v4(),
            command: Command::Create { entity: svc },
        })
        .unwrap();
        let route = Entity::from_json(
            EntityKind::Route,
            json!({"id": Uuid::from_u128(1).to_string(), "paths": ["/"], "service": {"id": sid.to_string()}}),
        )
        .unwrap();
        s.apply(&Proposal {
            request_id: Uuid::new_v4(),
            command: Command::Create { entity: route },
        })
        .unwrap();
        assert!(compile(&s).is_empty());
    }

    #[test]
    fn paths_are_normalized() {
        assert_eq!(normalize_path("/a/b"), "/a/b");
        assert_eq!(normalize_path("/public/../admin"), "/admin");
        assert_eq!(normalize_path("/%61dmin/x"), "/admin/x");
        assert_eq!(normalize_path("/a/./b/"), "/a/b/");
        assert_eq!(normalize_path("/../.."), "/");
        assert_eq!(normalize_path("/a%2fb"), "/a%2Fb");
        assert_eq!(normalize_path("/a/.."), "/");
        assert_eq!(normalize_path("/100%"), "/100%");
        assert_eq!(normalize_path("/x.y/.hidden"), "/x.y/.hidden");
    }

    #[test]
    fn strip_port_forms() {
        assert_eq!(strip_port("a.com:80"), "a.com");
        assert_eq!(strip_port("a.com"), "a.com");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
    }
}

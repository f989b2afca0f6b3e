//! The life of one request, in one function: route, protocol check,
//! plugins' access phase (each instance only for the request's protocol),
//! upstream request, forwarding (a gRPC call within the client's
//! `grpc-timeout`), response headers, response body, log (when the body is
//! over). Everything the gateway answers itself goes through `own` (in
//! gRPC's trailers-only form when the request is a gRPC call).

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{header, HeaderName, HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;

use super::balancer::HashInput;
use super::errors;
use super::forward::{self, ClientFacts, ForwardError, Forwarded, Guarded, UpstreamHead};
use super::grpc::{self, GatewayStatus};
use super::h1server::Upgrade;
use super::listener::ConnInfo;
use super::passthrough::{Answer, Passed};
use super::{aggregate, peek, realip, websocket, Shared};
use crate::observe::access_log::Entry;
use crate::observe::{count_request_body, Observed, RequestFacts};
use crate::plugins::correlation_id::CorrelationIdValue;
use crate::plugins::request_transformer::UpstreamPath;
use crate::plugins::{Body, Logged, Plugin, Protocol, Reply, RequestCtx};
use crate::router::{self, RequestParts};

pub(super) const VIA: HeaderValue = HeaderValue::from_static("1.1 raftgate");
pub(super) const X_KONG_UPSTREAM_LATENCY: HeaderName =
    HeaderName::from_static("x-kong-upstream-latency");
pub(super) const X_KONG_PROXY_LATENCY: HeaderName = HeaderName::from_static("x-kong-proxy-latency");
const X_KONG_RESPONSE_LATENCY: HeaderName = HeaderName::from_static("x-kong-response-latency");

/// A latency in milliseconds as a header value; the usual small ones
/// without formatting or allocating.
fn millis(d: Duration) -> HeaderValue {
    const SMALL: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    let ms = d.as_millis() as u64;
    match SMALL.get(ms as usize) {
        Some(s) => HeaderValue::from_static(s),
        None => HeaderValue::from(ms),
    }
}

/// A request the server refuses before it is routed (a head with both
/// Content-Length and Transfer-Encoding: RFC 9112 §6.1 lets a proxy reject
/// it, it is how requests are smuggled), answered and logged as the
/// gateway's own.
pub fn refuse(shared: &Shared, status: StatusCode, message: &str) -> Response<Body> {
    let start = Instant::now();
    let resp = own(start, Reply::message(status, message), false);
    observed(shared, resp, Entry::default(), RequestFacts::new(start))
}

/// Serves one request; every outcome, error or not, is an HTTP answer.
/// `upgrade`: the client's connection, offered when the request asks to
/// switch protocols (HTTP/1.1 only). An HTTP/1 client's answer may pass
/// the upstream's head on without a map (`passthrough`).
pub async fn handle(
    shared: &Shared,
    conn: &ConnInfo,
    req: Request<Body>,
    upgrade: Option<Upgrade>,
) -> Answer {
    let start = Instant::now();
    let snap = shared.snapshot.load_full();
    let (mut parts, body) = req.into_parts();
    // A gRPC call gets the gateway's own answers in gRPC's shape.
    let grpc_call = grpc::is_call(parts.version, &parts.headers);
    // Copies that share their bytes with the request (no allocation), so
    // that plugins may still change `parts`.
    let host_value: Option<HeaderValue> = match parts.headers.get(header::HOST) {
        Some(h) if h.to_str().is_ok() => Some(h.clone()),
        _ => parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
    };
    let host: Option<&str> = host_value.as_ref().and_then(|h| h.to_str().ok());
    let uri = parts.uri.clone();
    let path = router::normalize_path(uri.path());
    let client_ip = realip::client_ip(
        conn.remote.ip(),
        &parts.headers,
        &shared.settings.trusted_ips,
    );
    shared
        .observer
        .server
        .total_requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // What the log phase reports, filled only when someone reads it: the
    // access log, or a plugin's log phase. The path is logged without its
    // query string, and no header is: either may carry credentials.
    let logging = shared.observer.access_log.enabled();
    let named = logging || !snap.plugins.is_empty();
    let mut log_entry = Entry::default();
    if logging {
        log_entry.client_ip = Some(client_ip.to_string());
        log_entry.method = parts.method.as_str().to_string();
        log_entry.path = path.to_string();
    }
    let mut facts = RequestFacts::new(start);

    // 1. Route.
    let found = snap.router.find(&RequestParts {
        method: parts.method.as_str(),
        host,
        path: &path,
        headers: &parts.headers,
        sni: conn.sni.as_deref(),
        tls: conn.tls,
    });
    let Some(found) = found else {
        let resp = own(
            start,
            Reply::message(StatusCode::NOT_FOUND, errors::NO_ROUTE),
            grpc_call,
        );
        return observed(shared, resp, log_entry, facts).into();
    };
    let route = &found.route;
    if named {
        facts.route = Some(route.name.clone().unwrap_or_else(|| route.id.to_string()));
    }
    let scheme = if conn.tls { "https" } else { "http" };
    if let Some(reply) = grpc::check_route(route, parts.version, &parts.headers, conn.tls) {
        let resp = own(start, reply, grpc_call);
        return observed(shared, resp, log_entry, facts).into();
    }
    if !conn.tls && !router::accepts_plain(route) {
        let reply = wrong_protocol(route, host, &parts.uri);
        let resp = own(start, reply, grpc_call);
        return observed(shared, resp, log_entry, facts).into();
    }
    let Some(entry) = route
        .service
        .as_ref()
        .and_then(|s| snap.services.get(&s.id))
        .cloned()
    else {
        let resp = own(
            start,
            Reply::message(StatusCode::SERVICE_UNAVAILABLE, errors::NO_SERVICE),
            grpc_call,
        );
        return observed(shared, resp, log_entry, facts).into();
    };
    if named {
        facts.service = Some(
            entry
                .service
                .name
                .clone()
                .unwrap_or_else(|| entry.service.id.to_string()),
        );
    }

    // 2. Plugins, access phase, in priority order; a consumer found by an
    //    auth plugin changes which instance of the later plugins applies.
    let mut ctx = RequestCtx {
        route_id: Some(route.id),
        service_id: Some(entry.service.id),
        client_ip: Some(client_ip),
        scheme,
        protocol: Protocol::of_request(&route.protocols, conn.tls),
        ..RequestCtx::default()
    };
    // The client's deadline caps a gRPC call's upstream part.
    let deadline = matches!(ctx.protocol, Protocol::Grpc | Protocol::Grpcs)
        .then(|| grpc::timeout(&parts.headers))
        .flatten()
        .and_then(|t| start.checked_add(t));
    let mut ran: Vec<Arc<dyn Plugin>> = Vec::new();
    let mut body = if named {
        count_request_body(body, facts.bytes_in.clone())
    } else {
        body
    };
    for i in 0..snap.plugins.len() {
        let Some(plugin) = snap.plugins.resolve(i, &ctx) else {
            continue;
        };
        // A plugin that looks into the body gets it read ahead, once.
        if ctx.body.is_none() && plugin.wants_body(&ctx, &parts) {
            match peek::peek(body, peek::PEEK_LIMIT).await {
                Ok((peeked, rest)) => {
                    ctx.body = Some(peeked);
                    body = rest;
                }
                Err(reply) => {
                    return own_filtered(
                        start, reply, ran, ctx, shared, log_entry, facts, grpc_call,
                    )
                    .into();
                }
            }
        }
        let answer = plugin.access(&mut ctx, &mut parts);
        ran.push(plugin);
        if let Some(reply) = answer {
            return own_filtered(start, reply, ran, ctx, shared, log_entry, facts, grpc_call)
                .into();
        }
    }
    if let Some(peeked) = ctx.body.take() {
        body = peek::resume(peeked, body, &mut parts.headers);
    }
    for plugin in &ran {
        body = plugin.request_body(&ctx, body);
    }

    // 3. The upstream request head.
    let rest = if route.strip_path {
        path.get(found.matched_len..).unwrap_or("")
    } else {
        &path
    };
    // request-transformer's replace.uri takes the place of the routed path.
    let rest = ctx
        .extensions
        .get::<UpstreamPath>()
        .map_or(rest, |p| p.0.as_str());
    let mut path_and_query = forward::join_path(entry.service.path.as_deref(), rest);
    if let Some(q) = parts.uri.query() {
        path_and_query.push('?');
        path_and_query.push_str(q);
    }
    let prefix = (route.strip_path && found.matched_len > 0)
        .then(|| path.get(..found.matched_len))
        .flatten()
        .filter(|p| *p != "/");
    let upstream_host = match (&host_value, route.preserve_host) {
        (Some(h), true) => h.clone(),
        _ => entry.host_value.clone(),
    };
    // X-Real-IP: the connection's peer (formatted once per connection)
    // unless trusted proxies named another client.
    let real_ip = if client_ip == conn.remote.ip() {
        conn.ip_header.clone()
    } else {
        HeaderValue::from_str(&client_ip.to_string()).unwrap_or_else(|_| conn.ip_header.clone())
    };
    forward::strip_hop_by_hop(&mut parts.headers, upgrade.is_some());
    let mut headers = std::mem::take(&mut parts.headers);
    let forwarded = Forwarded::new(
        &headers,
        ClientFacts {
            ip: &conn.ip_header,
            real_ip: &real_ip,
            local_port: &conn.port_header,
            scheme,
            host: host_value.as_ref(),
            path: &path,
            prefix,
            trusted_peer: shared.settings.trusted_ips.contains(conn.remote.ip()),
        },
        upstream_host,
    );
    let consumer = ctx.consumer.as_ref().map(|c| c.id);

    // 3b. An aggregate route fans out instead (access phase already ran once).
    if let Some(agg) = &route.aggregate {
        forwarded.apply(&mut headers);
        let head = UpstreamHead {
            method: parts.method.clone(),
            path_and_query,
            headers,
        };
        let hash = HashInput {
            consumer,
            ip: ctx.client_ip,
            headers: &head.headers,
        };
        let params = aggregate::path_params(&found.regex_paths, &path);
        let reply = aggregate::fan_out(&snap, agg, &params, parts.uri.query(), &head, &hash).await;
        return own_filtered(start, reply, ran, ctx, shared, log_entry, facts, grpc_call).into();
    }
    let Ok(upstream_uri) = http::Uri::try_from(path_and_query) else {
        let reply = Reply::message(StatusCode::BAD_GATEWAY, errors::BAD_GATEWAY);
        return own_filtered(start, reply, ran, ctx, shared, log_entry, facts, grpc_call).into();
    };
    // The upstream gets the client's deadline less the gateway's time.
    if let Some(at) = deadline {
        if !grpc::pass_remaining_timeout(&mut headers, at) {
            let reply = grpc::deadline_exceeded();
            return own_filtered(start, reply, ran, ctx, shared, log_entry, facts, grpc_call)
                .into();
        }
    }
    let mut upstream_req = Request::new(body);
    *upstream_req.method_mut() = parts.method.clone();
    *upstream_req.uri_mut() = upstream_uri;
    *upstream_req.headers_mut() = headers;

    // 4. Forward (one clock read for both ends of the gateway's part).
    let sent = Instant::now();
    let proxy_latency = sent.saturating_duration_since(start);
    facts.kong_latency = proxy_latency;
    if named {
        facts.upstream_addr = Some(match &entry.balancer {
            None => entry.static_addr.clone(),
            // The target picked is the balancer's business; name the upstream.
            Some(_) => entry.service.host.clone(),
        });
    }
    // Each arm builds the exchange where it awaits it: a future bound to
    // a variable first is copied once more (2.5 KB) on every request.
    // Nothing will look at the response head, and the client's server
    // writes one without a map: the upstream's fields may pass as they came.
    let pass_fields = ran.is_empty() && deadline.is_none() && parts.version <= Version::HTTP_11;
    let send = |req| {
        let ip = ctx.client_ip;
        forward::send_request(&entry, req, Some(&forwarded), consumer, ip, pass_fields)
    };
    let answered = match deadline {
        Some(at) => tokio::time::timeout_at(at.into(), send(upstream_req))
            .await
            .ok(),
        None => Some(send(upstream_req).await),
    };
    let Some(answered) = answered else {
        facts.upstream_latency = Some(sent.elapsed());
        let reply = grpc::deadline_exceeded();
        return own_filtered(start, reply, ran, ctx, shared, log_entry, facts, grpc_call).into();
    };
    let (mut resp, in_flight) = match answered {
        Ok(r) => r,
        Err(e) => {
            let reply = match e {
                ForwardError::NoPeer => {
                    Reply::message(StatusCode::SERVICE_UNAVAILABLE, errors::NO_PEER)
                }
                ForwardError::Timeout => {
                    Reply::message(StatusCode::GATEWAY_TIMEOUT, errors::GATEWAY_TIMEOUT)
                }
                ForwardError::Bad => Reply::message(StatusCode::BAD_GATEWAY, errors::BAD_GATEWAY),
                ForwardError::Rejected(reply) => reply,
            };
            facts.upstream_latency = Some(sent.elapsed());
            return own_filtered(start, reply, ran, ctx, shared, log_entry, facts, grpc_call)
                .into();
        }
    };
    let upstream_latency = sent.elapsed();
    facts.upstream_latency = Some(upstream_latency);
    facts.source = "service";
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    if let (true, Some(client_side)) = (switching, upgrade) {
        websocket::tunnel(client_side, &mut resp);
    }

    // 5. Response head, then the streamed body. Fields passed on without
    //    a map (`passthrough`) come only when nothing below looks at them.
    let passed = resp
        .body_mut()
        .take_fields()
        .map(|fields| Passed::new(fields, upstream_latency, proxy_latency));
    let (mut rparts, rbody) = resp.into_parts();
    if passed.is_none() {
        forward::strip_hop_by_hop(&mut rparts.headers, switching);
        rparts.headers.append(header::VIA, VIA);
        rparts
            .headers
            .insert(X_KONG_UPSTREAM_LATENCY, millis(upstream_latency));
        rparts
            .headers
            .insert(X_KONG_PROXY_LATENCY, millis(proxy_latency));
    }
    for plugin in &ran {
        plugin.header_filter(&mut ctx, &mut rparts);
    }
    let read_timeout = Duration::from_millis(entry.service.read_timeout.max(1));
    let guarded = Guarded::new(rbody, in_flight, read_timeout);
    // 6. Log, once the body is over.
    if logging {
        describe(&ctx, &mut log_entry, shared);
    }
    if ran.is_empty() && deadline.is_none() {
        // Nothing else wraps the upstream's body: boxed once, with the
        // access log's wrapper.
        let resp = Response::from_parts(rparts, guarded);
        return Answer {
            response: observed(shared, resp, log_entry, facts),
            passed,
        };
    }
    let mut body = guarded.boxed();
    if let Some(at) = deadline {
        body = grpc::Deadline::wrap(body, at);
    }
    for plugin in &ran {
        body = plugin.response_body(&ctx, body);
    }
    if !ran.is_empty() {
        ctx.extensions.insert(facts.clone());
    }
    let body = Logged::wrap(body, ran, ctx, rparts.status);
    let resp = Response::from_parts(rparts, body);
    observed(shared, resp, log_entry, facts).into()
}

/// 426 (or Kong's redirect) for a route that wants HTTPS.
fn wrong_protocol(route: &crate::model::Route, host: Option<&str>, uri: &http::Uri) -> Reply {
    let code = route.https_redirect_status_code;
    if matches!(code, 301 | 302 | 307 | 308) {
        if let (Some(h), Ok(status)) = (host, StatusCode::from_u16(code)) {
            let location = format!(
                "https://{h}{}",
                uri.path_and_query().map_or("/", |p| p.as_str())
            );
            let mut reply = Reply::message(status, "Moved");
            if let Ok(v) = HeaderValue::from_str(&location) {
                reply.headers.insert(header::LOCATION, v);
            }
            return reply;
        }
    }
    Reply::message(StatusCode::UPGRADE_REQUIRED, errors::USE_HTTPS)
}

/// An answer of the gateway's own, with X-Kong-Response-Latency; to a
/// gRPC call, in gRPC's trailers-only form.
fn own(start: Instant, reply: Reply, grpc_call: bool) -> Response<Body> {
    let decided = reply.status;
    let reply = if grpc_call {
        grpc::trailers_only(reply)
    } else {
        reply
    };
    let mut resp = errors::from_reply(reply);
    if grpc_call {
        resp.extensions_mut().insert(GatewayStatus(decided));
    }
    resp.headers_mut()
        .insert(X_KONG_RESPONSE_LATENCY, millis(start.elapsed()));
    resp
}

/// `own`, after letting the plugins that ran see the response head.
#[allow(clippy::too_many_arguments)]
fn own_filtered(
    start: Instant,
    reply: Reply,
    ran: Vec<Arc<dyn Plugin>>,
    mut ctx: RequestCtx,
    shared: &Shared,
    mut log_entry: Entry,
    mut facts: RequestFacts,
    grpc_call: bool,
) -> Response<Body> {
    if facts.upstream_latency.is_none() {
        facts.kong_latency = start.elapsed();
    }
    if shared.observer.access_log.enabled() {
        describe(&ctx, &mut log_entry, shared);
    }
    if !ran.is_empty() {
        ctx.extensions.insert(facts.clone());
    }
    let (mut parts, mut body) = own(start, reply, grpc_call).into_parts();
    for plugin in &ran {
        plugin.header_filter(&mut ctx, &mut parts);
    }
    for plugin in &ran {
        body = plugin.response_body(&ctx, body);
    }
    let status = decided_status(parts.status, &parts.extensions);
    let body = Logged::wrap(body, ran, ctx, status);
    observed(shared, Response::from_parts(parts, body), log_entry, facts)
}

/// Fills what the plugins learned into the access log entry: the
/// consumer's name and the correlation id, when there are.
fn describe(ctx: &RequestCtx, log_entry: &mut Entry, shared: &Shared) {
    log_entry.consumer = ctx
        .consumer
        .as_ref()
        .map(|c| c.username.clone().unwrap_or_else(|| c.id.to_string()));
    if let Some(CorrelationIdValue(v)) = ctx.extensions.get::<CorrelationIdValue>() {
        log_entry.request_id = String::from_utf8_lossy(v.as_bytes()).into_owned();
    }
    if log_entry.request_id.is_empty() {
        log_entry.request_id = shared.observer.request_id();
    }
}

/// The status the gateway decided on: the status line, unless it was
/// rewritten to 200 for a gRPC call.
fn decided_status(status: StatusCode, extensions: &http::Extensions) -> StatusCode {
    extensions
        .get::<GatewayStatus>()
        .map_or(status, |decided| decided.0)
}

/// The response, with its body wrapped so that the access log line is
/// written (and the request counted done) once it is over.
fn observed<B>(
    shared: &Shared,
    resp: Response<B>,
    mut log_entry: Entry,
    mut facts: RequestFacts,
) -> Response<Body>
where
    B: http_body::Body<Data = bytes::Bytes, Error = crate::plugins::BoxError>
        + Send
        + Sync
        + Unpin
        + 'static,
{
    if facts.upstream_latency.is_none() && facts.kong_latency.is_zero() {
        facts.kong_latency = facts.start.elapsed();
    }
    if shared.observer.access_log.enabled() {
        if log_entry.request_id.is_empty() {
            log_entry.request_id = shared.observer.request_id();
        }
        log_entry.route = facts.route.clone();
        log_entry.service = facts.service.clone();
    }
    log_entry.status = decided_status(resp.status(), resp.extensions()).as_u16();
    let (parts, body) = resp.into_parts();
    let body = Observed::wrap(body, shared.observer.clone(), log_entry, facts);
    Response::from_parts(parts, body)
}

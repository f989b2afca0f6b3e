//! What Kong's auth plugins share: putting the identified consumer in
//! `RequestCtx` and in the upstream headers (`X-Consumer-*`,
//! `X-Credential-Identifier`, `X-Anonymous-Consumer`, `X-Consumer-Groups`
//! is acl's), the `anonymous` fallback (which makes several auth plugins
//! on one route combine as OR), and the 401 helpers.

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, StatusCode};

use super::{ConsumerInfo, CredentialInfo, Reply, RequestCtx};
use crate::model::{Consumer, Entity, EntityKind, State};

pub const X_CONSUMER_ID: HeaderName = HeaderName::from_static("x-consumer-id");
pub const X_CONSUMER_CUSTOM_ID: HeaderName = HeaderName::from_static("x-consumer-custom-id");
pub const X_CONSUMER_USERNAME: HeaderName = HeaderName::from_static("x-consumer-username");
pub const X_CREDENTIAL_IDENTIFIER: HeaderName = HeaderName::from_static("x-credential-identifier");
pub const X_ANONYMOUS_CONSUMER: HeaderName = HeaderName::from_static("x-anonymous-consumer");

/// Records the consumer (and credential) that this request runs as, for
/// later plugins (consumer- and group-scoped instances, acl) and for the
/// upstream. Headers a client sent under these names are replaced, never
/// trusted.
pub fn set_consumer(
    ctx: &mut RequestCtx,
    headers: &mut HeaderMap,
    state: &State,
    consumer: &Consumer,
    credential: Option<CredentialInfo>,
) {
    for h in [
        X_CONSUMER_ID,
        X_CONSUMER_CUSTOM_ID,
        X_CONSUMER_USERNAME,
        X_CREDENTIAL_IDENTIFIER,
        X_ANONYMOUS_CONSUMER,
    ] {
        headers.remove(h);
    }
    headers.insert(X_CONSUMER_ID, header_value(&consumer.id.to_string()));
    if let Some(v) = consumer.custom_id.as_deref() {
        headers.insert(X_CONSUMER_CUSTOM_ID, header_value(v));
    }
    if let Some(v) = consumer.username.as_deref() {
        headers.insert(X_CONSUMER_USERNAME, header_value(v));
    }
    match &credential {
        Some(c) => {
            headers.insert(X_CREDENTIAL_IDENTIFIER, header_value(&c.identifier));
        }
        None => {
            headers.insert(X_ANONYMOUS_CONSUMER, HeaderValue::from_static("true"));
        }
    }
    ctx.anonymous = credential.is_none();
    ctx.credential = credential;
    ctx.consumer = Some(ConsumerInfo {
        id: consumer.id,
        username: consumer.username.clone(),
        custom_id: consumer.custom_id.clone(),
    });
    ctx.consumer_groups = state
        .groups_of_consumer(consumer.id)
        .iter()
        .map(|g| g.id)
        .collect();
    ctx.acl_groups = state
        .children(EntityKind::AclCredential, EntityKind::Consumer, consumer.id)
        .filter_map(|e| match e {
            Entity::AclCredential(a) => Some(a.group.clone()),
            _ => None,
        })
        .collect();
}

/// A header value from text that may hold anything; invalid bytes are
/// dropped rather than failing the request.
fn header_value(v: &str) -> HeaderValue {
    HeaderValue::from_str(v).unwrap_or_else(|_| {
        let clean: String = v.chars().filter(|c| (' '..='~').contains(c)).collect();
        HeaderValue::from_str(&clean).unwrap_or(HeaderValue::from_static(""))
    })
}

/// Whether an earlier auth plugin already authenticated this request with
/// a real credential: a plugin with `anonymous` set then steps aside
/// (Kong's OR combination).
pub fn already_authenticated(ctx: &RequestCtx) -> bool {
    ctx.credential.is_some() && !ctx.anonymous
}

/// The `anonymous` fallback after a failed authentication: the request
/// goes on as that consumer (by id or username), or 500 when it does not
/// exist.
pub fn anonymous(
    ctx: &mut RequestCtx,
    headers: &mut HeaderMap,
    state: &State,
    anonymous: &str,
) -> Option<Reply> {
    match state.find(EntityKind::Consumer, anonymous) {
        Some(Entity::Consumer(c)) => {
            set_consumer(ctx, headers, state, c, None);
            None
        }
        _ => Some(Reply::message(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("anonymous consumer {anonymous} is configured but doesn't exist"),
        )),
    }
}

/// `Bearer` or `Bearer realm="x"` (Kong's `WWW-Authenticate` base).
pub fn www_authenticate_base(scheme: &str, realm: Option<&str>) -> String {
    match realm {
        Some(r) => format!("{scheme} realm=\"{r}\""),
        None => scheme.to_string(),
    }
}

/// Adds `WWW-Authenticate` to a reply (a realm with bad bytes is dropped).
pub fn with_www_authenticate(mut reply: Reply, value: &str) -> Reply {
    if let Ok(v) = HeaderValue::from_str(value) {
        reply.headers.insert(http::header::WWW_AUTHENTICATE, v);
    }
    reply
}

/// A JSON body that is a bare map (Kong's claim errors), not `{"message"}`.
pub fn json_reply(status: StatusCode, body: &serde_json::Value) -> Reply {
    let mut reply = Reply::message(status, "");
    reply.body = serde_json::to_vec(body).unwrap_or_default().into();
    reply
}

/// The value of query parameter `name` in a raw query string, decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The query string with parameter `name` removed (`None` when empty).
pub fn query_without(query: &str, name: &str) -> Option<String> {
    let kept: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if kept.is_empty() {
        return None;
    }
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in &kept {
        out.append_pair(k, v);
    }
    Some(out.finish())
}

/// Replaces the request's query string (keeping its path).
pub fn set_query(req: &mut http::request::Parts, query: Option<&str>) {
    let path = req.uri.path().to_string();
    let pq = match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut parts = req.uri.clone().into_parts();
    if let Ok(p) = pq.parse() {
        parts.path_and_query = Some(p);
        if let Ok(uri) = http::Uri::from_parts(parts) {
            req.uri = uri;
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_helpers() {
        assert_eq!(
            query_param(Some("a=1&jwt=x%2By"), "jwt").as_deref(),
            Some("x+y")
        );
        assert_eq!(query_param(Some("a=1"), "jwt"), None);
        assert_eq!(
            query_without("a=1&apikey=k", "apikey").as_deref(),
            Some("a=1")
        );
        assert_eq!(query_without("apikey=k", "apikey"), None);
    }

    #[test]
    fn cookies() {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            HeaderValue::from_static("a=1; tok=abc.def"),
        );
        assert_eq!(cookie(&h, "tok").as_deref(), Some("abc.def"));
        assert_eq!(cookie(&h, "b"), None);
    }
}

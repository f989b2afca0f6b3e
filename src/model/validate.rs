//! Validation of one entity on its own, before a command is proposed and
//! again inside apply: Kong's field rules and messages (types were already
//! checked by serde). Rules across entities (unique names, foreign keys)
//! belong to `State::apply`.

use std::net::IpAddr;

use super::command::Entity;
use super::entities::*;
use super::errors::{ApplyError, FieldErrors};
use super::plugin_schemas;

const SERVICE_PROTOCOLS: &[&str] = &["http", "https", "grpc", "grpcs", "tcp", "tls", "ws", "wss"];
const ROUTE_PROTOCOLS: &[&str] = &[
    "http",
    "https",
    "grpc",
    "grpcs",
    "tcp",
    "tls",
    "tls_passthrough",
    "udp",
    "ws",
    "wss",
];
const REDIRECT_CODES: &[u16] = &[426, 301, 302, 307, 308];
const UPSTREAM_ALGORITHMS: &[&str] = &[
    "round-robin",
    "consistent-hashing",
    "least-connections",
    "latency",
];
const HASH_ON: &[&str] = &[
    "none",
    "consumer",
    "ip",
    "header",
    "cookie",
    "path",
    "query_arg",
    "uri_capture",
];
/// Kong's jwt credential algorithms (kong/plugins/jwt/daos.lua).
pub const JWT_ALGORITHMS: &[&str] = &[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256",
    "PS384", "PS512", "EdDSA",
];
const MAX_TIMEOUT: u64 = 2_147_483_646;

/// Checks the entity's fields, returning Kong's schema-violation error.
pub fn validate_entity(entity: &Entity) -> Result<(), ApplyError> {
    let mut errs = FieldErrors::new();
    match entity {
        Entity::Service(s) => service(s, &mut errs),
        Entity::Route(r) => route(r, &mut errs),
        Entity::Upstream(u) => upstream(u, &mut errs),
        Entity::Target(t) => target(t, &mut errs),
        Entity::Consumer(c) => consumer(c, &mut errs),
        Entity::ConsumerGroup(g) => {
            name_field("name", Some(&g.name), &mut errs);
            tags(&g.tags, &mut errs);
        }
        Entity::ConsumerGroupMember(_) => {}
        Entity::Plugin(p) => return plugin(p, errs),
        Entity::JwtCredential(c) => jwt_credential(c, &mut errs),
        Entity::KeyAuthCredential(c) => {
            non_empty("key", &c.key, &mut errs);
            tags(&c.tags, &mut errs);
        }
        Entity::AclCredential(c) => {
            non_empty("group", &c.group, &mut errs);
            tags(&c.tags, &mut errs);
        }
        Entity::Certificate(c) => {
            if !looks_like_pem(&c.cert, "CERTIFICATE") {
                errs.field("cert", "invalid certificate: not a PEM certificate");
            }
            if !looks_like_pem(&c.key, "PRIVATE KEY") {
                errs.field("key", "invalid key: not a PEM private key");
            }
            tags(&c.tags, &mut errs);
        }
        Entity::Sni(s) => {
            if s.name.parse::<IpAddr>().is_ok() {
                errs.field("name", "must not be an IP");
            } else if !is_wildcard_host(&s.name) {
                errs.field("name", format!("invalid value: {}", s.name));
            }
            tags(&s.tags, &mut errs);
        }
        Entity::JwtRevocation(r) => revocation(r, &mut errs),
    }
    errs.into_result()
}

fn one_of_message(options: &[&str]) -> String {
    format!("expected one of: {}", options.join(", "))
}

fn non_empty(field: &str, value: &str, errs: &mut FieldErrors) {
    if value.is_empty() {
        errs.field(field, "length must be at least 1");
    }
}

/// Kong's `utf8_name`: letters, digits and `.-_~`.
fn name_field(field: &str, name: Option<&String>, errs: &mut FieldErrors) {
    let Some(name) = name else { return };
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '~'));
    if !ok {
        errs.field(
            field,
            format!(
                "invalid value '{name}': it must only contain alphanumeric and '., -, _, ~' characters"
            ),
        );
    }
}

fn tags(tags: &Option<Vec<String>>, errs: &mut FieldErrors) {
    for tag in tags.iter().flatten() {
        if tag.is_empty() || tag.chars().any(|c| c == ',' || c == '/' || c.is_control()) {
            errs.field(
                "tags",
                format!(
                    "invalid tag '{tag}': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"
                ),
            );
        }
    }
}

fn between(field: &str, value: u64, min: u64, max: u64, errs: &mut FieldErrors) {
    if value < min || value > max {
        errs.field(field, format!("value should be between {min} and {max}"));
    }
}

/// A DNS name (labels of letters, digits and `-`, not starting or ending
/// with `-`) or an IP address.
pub fn is_hostname_or_ip(host: &str) -> bool {
    if host.parse::<IpAddr>().is_ok() {
        return true;
    }
    if host.is_empty() || host.len() > 253 {
        return false;
    }
    host.trim_end_matches('.').split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

/// A host that may carry one `*` as its leftmost or rightmost label.
fn is_wildcard_host(host: &str) -> bool {
    let stripped = if let Some(rest) = host.strip_prefix("*.") {
        rest
    } else if let Some(rest) = host.strip_suffix(".*") {
        rest
    } else {
        host
    };
    !stripped.contains('*') && is_hostname_or_ip(stripped)
}

/// Splits "host[:port]" (IPv6 in brackets). `None` if malformed.
pub fn split_host_port(value: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = value.strip_prefix('[') {
        let (host, tail) = rest.split_once(']')?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        return match tail {
            "" => Some((host, None)),
            _ => Some((host, Some(tail.strip_prefix(':')?.parse().ok()?))),
        };
    }
    if value.parse::<std::net::Ipv6Addr>().is_ok() {
        return Some((value, None));
    }
    match value.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((value, None)),
    }
}

/// An IP address or a CIDR range, v4 or v6.
pub fn is_ip_or_cidr(value: &str) -> bool {
    match value.split_once('/') {
        None => value.parse::<IpAddr>().is_ok(),
        Some((ip, bits)) => match (ip.parse::<IpAddr>(), bits.parse::<u8>()) {
            (Ok(IpAddr::V4(_)), Ok(b)) => b <= 32,
            (Ok(IpAddr::V6(_)), Ok(b)) => b <= 128,
            _ => false,
        },
    }
}

/// A cheap structural PEM check: a BEGIN line whose label ends with
/// `label_suffix`, a matching END line, and a base64 body. The plugins
/// that use the key parse it properly.
pub fn looks_like_pem(text: &str, label_suffix: &str) -> bool {
    let text = text.trim();
    let Some(rest) = text.strip_prefix("-----BEGIN ") else {
        return false;
    };
    let Some((label, rest)) = rest.split_once("-----") else {
        return false;
    };
    if !label.ends_with(label_suffix) {
        return false;
    }
    let end = format!("-----END {label}-----");
    let Some(pos) = rest.find(&end) else {
        return false;
    };
    let body: String = rest[..pos].chars().filter(|c| !c.is_whitespace()).collect();
    !body.is_empty()
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='))
}

/// Kong's check that a plain path uses only RFC 3986's characters.
fn rfc3986_problem(path: &str) -> Option<String> {
    let ok = path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "./-_~%:@!$&'()*+,;=".contains(c));
    (!ok).then(|| {
        format!(
            "invalid path: '{path}' (characters outside of the reserved list of RFC 3986 found)"
        )
    })
}

fn service(s: &Service, errs: &mut FieldErrors) {
    name_field("name", s.name.as_ref(), errs);
    if !SERVICE_PROTOCOLS.contains(&s.protocol.as_str()) {
        errs.field("protocol", one_of_message(SERVICE_PROTOCOLS));
    }
    if s.host.parse::<IpAddr>().is_err() {
        match s.host.rsplit_once(':') {
            Some((host, port)) if is_hostname_or_ip(host) && port.parse::<u16>().is_ok() => {
                errs.field("host", "must not have a port");
            }
            _ if !is_hostname_or_ip(&s.host) => {
                errs.field("host", format!("invalid value: {}", s.host));
            }
            _ => {}
        }
    }
    if let Some(path) = &s.path {
        if !path.starts_with('/') {
            errs.field("path", "should start with: /");
        } else if path.contains("//") {
            errs.field("path", "must not have empty segments");
        } else if let Some(message) = rfc3986_problem(path) {
            errs.field("path", message);
        }
        if matches!(s.protocol.as_str(), "tcp" | "tls" | "grpc" | "grpcs") {
            errs.entity(format!(
                "value of path must be null when protocol is '{}'",
                s.protocol
            ));
        }
    }
    between("retries", u64::from(s.retries), 0, 32_767, errs);
    between("connect_timeout", s.connect_timeout, 1, MAX_TIMEOUT, errs);
    between("write_timeout", s.write_timeout, 1, MAX_TIMEOUT, errs);
    between("read_timeout", s.read_timeout, 1, MAX_TIMEOUT, errs);
    tags(&s.tags, errs);
}

fn is_set<T>(v: &Option<Vec<T>>) -> bool {
    v.as_ref().is_some_and(|v| !v.is_empty())
}

fn route(r: &Route, errs: &mut FieldErrors) {
    name_field("name", r.name.as_ref(), errs);
    if r.protocols.is_empty() {
        errs.field("protocols", "length must be at least 1");
    }
    if r.protocols
        .iter()
        .any(|p| !ROUTE_PROTOCOLS.contains(&p.as_str()))
    {
        errs.field("protocols", one_of_message(ROUTE_PROTOCOLS));
    } else if let Some(message) = mixed_protocol_families(&r.protocols) {
        errs.field("protocols", message);
    }
    for m in r.methods.iter().flatten() {
        if m.is_empty() || !m.chars().all(|c| c.is_ascii_uppercase()) {
            errs.field("methods", format!("invalid value: {m}"));
        }
    }
    for h in r.hosts.iter().flatten() {
        let host = match split_host_port(h) {
            Some((host, _)) => host,
            None => "",
        };
        if !is_wildcard_host(host) {
            errs.field("hosts", format!("invalid value: {h}"));
        }
    }
    for p in r.paths.iter().flatten() {
        if let Some(pattern) = p.strip_prefix('~') {
            if let Err(e) = regex::Regex::new(pattern) {
                errs.field("paths", format!("invalid regex: '{pattern}' ({e})"));
            }
        } else if !p.starts_with('/') {
            errs.field(
                "paths",
                "should start with: / (fixed path) or ~ (regex path)",
            );
        } else if p.contains("//") {
            errs.field("paths", "must not have empty segments");
        } else if let Some(message) = rfc3986_problem(p) {
            errs.field("paths", message);
        }
    }
    for (name, values) in r.headers.iter().flatten() {
        if name.eq_ignore_ascii_case("host") {
            errs.field(
                "headers",
                "cannot contain 'host' header, which must be specified in the 'hosts' attribute",
            );
        }
        for v in values {
            if let Some(pattern) = v.strip_prefix("~*") {
                if let Err(e) = regex::Regex::new(pattern) {
                    errs.field("headers", format!("invalid regex: '{pattern}' ({e})"));
                }
            }
        }
    }
    if !REDIRECT_CODES.contains(&r.https_redirect_status_code) {
        errs.field(
            "https_redirect_status_code",
            "expected one of: 426, 301, 302, 307, 308",
        );
    }
    if !matches!(r.path_handling.as_str(), "v0" | "v1") {
        errs.field("path_handling", "expected one of: v0, v1");
    }
    let has = |p: &str| r.protocols.iter().any(|x| x == p);
    let (methods, hosts, paths, snis) = (
        is_set(&r.methods),
        is_set(&r.hosts),
        is_set(&r.paths),
        is_set(&r.snis),
    );
    let headers = r.headers.as_ref().is_some_and(|h| !h.is_empty());
    if snis
        && !r
            .protocols
            .iter()
            .any(|p| matches!(p.as_str(), "https" | "grpcs" | "tls" | "tls_passthrough"))
    {
        errs.entity("'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or 'tls_passthrough'");
    }
    // Kong's grpc subschema (routes whose protocols are grpc/grpcs).
    if has("grpc") || has("grpcs") {
        if r.strip_path {
            errs.field(
                "strip_path",
                "cannot set 'strip_path' when 'protocols' is 'grpc' or 'grpcs'",
            );
        }
        if methods {
            errs.field(
                "methods",
                "cannot set 'methods' when 'protocols' is 'grpc' or 'grpcs'",
            );
        }
        let matcher = hosts || headers || paths;
        if has("grpcs") {
            if !(matcher || snis) {
                errs.entity(
                    "must set one of 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'grpcs'",
                );
            }
        } else if !matcher {
            errs.entity("must set one of 'hosts', 'headers', 'paths' when 'protocols' is 'grpc'");
        }
    }
    // Kong's http subschema: with "https" SNIs count as a matcher.
    if has("https") && !(methods || hosts || headers || paths || snis) {
        errs.entity("must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'");
    } else if has("http") && !has("https") && !(methods || hosts || headers || paths) {
        errs.entity(
            "must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http'",
        );
    }
    if let Some(agg) = &r.aggregate {
        if !matches!(agg.mode.as_str(), "nested" | "merge") {
            errs.at(&["aggregate", "mode"], "expected one of: nested, merge");
        }
        if agg.backends.is_empty() {
            errs.at(&["aggregate", "backends"], "length must be at least 1");
        }
        let mut keys: Vec<&str> = agg.backends.iter().map(|b| b.key.as_str()).collect();
        keys.sort_unstable();
        if keys.windows(2).any(|w| w[0] == w[1]) {
            errs.at(&["aggregate", "backends"], "backend keys must be unique");
        }
    }
    tags(&r.tags, errs);
}

/// Kong's `mutually_exclusive_subsets` on a route's protocols: they must
/// all come from one family. The message names the families met, in order.
fn mixed_protocol_families(protocols: &[String]) -> Option<String> {
    const FAMILIES: [&[&str]; 5] = [
        &["http", "https"],
        &["tcp", "tls", "udp"],
        &["tls_passthrough"],
        &["grpc", "grpcs"],
        &["ws", "wss"],
    ];
    let mut met: Vec<&[&str]> = Vec::new();
    for p in protocols {
        if let Some(family) = FAMILIES.iter().find(|f| f.contains(&p.as_str())) {
            if !met.contains(family) {
                met.push(family);
            }
        }
    }
    (met.len() > 1).then(|| {
        let listed: Vec<String> = met
            .iter()
            .map(|f| {
                let quoted: Vec<String> = f.iter().map(|p| format!("'{p}'")).collect();
                format!("({})", quoted.join(", "))
            })
            .collect();
        format!("these sets are mutually exclusive: {}", listed.join(", "))
    })
}

fn upstream(u: &Upstream, errs: &mut FieldErrors) {
    if !is_hostname_or_ip(&u.name) {
        errs.field(
            "name",
            format!("Invalid name ('{}'); must be a valid hostname", u.name),
        );
    }
    if !UPSTREAM_ALGORITHMS.contains(&u.algorithm.as_str()) {
        errs.field("algorithm", one_of_message(UPSTREAM_ALGORITHMS));
    }
    between("slots", u64::from(u.slots), 10, 65_536, errs);
    for (field, value, header_field, header) in [
        ("hash_on", &u.hash_on, "hash_on_header", &u.hash_on_header),
        (
            "hash_fallback",
            &u.hash_fallback,
            "hash_fallback_header",
            &u.hash_fallback_header,
        ),
    ] {
        if !HASH_ON.contains(&value.as_str()) {
            errs.field(field, one_of_message(HASH_ON));
        } else if value == "header" && header.is_none() {
            errs.field(header_field, "required field missing");
            errs.entity(format!(
                "failed conditional validation given value of field '{field}'"
            ));
        }
    }
    // Each hashing input needs its parameter, as Kong's conditionals say.
    for (field, value) in [("hash_on", &u.hash_on), ("hash_fallback", &u.hash_fallback)] {
        let (needed, given) = match value.as_str() {
            "cookie" => ("hash_on_cookie", u.hash_on_cookie.is_some()),
            "query_arg" if field == "hash_on" => {
                ("hash_on_query_arg", u.hash_on_query_arg.is_some())
            }
            "query_arg" => (
                "hash_fallback_query_arg",
                u.hash_fallback_query_arg.is_some(),
            ),
            "uri_capture" if field == "hash_on" => {
                ("hash_on_uri_capture", u.hash_on_uri_capture.is_some())
            }
            "uri_capture" => (
                "hash_fallback_uri_capture",
                u.hash_fallback_uri_capture.is_some(),
            ),
            _ => continue,
        };
        if !given {
            errs.field(needed, "required field missing");
            errs.entity(format!(
                "failed conditional validation given value of field '{field}'"
            ));
        }
    }
    for (field, kind) in [
        ("healthchecks.active.type", &u.healthchecks.active.kind),
        ("healthchecks.passive.type", &u.healthchecks.passive.kind),
    ] {
        if !matches!(kind.as_str(), "http" | "https" | "tcp" | "grpc" | "grpcs") {
            let path: Vec<&str> = field.split('.').collect();
            errs.at(&path, "expected one of: tcp, http, https, grpc, grpcs");
        }
    }
    if u.hash_on == "none" && u.hash_fallback != "none" {
        errs.field("hash_fallback", "expected one of: none");
    }
    tags(&u.tags, errs);
}

fn target(t: &Target, errs: &mut FieldErrors) {
    let ok = split_host_port(&t.target).is_some_and(|(host, _)| is_hostname_or_ip(host));
    if !ok {
        errs.field(
            "target",
            format!(
                "Invalid target ('{}'); not a valid hostname or ip address",
                t.target
            ),
        );
    }
    between("weight", u64::from(t.weight), 0, 65_535, errs);
    tags(&t.tags, errs);
}

fn consumer(c: &Consumer, errs: &mut FieldErrors) {
    let empty = |v: &Option<String>| v.as_deref().is_none_or(str::is_empty);
    if empty(&c.username) && empty(&c.custom_id) {
        errs.entity("at least one of these fields must be non-empty: 'custom_id', 'username'");
    }
    tags(&c.tags, errs);
}

fn plugin(p: &Plugin, mut errs: FieldErrors) -> Result<(), ApplyError> {
    name_field("instance_name", p.instance_name.as_ref(), &mut errs);
    // An instance runs only for the protocols it lists: an empty list
    // would be a plugin accepted and then never run.
    if p.protocols.is_empty() {
        errs.field("protocols", "length must be at least 1");
    }
    for proto in &p.protocols {
        if !ROUTE_PROTOCOLS.contains(&proto.as_str()) {
            errs.field("protocols", one_of_message(ROUTE_PROTOCOLS));
        }
    }
    // Kong's `no_consumer` plugins: authentication decides the consumer,
    // so they cannot be scoped to one.
    if matches!(p.name.as_str(), "jwt" | "key-auth" | "acl" | "cors") {
        if p.consumer.is_some() {
            errs.field("consumer", "value must be null");
        }
        if p.consumer_group.is_some() {
            errs.field("consumer_group", "value must be null");
        }
    }
    tags(&p.tags, &mut errs);
    match plugin_schemas::normalize_config(&p.name, p.config.clone()) {
        Ok(_) => errs.into_result(),
        Err(ApplyError::SchemaViolation { fields }) => {
            let mut all = match errs.into_result() {
                Ok(()) => Default::default(),
                Err(ApplyError::SchemaViolation { fields }) => fields,
                Err(other) => return Err(other),
            };
            for (k, v) in fields {
                all.entry(k).or_insert(v);
            }
            Err(ApplyError::SchemaViolation { fields: all })
        }
        Err(other) => Err(other),
    }
}

/// Algorithms whose credential must carry a public key. Kong's list is
/// RS*, PS* and EdDSA; raftgate adds ES*, because Kong's handler verifies
/// ES* tokens with `rsa_public_key` too and such a credential without a
/// key could never accept a token.
fn needs_public_key(algorithm: &str) -> bool {
    algorithm.starts_with("RS")
        || algorithm.starts_with("PS")
        || algorithm.starts_with("ES")
        || algorithm == "EdDSA"
}

fn jwt_credential(c: &JwtCredential, errs: &mut FieldErrors) {
    non_empty("key", &c.key, errs);
    if !JWT_ALGORITHMS.contains(&c.algorithm.as_str()) {
        errs.field("algorithm", one_of_message(JWT_ALGORITHMS));
    } else if needs_public_key(&c.algorithm) {
        match &c.rsa_public_key {
            None => {
                errs.field("rsa_public_key", "required field missing");
                errs.entity("failed conditional validation given value of field 'algorithm'");
            }
            Some(key)
                if !looks_like_pem(key, "PUBLIC KEY") && !looks_like_pem(key, "CERTIFICATE") =>
            {
                // Kong runs the key's validator inside the conditional's
                // "then", so a bad key fails the conditional as well.
                errs.field("rsa_public_key", "invalid key");
                errs.entity("failed conditional validation given value of field 'algorithm'");
            }
            Some(_) => {}
        }
    }
    tags(&c.tags, errs);
}

fn revocation(r: &JwtRevocation, errs: &mut FieldErrors) {
    let matchers = [
        r.jti.is_some(),
        r.token_sha256.is_some(),
        r.consumer.is_some(),
        r.credential.is_some(),
    ];
    if matchers.iter().filter(|m| **m).count() != 1 {
        errs.entity(
            "exactly one of these fields must be non-empty: 'jti', 'token_sha256', 'consumer', 'credential'",
        );
    }
    if let Some(jti) = &r.jti {
        non_empty("jti", jti, errs);
    }
    if let Some(h) = &r.token_sha256 {
        if h.len() != 64
            || !h
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        {
            errs.field(
                "token_sha256",
                "must be 64 lowercase hexadecimal characters",
            );
        }
    }
    if r.issued_before.is_some() && r.consumer.is_none() && r.credential.is_none() {
        errs.field(
            "issued_before",
            "can only be set with 'consumer' or 'credential'",
        );
    }
    tags(&r.tags, errs);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use uuid::Uuid;

    fn check(kind: &str, value: serde_json::Value) -> Result<(), serde_json::Value> {
        let kind = crate::model::EntityKind::from_collection(kind).expect("kind");
        let mut value = value;
        value["id"] = json!(Uuid::nil());
        let entity = Entity::from_json(kind, value).expect("well-typed");
        validate_entity(&entity).map_err(|e| e.to_json()["fields"].clone())
    }

    const PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo\n-----END PUBLIC KEY-----\n";

    #[test]
    fn service_rules() {
        assert!(check("services", json!({"host": "example.com"})).is_ok());
        assert!(check("services", json!({"host": "10.0.0.1", "path": "/v1"})).is_ok());
        assert!(check("services", json!({"host": "::1"})).is_ok());
        let f = check(
            "services",
            json!({"host": "a b", "protocol": "ftp", "path": "v1",
            "connect_timeout": 0, "retries": 40000}),
        )
        .unwrap_err();
        assert_eq!(f["host"], "invalid value: a b");
        assert_eq!(
            f["protocol"],
            "expected one of: http, https, grpc, grpcs, tcp, tls, ws, wss"
        );
        assert_eq!(f["path"], "should start with: /");
        assert_eq!(
            f["connect_timeout"],
            "value should be between 1 and 2147483646"
        );
        assert_eq!(f["retries"], "value should be between 0 and 32767");
        let f = check("services", json!({"host": "example.com:80"})).unwrap_err();
        assert_eq!(f["host"], "must not have a port");
        let f = check("services", json!({"host": "h", "path": "/a b"})).unwrap_err();
        assert_eq!(
            f["path"],
            "invalid path: '/a b' (characters outside of the reserved list of RFC 3986 found)"
        );
        let f = check("services", json!({"host": "h", "name": "bad name"})).unwrap_err();
        assert!(f["name"]
            .as_str()
            .unwrap_or("")
            .starts_with("invalid value 'bad name'"));
    }

    #[test]
    fn route_rules() {
        assert!(check("routes", json!({"paths": ["/a", "~/u/(?<id>\\d+)$"]})).is_ok());
        let f = check("routes", json!({"protocols": ["http"]})).unwrap_err();
        assert_eq!(
            f["@entity"][0],
            "must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is 'http'"
        );
        let f = check("routes", json!({})).unwrap_err();
        assert_eq!(
            f["@entity"][0],
            "must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'"
        );
        let f = check(
            "routes",
            json!({"paths": ["api"], "methods": ["get"],
            "https_redirect_status_code": 200, "protocols": ["http", "smtp"]}),
        )
        .unwrap_err();
        assert_eq!(
            f["paths"],
            "should start with: / (fixed path) or ~ (regex path)"
        );
        assert_eq!(f["methods"], "invalid value: get");
        assert_eq!(
            f["https_redirect_status_code"],
            "expected one of: 426, 301, 302, 307, 308"
        );
        assert!(f["protocols"]
            .as_str()
            .unwrap_or("")
            .starts_with("expected one of: http"));
        let f = check("routes", json!({"paths": ["~/a(b"]})).unwrap_err();
        assert!(f["paths"]
            .as_str()
            .unwrap_or("")
            .starts_with("invalid regex: '/a(b'"));
        let f = check(
            "routes",
            json!({"protocols": ["http"], "snis": ["a.com"], "paths": ["/"]}),
        )
        .unwrap_err();
        assert!(f["@entity"][0]
            .as_str()
            .unwrap_or("")
            .starts_with("'snis' can only be set"));
        assert!(check("routes", json!({"hosts": ["*.example.com", "a.org:8000"]})).is_ok());
        assert!(check("routes", json!({"hosts": ["a.*.com"]})).is_err());
    }

    #[test]
    fn grpc_route_rules() {
        // strip_path defaults to false for grpc routes (Kong's subschema).
        assert!(check("routes", json!({"protocols": ["grpc"], "paths": ["/p.S/"]})).is_ok());
        assert!(check(
            "routes",
            json!({"protocols": ["grpcs"], "snis": ["a.com"], "strip_path": false})
        )
        .is_ok());
        let f = check(
            "routes",
            json!({"protocols": ["grpc", "grpcs"], "paths": ["/"], "strip_path": true,
                   "methods": ["POST"]}),
        )
        .unwrap_err();
        assert_eq!(
            f["strip_path"],
            "cannot set 'strip_path' when 'protocols' is 'grpc' or 'grpcs'"
        );
        assert_eq!(
            f["methods"],
            "cannot set 'methods' when 'protocols' is 'grpc' or 'grpcs'"
        );
        let f = check("routes", json!({"protocols": ["grpc"]})).unwrap_err();
        assert_eq!(
            f["@entity"][0],
            "must set one of 'hosts', 'headers', 'paths' when 'protocols' is 'grpc'"
        );
        let f = check("routes", json!({"protocols": ["grpcs"]})).unwrap_err();
        assert_eq!(
            f["@entity"][0],
            "must set one of 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'grpcs'"
        );
        let f = check(
            "routes",
            json!({"protocols": ["http", "grpc", "https"], "paths": ["/"], "strip_path": false}),
        )
        .unwrap_err();
        assert_eq!(
            f["protocols"],
            "these sets are mutually exclusive: ('http', 'https'), ('grpc', 'grpcs')"
        );
        // A grpc service has no path.
        let f = check(
            "services",
            json!({"host": "h", "protocol": "grpc", "path": "/x"}),
        )
        .unwrap_err();
        assert_eq!(
            f["@entity"][0],
            "value of path must be null when protocol is 'grpc'"
        );
    }

    #[test]
    fn consumer_needs_username_or_custom_id() {
        assert!(check("consumers", json!({"username": "bob"})).is_ok());
        assert!(check("consumers", json!({"custom_id": "42"})).is_ok());
        let f = check("consumers", json!({"username": ""})).unwrap_err();
        assert_eq!(
            f["@entity"],
            json!(["at least one of these fields must be non-empty: 'custom_id', 'username'"])
        );
    }

    #[test]
    fn jwt_credential_rules() {
        let c = json!({"id": Uuid::nil()});
        assert!(check(
            "jwt_secrets",
            json!({"consumer": c, "key": "k", "secret": "s"})
        )
        .is_ok());
        let f = check(
            "jwt_secrets",
            json!({"consumer": c, "key": "k", "algorithm": "RS256"}),
        )
        .unwrap_err();
        assert_eq!(f["rsa_public_key"], "required field missing");
        assert_eq!(
            f["@entity"],
            json!(["failed conditional validation given value of field 'algorithm'"])
        );
        let f = check(
            "jwt_secrets",
            json!({"consumer": c, "key": "k", "algorithm": "ES256",
            "rsa_public_key": "not a key"}),
        )
        .unwrap_err();
        assert_eq!(f["rsa_public_key"], "invalid key");
        assert_eq!(
            f["@entity"],
            json!(["failed conditional validation given value of field 'algorithm'"])
        );
        assert!(check(
            "jwt_secrets",
            json!({"consumer": c, "key": "k", "algorithm": "EdDSA",
            "rsa_public_key": PUBLIC_PEM})
        )
        .is_ok());
        let f = check(
            "jwt_secrets",
            json!({"consumer": c, "key": "k", "algorithm": "none"}),
        )
        .unwrap_err();
        assert!(f["algorithm"].as_str().unwrap_or("").contains("HS256"));
    }

    #[test]
    fn upstream_target_certificate_sni_rules() {
        assert!(check("upstreams", json!({"name": "svc.internal"})).is_ok());
        let f = check(
            "upstreams",
            json!({"name": "x", "algorithm": "random", "hash_on": "header"}),
        )
        .unwrap_err();
        assert!(f["algorithm"]
            .as_str()
            .unwrap_or("")
            .starts_with("expected one of"));
        let f = check("upstreams", json!({"name": "x", "hash_on": "header"})).unwrap_err();
        assert_eq!(f["hash_on_header"], "required field missing");
        let f = check("upstreams", json!({"name": "x", "hash_on": "cookie"})).unwrap_err();
        assert_eq!(f["hash_on_cookie"], "required field missing");
        let f = check(
            "upstreams",
            json!({"name": "x", "healthchecks": {"passive": {"type": "udp"}}}),
        )
        .unwrap_err();
        assert!(f["healthchecks"]["passive"]["type"].is_string());
        // What `deck dump` writes for an upstream loads as is.
        let dumped = json!({"name": "example", "algorithm": "round-robin", "hash_fallback": "none",
            "hash_on": "none", "hash_on_cookie_path": "/", "slots": 10000, "use_srv_name": false,
            "healthchecks": {"threshold": 0,
              "active": {"concurrency": 10, "http_path": "/", "https_verify_certificate": true,
                "timeout": 1, "type": "http",
                "healthy": {"http_statuses": [200, 302], "interval": 0, "successes": 0},
                "unhealthy": {"http_failures": 0, "http_statuses": [429, 404, 500, 501, 502, 503, 504, 505],
                  "interval": 0, "tcp_failures": 0, "timeouts": 0}},
              "passive": {"type": "http",
                "healthy": {"http_statuses": [200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302], "successes": 0},
                "unhealthy": {"http_failures": 0, "http_statuses": [429, 500, 503], "tcp_failures": 0, "timeouts": 0}}}});
        assert!(check("upstreams", dumped).is_ok());
        let u = json!({"id": Uuid::nil()});
        assert!(check("targets", json!({"upstream": u, "target": "10.0.0.1:8080"})).is_ok());
        assert!(check("targets", json!({"upstream": u, "target": "[::1]:80"})).is_ok());
        assert!(check("targets", json!({"upstream": u, "target": "backend"})).is_ok());
        let f = check("targets", json!({"upstream": u, "target": "a b:x"})).unwrap_err();
        assert!(f["target"]
            .as_str()
            .unwrap_or("")
            .starts_with("Invalid target"));
        let f = check("certificates", json!({"cert": "x", "key": PUBLIC_PEM})).unwrap_err();
        assert!(f["cert"].is_string() && f["key"].is_string());
        assert!(check("snis", json!({"name": "*.example.com", "certificate": u})).is_ok());
        assert!(check("snis", json!({"name": "bad name", "certificate": u})).is_err());
        let f = check("snis", json!({"name": "10.0.0.1", "certificate": u})).unwrap_err();
        assert_eq!(f["name"], "must not be an IP");
    }

    #[test]
    fn plugin_rules() {
        let c = json!({"id": Uuid::nil()});
        assert!(check(
            "plugins",
            json!({"name": "rate-limiting", "consumer": c, "config": {"minute": 1}})
        )
        .is_ok());
        let f = check("plugins", json!({"name": "jwt", "consumer": c})).unwrap_err();
        assert_eq!(f["consumer"], "value must be null");
        let f = check(
            "plugins",
            json!({"name": "rate-limiting", "protocols": ["gopher"],
            "config": {"hour": 1, "second": 2}}),
        )
        .unwrap_err();
        assert!(f["protocols"].is_string());
        assert_eq!(
            f["config"],
            "The limit for hour(1.0) cannot be lower than the limit for second(2.0)"
        );
        let f = check("plugins", json!({"name": "cors", "protocols": []})).unwrap_err();
        assert_eq!(f["protocols"], "length must be at least 1");
        let f = check("plugins", json!({"name": "nope"})).unwrap_err();
        assert_eq!(
            f["name"],
            "plugin 'nope' not enabled; add it to the 'plugins' configuration property"
        );
    }

    #[test]
    fn revocation_has_exactly_one_matcher() {
        assert!(check("jwt_revocations", json!({"jti": "abc"})).is_ok());
        let c = json!({"id": Uuid::nil()});
        assert!(check(
            "jwt_revocations",
            json!({"consumer": c, "issued_before": 5})
        )
        .is_ok());
        assert!(check("jwt_revocations", json!({})).is_err());
        assert!(check("jwt_revocations", json!({"jti": "a", "consumer": c})).is_err());
        let f = check("jwt_revocations", json!({"token_sha256": "ABC"})).unwrap_err();
        assert!(f["token_sha256"].is_string());
    }

    #[test]
    fn helpers() {
        assert!(
            is_ip_or_cidr("10.0.0.0/8") && is_ip_or_cidr("2001:db8::/32") && is_ip_or_cidr("::1")
        );
        assert!(!is_ip_or_cidr("10.0.0.0/33") && !is_ip_or_cidr("host"));
        assert_eq!(split_host_port("[::1]:80"), Some(("::1", Some(80))));
        assert_eq!(split_host_port("a:99999"), None);
        assert!(!looks_like_pem(
            "-----BEGIN PUBLIC KEY-----\n!!\n-----END PUBLIC KEY-----",
            "PUBLIC KEY"
        ));
    }
}

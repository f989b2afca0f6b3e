//! Per-plugin config schemas: Kong's fields and defaults, as a small
//! declarative table per plugin plus one function for each plugin's
//! cross-field rules. `normalize_config` fills the defaults in, coerces
//! form-encoded strings ("5", "true", a lone string for an array) to the
//! field's type, and names every bad or unknown field as Kong does
//! (`fields.config.<field>`, entity-level messages under `@entity`).

use serde_json::{Map, Value};

use super::errors::{ApplyError, FieldErrors};
use super::validate::is_ip_or_cidr;

/// Names of the plugins this gateway runs.
pub const KNOWN_PLUGINS: &[&str] = &[
    "jwt",
    "key-auth",
    "acl",
    "rate-limiting",
    "correlation-id",
    "cors",
    "ip-restriction",
    "request-size-limiting",
    "request-transformer",
    "response-transformer",
    "prometheus",
];

/// The type of one config field.
#[derive(Clone, Copy)]
enum Ty {
    Bool,
    Int {
        min: i64,
        max: i64,
    },
    /// A number strictly greater than `gt`, when given.
    Num {
        gt: Option<f64>,
    },
    Str,
    OneOf(&'static [&'static str]),
    /// An array of strings, each passing the check.
    Strings(Elem),
    Record(&'static [Field]),
    /// Accepted as is (e.g. rate-limiting's `redis`, unused here).
    Any,
}

#[derive(Clone, Copy)]
enum Elem {
    Any,
    OneOf(&'static [&'static str]),
    IpOrCidr,
    /// "name:value", as the transformers take them.
    Colon,
}

/// One field: name, type, and its default as JSON text ("null": none).
struct Field {
    name: &'static str,
    ty: Ty,
    default: &'static str,
}

const fn f(name: &'static str, ty: Ty, default: &'static str) -> Field {
    Field { name, ty, default }
}

const STRS: Ty = Ty::Strings(Elem::Any);
const COLONS: Ty = Ty::Strings(Elem::Colon);
const POSITIVE: Ty = Ty::Num { gt: Some(0.0) };
const NUMBER: Ty = Ty::Num { gt: None };
const HTTP_STATUS: Ty = Ty::Int { min: 100, max: 999 };

const JWT: &[Field] = &[
    f("uri_param_names", STRS, r#"["jwt"]"#),
    f("cookie_names", STRS, "[]"),
    f("header_names", STRS, r#"["authorization"]"#),
    f("key_claim_name", Ty::Str, r#""iss""#),
    f("secret_is_base64", Ty::Bool, "false"),
    f(
        "claims_to_verify",
        Ty::Strings(Elem::OneOf(&["exp", "nbf"])),
        "null",
    ),
    f("anonymous", Ty::Str, "null"),
    f("run_on_preflight", Ty::Bool, "true"),
    f(
        "maximum_expiration",
        Ty::Int {
            min: 0,
            max: 31_536_000,
        },
        "0",
    ),
    f("realm", Ty::Str, "null"),
];

const KEY_AUTH: &[Field] = &[
    f("key_names", STRS, r#"["apikey"]"#),
    f("hide_credentials", Ty::Bool, "false"),
    f("anonymous", Ty::Str, "null"),
    f("key_in_header", Ty::Bool, "true"),
    f("key_in_query", Ty::Bool, "true"),
    f("key_in_body", Ty::Bool, "false"),
    f("run_on_preflight", Ty::Bool, "true"),
    f("realm", Ty::Str, "null"),
];

const ACL: &[Field] = &[
    f("allow", STRS, "null"),
    f("deny", STRS, "null"),
    f("hide_groups_header", Ty::Bool, "false"),
    f("include_consumer_groups", Ty::Bool, "false"),
    f("always_use_authenticated_groups", Ty::Bool, "false"),
];

const PERIODS: [&str; 6] = ["second", "minute", "hour", "day", "month", "year"];

const RATE_LIMITING: &[Field] = &[
    f("second", POSITIVE, "null"),
    f("minute", POSITIVE, "null"),
    f("hour", POSITIVE, "null"),
    f("day", POSITIVE, "null"),
    f("month", POSITIVE, "null"),
    f("year", POSITIVE, "null"),
    f(
        "limit_by",
        Ty::OneOf(&["consumer", "credential", "ip", "service", "header", "path"]),
        r#""consumer""#,
    ),
    f("header_name", Ty::Str, "null"),
    f("path", Ty::Str, "null"),
    // Checked by `rate_limiting_rules`, to explain why "redis" is refused.
    // raftgate: "cluster" (counters shared by gossip) is the default; on a
    // one-node cluster it counts exactly as "local".
    f("policy", Ty::Str, r#""cluster""#),
    f("fault_tolerant", Ty::Bool, "true"),
    // raftgate-only: while some peer is silent, keep deciding with the
    // last counts heard (true) or keep to this node's share (false).
    f("fail_open", Ty::Bool, "false"),
    f("hide_client_headers", Ty::Bool, "false"),
    f("error_code", NUMBER, "429"),
    f("error_message", Ty::Str, r#""API rate limit exceeded""#),
    f("sync_rate", NUMBER, "-1"),
    f("redis", Ty::Any, "null"),
    // Kong's deprecated shorthands for `redis.*`, still present in its
    // output and in dumps: accepted so that such files load, and unused.
    f("redis_host", Ty::Any, "null"),
    f("redis_port", Ty::Any, "null"),
    f("redis_password", Ty::Any, "null"),
    f("redis_username", Ty::Any, "null"),
    f("redis_ssl", Ty::Any, "null"),
    f("redis_ssl_verify", Ty::Any, "null"),
    f("redis_server_name", Ty::Any, "null"),
    f("redis_timeout", Ty::Any, "null"),
    f("redis_database", Ty::Any, "null"),
];

const CORRELATION_ID: &[Field] = &[
    f("header_name", Ty::Str, r#""Kong-Request-ID""#),
    f(
        "generator",
        Ty::OneOf(&["uuid", "uuid#counter", "tracker"]),
        r#""uuid#counter""#,
    ),
    f("echo_downstream", Ty::Bool, "false"),
];

const CORS_METHODS: &[&str] = &[
    "GET", "HEAD", "PUT", "PATCH", "POST", "DELETE", "OPTIONS", "TRACE", "CONNECT",
];

const CORS: &[Field] = &[
    f("origins", STRS, "null"),
    f("headers", STRS, "null"),
    f("exposed_headers", STRS, "null"),
    f(
        "methods",
        Ty::Strings(Elem::OneOf(CORS_METHODS)),
        r#"["GET","HEAD","PUT","PATCH","POST","DELETE","OPTIONS","TRACE","CONNECT"]"#,
    ),
    f("max_age", NUMBER, "null"),
    f("credentials", Ty::Bool, "false"),
    f("private_network", Ty::Bool, "false"),
    f("preflight_continue", Ty::Bool, "false"),
    f("allow_origin_absent", Ty::Bool, "true"),
];

const IP_RESTRICTION: &[Field] = &[
    f("allow", Ty::Strings(Elem::IpOrCidr), "null"),
    f("deny", Ty::Strings(Elem::IpOrCidr), "null"),
    f("status", HTTP_STATUS, "null"),
    f("message", Ty::Str, "null"),
];

const REQUEST_SIZE_LIMITING: &[Field] = &[
    f(
        "allowed_payload_size",
        Ty::Int {
            min: 0,
            max: i64::MAX,
        },
        "128",
    ),
    f(
        "size_unit",
        Ty::OneOf(&["megabytes", "kilobytes", "bytes"]),
        r#""megabytes""#,
    ),
    f("require_content_length", Ty::Bool, "false"),
];

const REQ_NAMES: &[Field] = &[
    f("headers", STRS, "[]"),
    f("querystring", STRS, "[]"),
    f("body", STRS, "[]"),
];
const REQ_PAIRS: &[Field] = &[
    f("headers", COLONS, "[]"),
    f("querystring", COLONS, "[]"),
    f("body", COLONS, "[]"),
];
const REQ_REPLACE: &[Field] = &[
    f("headers", COLONS, "[]"),
    f("querystring", COLONS, "[]"),
    f("body", COLONS, "[]"),
    f("uri", Ty::Str, "null"),
];

const REQUEST_TRANSFORMER: &[Field] = &[
    f("http_method", Ty::Str, "null"),
    f("remove", Ty::Record(REQ_NAMES), "null"),
    f("rename", Ty::Record(REQ_PAIRS), "null"),
    f("replace", Ty::Record(REQ_REPLACE), "null"),
    f("add", Ty::Record(REQ_PAIRS), "null"),
    f("append", Ty::Record(REQ_PAIRS), "null"),
];

const JSON_TYPES: Ty = Ty::Strings(Elem::OneOf(&["boolean", "number", "string"]));
const RES_NAMES: &[Field] = &[f("headers", STRS, "[]"), f("json", STRS, "[]")];
const RES_RENAME: &[Field] = &[f("headers", COLONS, "[]"), f("json", COLONS, "[]")];
const RES_PAIRS: &[Field] = &[
    f("headers", COLONS, "[]"),
    f("json", COLONS, "[]"),
    f("json_types", JSON_TYPES, "[]"),
];

const RESPONSE_TRANSFORMER: &[Field] = &[
    f("remove", Ty::Record(RES_NAMES), "null"),
    f("rename", Ty::Record(RES_RENAME), "null"),
    f("replace", Ty::Record(RES_PAIRS), "null"),
    f("add", Ty::Record(RES_PAIRS), "null"),
    f("append", Ty::Record(RES_PAIRS), "null"),
];

const PROMETHEUS: &[Field] = &[
    f("per_consumer", Ty::Bool, "false"),
    f("status_code_metrics", Ty::Bool, "false"),
    f("latency_metrics", Ty::Bool, "false"),
    f("bandwidth_metrics", Ty::Bool, "false"),
    f("upstream_health_metrics", Ty::Bool, "false"),
    // Kong 3.8+ flags for metrics raftgate has no source for; accepted so
    // that Kong's dumps load.
    f("ai_metrics", Ty::Bool, "false"),
    f("wasm_metrics", Ty::Bool, "false"),
];

type Rules = fn(&Map<String, Value>, &mut FieldErrors);

fn schema(name: &str) -> Option<(&'static [Field], Rules)> {
    Some(match name {
        "jwt" => (JWT, jwt_rules as Rules),
        "key-auth" => (KEY_AUTH, no_rules),
        "acl" => (ACL, acl_rules),
        "rate-limiting" => (RATE_LIMITING, rate_limiting_rules),
        "correlation-id" => (CORRELATION_ID, no_rules),
        "cors" => (CORS, no_rules),
        "ip-restriction" => (IP_RESTRICTION, ip_restriction_rules),
        "request-size-limiting" => (REQUEST_SIZE_LIMITING, no_rules),
        "request-transformer" => (REQUEST_TRANSFORMER, no_rules),
        "response-transformer" => (RESPONSE_TRANSFORMER, no_rules),
        "prometheus" => (PROMETHEUS, no_rules),
        _ => return None,
    })
}

/// Validates `config` for plugin `name` and returns it with defaults filled.
pub fn normalize_config(name: &str, config: Value) -> Result<Value, ApplyError> {
    let Some((fields, rules)) = schema(name) else {
        return Err(ApplyError::field(
            "name",
            format!("plugin '{name}' not enabled; add it to the 'plugins' configuration property"),
        ));
    };
    let mut errs = FieldErrors::new();
    let out = record(fields, config, &["config"], &mut errs);
    if errs.is_empty() {
        if let Value::Object(map) = &out {
            rules(map, &mut errs);
        }
    }
    errs.into_result().map(|()| out)
}

fn record(
    fields: &'static [Field],
    value: Value,
    path: &[&'static str],
    errs: &mut FieldErrors,
) -> Value {
    let mut input = match value {
        Value::Null => Map::new(),
        Value::Object(map) => map,
        _ => {
            errs.at(path, "expected a record");
            return Value::Null;
        }
    };
    let mut out = Map::new();
    for field in fields {
        let mut here = path.to_vec();
        here.push(field.name);
        let given = input.remove(field.name).filter(|v| !v.is_null());
        let v = match given {
            Some(v) => typed(field.ty, v, &here, errs),
            None => match field.ty {
                Ty::Record(inner) if field.default == "null" => {
                    record(inner, Value::Null, &here, errs)
                }
                _ => serde_json::from_str(field.default).unwrap_or(Value::Null),
            },
        };
        out.insert(field.name.to_string(), v);
    }
    for unknown in input.keys() {
        let mut here: Vec<&str> = path.to_vec();
        here.push(unknown);
        errs.at(&here, "unknown field");
    }
    Value::Object(out)
}

fn typed(ty: Ty, v: Value, path: &[&'static str], errs: &mut FieldErrors) -> Value {
    match ty {
        Ty::Any => v,
        Ty::Bool => match v {
            Value::Bool(_) => v,
            Value::String(ref s) if s == "true" => Value::Bool(true),
            Value::String(ref s) if s == "false" => Value::Bool(false),
            _ => {
                errs.at(path, "expected a boolean");
                v
            }
        },
        Ty::Int { min, max } => {
            let n = match &v {
                Value::Number(n) => n.as_i64().or_else(|| {
                    n.as_f64()
                        .filter(|x| x.fract() == 0.0 && x.abs() < 9.0e15)
                        .map(|x| x as i64)
                }),
                Value::String(s) => s.trim().parse::<i64>().ok(),
                _ => None,
            };
            match n {
                None => {
                    errs.at(path, "expected an integer");
                    v
                }
                Some(n) if n < min || n > max => {
                    errs.at(path, format!("value should be between {min} and {max}"));
                    v
                }
                Some(n) => Value::from(n),
            }
        }
        Ty::Num { gt } => {
            let n = match &v {
                Value::Number(_) => Some(v.clone()),
                Value::String(s) => {
                    let s = s.trim();
                    s.parse::<i64>().ok().map(Value::from).or_else(|| {
                        s.parse::<f64>()
                            .ok()
                            .filter(|x| x.is_finite())
                            .map(Value::from)
                    })
                }
                _ => None,
            };
            match n {
                None => {
                    errs.at(path, "expected a number");
                    v
                }
                Some(n) => {
                    if let Some(gt) = gt {
                        if n.as_f64().is_some_and(|x| x <= gt) {
                            errs.at(path, format!("value must be greater than {gt}"));
                        }
                    }
                    n
                }
            }
        }
        Ty::Str => {
            match &v {
                Value::String(s) if s.is_empty() => errs.at(path, "length must be at least 1"),
                Value::String(_) => {}
                _ => errs.at(path, "expected a string"),
            }
            v
        }
        Ty::OneOf(options) => {
            if !v.as_str().is_some_and(|s| options.contains(&s)) {
                errs.at(path, format!("expected one of: {}", options.join(", ")));
            }
            v
        }
        Ty::Strings(elem) => {
            let items = match v {
                Value::Array(items) => items,
                // A form field given once arrives as a plain string.
                Value::String(s) => vec![Value::String(s)],
                other => {
                    errs.at(path, "expected an array");
                    return other;
                }
            };
            for item in &items {
                let Some(s) = item.as_str() else {
                    errs.at(path, "expected a string");
                    continue;
                };
                let problem = match elem {
                    Elem::Any => None,
                    Elem::OneOf(options) if !options.contains(&s) => {
                        Some(format!("expected one of: {}", options.join(", ")))
                    }
                    Elem::IpOrCidr if !is_ip_or_cidr(s) => {
                        Some(format!("invalid ip or cidr range: '{s}'"))
                    }
                    Elem::Colon if s.split_once(':').is_none_or(|(k, _)| k.is_empty()) => {
                        Some(format!("invalid value: {s}"))
                    }
                    _ => None,
                };
                if let Some(problem) = problem {
                    errs.at(path, problem);
                }
            }
            Value::Array(items)
        }
        Ty::Record(inner) => record(inner, v, path, errs),
    }
}

fn no_rules(_: &Map<String, Value>, _: &mut FieldErrors) {}

/// Kong's "non-empty": present, not null, not an empty array or string.
fn non_empty(config: &Map<String, Value>, field: &str) -> bool {
    match config.get(field) {
        None | Some(Value::Null) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

fn field_list(fields: &[&str]) -> String {
    fields
        .iter()
        .map(|f| format!("'config.{f}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn at_least_one_of(config: &Map<String, Value>, fields: &[&str], errs: &mut FieldErrors) {
    if !fields.iter().any(|f| non_empty(config, f)) {
        errs.entity(format!(
            "at least one of these fields must be non-empty: {}",
            field_list(fields)
        ));
    }
}

/// `then_field` is required when `if_field` equals `value` (Kong's
/// conditional check, with its two messages).
fn required_if(
    config: &Map<String, Value>,
    if_field: &str,
    value: &str,
    then_field: &'static str,
    errs: &mut FieldErrors,
) {
    if config.get(if_field).and_then(Value::as_str) == Some(value) && !non_empty(config, then_field)
    {
        errs.at(&["config", then_field], "required field missing");
        errs.entity(format!(
            "failed conditional validation given value of field 'config.{if_field}'"
        ));
    }
}

fn jwt_rules(config: &Map<String, Value>, errs: &mut FieldErrors) {
    let max = config
        .get("maximum_expiration")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let verifies_exp = config
        .get("claims_to_verify")
        .and_then(Value::as_array)
        .is_some_and(|c| c.iter().any(|v| v == "exp"));
    if max > 0 && !verifies_exp {
        errs.at(&["config", "claims_to_verify"], "expected to contain: exp");
        errs.entity(
            "failed conditional validation given value of field 'config.maximum_expiration'",
        );
    }
}

fn acl_rules(config: &Map<String, Value>, errs: &mut FieldErrors) {
    if non_empty(config, "allow") && non_empty(config, "deny") {
        errs.entity(format!(
            "only one of these fields must be non-empty: {}",
            field_list(&["allow", "deny"])
        ));
    }
    at_least_one_of(config, &["allow", "deny"], errs);
}

fn ip_restriction_rules(config: &Map<String, Value>, errs: &mut FieldErrors) {
    at_least_one_of(config, &["allow", "deny"], errs);
}

/// A longer period may not allow fewer requests than a shorter one.
fn periods_order(config: &Map<String, Value>) -> Option<String> {
    let limits: Vec<(&str, f64)> = PERIODS
        .iter()
        .filter_map(|p| Some((*p, config.get(*p)?.as_f64()?)))
        .collect();
    for (i, (short, short_limit)) in limits.iter().enumerate() {
        for (long, long_limit) in &limits[i + 1..] {
            if long_limit < short_limit {
                return Some(format!(
                    "The limit for {long}({long_limit:.1}) cannot be lower than the limit for {short}({short_limit:.1})"
                ));
            }
        }
    }
    None
}

fn rate_limiting_rules(config: &Map<String, Value>, errs: &mut FieldErrors) {
    at_least_one_of(config, &PERIODS, errs);
    // Kong checks that a longer period never allows fewer requests.
    let policy_ok = match config.get("policy").and_then(Value::as_str) {
        Some("local") | Some("cluster") => true,
        Some("redis") => {
            errs.at(
                &["config", "policy"],
                "policy 'redis' is not supported: raftgate has no Redis; use 'cluster' \
                 (counters shared between the gateway's nodes) or 'local'",
            );
            false
        }
        _ => {
            errs.at(&["config", "policy"], "expected one of: local, cluster");
            false
        }
    };
    // Kong's record-level validator: runs once the fields are valid, and
    // its message sits on `config` itself.
    if policy_ok {
        if let Some(message) = periods_order(config) {
            errs.field("config", message);
        } else if config
            .get("sync_rate")
            .and_then(Value::as_f64)
            .is_some_and(|r| r != -1.0)
        {
            errs.field("config", "sync_rate can only be used with the redis policy");
        }
    }
    required_if(config, "limit_by", "header", "header_name", errs);
    required_if(config, "limit_by", "path", "path", errs);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(name: &str, config: Value) -> Value {
        match normalize_config(name, config) {
            Err(e) => e.to_json()["fields"].clone(),
            Ok(v) => panic!("expected an error, got {v}"),
        }
    }

    #[test]
    fn every_known_plugin_has_a_schema() {
        for name in KNOWN_PLUGINS {
            assert!(schema(name).is_some(), "{name}");
            for (_, default) in schema(name)
                .into_iter()
                .flat_map(|(f, _)| f.iter().map(|f| (f.name, f.default)))
            {
                assert!(
                    serde_json::from_str::<Value>(default).is_ok(),
                    "{name}: {default}"
                );
            }
        }
    }

    #[test]
    fn odd_values_in_any_field_give_errors_not_panics() {
        let odd = [
            Value::Null,
            json!(-1),
            json!(0.5),
            json!(1e300),
            json!(""),
            json!("x"),
            json!([]),
            json!(["x", 1]),
            json!({}),
            json!({"headers": 1}),
            json!(true),
        ];
        for name in KNOWN_PLUGINS {
            let Some((fields, _)) = schema(name) else {
                panic!("{name} has no schema");
            };
            for field in fields {
                for v in &odd {
                    let out = normalize_config(name, json!({ field.name: v }));
                    if let Ok(config) = out {
                        // Whatever is accepted is a complete config.
                        assert_eq!(config.as_object().map(|m| m.len()), Some(fields.len()));
                    }
                }
            }
        }
    }

    #[test]
    fn unknown_plugin_is_named() {
        let f = fields("x", json!({}));
        assert_eq!(
            f["name"],
            "plugin 'x' not enabled; add it to the 'plugins' configuration property"
        );
    }

    #[test]
    fn rate_limiting_defaults_and_rules() {
        let c =
            normalize_config("rate-limiting", json!({"minute": 100, "policy": "local"})).unwrap();
        assert_eq!(c["minute"], 100);
        assert_eq!(c["second"], Value::Null);
        assert_eq!(c["limit_by"], "consumer");
        assert_eq!(c["error_code"], 429);
        assert_eq!(c["error_message"], "API rate limit exceeded");
        assert_eq!(c["fault_tolerant"], true);
        assert_eq!(c["hide_client_headers"], false);

        let f = fields("rate-limiting", json!({}));
        assert_eq!(f["@entity"], json!(["at least one of these fields must be non-empty: 'config.second', 'config.minute', 'config.hour', 'config.day', 'config.month', 'config.year'"]));
        let f = fields("rate-limiting", json!({"second": 20, "hour": 10}));
        assert_eq!(
            f["config"],
            "The limit for hour(10.0) cannot be lower than the limit for second(20.0)"
        );
        let f = fields("rate-limiting", json!({"minute": 1, "sync_rate": 5}));
        assert_eq!(
            f["config"],
            "sync_rate can only be used with the redis policy"
        );
        let f = fields("rate-limiting", json!({"minute": 1, "policy": "redis"}));
        assert!(f["config"]["policy"]
            .as_str()
            .unwrap_or("")
            .contains("no Redis"));
        let f = fields("rate-limiting", json!({"minute": 1, "limit_by": "header"}));
        assert_eq!(f["config"]["header_name"], "required field missing");
        let f = fields("rate-limiting", json!({"minute": 1, "limit_by": "path"}));
        assert_eq!(f["config"]["path"], "required field missing");
        let f = fields(
            "rate-limiting",
            json!({"minute": "x", "bogus": 1, "limit_by": "moon"}),
        );
        assert_eq!(f["config"]["minute"], "expected a number");
        assert_eq!(f["config"]["bogus"], "unknown field");
        assert!(f["config"]["limit_by"]
            .as_str()
            .unwrap_or("")
            .starts_with("expected one of"));
        let f = fields("rate-limiting", json!({"minute": 0}));
        assert_eq!(f["config"]["minute"], "value must be greater than 0");
    }

    #[test]
    fn form_strings_are_coerced() {
        let c = normalize_config(
            "rate-limiting",
            json!({"minute": "5", "fault_tolerant": "false"}),
        )
        .unwrap();
        assert_eq!(c["minute"], 5);
        assert_eq!(c["fault_tolerant"], false);
        let c = normalize_config("key-auth", json!({"key_names": "x-key"})).unwrap();
        assert_eq!(c["key_names"], json!(["x-key"]));
    }

    #[test]
    fn other_plugins_defaults() {
        let c = normalize_config("correlation-id", Value::Null).unwrap();
        assert_eq!(
            c,
            json!({"header_name": "Kong-Request-ID", "generator": "uuid#counter", "echo_downstream": false})
        );
        let c = normalize_config("jwt", json!({})).unwrap();
        assert_eq!(c["uri_param_names"], json!(["jwt"]));
        assert_eq!(c["key_claim_name"], "iss");
        assert_eq!(c["claims_to_verify"], Value::Null);
        let c = normalize_config("key-auth", json!({})).unwrap();
        assert_eq!(c["key_names"], json!(["apikey"]));
        assert_eq!(c["key_in_body"], false);
        let c = normalize_config("request-size-limiting", json!({})).unwrap();
        assert_eq!(c["allowed_payload_size"], 128);
        assert_eq!(c["size_unit"], "megabytes");
        let c = normalize_config("prometheus", json!({})).unwrap();
        assert_eq!(c["per_consumer"], false);
        assert_eq!(c["upstream_health_metrics"], false);
        let c = normalize_config(
            "request-transformer",
            json!({"add": {"headers": ["x-a:1"]}}),
        )
        .unwrap();
        assert_eq!(c["add"]["headers"], json!(["x-a:1"]));
        assert_eq!(c["remove"]["querystring"], json!([]));
        assert_eq!(c["replace"]["uri"], Value::Null);
        let c = normalize_config("response-transformer", json!({})).unwrap();
        assert_eq!(c["append"]["json_types"], json!([]));
        let c = normalize_config("cors", json!({"origins": ["*"]})).unwrap();
        assert_eq!(c["methods"].as_array().map(Vec::len), Some(9));
    }

    #[test]
    fn plugin_specific_rules() {
        let f = fields("acl", json!({}));
        assert_eq!(
            f["@entity"],
            json!([
                "at least one of these fields must be non-empty: 'config.allow', 'config.deny'"
            ])
        );
        let f = fields("acl", json!({"allow": ["a"], "deny": ["b"]}));
        assert_eq!(
            f["@entity"],
            json!(["only one of these fields must be non-empty: 'config.allow', 'config.deny'"])
        );
        assert!(normalize_config("acl", json!({"allow": ["a"]})).is_ok());
        let f = fields("ip-restriction", json!({"allow": ["10.0.0.0/8", "nope"]}));
        assert_eq!(f["config"]["allow"], "invalid ip or cidr range: 'nope'");
        assert!(normalize_config(
            "ip-restriction",
            json!({"deny": ["::1", "2001:db8::/32"], "status": 401})
        )
        .is_ok());
        let f = fields("correlation-id", json!({"generator": "random"}));
        assert_eq!(
            f["config"]["generator"],
            "expected one of: uuid, uuid#counter, tracker"
        );
        let f = fields(
            "request-transformer",
            json!({"add": {"headers": ["novalue"], "x": []}}),
        );
        assert_eq!(f["config"]["add"]["headers"], "invalid value: novalue");
        assert_eq!(f["config"]["add"]["x"], "unknown field");
        let f = fields("jwt", json!({"maximum_expiration": 60}));
        assert_eq!(f["config"]["claims_to_verify"], "expected to contain: exp");
        let f = fields("jwt", json!({"claims_to_verify": ["iat"]}));
        assert_eq!(f["config"]["claims_to_verify"], "expected one of: exp, nbf");
        let f = fields(
            "request-size-limiting",
            json!({"size_unit": "gigabytes", "allowed_payload_size": 1.5}),
        );
        assert!(f["config"]["size_unit"].is_string());
        assert_eq!(f["config"]["allowed_payload_size"], "expected an integer");
        let f = fields("prometheus", json!([1]));
        assert_eq!(f["config"], "expected a record");
    }
}

//! Unit tests of the plugin: config, identifiers and keys, headers, and
//! tier resolution through consumer-group-scoped instances.

use super::*;
use crate::model::plugin_schemas::normalize_config;
use crate::model::{Command, Proposal};
use crate::plugins::{ConsumerInfo, CredentialInfo, Plugins};
use crate::ratelimit::LimiterConfig;
use serde_json::{json, Value};

const T0: u64 = 1_700_000_000_000;

fn plugin(config: Value) -> RateLimiting {
    let config = normalize_config("rate-limiting", config).expect("valid config");
    let limiter = Arc::new(RateLimiter::new(LimiterConfig::new(1)));
    RateLimiting::new(&config, &State::default(), limiter).expect("builds")
}

fn req(path: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut b = http::Request::builder().uri(path);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn ctx(ip: &str) -> RequestCtx {
    RequestCtx {
        client_ip: ip.parse().ok(),
        ..RequestCtx::default()
    }
}

/// Runs `n` requests; returns how many were let through.
fn admitted(p: &RateLimiting, c: &mut RequestCtx, r: &http::request::Parts, n: usize) -> usize {
    (0..n).filter(|_| p.decide(c, r, T0).is_none()).count()
}

#[test]
fn six_per_minute_then_429_with_kongs_headers() {
    let p = plugin(json!({"minute": 6, "limit_by": "ip"}));
    let mut c = ctx("10.0.0.1");
    let r = req("/", &[]);
    for i in 0..6u64 {
        assert!(p.decide(&mut c, &r, T0).is_none(), "request {i}");
        let Some(Pending(h)) = c.extensions.remove::<Pending>() else {
            panic!("headers pending")
        };
        let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(get("x-ratelimit-limit-minute").unwrap(), "6");
        assert_eq!(
            get("x-ratelimit-remaining-minute").unwrap(),
            (5 - i).to_string().as_str()
        );
        assert_eq!(get("ratelimit-limit").unwrap(), "6");
        assert!(get("ratelimit-reset").is_some());
    }
    let reply = p.decide(&mut c, &r, T0).expect("7th blocked");
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(&reply.body[..], br#"{"message":"API rate limit exceeded"}"#);
    assert_eq!(reply.headers["ratelimit-remaining"], "0");
    assert_eq!(reply.headers["x-ratelimit-remaining-minute"], "0");
    let retry: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
}

#[test]
fn most_restrictive_period_drives_ratelimit_headers() {
    let p = plugin(json!({"second": 2, "hour": 100, "limit_by": "ip"}));
    let mut c = ctx("10.0.0.2");
    let r = req("/", &[]);
    assert!(p.decide(&mut c, &r, T0).is_none());
    let Some(Pending(h)) = c.extensions.remove::<Pending>() else {
        panic!()
    };
    let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    assert_eq!(get("ratelimit-limit").unwrap(), "2");
    assert_eq!(get("ratelimit-remaining").unwrap(), "1");
    assert_eq!(get("x-ratelimit-limit-hour").unwrap(), "100");
    assert_eq!(get("x-ratelimit-remaining-hour").unwrap(), "99");
}

#[test]
fn hidden_headers_but_retry_after_on_block_and_custom_error() {
    let p = plugin(
        json!({"second": 1, "limit_by": "ip", "hide_client_headers": true,
        "error_code": 503, "error_message": "slow down"}),
    );
    let mut c = ctx("10.0.0.3");
    let r = req("/", &[]);
    assert!(p.decide(&mut c, &r, T0).is_none());
    assert!(c.extensions.get::<Pending>().is_none());
    let reply = p.decide(&mut c, &r, T0).unwrap();
    assert_eq!(reply.status.as_u16(), 503);
    assert_eq!(&reply.body[..], br#"{"message":"slow down"}"#);
    assert!(reply.headers.contains_key("retry-after"));
    assert!(!reply.headers.contains_key("ratelimit-limit"));
    assert!(!reply.headers.contains_key("x-ratelimit-limit-second"));
}

#[test]
fn keys_per_limit_by_with_ip_fallback() {
    let consumer = Uuid::from_u128(7);
    let cred = Uuid::from_u128(8);
    let service = Uuid::from_u128(9);
    let mut c = ctx("10.1.1.1");
    let r = req("/a/b", &[("x-api", "k1")]);
    let nil = Uuid::nil();
    let pre = format!("{nil}:{nil}:");
    let key = |cfg: Value, c: &RequestCtx, r: &http::request::Parts| {
        plugin(cfg)
            .key(c, r)
            .strip_prefix(&pre)
            .unwrap()
            .to_string()
    };
    // Nothing identified: every kind falls back to the client IP.
    for cfg in [
        json!({"minute": 1}),
        json!({"minute": 1, "limit_by": "credential"}),
        json!({"minute": 1, "limit_by": "service"}),
        json!({"minute": 1, "limit_by": "header", "header_name": "x-other"}),
        json!({"minute": 1, "limit_by": "path", "path": "/other"}),
        json!({"minute": 1, "limit_by": "ip"}),
    ] {
        assert_eq!(key(cfg.clone(), &c, &r), "10.1.1.1", "{cfg}");
    }
    assert_eq!(
        key(
            json!({"minute": 1, "limit_by": "header", "header_name": "X-Api"}),
            &c,
            &r
        ),
        "h=k1"
    );
    assert_eq!(
        key(
            json!({"minute": 1, "limit_by": "path", "path": "/a/b"}),
            &c,
            &r
        ),
        "/a/b"
    );
    c.service_id = Some(service);
    assert_eq!(
        key(json!({"minute": 1, "limit_by": "service"}), &c, &r),
        service.to_string()
    );
    // A credential alone identifies for `consumer` too (Kong).
    c.credential = Some(CredentialInfo {
        id: cred,
        identifier: "k".into(),
    });
    assert_eq!(key(json!({"minute": 1}), &c, &r), cred.to_string());
    assert_eq!(
        key(json!({"minute": 1, "limit_by": "credential"}), &c, &r),
        cred.to_string()
    );
    c.consumer = Some(ConsumerInfo {
        id: consumer,
        username: None,
        custom_id: None,
    });
    assert_eq!(key(json!({"minute": 1}), &c, &r), consumer.to_string());
}

#[test]
fn separate_counters_per_key() {
    let p = plugin(json!({"minute": 2, "limit_by": "header", "header_name": "x-k"}));
    let mut c = ctx("10.0.0.4");
    let a = req("/", &[("x-k", "a")]);
    let b = req("/", &[("x-k", "b")]);
    assert_eq!(admitted(&p, &mut c, &a, 5), 2);
    assert_eq!(admitted(&p, &mut c, &b, 5), 2);
    // Without the header: the IP's own counter.
    assert_eq!(admitted(&p, &mut c, &req("/", &[]), 5), 2);
}

#[test]
fn local_policy_ignores_peers_and_defaults_are_cluster_closed() {
    let cfg = normalize_config("rate-limiting", json!({"minute": 1})).unwrap();
    assert_eq!(cfg["policy"], "cluster");
    assert_eq!(cfg["fail_open"], false);
    let p = plugin(json!({"minute": 1}));
    assert_eq!(
        p.opts,
        CheckOptions {
            policy: Policy::Cluster,
            fail_open: false
        }
    );
    let p = plugin(json!({"minute": 1, "policy": "local", "fail_open": true}));
    assert_eq!(p.opts.policy, Policy::Local);
    assert!(p.opts.fail_open);
}

#[test]
fn bad_configs_do_not_build() {
    let lim = Arc::new(RateLimiter::new(LimiterConfig::new(1)));
    let s = State::default();
    assert!(RateLimiting::new(&json!({}), &s, lim.clone()).is_err());
    assert!(RateLimiting::new(&json!({"minute": 1, "policy": "redis"}), &s, lim.clone()).is_err());
    assert!(RateLimiting::new(&json!({"minute": 1, "error_code": 42.5}), &s, lim.clone()).is_err());
    assert!(
        RateLimiting::new(&json!({"minute": 1, "limit_by": "header"}), &s, lim).is_err(),
        "header without header_name"
    );
}

fn apply(s: &mut State, kind: EntityKind, value: Value) {
    let entity = Entity::from_json(kind, value).expect("entity json");
    s.apply(&Proposal {
        request_id: Uuid::new_v4(),
        command: Command::Upsert { entity },
    })
    .expect("apply");
}

/// Tiers: group-scoped instances resolve by the consumer's group, each
/// with its own quota, and the plugin's scope route/service is in its key.
#[test]
fn tiers_resolve_by_consumer_group_with_their_own_quota() {
    let mut s = State::default();
    let service = Uuid::from_u128(0x51);
    let route = Uuid::from_u128(0x52);
    apply(
        &mut s,
        EntityKind::Service,
        json!({"id": service, "host": "example.com"}),
    );
    apply(
        &mut s,
        EntityKind::Route,
        json!({"id": route, "paths": ["/"], "service": {"id": service}}),
    );
    let tiers = [
        ("free", 3u64, 0x61u128),
        ("premium", 6, 0x62),
        ("internal", 9, 0x63),
    ];
    for (i, (name, limit, id)) in tiers.iter().enumerate() {
        apply(
            &mut s,
            EntityKind::ConsumerGroup,
            json!({"id": Uuid::from_u128(*id), "name": name}),
        );
        let config = normalize_config("rate-limiting", json!({"minute": limit})).unwrap();
        apply(
            &mut s,
            EntityKind::Plugin,
            json!({"id": Uuid::from_u128(0x70 + i as u128), "name": "rate-limiting",
                   "consumer_group": {"id": Uuid::from_u128(*id)}, "config": config}),
        );
    }
    // A service-scoped default for consumers in no group.
    let config = normalize_config("rate-limiting", json!({"minute": 1})).unwrap();
    apply(
        &mut s,
        EntityKind::Plugin,
        json!({"id": Uuid::from_u128(0x7f), "name": "rate-limiting",
               "service": {"id": service}, "config": config}),
    );
    let plugins = Plugins::compile(&s);
    let index = plugins_index(&plugins);
    for (n, (name, limit, group)) in tiers.iter().enumerate() {
        let mut c = ctx("10.9.9.9");
        c.route_id = Some(route);
        c.service_id = Some(service);
        c.consumer = Some(ConsumerInfo {
            id: Uuid::from_u128(0xc000 + n as u128 + u128::from(std::process::id())),
            username: Some(format!("{name}-user")),
            custom_id: None,
        });
        c.consumer_groups = vec![Uuid::from_u128(*group)];
        let p = plugins.resolve(index, &c).expect("resolves");
        let r = req("/", &[]);
        let mut ok = 0;
        for _ in 0..20 {
            let mut parts = r.clone();
            if p.access(&mut c, &mut parts).is_none() {
                ok += 1;
            }
        }
        assert_eq!(ok, *limit, "tier {name}");
    }
    // No group: the service-scoped instance (1/min), counted by consumer.
    let mut c = ctx("10.9.9.9");
    c.route_id = Some(route);
    c.service_id = Some(service);
    c.consumer = Some(ConsumerInfo {
        id: Uuid::from_u128(0xd000 + u128::from(std::process::id())),
        username: None,
        custom_id: None,
    });
    let p = plugins.resolve(index, &c).expect("resolves");
    let mut parts = req("/", &[]);
    assert!(p.access(&mut c, &mut parts).is_none());
    assert!(p.access(&mut c, &mut parts).is_some());
}

fn plugins_index(plugins: &Plugins) -> usize {
    // Only rate-limiting is configured in these states.
    assert_eq!(plugins.len(), 1);
    0
}

#[test]
fn plugin_scope_is_in_the_key() {
    let mut s = State::default();
    let service = Uuid::from_u128(0x91);
    apply(
        &mut s,
        EntityKind::Service,
        json!({"id": service, "host": "example.com"}),
    );
    let config = normalize_config("rate-limiting", json!({"minute": 1})).unwrap();
    apply(
        &mut s,
        EntityKind::Plugin,
        json!({"id": Uuid::from_u128(0x92), "name": "rate-limiting",
               "service": {"id": service}, "config": config}),
    );
    let Some(Entity::Plugin(p)) = s.iter(EntityKind::Plugin).next() else {
        panic!()
    };
    let lim = Arc::new(RateLimiter::new(LimiterConfig::new(1)));
    let rl = RateLimiting::new(&p.config, &s, lim).unwrap();
    assert_eq!(rl.prefix, format!("{}:{service}:", Uuid::nil()));
}

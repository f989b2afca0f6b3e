//! The OpenAPI document against the server: every documented path and
//! method is answered (not 404/405) once fixtures exist, and the document
//! lists exactly the route table.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use super::*;
use crate::admin::routes::{self, Members, Op, Scope};
use crate::model::EntityKind;

/// Ids of the fixtures the walk addresses.
struct Fixtures {
    service: String,
    consumer: String,
    certificate: String,
    revocation: String,
}

async fn fixtures(app: &Router) -> Fixtures {
    let svc = create(app, "/services", json!({"name": "svc", "host": "h"})).await;
    create(
        app,
        "/services/svc/routes",
        json!({"name": "rt", "paths": ["/rt"]}),
    )
    .await;
    let cons = create(app, "/consumers", json!({"username": "cons"})).await;
    create(app, "/consumers", json!({"username": "cons2"})).await;
    create(app, "/consumer_groups", json!({"name": "grp"})).await;
    create(app, "/consumer_groups", json!({"name": "grp2"})).await;
    json_req(
        app,
        "POST",
        "/consumer_groups/grp/consumers",
        json!({"consumer": "cons"}),
    )
    .await;
    for (path, instance) in [
        ("/plugins", "plg"),
        ("/services/svc/plugins", "p-svc"),
        ("/routes/rt/plugins", "p-rt"),
        ("/consumers/cons/plugins", "p-cons"),
        ("/consumer_groups/grp/plugins", "p-grp"),
    ] {
        create(
            app,
            path,
            json!({"name": "correlation-id", "instance_name": instance}),
        )
        .await;
    }
    create(app, "/upstreams", json!({"name": "up"})).await;
    create(app, "/upstreams/up/targets", json!({"target": "tgt:80"})).await;
    let cert = create(
        app,
        "/certificates",
        json!({"cert": TEST_CERT, "key": TEST_KEY, "snis": ["cert.example", "sni.example"]}),
    )
    .await;
    create(app, "/consumers/cons/jwt", json!({"key": "jwtkey"})).await;
    create(app, "/consumers/cons/key-auth", json!({"key": "kakey"})).await;
    create(app, "/consumers/cons/acls", json!({"group": "aclgrp"})).await;
    let rev = create(app, "/jwt-revocations", json!({"jti": "j"})).await;
    Fixtures {
        service: svc["id"].as_str().unwrap().to_string(),
        consumer: cons["id"].as_str().unwrap().to_string(),
        certificate: cert["id"].as_str().unwrap().to_string(),
        revocation: rev["id"].as_str().unwrap().to_string(),
    }
}

fn name_of(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Service => "svc",
        EntityKind::Route => "rt",
        EntityKind::Consumer => "cons",
        EntityKind::ConsumerGroup => "grp",
        EntityKind::Upstream => "up",
        EntityKind::Target => "tgt:80",
        EntityKind::Certificate | EntityKind::Sni => "cert.example",
        EntityKind::JwtCredential => "jwtkey",
        EntityKind::KeyAuthCredential => "kakey",
        EntityKind::AclCredential => "aclgrp",
        _ => "unused",
    }
}

fn item_key(scope: &Scope, fx: &Fixtures) -> String {
    match (scope.kind, scope.parent.map(|p| p.kind)) {
        (EntityKind::Plugin, None) => "plg".into(),
        (EntityKind::Plugin, Some(EntityKind::Service)) => "p-svc".into(),
        (EntityKind::Plugin, Some(EntityKind::Route)) => "p-rt".into(),
        (EntityKind::Plugin, Some(EntityKind::Consumer)) => "p-cons".into(),
        (EntityKind::Plugin, Some(_)) => "p-grp".into(),
        (EntityKind::JwtRevocation, _) => fx.revocation.clone(),
        (kind, _) => name_of(kind).into(),
    }
}

/// A valid body for a write through `op`.
fn body_for(op: &Op, method: &Method, fx: &Fixtures, n: usize) -> Value {
    let scope = match op {
        Op::Create(s) | Op::Put(s) => *s,
        Op::Patch(_) => return json!({"tags": ["patched"]}),
        Op::Members(Members::Add { of_group: true }) => return json!({"consumer": "cons2"}),
        Op::Members(Members::Add { of_group: false }) => return json!({"group": "grp2"}),
        Op::AddNode => return json!({"node_id": 2, "address": "a:1"}),
        _ => return json!({}),
    };
    let fresh = format!("fresh{n}");
    let key = if *method == Method::PUT {
        item_key(&scope, fx)
    } else {
        fresh.clone()
    };
    let consumer = json!({"id": fx.consumer});
    let nested = scope.parent.is_some();
    let mut body = match scope.kind {
        EntityKind::Service => json!({"name": key, "host": "h"}),
        EntityKind::Route => {
            json!({"name": key, "paths": ["/x"], "service": {"id": fx.service}})
        }
        EntityKind::Consumer => json!({"username": key}),
        EntityKind::ConsumerGroup | EntityKind::Upstream => json!({"name": key}),
        EntityKind::Plugin if *method == Method::PUT => {
            json!({"name": "correlation-id", "instance_name": key})
        }
        EntityKind::Plugin => json!({"name": "rate-limiting", "config": {"minute": 5}}),
        EntityKind::Target => {
            json!({"target": if *method == Method::PUT { key } else { format!("{fresh}:80") }})
        }
        EntityKind::Certificate => json!({"cert": TEST_CERT, "key": TEST_KEY}),
        EntityKind::Sni => json!({"name": key, "certificate": {"id": fx.certificate}}),
        EntityKind::JwtCredential | EntityKind::KeyAuthCredential => json!({"key": key}),
        EntityKind::AclCredential => json!({"group": key}),
        EntityKind::JwtRevocation => json!({"jti": fresh}),
        EntityKind::ConsumerGroupMember => json!({}),
    };
    let credential = matches!(
        scope.kind,
        EntityKind::JwtCredential | EntityKind::KeyAuthCredential | EntityKind::AclCredential
    );
    if credential && !nested {
        body["consumer"] = consumer;
    }
    body
}

fn concrete(path: &str, op: &Op, fx: &Fixtures) -> String {
    let (parent, id) = match op {
        Op::List(s) | Op::Create(s) | Op::Get(s) | Op::Put(s) | Op::Patch(s) | Op::Delete(s) => (
            s.parent.map_or("", |p| name_of(p.kind)).to_string(),
            item_key(s, fx),
        ),
        Op::Members(Members::Detail) => (String::new(), "grp".into()),
        // From the group's side: cons in grp; from the consumer's side:
        // cons in grp2 (joined by the walk's own POST, which runs first).
        Op::Members(Members::List { of_group: true } | Members::Add { of_group: true })
        | Op::Members(Members::Get { of_group: true } | Members::Remove { of_group: true })
        | Op::Members(Members::RemoveAll { of_group: true }) => ("grp".into(), "cons".into()),
        Op::Members(_) => ("cons".into(), "grp2".into()),
        Op::RemoveNode => (String::new(), "2".into()),
        _ => (String::new(), String::new()),
    };
    path.replace("{parent}", &parent)
        .replace("{id}", &id)
        .replace("{tag}", "patched")
}

#[tokio::test]
async fn every_documented_route_answers() {
    let (app, _) = app();
    let fx = fixtures(&app).await;
    let table = routes::table();
    let doc = get(&app, "/openapi.json").await.1;
    let mut calls: Vec<(Method, String, Op, String)> = Vec::new();
    for spec in &table {
        for (method, op) in &spec.ops {
            let uri = concrete(&spec.path, op, &fx);
            calls.push((method.clone(), uri, *op, spec.path.clone()));
        }
    }
    // Deletes last, so that every other call still finds its fixture, and
    // children before their parents.
    calls.sort_by_key(|(m, _, op, _)| {
        let rank = match op {
            Op::Delete(s) if s.kind == EntityKind::Route => 1,
            Op::Members(Members::RemoveAll { .. }) => 1,
            Op::Delete(s) if s.parent.is_none() && s.kind != EntityKind::JwtRevocation => 2,
            _ => 0,
        };
        (*m == Method::DELETE, rank)
    });
    let mut checked = 0;
    for (n, (method, uri, op, path)) in calls.iter().enumerate() {
        let (status, body) = if matches!(*method, Method::GET | Method::DELETE) {
            send(
                &app,
                method.as_str(),
                uri,
                None,
                axum::body::Body::empty(),
                &[],
            )
            .await
        } else {
            json_req(&app, method.as_str(), uri, body_for(op, method, &fx, n)).await
        };
        assert!(
            status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {uri} answered {status}: {body}"
        );
        // Deleting a parent that other walk entities still reference is
        // refused by the model's foreign-key rule: a proper answer too.
        let still_referenced = *method == Method::DELETE && body["code"] == 4;
        if *op != Op::ConfigPost && !still_referenced {
            assert!(
                status.is_success(),
                "{method} {uri} answered {status}: {body}"
            );
        }
        matches_document(&doc, path, method, status, &body);
        checked += 1;
    }
    assert!(checked > 100, "the walk covered {checked} operations");
}

/// The answer's status is documented for the operation, and an entity (or
/// each entity of a page) has exactly the documented fields.
fn matches_document(doc: &Value, path: &str, method: &Method, status: StatusCode, body: &Value) {
    let operation = &doc["paths"][path][method.as_str().to_ascii_lowercase()];
    let response = &operation["responses"][status.as_str()];
    assert!(
        response.is_object(),
        "{method} {path}: {status} is not documented"
    );
    if !status.is_success() {
        assert!(body["message"].is_string(), "{method} {path}: {body}");
        return;
    }
    let schema = &response["content"]["application/json"]["schema"];
    let fields_of = |reference: &Value| -> Option<Vec<String>> {
        let name = reference["$ref"].as_str()?.rsplit('/').next()?;
        let props = doc["components"]["schemas"][name]["properties"].as_object()?;
        let mut keys: Vec<String> = props.keys().cloned().collect();
        keys.sort();
        Some(keys)
    };
    let keys = |v: &Value| {
        let mut k: Vec<String> = v
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        k.sort();
        k
    };
    if let Some(expected) = fields_of(schema) {
        assert_eq!(keys(body), expected, "{method} {path}: {body}");
    }
    if let Some(expected) = fields_of(&schema["properties"]["data"]["items"]) {
        for item in body["data"].as_array().expect("a page") {
            assert_eq!(keys(item), expected, "{method} {path}: {item}");
        }
    }
}

#[tokio::test]
async fn document_lists_exactly_the_table() {
    let (app, _) = app();
    let (status, doc) = get(&app, "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let table = routes::table();
    assert_eq!(paths.len(), table.len());
    for spec in &table {
        let item = paths[&spec.path].as_object().unwrap();
        let mut documented: Vec<String> = item.keys().cloned().collect();
        let mut served: Vec<String> = spec
            .ops
            .iter()
            .map(|(m, _)| m.as_str().to_ascii_lowercase())
            .collect();
        documented.sort();
        served.sort();
        assert_eq!(documented, served, "{}", spec.path);
        // A method the table does not list is refused with 405.
        let undocumented = ["get", "post", "put", "patch", "delete"]
            .into_iter()
            .find(|m| !served.iter().any(|s| s == m));
        if let Some(m) = undocumented {
            let uri = spec
                .path
                .replace("{parent}", "x")
                .replace("{id}", "y")
                .replace("{tag}", "z");
            let (status, _) = send(
                &app,
                &m.to_ascii_uppercase(),
                &uri,
                Some("application/json"),
                "{}",
                &[],
            )
            .await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{m} {uri}");
        }
    }
}

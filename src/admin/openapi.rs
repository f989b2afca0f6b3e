//! `GET /openapi.json`: an OpenAPI 3 document generated from the route
//! table, so every path and method the router answers is documented.

use axum::http::Method;
use serde_json::{json, Map, Value};

use super::routes::{Op, RouteSpec, Scope};

fn what(scope: &Scope) -> String {
    let kind = scope.kind.collection();
    match scope.parent {
        Some(p) => format!("{kind} of one {}", p.kind.collection()),
        None => kind.to_string(),
    }
}

/// Summary and documented answers of one operation.
fn describe(op: &Op, method: &Method) -> (String, Vec<(u16, &'static str)>) {
    let entity_errors = [(400, "invalid input"), (409, "unique violation")];
    let (summary, mut codes) = match op {
        Op::List(s) => (format!("List {}", what(s)), vec![(200, "a page")]),
        Op::Create(s) => (format!("Create one of {}", what(s)), vec![(201, "created")]),
        Op::Get(s) => (
            format!("Read one of {} by id or endpoint key", what(s)),
            vec![(200, "the entity"), (404, "not found")],
        ),
        Op::Put(s) => (
            format!("Create or replace one of {}", what(s)),
            vec![(200, "stored")],
        ),
        Op::Patch(s) => (
            format!("Update one of {}", what(s)),
            vec![(200, "updated"), (404, "not found")],
        ),
        Op::Delete(s) => (format!("Delete one of {}", what(s)), vec![(204, "deleted")]),
        Op::GroupMembers => (
            "List the consumers of a group".into(),
            vec![(200, "a page")],
        ),
        Op::AddGroupMembers => ("Add consumers to a group".into(), vec![(201, "added")]),
        Op::RemoveGroupMember => (
            "Remove a consumer from a group".into(),
            vec![(204, "removed")],
        ),
        Op::GroupsOfConsumer => ("List a consumer's groups".into(), vec![(200, "a page")]),
        Op::Tags => ("List tagged entities".into(), vec![(200, "a page")]),
        Op::PluginsEnabled => ("Plugins this node runs".into(), vec![(200, "names")]),
        Op::Root => ("Node information".into(), vec![(200, "information")]),
        Op::Status => ("Node status".into(), vec![(200, "status")]),
        Op::Cluster => ("The cluster's view".into(), vec![(200, "membership")]),
        Op::AddNode => ("Add a node".into(), vec![(200, "added")]),
        Op::RemoveNode => ("Remove a node".into(), vec![(200, "removed")]),
        Op::ConfigGet => ("Dump the configuration".into(), vec![(200, "the config")]),
        Op::ConfigPost => (
            "Replace the configuration with a declarative file".into(),
            vec![(201, "applied"), (400, "invalid config")],
        ),
        Op::OpenApi => ("This document".into(), vec![(200, "OpenAPI 3")]),
    };
    if matches!(op, Op::Create(_) | Op::Put(_) | Op::Patch(_)) {
        codes.extend(entity_errors);
    }
    codes.push((401, "missing or unknown admin token"));
    if *method != Method::GET {
        codes.push((403, "read-only admin token"));
        codes.push((503, "cluster unavailable"));
    }
    (summary, codes)
}

fn has_body(method: &Method) -> bool {
    matches!(*method, Method::POST | Method::PUT | Method::PATCH)
}

fn parameters(path: &str, method: &Method) -> Vec<Value> {
    let mut params: Vec<Value> = path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            json!({"name": name, "in": "path", "required": true,
                   "description": "id, or the entity's endpoint key",
                   "schema": {"type": "string"}})
        })
        .collect();
    if *method == Method::GET {
        for (name, description) in [
            ("size", "page size, 1 to 1000 (default 100)"),
            ("offset", "opaque offset from the previous page"),
            ("tags", "a,b: all of; a/b: any of (at most 5)"),
            ("consistency", "linearizable: confirm with the leader first"),
        ] {
            params.push(json!({"name": name, "in": "query", "required": false,
                               "description": description, "schema": {"type": "string"}}));
        }
    }
    params
}

/// The document for `table`.
pub fn document(table: &[RouteSpec], version: &str) -> Value {
    let mut paths = Map::new();
    for spec in table {
        let mut item = Map::new();
        for (method, op) in &spec.ops {
            let (summary, codes) = describe(op, method);
            let mut responses = Map::new();
            for (code, description) in codes {
                responses.insert(
                    code.to_string(),
                    json!({"description": description,
                           "content": {"application/json": {"schema": {"type": "object"}}}}),
                );
            }
            let mut operation = json!({
                "summary": summary,
                "tags": [spec.group],
                "operationId": format!("{} {}", method, spec.path),
                "parameters": parameters(&spec.path, method),
                "responses": responses,
            });
            if has_body(method) {
                let schema = json!({"schema": {"type": "object"}});
                operation["requestBody"] = json!({"content": {
                    "application/json": schema,
                    "application/x-www-form-urlencoded": schema,
                    "multipart/form-data": schema,
                }});
            }
            item.insert(method.as_str().to_ascii_lowercase(), operation);
        }
        paths.insert(spec.path.clone(), Value::Object(item));
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "raftgate Admin API",
            "version": version,
            "description": "Kong-compatible Admin API; every write is replicated through Raft.",
        },
        "components": {"securitySchemes": {
            "adminToken": {"type": "apiKey", "in": "header", "name": "Kong-Admin-Token"},
            "bearer": {"type": "http", "scheme": "bearer"},
        }},
        "security": [{"adminToken": []}, {"bearer": []}],
        "paths": paths,
    })
}

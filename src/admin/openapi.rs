//! `GET /openapi.json`: an OpenAPI 3 document generated from the route
//! table, so every path and method the router answers is documented, with
//! entity schemas derived from the entities themselves (their JSON form),
//! so documented fields cannot drift from what the server answers.

use axum::http::Method;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::decode::decode;
use super::routes::{Members, Op, RouteSpec, Scope};
use crate::model::EntityKind;

/// What a successful answer carries.
enum Answer {
    Entity(EntityKind),
    Page(EntityKind),
    TagRows,
    Object,
    Empty,
}

/// One documented operation.
struct Operation {
    summary: String,
    status: u16,
    answer: Answer,
    errors: Vec<(u16, &'static str)>,
}

fn what(scope: &Scope) -> String {
    let kind = scope.kind.collection();
    match scope.parent {
        Some(p) => format!("{kind} of one of {}", p.kind.collection()),
        None => kind.to_string(),
    }
}

fn members(m: &Members) -> (String, u16, Answer) {
    let (text, status, answer) = match m {
        Members::Detail => (
            "Read a group with its consumers and plugins",
            200,
            Answer::Object,
        ),
        Members::List { of_group: true } => ("List the consumers of a group", 200, Answer::Object),
        Members::List { of_group: false } => ("List the groups of a consumer", 200, Answer::Object),
        Members::Add { of_group: true } => ("Add consumers to a group", 201, Answer::Object),
        Members::Add { of_group: false } => ("Add a consumer to groups", 201, Answer::Object),
        Members::RemoveAll { of_group: true } => {
            ("Remove every consumer from a group", 204, Answer::Empty)
        }
        Members::RemoveAll { of_group: false } => {
            ("Remove a consumer from every group", 204, Answer::Empty)
        }
        Members::Get { .. } => ("Read one membership", 200, Answer::Object),
        Members::Remove { .. } => ("Remove one membership", 204, Answer::Empty),
    };
    (text.to_string(), status, answer)
}

fn describe(op: &Op, method: &Method, path: &str) -> Operation {
    use Answer::*;
    let (summary, status, answer) = match op {
        Op::List(s) => (format!("List {}", what(s)), 200, Page(s.kind)),
        Op::Create(s) => (format!("Create one of {}", what(s)), 201, Entity(s.kind)),
        Op::Get(s) => (
            format!("Read one of {} by id or endpoint key", what(s)),
            200,
            Entity(s.kind),
        ),
        Op::Put(s) => (
            format!("Create or replace one of {} (upsert)", what(s)),
            200,
            Entity(s.kind),
        ),
        Op::Patch(s) => (format!("Update one of {}", what(s)), 200, Entity(s.kind)),
        Op::Delete(s) => (
            format!("Delete one of {} (204 also when absent)", what(s)),
            204,
            Empty,
        ),
        Op::Members(m) => members(m),
        Op::Tags => ("List tagged entities".into(), 200, TagRows),
        Op::PluginsEnabled => ("Plugins this node runs".into(), 200, Object),
        Op::Root => ("Node information".into(), 200, Object),
        Op::Status => ("Node status".into(), 200, Object),
        Op::Cluster => ("The cluster's view".into(), 200, Object),
        Op::AddNode => ("Add a node to the cluster".into(), 200, Object),
        Op::RemoveNode => ("Remove a node from the cluster".into(), 200, Object),
        Op::ConfigGet => ("Dump the configuration".into(), 200, Object),
        Op::ConfigPost => (
            "Replace the configuration with a declarative file".into(),
            201,
            Object,
        ),
        Op::OpenApi => ("This document".into(), 200, Object),
    };
    let mut errors = vec![
        (401, "missing or unknown admin token"),
        (503, "cluster unavailable"),
    ];
    if *method != Method::GET {
        errors.push((403, "read-only admin token"));
    }
    if path.contains('{') {
        errors.push((404, "not found"));
    }
    let body = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
    if body {
        errors.extend([
            (400, "invalid input"),
            (413, "body too large"),
            (415, "unsupported content type"),
        ]);
    }
    match op {
        Op::List(_) | Op::Tags => errors.push((400, "invalid size, offset or tags")),
        Op::Create(_) | Op::Put(_) | Op::Patch(_) | Op::Members(Members::Add { .. }) => {
            errors.push((409, "unique violation or already a member"))
        }
        Op::Delete(_) => errors.push((400, "still referenced by other entities")),
        Op::RemoveNode => errors.push((400, "invalid node id")),
        Op::ConfigPost => errors.push((501, "declarative config not available")),
        _ => {}
    }
    errors.sort();
    errors.dedup_by_key(|(code, _)| *code);
    Operation {
        summary,
        status,
        answer,
        errors,
    }
}

/// A minimal body of each kind, decoded to learn the entity's JSON form.
fn sample(kind: EntityKind) -> Value {
    let fk = json!({ "id": Uuid::nil() });
    let mut v = match kind {
        EntityKind::Service => json!({"host": "h"}),
        EntityKind::Upstream | EntityKind::ConsumerGroup => json!({"name": "n"}),
        EntityKind::Target => json!({"upstream": fk, "target": "t"}),
        EntityKind::ConsumerGroupMember => json!({"consumer_group": fk, "consumer": fk}),
        EntityKind::Plugin => json!({"name": "p"}),
        EntityKind::JwtCredential | EntityKind::KeyAuthCredential => {
            json!({"consumer": fk, "key": "k"})
        }
        EntityKind::AclCredential => json!({"consumer": fk, "group": "g"}),
        EntityKind::Certificate => json!({"cert": "c", "key": "k"}),
        EntityKind::Sni => json!({"name": "n", "certificate": fk}),
        EntityKind::Route | EntityKind::Consumer | EntityKind::JwtRevocation => json!({}),
    };
    v["id"] = json!(Uuid::nil());
    v
}

fn schema_of(value: &Value) -> Value {
    match value {
        Value::Null => json!({"nullable": true}),
        Value::Bool(_) => json!({"type": "boolean"}),
        Value::Number(n) if n.is_f64() => json!({"type": "number"}),
        Value::Number(_) => json!({"type": "integer"}),
        Value::String(_) => json!({"type": "string"}),
        Value::Array(items) => {
            json!({"type": "array", "items": items.first().map_or(json!({}), schema_of)})
        }
        Value::Object(map) => {
            let props: Map<String, Value> =
                map.iter().map(|(k, v)| (k.clone(), schema_of(v))).collect();
            json!({"type": "object", "properties": props})
        }
    }
}

/// The JSON schema of an entity kind as the Admin API shows it.
pub fn entity_schema(kind: EntityKind) -> Value {
    let Ok(entity) = decode(kind, sample(kind), false) else {
        return json!({"type": "object"});
    };
    let mut shown = entity.to_json();
    if kind == EntityKind::Certificate {
        shown["snis"] = json!(["example.com"]);
    }
    let mut schema = schema_of(&shown);
    if let Some(id) = schema.pointer_mut("/properties/id") {
        *id = json!({"type": "string", "format": "uuid"});
    }
    schema
}

fn reference(kind: EntityKind) -> Value {
    json!({ "$ref": format!("#/components/schemas/{}", kind.collection()) })
}

fn page_of(items: Value) -> Value {
    json!({"type": "object", "properties": {
        "data": {"type": "array", "items": items},
        "offset": {"type": "string"},
        "next": {"type": "string", "nullable": true},
    }})
}

fn answer_schema(answer: &Answer) -> Option<Value> {
    Some(match answer {
        Answer::Entity(kind) => reference(*kind),
        Answer::Page(kind) => page_of(reference(*kind)),
        Answer::TagRows => page_of(json!({"$ref": "#/components/schemas/tag_row"})),
        Answer::Object => json!({"type": "object"}),
        Answer::Empty => return None,
    })
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
    if path == "/jwt-revocations" && *method == Method::POST {
        for (name, description) in [
            (
                "wait",
                "all: answer once every live node enforces the revocation",
            ),
            ("timeout_ms", "longest wait, 1 to 60000 (default 5000)"),
        ] {
            params.push(json!({"name": name, "in": "query", "required": false,
                               "description": description, "schema": {"type": "string"}}));
        }
    }
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

fn operation(spec: &RouteSpec, method: &Method, op: &Op) -> Value {
    let described = describe(op, method, &spec.path);
    let mut responses = Map::new();
    let mut success = json!({ "description": "success" });
    if let Some(schema) = answer_schema(&described.answer) {
        success["content"] = json!({"application/json": {"schema": schema}});
    }
    responses.insert(described.status.to_string(), success);
    for (code, description) in described.errors {
        responses.insert(
            code.to_string(),
            json!({"description": description, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/error"}}}}),
        );
    }
    let mut operation = json!({
        "summary": described.summary,
        "tags": [spec.group],
        "operationId": format!("{} {}", method, spec.path),
        "parameters": parameters(&spec.path, method),
        "responses": responses,
    });
    if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        let schema = json!({"schema": {"type": "object"}});
        operation["requestBody"] = json!({"content": {
            "application/json": schema,
            "application/x-www-form-urlencoded": schema,
            "multipart/form-data": schema,
        }});
    }
    operation
}

/// The document for `table`.
pub fn document(table: &[RouteSpec], version: &str) -> Value {
    let mut paths = Map::new();
    for spec in table {
        let mut item = Map::new();
        for (method, op) in &spec.ops {
            item.insert(
                method.as_str().to_ascii_lowercase(),
                operation(spec, method, op),
            );
        }
        paths.insert(spec.path.clone(), Value::Object(item));
    }
    let mut schemas = Map::new();
    for kind in EntityKind::ALL {
        schemas.insert(kind.collection().to_string(), entity_schema(*kind));
    }
    schemas.insert(
        "error".into(),
        json!({"type": "object", "properties": {
            "message": {"type": "string"}, "code": {"type": "integer"},
            "name": {"type": "string"}, "fields": {"type": "object"},
        }, "required": ["message"]}),
    );
    schemas.insert(
        "tag_row".into(),
        json!({"type": "object", "properties": {
            "entity_name": {"type": "string"}, "entity_id": {"type": "string", "format": "uuid"},
            "tag": {"type": "string"},
        }}),
    );
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "raftgate Admin API",
            "version": version,
            "description": "Kong-compatible Admin API; every write is replicated through Raft.",
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "adminToken": {"type": "apiKey", "in": "header", "name": "Kong-Admin-Token"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
        },
        "security": [{"adminToken": []}, {"bearer": []}],
        "paths": paths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_derived_schema() {
        for kind in EntityKind::ALL {
            let schema = entity_schema(*kind);
            let props = schema["properties"].as_object();
            assert!(
                props.is_some_and(|p| p.contains_key("id")),
                "{kind:?}: {schema}"
            );
        }
    }
}

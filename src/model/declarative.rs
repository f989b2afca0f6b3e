//! Kong declarative config (decK / DB-less files): parsing a YAML or JSON
//! document into a flat list of entities ready for `Command::ApplyConfig`,
//! and dumping a `State` back into such a document.
//!
//! Kong's nesting is accepted (routes and plugins in services, plugins in
//! routes, plugins and credentials and `groups` in consumers, plugins and
//! `consumers` in consumer groups, targets in upstreams, SNIs in
//! certificates), as are top-level children that name their parent by
//! name or id, and the `url` shorthand of services.
//!
//! Ids: an entity without an `id` gets a UUIDv5 derived from its kind and
//! a natural key (its name, username, key, …, or its parent's id and its
//! position), so the same file always yields the same ids on every node.
//! Timestamps: `created_at`/`updated_at` are 0 unless the file gives them,
//! so that re-applying an unchanged file changes nothing (no clock here).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};
use uuid::Uuid;

use super::command::{Entity, EntityKind};
use super::decode;
use super::errors::{ApplyError, FieldErrors};
use super::plugin_schemas::normalize_config;
use super::relations;
use super::state::State;
use super::validate::validate_entity;

/// A parsed config: every entity (with ids and plugin defaults filled)
/// and the select tags that scope a sync (`_info.select_tags`).
#[derive(Clone, Debug, PartialEq)]
pub struct DeclarativeConfig {
    pub entities: Vec<Entity>,
    pub select_tags: Vec<String>,
}

const FORMAT_VERSIONS: &[&str] = &["1.1", "2.1", "3.0"];

/// Namespace of the ids given to entities a file leaves without one.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x7261_6674_6761_7465_8000_6b6f_6e67_0001);

/// Parses a declarative config in YAML or JSON (JSON is YAML).
pub fn parse(text: &str) -> Result<DeclarativeConfig, ApplyError> {
    // JSON is YAML, but the JSON parser is many times faster on big files.
    if text.trim_start().starts_with('{') {
        if let Ok(doc) = serde_json::from_str::<Value>(text) {
            return parse_value(doc);
        }
    }
    match serde_yaml_ng::from_str::<Value>(text) {
        Ok(doc) => parse_value(doc),
        Err(e) => {
            let mut errs = FieldErrors::new();
            errs.entity(format!("failed parsing declarative configuration: {e}"));
            errs.into_result().map(|()| DeclarativeConfig {
                entities: Vec::new(),
                select_tags: Vec::new(),
            })
        }
    }
}

/// Like `parse`, for a document already decoded (e.g. a JSON body).
pub fn parse_value(doc: Value) -> Result<DeclarativeConfig, ApplyError> {
    let mut errs = FieldErrors::new();
    let Value::Object(mut doc) = doc else {
        errs.entity("expected an object");
        return errs.into_result().map(|()| DeclarativeConfig {
            entities: Vec::new(),
            select_tags: Vec::new(),
        });
    };
    let mut legacy = false;
    match doc.remove("_format_version") {
        None => errs.field("_format_version", "required field missing"),
        Some(v) => {
            let text = match &v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.as_f64().map(|f| format!("{f:.1}")).unwrap_or_default(),
                _ => String::new(),
            };
            if !FORMAT_VERSIONS.contains(&text.as_str()) {
                errs.field("_format_version", "expected one of: 1.1, 2.1, 3.0");
            }
            legacy = text != "3.0";
        }
    }
    if doc.remove("_transform").is_some_and(|v| !v.is_boolean()) {
        errs.field("_transform", "expected a boolean");
    }
    doc.remove("_comment");
    doc.remove("_workspace");
    let select_tags = match doc.remove("_info") {
        None | Some(Value::Null) => Vec::new(),
        Some(info) => match info.get("select_tags") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(tags)) => tags
                .iter()
                .filter_map(|t| t.as_str().map(String::from))
                .collect(),
            Some(_) => {
                errs.at(&["_info", "select_tags"], "expected an array");
                Vec::new()
            }
        },
    };
    let mut walker = Walker {
        items: Vec::new(),
        legacy,
    };
    for (key, value) in doc {
        let kind = match key.as_str() {
            "consumer_group_consumers" => Some(EntityKind::ConsumerGroupMember),
            "jwt_revocations" => None,
            other => EntityKind::from_collection(other),
        };
        match kind {
            Some(kind) => walker.list(kind, value, None, &[key.as_str()], &mut errs),
            None => errs.field(&key, "unknown field"),
        }
    }
    errs.into_result()?;
    let entities = walker.resolve(&select_tags)?;
    Ok(DeclarativeConfig {
        entities,
        select_tags,
    })
}

/// How an entity names one of its parents.
#[derive(Clone, Debug)]
enum Ref {
    /// The entity it is nested in (an index into `Walker::items`).
    Item(usize),
    /// As written in the file: a name, an id, or `{"id"|"name"|…: …}`.
    Raw(Value),
}

struct Item {
    kind: EntityKind,
    obj: Map<String, Value>,
    refs: Vec<(&'static str, Ref)>,
    /// Where it is in the file, for error messages: ["services", "0", …].
    path: Vec<String>,
}

struct Walker {
    items: Vec<Item>,
    /// A pre-3.0 file, whose regex paths lack Kong 3's `~` prefix.
    legacy: bool,
}

/// The foreign-key fields of a kind and the kind each points to.
fn fk_fields(kind: EntityKind) -> &'static [(&'static str, EntityKind)] {
    use EntityKind::*;
    match kind {
        Route => &[("service", Service)],
        Target => &[("upstream", Upstream)],
        Sni => &[("certificate", Certificate)],
        ConsumerGroupMember => &[("consumer_group", ConsumerGroup), ("consumer", Consumer)],
        JwtCredential | KeyAuthCredential | AclCredential => &[("consumer", Consumer)],
        Plugin => &[
            ("service", Service),
            ("route", Route),
            ("consumer", Consumer),
            ("consumer_group", ConsumerGroup),
        ],
        JwtRevocation => &[("consumer", Consumer), ("credential", JwtCredential)],
        Service | Upstream | Consumer | ConsumerGroup | Certificate => &[],
    }
}

/// Children a kind may nest: key in the parent, child kind, child's field.
fn nested(kind: EntityKind) -> &'static [(&'static str, EntityKind, &'static str)] {
    use EntityKind::*;
    match kind {
        Service => &[("routes", Route, "service"), ("plugins", Plugin, "service")],
        Route => &[("plugins", Plugin, "route")],
        Consumer => &[
            ("plugins", Plugin, "consumer"),
            ("jwt_secrets", JwtCredential, "consumer"),
            ("keyauth_credentials", KeyAuthCredential, "consumer"),
            ("acls", AclCredential, "consumer"),
        ],
        ConsumerGroup => &[("plugins", Plugin, "consumer_group")],
        Upstream => &[("targets", Target, "upstream")],
        Certificate => &[("snis", Sni, "certificate")],
        _ => &[],
    }
}

impl Walker {
    fn list(
        &mut self,
        kind: EntityKind,
        value: Value,
        parent: Option<(&'static str, usize)>,
        path: &[&str],
        errs: &mut FieldErrors,
    ) {
        let items = match value {
            Value::Null => return,
            Value::Array(items) => items,
            _ => return errs.at(path, "expected an array"),
        };
        for (i, item) in items.into_iter().enumerate() {
            let pos = i.to_string();
            let mut here: Vec<&str> = path.to_vec();
            here.push(&pos);
            // Shorthands: `snis: ["a.com"]` in a certificate.
            let item = match (kind, item) {
                (EntityKind::Sni, Value::String(name)) => serde_json::json!({ "name": name }),
                (_, item) => item,
            };
            match item {
                Value::Object(obj) => self.entity(kind, obj, parent, &here, errs),
                _ => errs.at(&here, "expected a record"),
            }
        }
    }

    fn entity(
        &mut self,
        kind: EntityKind,
        mut obj: Map<String, Value>,
        parent: Option<(&'static str, usize)>,
        path: &[&str],
        errs: &mut FieldErrors,
    ) {
        let index = self.items.len();
        let mut children = Vec::new();
        for (key, child_kind, field) in nested(kind) {
            if let Some(v) = obj.remove(*key) {
                children.push((*key, *child_kind, *field, v));
            }
        }
        // Group memberships, written on either side.
        let groups = match kind {
            EntityKind::Consumer => obj.remove("groups"),
            _ => None,
        };
        let members = match kind {
            EntityKind::ConsumerGroup => obj.remove("consumers"),
            _ => None,
        };
        if kind == EntityKind::Route && self.legacy {
            mark_regex_paths(&mut obj);
        }
        if kind == EntityKind::Service && !expand_service_url(&mut obj) {
            let mut at = path.to_vec();
            at.push("url");
            errs.at(&at, "invalid url");
        }
        let mut refs = Vec::new();
        if let Some((field, parent_index)) = parent {
            refs.push((field, Ref::Item(parent_index)));
        }
        self.items.push(Item {
            kind,
            obj,
            refs,
            path: path.iter().map(|s| s.to_string()).collect(),
        });
        for (key, child_kind, field, v) in children {
            let mut at = path.to_vec();
            at.push(key);
            self.list(child_kind, v, Some((field, index)), &at, errs);
        }
        for (key, list, parent_field, other_field) in [
            ("groups", groups, "consumer", "consumer_group"),
            ("consumers", members, "consumer_group", "consumer"),
        ] {
            let Some(list) = list else { continue };
            let mut at = path.to_vec();
            at.push(key);
            let Value::Array(list) = list else {
                errs.at(&at, "expected an array");
                continue;
            };
            for (i, other) in list.into_iter().enumerate() {
                let pos = i.to_string();
                let mut here = at.clone();
                here.push(&pos);
                self.items.push(Item {
                    kind: EntityKind::ConsumerGroupMember,
                    obj: Map::new(),
                    refs: vec![
                        (parent_field, Ref::Item(index)),
                        (other_field, Ref::Raw(other)),
                    ],
                    path: here.iter().map(|s| s.to_string()).collect(),
                });
            }
        }
    }

    /// Gives every entity its id and resolved references, parents first,
    /// and builds the entities.
    fn resolve(mut self, select_tags: &[String]) -> Result<Vec<Entity>, ApplyError> {
        let mut order: Vec<usize> = (0..self.items.len()).collect();
        order.sort_by_key(|i| relations::rank(self.items[*i].kind));
        let mut ids: Vec<Option<Uuid>> = vec![None; self.items.len()];
        let mut names: HashMap<(EntityKind, String), Uuid> = HashMap::new();
        let mut seen: HashSet<(EntityKind, Uuid)> = HashSet::new();
        let mut errs = FieldErrors::new();
        let mut entities = Vec::with_capacity(self.items.len());
        for i in order {
            let item = &mut self.items[i];
            let path: Vec<&str> = item.path.iter().map(String::as_str).collect();
            let mut parent_ids = Vec::new();
            for (field, parent_kind) in fk_fields(item.kind) {
                let given = match item.refs.iter().find(|(f, _)| f == field) {
                    Some((_, r)) => Some(r.clone()),
                    None => item.obj.remove(*field).map(Ref::Raw),
                };
                let id = match given {
                    None | Some(Ref::Raw(Value::Null)) => None,
                    Some(Ref::Item(p)) => ids[p],
                    Some(Ref::Raw(v)) => match lookup(&v, *parent_kind, &names) {
                        Ok(id) => Some(id),
                        Err(msg) => {
                            let mut at = path.clone();
                            at.push(field);
                            errs.at(&at, msg);
                            continue;
                        }
                    },
                };
                if let Some(id) = id {
                    item.obj
                        .insert(field.to_string(), serde_json::json!({ "id": id }));
                    parent_ids.push(id.to_string());
                }
            }
            // Without a name, decoding reports "required field missing".
            let plugin_name = match item.kind {
                EntityKind::Plugin => item.obj.get("name").and_then(Value::as_str),
                _ => None,
            };
            if let Some(name) = plugin_name.map(String::from) {
                let config = item.obj.remove("config").unwrap_or(Value::Null);
                match normalize_config(&name, config) {
                    Ok(config) => {
                        item.obj.insert("config".into(), config);
                    }
                    Err(e) => {
                        nest(&mut errs, &path, e);
                        continue;
                    }
                }
            }
            if !select_tags.is_empty() && item.kind != EntityKind::ConsumerGroupMember {
                add_tags(&mut item.obj, select_tags);
            }
            let id = match item.obj.get("id") {
                Some(Value::String(s)) => match Uuid::parse_str(s) {
                    Ok(id) => id,
                    Err(_) => {
                        let mut at = path.clone();
                        at.push("id");
                        errs.at(&at, "expected a valid UUID");
                        continue;
                    }
                },
                _ => {
                    let natural = natural_key(item.kind, &item.obj, &parent_ids, &item.path);
                    let id = Uuid::new_v5(
                        &ID_NAMESPACE,
                        format!("{}:{natural}", item.kind.collection()).as_bytes(),
                    );
                    item.obj.insert("id".into(), id.to_string().into());
                    id
                }
            };
            ids[i] = Some(id);
            if !seen.insert((item.kind, id)) {
                // A membership written on both sides is one membership.
                if item.kind != EntityKind::ConsumerGroupMember {
                    errs.at(
                        &path,
                        format!(
                            "uniqueness violation: '{}' entity with primary key set to '{id}' already declared",
                            item.kind.collection()
                        ),
                    );
                }
                continue;
            }
            for (field, key) in name_keys(item.kind, &item.obj) {
                if let Some(other) = names.insert((item.kind, key.clone()), id) {
                    if other != id {
                        errs.at(
                            &path,
                            format!(
                                "uniqueness violation: '{}' entity with {field} set to '{key}' already declared",
                                item.kind.collection()
                            ),
                        );
                    }
                }
            }
            let obj = std::mem::take(&mut item.obj);
            match decode::entity(item.kind, Value::Object(obj)) {
                Ok(entity) => match validate_entity(&entity) {
                    Ok(()) => entities.push(entity),
                    Err(e) => nest(&mut errs, &path, e),
                },
                Err(e) => nest(&mut errs, &path, e),
            }
        }
        errs.into_result().map(|()| entities)
    }
}

/// Kong 3 marks regex paths with `~`; files of older formats did not, so
/// (as Kong does when loading them) every path with a character outside
/// the plain-path set gets the prefix.
fn mark_regex_paths(obj: &mut Map<String, Value>) {
    let Some(Value::Array(paths)) = obj.get_mut("paths") else {
        return;
    };
    for path in paths.iter_mut() {
        if let Value::String(p) = path {
            let plain = p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "./-_~%".contains(c));
            if !plain && !p.starts_with('~') {
                *p = format!("~{p}");
            }
        }
    }
}

/// Re-homes an entity's field errors under its place in the file.
fn nest(errs: &mut FieldErrors, path: &[&str], err: ApplyError) {
    match err {
        ApplyError::SchemaViolation { fields } => {
            for (field, msg) in fields {
                let mut at = path.to_vec();
                at.push(&field);
                put_value(errs, &at, msg);
            }
        }
        other => errs.at(path, other.to_string()),
    }
}

fn put_value(errs: &mut FieldErrors, path: &[&str], msg: Value) {
    match msg {
        Value::Object(map) => {
            for (k, v) in map {
                let mut at = path.to_vec();
                at.push(&k);
                put_value(errs, &at, v);
            }
        }
        Value::Array(items) => {
            let text: Vec<String> = items
                .iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), String::from))
                .collect();
            errs.at(path, text.join("; "));
        }
        Value::String(s) => errs.at(path, s),
        other => errs.at(path, other.to_string()),
    }
}

fn add_tags(obj: &mut Map<String, Value>, select_tags: &[String]) {
    let mut tags: Vec<Value> = match obj.remove("tags") {
        Some(Value::Array(t)) => t,
        _ => Vec::new(),
    };
    for t in select_tags {
        if !tags.iter().any(|x| x == t) {
            tags.push(Value::String(t.clone()));
        }
    }
    obj.insert("tags".into(), Value::Array(tags));
}

/// The names by which other entries of the file may refer to this one,
/// with the field each comes from.
fn name_keys(kind: EntityKind, obj: &Map<String, Value>) -> Vec<(&'static str, String)> {
    let fields: &[&str] = match kind {
        EntityKind::Consumer => &["username", "custom_id"],
        EntityKind::JwtCredential | EntityKind::KeyAuthCredential => &["key"],
        EntityKind::Plugin => &["instance_name"],
        EntityKind::Service
        | EntityKind::Route
        | EntityKind::Upstream
        | EntityKind::ConsumerGroup
        | EntityKind::Sni => &["name"],
        _ => &[],
    };
    fields
        .iter()
        .filter_map(|f| Some((*f, obj.get(*f).and_then(Value::as_str)?.to_string())))
        .collect()
}

/// Resolves a reference as written: an id, a name, or an object with one.
fn lookup(
    v: &Value,
    kind: EntityKind,
    names: &HashMap<(EntityKind, String), Uuid>,
) -> Result<Uuid, String> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Object(o) => match ["id", "name", "username", "custom_id", "key"]
            .iter()
            .find_map(|k| o.get(*k).and_then(Value::as_str))
        {
            Some(s) => s.to_string(),
            None => return Err("expected a reference by id or name".into()),
        },
        _ => return Err("expected a reference by id or name".into()),
    };
    if let Some(id) = names.get(&(kind, text.clone())) {
        return Ok(*id);
    }
    match Uuid::parse_str(&text) {
        Ok(id) => Ok(id),
        Err(_) => Err(format!(
            "invalid reference '{text}' (no such entry in '{}')",
            kind.collection()
        )),
    }
}

/// A stable key for an entity without an id.
fn natural_key(
    kind: EntityKind,
    obj: &Map<String, Value>,
    parent_ids: &[String],
    path: &[String],
) -> String {
    let s = |f: &str| obj.get(f).and_then(Value::as_str).map(String::from);
    let scoped = |own: Option<String>| match own {
        Some(own) => format!("{}|{own}", parent_ids.join(",")),
        // Nothing names it: its parents and its place among its siblings
        // do (the whole path for a top-level entry).
        None if parent_ids.is_empty() => format!("|{}", path.join(".")),
        None => {
            let tail = path.len().saturating_sub(2);
            format!("{}|{}", parent_ids.join(","), path[tail..].join("."))
        }
    };
    match kind {
        EntityKind::Service
        | EntityKind::Route
        | EntityKind::Upstream
        | EntityKind::ConsumerGroup
        | EntityKind::Sni => s("name").unwrap_or_else(|| scoped(None)),
        EntityKind::Consumer => s("username")
            .or_else(|| s("custom_id").map(|c| format!("custom_id:{c}")))
            .unwrap_or_else(|| scoped(None)),
        EntityKind::JwtCredential | EntityKind::KeyAuthCredential => {
            s("key").unwrap_or_else(|| scoped(None))
        }
        EntityKind::Plugin => match s("instance_name") {
            Some(n) => format!("instance:{n}"),
            None => scoped(s("name")),
        },
        EntityKind::Target => scoped(s("target")),
        EntityKind::AclCredential => scoped(s("group")),
        EntityKind::ConsumerGroupMember => scoped(Some(String::new())),
        EntityKind::Certificate => s("cert").unwrap_or_else(|| scoped(None)),
        EntityKind::JwtRevocation => scoped(Some(Value::Object(obj.clone()).to_string())),
    }
}

/// Replaces a service's `url` shorthand (if any) by `protocol`, `host`,
/// `port` and `path`, as Kong does for the Admin API and declarative
/// files. Returns false if the url cannot be split.
pub fn expand_service_url(obj: &mut Map<String, Value>) -> bool {
    let Some(url) = obj.remove("url") else {
        return true;
    };
    let Some((protocol, host, port, path)) = url.as_str().and_then(split_url) else {
        return false;
    };
    obj.insert("protocol".into(), protocol.into());
    obj.insert("host".into(), host.into());
    obj.insert("port".into(), port.into());
    if let Some(p) = path {
        obj.insert("path".into(), p.into());
    }
    true
}

/// Splits a service `url` into protocol, host, port and path.
fn split_url(url: &str) -> Option<(String, String, u16, Option<String>)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(rest[i..].to_string())),
        None => (rest, None),
    };
    let (host, port) = super::validate::split_host_port(authority)?;
    if host.is_empty() {
        return None;
    }
    let default_port = match scheme.as_str() {
        "https" | "wss" | "grpcs" | "tls" => 443,
        _ => 80,
    };
    Some((scheme, host.to_string(), port.unwrap_or(default_port), path))
}

/// The state's configuration as a `_format_version: "3.0"` document, one
/// flat top-level list per collection, parents referred to by id. It
/// parses back to the same entities. Revocations are not configuration
/// and are left out.
pub fn dump(state: &State) -> Value {
    let mut doc = Map::new();
    doc.insert("_format_version".into(), "3.0".into());
    let mut kinds: Vec<EntityKind> = EntityKind::ALL
        .iter()
        .copied()
        .filter(|k| relations::is_config_kind(*k))
        .collect();
    kinds.sort_by_key(|k| relations::rank(*k));
    for kind in kinds {
        let list: Vec<Value> = state.iter(kind).map(Entity::to_json).collect();
        if !list.is_empty() {
            doc.insert(kind.collection().to_string(), Value::Array(list));
        }
    }
    Value::Object(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::command::{Command, CommandOutput, Proposal};
    use serde_json::json;

    const SEED: &str = include_str!("testdata/seed-kong.yaml");

    fn of_kind(cfg: &DeclarativeConfig, kind: EntityKind) -> Vec<Value> {
        cfg.entities
            .iter()
            .filter(|e| e.kind() == kind)
            .map(Entity::to_json)
            .collect()
    }

    fn apply(
        state: &mut State,
        cfg: &DeclarativeConfig,
        request: u128,
    ) -> Result<CommandOutput, ApplyError> {
        state.apply(&Proposal {
            request_id: Uuid::from_u128(request),
            command: Command::ApplyConfig {
                entities: cfg.entities.clone(),
                delete_missing: true,
                select_tags: cfg.select_tags.clone(),
            },
        })
    }

    #[test]
    fn the_seed_config_parses_as_is() {
        let cfg = parse(SEED).expect("seed config");
        let services = of_kind(&cfg, EntityKind::Service);
        assert_eq!(services.len(), 2);
        let users = services
            .iter()
            .find(|s| s["name"] == "user-service")
            .expect("user-service");
        assert_eq!(users["protocol"], "http");
        assert_eq!(users["host"], "user-service");
        assert_eq!(users["port"], 8080);
        assert_eq!(users["path"], Value::Null);
        let routes = of_kind(&cfg, EntityKind::Route);
        let route = routes
            .iter()
            .find(|r| r["name"] == "user-routes")
            .expect("route");
        assert_eq!(route["service"]["id"], users["id"]);
        assert_eq!(route["paths"], json!(["/api/users"]));
        let plugins = of_kind(&cfg, EntityKind::Plugin);
        assert_eq!(plugins.len(), 5);
        let rl: Vec<&Value> = plugins
            .iter()
            .filter(|p| p["name"] == "rate-limiting")
            .collect();
        assert_eq!(rl.len(), 2);
        assert_eq!(rl[0]["config"]["minute"], 100);
        assert_eq!(rl[0]["config"]["error_message"], "API rate limit exceeded");
        let cid = plugins
            .iter()
            .find(|p| p["name"] == "correlation-id")
            .expect("global plugin");
        assert_eq!(cid["service"], Value::Null);
        assert_eq!(
            cid["config"],
            json!({"header_name": "X-Request-ID", "generator": "uuid", "echo_downstream": true})
        );
        let jwt = plugins.iter().find(|p| p["name"] == "jwt").expect("jwt");
        assert_eq!(jwt["config"]["key_claim_name"], "iss");

        // It applies to an empty state, and applying it again changes nothing.
        let mut state = State::default();
        assert!(apply(&mut state, &cfg, 1).is_ok());
        let before: Vec<Value> = EntityKind::ALL
            .iter()
            .flat_map(|k| state.iter(*k).map(Entity::to_json).collect::<Vec<_>>())
            .collect();
        let again = parse(SEED).expect("seed config");
        assert_eq!(again, cfg, "same file, same entities and ids");
        assert_eq!(
            apply(&mut state, &again, 2),
            Ok(CommandOutput::Config {
                upserted: 9,
                deleted: 0
            })
        );
        let after: Vec<Value> = EntityKind::ALL
            .iter()
            .flat_map(|k| state.iter(*k).map(Entity::to_json).collect::<Vec<_>>())
            .collect();
        assert_eq!(before, after);
    }

    #[test]
    fn nesting_references_and_credentials() {
        let yaml = r#"
_format_version: "3.0"
_info:
  select_tags: [team-a]
consumer_groups:
  - name: premium
    plugins:
      - name: rate-limiting
        config: { minute: 1000 }
        instance_name: premium-limit
consumers:
  - username: mobile-app
    groups: [{ name: premium }]
    jwt_secrets:
      - key: mobile-iss
        secret: my-secret-key
    keyauth_credentials:
      - key: k-1
    acls:
      - group: admins
    plugins:
      - name: rate-limiting
        config: { second: 5 }
jwt_secrets:
  - consumer: mobile-app
    key: second-iss
    algorithm: HS512
    secret: s2
upstreams:
  - name: backend
    targets:
      - target: 10.0.0.1:8080
      - target: 10.0.0.2:8080
        weight: 50
services:
  - name: api
    host: backend
    port: 80
routes:
  - name: top-route
    service: api
    paths: [/api]
    plugins:
      - name: key-auth
certificates:
  - cert: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"
    key: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"
    snis: [example.com, { name: www.example.com }]
"#;
        let cfg = parse(yaml).expect("config");
        assert_eq!(cfg.select_tags, vec!["team-a".to_string()]);
        let mut state = State::default();
        let out = apply(&mut state, &cfg, 1);
        assert!(out.is_ok(), "{out:?}");
        let consumer = state
            .find(EntityKind::Consumer, "mobile-app")
            .expect("consumer")
            .id();
        assert_eq!(
            state
                .children(EntityKind::JwtCredential, EntityKind::Consumer, consumer)
                .count(),
            2
        );
        assert_eq!(state.groups_of_consumer(consumer).len(), 1);
        assert_eq!(
            state.consumer_by_jwt_key("second-iss").map(|(_, c)| c.id),
            Some(consumer)
        );
        assert_eq!(
            state.consumer_by_api_key("k-1").map(|(_, c)| c.id),
            Some(consumer)
        );
        let upstream = state
            .find(EntityKind::Upstream, "backend")
            .expect("upstream")
            .id();
        assert_eq!(
            state
                .children(EntityKind::Target, EntityKind::Upstream, upstream)
                .count(),
            2
        );
        let route = state
            .find(EntityKind::Route, "top-route")
            .expect("route")
            .id();
        assert_eq!(
            state
                .children(EntityKind::Plugin, EntityKind::Route, route)
                .count(),
            1
        );
        assert!(state
            .find(EntityKind::Certificate, "www.example.com")
            .is_some());
        let group = state
            .find(EntityKind::ConsumerGroup, "premium")
            .expect("group");
        assert_eq!(group.to_json()["tags"], json!(["team-a"]));

        // dump → parse gives back the very same entities.
        let dumped = dump(&state);
        assert_eq!(dumped["_format_version"], "3.0");
        let back = parse(&dumped.to_string()).expect("dump parses");
        let mut a: Vec<Value> = back.entities.iter().map(Entity::to_json).collect();
        let mut b: Vec<Value> = EntityKind::ALL
            .iter()
            .flat_map(|k| state.iter(*k).map(Entity::to_json).collect::<Vec<_>>())
            .collect();
        a.sort_by_key(|v| v["id"].to_string());
        b.sort_by_key(|v| v["id"].to_string());
        assert_eq!(a, b);
    }

    #[test]
    fn errors_name_the_place_in_the_file() {
        let err = parse("services: []").unwrap_err();
        assert_eq!(
            err.to_json()["fields"]["_format_version"],
            "required field missing"
        );
        let err = parse("_format_version: '4.0'").unwrap_err();
        assert_eq!(
            err.to_json()["fields"]["_format_version"],
            "expected one of: 1.1, 2.1, 3.0"
        );
        assert!(
            parse("_format_version: 3.0").is_ok(),
            "an unquoted YAML number is fine"
        );
        let err = parse("_format_version: '3.0'\nwidgets: []").unwrap_err();
        assert_eq!(err.to_json()["fields"]["widgets"], "unknown field");
        let yaml = "_format_version: '3.0'\nservices:\n  - name: a\n    host: a\n    routes:\n      - paths: [nope]\n    plugins:\n      - name: rate-limiting\n        config: {}\n";
        let f = parse(yaml).unwrap_err().to_json()["fields"].clone();
        assert_eq!(
            f["services"]["0"]["routes"]["0"]["paths"],
            "should start with: / (fixed path) or ~ (regex path)"
        );
        assert!(f["services"]["0"]["plugins"]["0"]["@entity"]
            .as_str()
            .unwrap_or("")
            .starts_with("at least one of"));
        let f = parse("_format_version: '3.0'\nroutes:\n  - service: ghost\n    paths: [/]\n")
            .unwrap_err()
            .to_json()["fields"]
            .clone();
        assert_eq!(
            f["routes"]["0"]["service"],
            "invalid reference 'ghost' (no such entry in 'services')"
        );
        let f = parse("_format_version: '3.0'\nplugins:\n  - config: {}\n")
            .unwrap_err()
            .to_json()["fields"]
            .clone();
        assert_eq!(f["plugins"]["0"]["name"], "required field missing");
        let f = parse("_format_version: '3.0'\nservices:\n  - host: a\n    colour: red\n")
            .unwrap_err()
            .to_json()["fields"]
            .clone();
        assert_eq!(f["services"]["0"]["colour"], "unknown field");
        let f = parse("_format_version: '3.0'\nservices:\n  - url: 'not a url'\n")
            .unwrap_err()
            .to_json()["fields"]
            .clone();
        assert_eq!(f["services"]["0"]["url"], "invalid url");
        assert!(parse("{{{").is_err());
    }

    #[test]
    fn a_big_file_parses_quickly() {
        let consumers: Vec<Value> = (0..10_000)
            .map(|i| json!({"username": format!("user-{i}"), "jwt_secrets": [{"key": format!("iss-{i}"), "secret": "s"}]}))
            .collect();
        let services: Vec<Value> = (0..1_000)
            .map(|i| json!({"name": format!("svc-{i}"), "url": "http://backend:8080", "routes": [{"paths": [format!("/s/{i}")]}]}))
            .collect();
        let text = json!({"_format_version": "3.0", "consumers": consumers, "services": services})
            .to_string();
        let start = std::time::Instant::now();
        let cfg = parse(&text).expect("big config");
        let took = start.elapsed();
        eprintln!("parsing 22,000 entities took {took:?}");
        assert_eq!(cfg.entities.len(), 22_000);
        assert!(took.as_secs_f64() < 10.0, "{took:?}");
    }

    #[test]
    fn duplicates_in_a_file_are_reported() {
        let yaml = "_format_version: '3.0'\nservices:\n  - name: a\n    host: a\n  - name: a\n    host: b\n";
        let f = parse(yaml).unwrap_err().to_json()["fields"].clone();
        assert_eq!(
            f["services"]["1"],
            "uniqueness violation: 'services' entity with primary key set to '".to_string()
                + &Uuid::new_v5(&ID_NAMESPACE, b"services:a").to_string()
                + "' already declared"
        );
        let yaml = "_format_version: '3.0'\nconsumers:\n  - username: a\n  - id: 5f8c4a6e-0000-4000-8000-000000000001\n    username: a\n";
        let f = parse(yaml).unwrap_err().to_json()["fields"].clone();
        assert_eq!(
            f["consumers"]["1"],
            "uniqueness violation: 'consumers' entity with username set to 'a' already declared"
        );
        // A membership written on both sides is fine.
        let yaml = "_format_version: '3.0'\nconsumer_groups:\n  - name: g\n    consumers: [{username: a}]\nconsumers:\n  - username: a\n    groups: [g]\n";
        let cfg = parse(yaml).expect("config");
        let members = cfg
            .entities
            .iter()
            .filter(|e| e.kind() == EntityKind::ConsumerGroupMember)
            .count();
        assert_eq!(members, 1);
    }

    /// Every place in a document, as a JSON pointer.
    fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
        out.push(at.clone());
        match v {
            Value::Object(m) => m
                .iter()
                .for_each(|(k, v)| pointers(v, format!("{at}/{k}"), out)),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .for_each(|(i, v)| pointers(v, format!("{at}/{i}"), out)),
            _ => {}
        }
    }

    #[test]
    fn odd_values_anywhere_give_errors_not_panics() {
        let doc: Value = serde_yaml_ng::from_str(SEED).expect("seed");
        let odd = [
            Value::Null,
            json!(-1),
            json!(1e300),
            json!(""),
            json!("~(("),
            json!([]),
            json!({}),
            json!([{}]),
            json!(true),
            json!("00000000-0000-0000-0000-000000000000"),
        ];
        let mut places = Vec::new();
        pointers(&doc, String::new(), &mut places);
        let mut rejected = 0;
        for place in places.iter().skip(1) {
            for v in &odd {
                let mut d = doc.clone();
                if let Some(slot) = d.pointer_mut(place) {
                    *slot = v.clone();
                }
                if parse_value(d).is_err() {
                    rejected += 1;
                }
            }
        }
        assert!(rejected > places.len(), "most odd values are refused");
    }

    #[test]
    fn older_formats_get_their_regex_paths_marked() {
        let yaml =
            "_format_version: '1.1'\nroutes:\n  - name: r\n    paths: [/plain, '/users/\\d+$']\n";
        let cfg = parse(yaml).expect("config");
        let route = cfg.entities[0].to_json();
        assert_eq!(route["paths"], json!(["/plain", "~/users/\\d+$"]));
        let cfg = parse(&yaml.replace("1.1", "3.0"));
        assert!(cfg.is_err(), "in 3.0 an unmarked regex is not a path");
    }

    #[test]
    fn urls_split_like_kong() {
        assert_eq!(
            split_url("https://api.example.com/v1"),
            Some((
                "https".into(),
                "api.example.com".into(),
                443,
                Some("/v1".into())
            ))
        );
        assert_eq!(
            split_url("http://[::1]:9000"),
            Some(("http".into(), "::1".into(), 9000, None))
        );
        assert_eq!(split_url("http://:80"), None);
        assert_eq!(split_url("example.com"), None);
    }

    #[test]
    fn ids_given_in_the_file_are_kept_and_unnamed_entities_get_stable_ones() {
        let id = "5f8c4a6e-0000-4000-8000-000000000001";
        let yaml = format!("_format_version: '3.0'\nservices:\n  - id: {id}\n    host: a\n    routes:\n      - paths: [/a]\n      - paths: [/b]\n");
        let cfg = parse(&yaml).expect("config");
        assert_eq!(cfg.entities[0].id().to_string(), id);
        let routes: Vec<Uuid> = cfg
            .entities
            .iter()
            .filter(|e| e.kind() == EntityKind::Route)
            .map(Entity::id)
            .collect();
        assert_eq!(routes.len(), 2);
        assert_ne!(routes[0], routes[1]);
        let again: Vec<Uuid> = parse(&yaml)
            .expect("config")
            .entities
            .iter()
            .map(Entity::id)
            .collect();
        assert_eq!(
            again,
            cfg.entities.iter().map(Entity::id).collect::<Vec<_>>()
        );
    }
}

//! Request handling: one `dispatch` for every route of the table, and the
//! generic entity endpoints (list, create, read, upsert, patch, delete)
//! with Kong's semantics.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use uuid::Uuid;

use super::backend::Backend;
use super::body;
use super::errors::AdminError;
use super::lookup::{find, parent_id, sni_names, tags};
use super::pagination::PageQuery;
use super::prepare::{prepare, Mode, Prepared};
use super::routes::{Members, Op, Scope};
use super::{certificates, cluster, config, groups, info, revocations, tags, AdminSettings};
use crate::model::{Command, CommandOutput, Entity, EntityKind, State};

/// What every handler shares.
pub struct App<B> {
    pub backend: B,
    pub settings: Arc<AdminSettings>,
    /// The OpenAPI document, built once from the route table.
    pub openapi: Arc<Value>,
}

impl<B: Clone> Clone for App<B> {
    fn clone(&self) -> Self {
        App {
            backend: self.backend.clone(),
            settings: self.settings.clone(),
            openapi: self.openapi.clone(),
        }
    }
}

/// One request, taken apart.
pub struct Ctx<B> {
    pub app: App<B>,
    pub method: Method,
    pub path: String,
    pub params: HashMap<String, String>,
    pub query: HashMap<String, String>,
    pub parts: Parts,
    /// The raw body of a POST, PUT or PATCH (read before dispatching, so
    /// the context is `Sync`); empty otherwise.
    pub bytes: bytes::Bytes,
}

impl<B: Backend> Ctx<B> {
    pub fn param(&self, name: &str) -> &str {
        self.params.get(name).map(String::as_str).unwrap_or("")
    }

    /// Reads and decodes the body (JSON, form or multipart).
    pub async fn decoded(&self) -> Result<body::Decoded, AdminError> {
        body::decode(&self.parts.headers, self.bytes.clone()).await
    }

    /// Resolves the `{parent}` path segment of a nested scope (404 if absent).
    pub fn parent(
        &self,
        state: &State,
        scope: Scope,
    ) -> Result<Option<(&'static str, Uuid)>, AdminError> {
        match scope.parent {
            None => Ok(None),
            Some(p) => {
                let parent = find(state, p.kind, self.param("parent"), None)
                    .ok_or_else(AdminError::not_found)?;
                Ok(Some((p.field, parent.id())))
            }
        }
    }
}

/// Seconds since the epoch, read here (before proposing), never in apply.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The entry point of every route.
pub async fn dispatch<B: Backend>(app: App<B>, op: Op, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let params = Path::<HashMap<String, String>>::from_request_parts(&mut parts, &())
        .await
        .map(|p| p.0)
        .unwrap_or_default();
    let query: HashMap<String, String> = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let bytes = if matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) {
        match body::read_bytes(&parts.headers, body).await {
            Ok(bytes) => bytes,
            Err(e) => return e.into_response(),
        }
    } else {
        bytes::Bytes::new()
    };
    let ctx = Ctx {
        app,
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        params,
        query,
        parts,
        bytes,
    };
    let response = match run(&ctx, op).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    };
    // Neither the path nor the body is logged: both may hold credentials.
    tracing::debug!(?op, status = response.status().as_u16(), "admin request");
    response
}

async fn run<B: Backend>(ctx: &Ctx<B>, op: Op) -> Result<Response, AdminError> {
    if ctx.method == Method::GET
        && ctx.query.get("consistency").map(String::as_str) == Some("linearizable")
    {
        ctx.app.backend.linearizable_barrier().await?;
    }
    let answer = perform(ctx, op).await;
    // A write resolves names and foreign keys in this node's applied state,
    // which may not yet hold a write just acknowledged by another node. When
    // a write misses, catch up with the leader and try once more, so a
    // client spreading its calls over the nodes reads its own writes.
    match answer {
        Err(e) if op.is_write() && e.may_come_from_lag() => {
            ctx.app.backend.linearizable_barrier().await?;
            perform(ctx, op).await
        }
        answer => answer,
    }
}

async fn perform<B: Backend>(ctx: &Ctx<B>, op: Op) -> Result<Response, AdminError> {
    match op {
        Op::List(scope) => list(ctx, scope),
        Op::Get(scope) => get(ctx, scope),
        Op::Create(scope) => create(ctx, scope).await,
        Op::Put(scope) => put(ctx, scope).await,
        Op::Patch(scope) => patch(ctx, scope).await,
        Op::Delete(scope) => delete(ctx, scope).await,
        Op::Members(m) => match m {
            Members::Detail => groups::detail(ctx),
            Members::List { of_group: true } => groups::consumers_of(ctx),
            Members::List { of_group: false } => groups::groups_of(ctx),
            Members::Add { of_group: true } => groups::add_consumers(ctx).await,
            Members::Add { of_group: false } => groups::add_groups(ctx).await,
            Members::RemoveAll { of_group } => groups::remove_all(ctx, of_group).await,
            Members::Get { of_group } => groups::member(ctx, of_group),
            Members::Remove { of_group } => groups::remove_member(ctx, of_group).await,
        },
        Op::Tags => tags::list(ctx),
        Op::PluginsEnabled => Ok(Json(info::plugins_enabled()).into_response()),
        Op::Root => Ok(Json(info::root(&ctx.app)).into_response()),
        Op::Status => Ok(Json(info::status(&ctx.app)).into_response()),
        Op::Cluster => Ok(Json(ctx.app.backend.cluster_info()).into_response()),
        Op::AddNode => cluster::add_node(ctx).await,
        Op::RemoveNode => cluster::remove_node(ctx).await,
        Op::ConfigGet => {
            Ok(Json(json!({"config": config::dump(&ctx.app.backend.state())})).into_response())
        }
        Op::ConfigPost => config::post(ctx).await,
        Op::OpenApi => Ok(Json(ctx.app.openapi.as_ref().clone()).into_response()),
    }
}

/// An entity as the Admin API shows it (certificates list their SNIs).
pub fn render(state: &State, entity: &Entity) -> Value {
    let mut json = entity.to_json();
    if entity.kind() == EntityKind::Certificate {
        json["snis"] = json!(sni_names(state, entity.id()));
    }
    json
}

fn list<B: Backend>(ctx: &Ctx<B>, scope: Scope) -> Result<Response, AdminError> {
    let state = ctx.app.backend.state();
    let page = PageQuery::parse(&ctx.query)?;
    let parent = ctx.parent(&state, scope)?;
    let custom_id = ctx.query.get("custom_id");
    let username = ctx.query.get("username");
    let items = state
        .iter(scope.kind)
        .filter(|e| parent.is_none_or(|(field, id)| parent_id(e, field) == Some(id)))
        .filter(|e| page.tags.as_ref().is_none_or(|t| t.matches(tags(e))))
        .filter(|e| match e {
            Entity::Consumer(c) => {
                custom_id.is_none_or(|v| c.custom_id.as_ref() == Some(v))
                    && username.is_none_or(|v| c.username.as_ref() == Some(v))
            }
            _ => true,
        });
    let body = page.page(
        items,
        |e| e.id().to_string(),
        |e| render(&state, e),
        &ctx.path,
    );
    Ok(Json(body).into_response())
}

fn get<B: Backend>(ctx: &Ctx<B>, scope: Scope) -> Result<Response, AdminError> {
    let state = ctx.app.backend.state();
    let parent = ctx.parent(&state, scope)?;
    let entity =
        find(&state, scope.kind, ctx.param("id"), parent).ok_or_else(AdminError::not_found)?;
    Ok(Json(render(&state, &entity)).into_response())
}

async fn create<B: Backend>(ctx: &Ctx<B>, scope: Scope) -> Result<Response, AdminError> {
    let wait = match scope.kind {
        EntityKind::JwtRevocation => revocations::wait_request(&ctx.query)?,
        _ => None,
    };
    if scope.kind == EntityKind::JwtRevocation
        && revocations::is_batch(&ctx.parts.headers, &ctx.bytes)
    {
        return revocations::create_many(ctx, wait).await;
    }
    let decoded = ctx.decoded().await?;
    let state = ctx.app.backend.state();
    let parent = ctx.parent(&state, scope)?;
    let prepared = prepare(&state, scope.kind, decoded, Mode::Create, parent, now())?;
    let mut entity = commit(ctx, prepared, true).await?;
    if let Some(timeout) = wait {
        entity["wait"] = revocations::wait_all(&ctx.app.backend, timeout).await;
    }
    Ok((StatusCode::CREATED, Json(entity)).into_response())
}

async fn put<B: Backend>(ctx: &Ctx<B>, scope: Scope) -> Result<Response, AdminError> {
    let decoded = ctx.decoded().await?;
    let state = ctx.app.backend.state();
    let parent = ctx.parent(&state, scope)?;
    let key = ctx.param("id").to_string();
    let existing = find(&state, scope.kind, &key, parent);
    let mode = Mode::Put {
        existing: existing.as_ref(),
        key: &key,
    };
    let prepared = prepare(&state, scope.kind, decoded, mode, parent, now())?;
    let entity = commit(ctx, prepared, false).await?;
    Ok(Json(entity).into_response())
}

async fn patch<B: Backend>(ctx: &Ctx<B>, scope: Scope) -> Result<Response, AdminError> {
    let decoded = ctx.decoded().await?;
    let state = ctx.app.backend.state();
    let parent = ctx.parent(&state, scope)?;
    let existing =
        find(&state, scope.kind, ctx.param("id"), parent).ok_or_else(AdminError::not_found)?;
    let prepared = prepare(
        &state,
        scope.kind,
        decoded,
        Mode::Patch(&existing),
        parent,
        now(),
    )?;
    let entity = commit(ctx, prepared, false).await?;
    Ok(Json(entity).into_response())
}

/// Proposes a prepared entity (with its SNIs, for a certificate) and
/// renders what was stored.
async fn commit<B: Backend>(
    ctx: &Ctx<B>,
    prepared: Prepared,
    create: bool,
) -> Result<Value, AdminError> {
    let Prepared { entity, snis } = prepared;
    let backend = &ctx.app.backend;
    let Some(names) = snis else {
        let command = if create {
            Command::Create { entity }
        } else {
            Command::Upsert { entity }
        };
        let stored = match backend.write(command).await? {
            CommandOutput::Entity { entity } => entity,
            _ => {
                return Err(AdminError::message(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "unexpected outcome",
                ))
            }
        };
        return Ok(render(&backend.state(), &stored));
    };
    certificates::store_with_snis(backend, entity, names, create).await
}

async fn delete<B: Backend>(ctx: &Ctx<B>, scope: Scope) -> Result<Response, AdminError> {
    let target = |state: &State| -> Result<Option<Uuid>, AdminError> {
        let parent = ctx.parent(state, scope)?;
        Ok(find(state, scope.kind, ctx.param("id"), parent).map(|e| e.id()))
    };
    let mut id = target(&ctx.app.backend.state())?;
    if id.is_none() {
        // Not here yet is not the same as gone: ask the leader first.
        ctx.app.backend.linearizable_barrier().await?;
        id = target(&ctx.app.backend.state())?;
    }
    // Kong answers 204 whether or not the entity existed.
    if let Some(id) = id {
        let command = Command::Delete {
            kind: scope.kind,
            id,
        };
        match ctx.app.backend.write(command).await {
            Ok(_) | Err(super::WriteError::Rejected(crate::model::ApplyError::NotFound)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

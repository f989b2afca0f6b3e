//! Consumer group membership with Kong's endpoints and answer shapes:
//! `/consumer_groups/{g}` (the group with its consumers and plugins),
//! `/consumer_groups/{g}/consumers[/{c}]` and
//! `/consumers/{c}/consumer_groups[/{g}]`. A membership is a
//! `ConsumerGroupMember` entity; adding several is one command.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use uuid::Uuid;

use super::backend::Backend;
use super::errors::AdminError;
use super::handlers::{now, render, Ctx};
use super::lookup::{find, parent_id};
use crate::model::{
    validate, ApplyError, Command, ConsumerGroupMember, Entity, EntityKind, ForeignKey, State,
};

fn not_found(message: String) -> AdminError {
    AdminError::message(StatusCode::NOT_FOUND, message)
}

fn group(state: &State, key: &str) -> Result<Entity, AdminError> {
    find(state, EntityKind::ConsumerGroup, key, None)
        .ok_or_else(|| not_found(format!("Group '{key}' not found")))
}

fn consumer(state: &State, key: &str) -> Result<Entity, AdminError> {
    find(state, EntityKind::Consumer, key, None)
        .ok_or_else(|| not_found(format!("Consumer '{key}' not found")))
}

/// Membership entities of a group (`field` = "consumer_group") or of a
/// consumer (`field` = "consumer").
fn memberships<'a>(
    state: &'a State,
    field: &'static str,
    id: Uuid,
) -> impl Iterator<Item = &'a Entity> + 'a {
    state
        .iter(EntityKind::ConsumerGroupMember)
        .filter(move |m| parent_id(m, field) == Some(id))
}

fn membership(state: &State, group: Uuid, consumer: Uuid) -> Option<Uuid> {
    memberships(state, "consumer_group", group)
        .find(|m| parent_id(m, "consumer") == Some(consumer))
        .map(Entity::id)
}

/// The other side of each membership, rendered.
fn members(state: &State, field: &'static str, id: Uuid, other: &'static str) -> Vec<Value> {
    let kind = match other {
        "consumer" => EntityKind::Consumer,
        _ => EntityKind::ConsumerGroup,
    };
    memberships(state, field, id)
        .filter_map(|m| state.get(kind, parent_id(m, other)?))
        .map(|e| render(state, e))
        .collect()
}

fn group_plugins(state: &State, group: Uuid) -> Vec<Value> {
    state
        .iter(EntityKind::Plugin)
        .filter(|p| parent_id(p, "consumer_group") == Some(group))
        .map(|p| render(state, p))
        .collect()
}

/// `GET /consumer_groups/{id}`: `{consumer_group, plugins, consumers}`.
pub fn detail<B: Backend>(ctx: &Ctx<B>) -> Result<Response, AdminError> {
    let state = ctx.app.backend.state();
    let group = group(&state, ctx.param("id"))?;
    let body = json!({
        "consumer_group": render(&state, &group),
        "plugins": group_plugins(&state, group.id()),
        "consumers": members(&state, "consumer_group", group.id(), "consumer"),
    });
    Ok(Json(body).into_response())
}

/// `GET /consumer_groups/{g}/consumers`: `{consumers}`.
pub fn consumers_of<B: Backend>(ctx: &Ctx<B>) -> Result<Response, AdminError> {
    let state = ctx.app.backend.state();
    let group = group(&state, ctx.param("parent"))?;
    let consumers = members(&state, "consumer_group", group.id(), "consumer");
    Ok(Json(json!({ "consumers": consumers })).into_response())
}

/// `GET /consumers/{c}/consumer_groups`: `{consumer_groups}`.
pub fn groups_of<B: Backend>(ctx: &Ctx<B>) -> Result<Response, AdminError> {
    let state = ctx.app.backend.state();
    let consumer = consumer(&state, ctx.param("parent"))?;
    let groups = members(&state, "consumer", consumer.id(), "consumer_group");
    Ok(Json(json!({ "consumer_groups": groups })).into_response())
}

/// The names a body lists under `field` (one string or an array).
fn names(body: &Value, field: &str) -> Result<Vec<String>, AdminError> {
    let missing = || AdminError::message(StatusCode::BAD_REQUEST, format!("must provide {field}"));
    match body.get(field) {
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(missing))
            .collect(),
        _ => Err(missing()),
    }
}

/// Proposes the memberships (group, consumer) in one command.
async fn join<B: Backend>(ctx: &Ctx<B>, pairs: &[(Uuid, Uuid)]) -> Result<(), AdminError> {
    let t = now();
    let mut entities = Vec::with_capacity(pairs.len());
    for (group, consumer) in pairs {
        let member = Entity::ConsumerGroupMember(ConsumerGroupMember {
            id: Uuid::new_v4(),
            created_at: t,
            consumer_group: ForeignKey::new(*group),
            consumer: ForeignKey::new(*consumer),
        });
        validate::validate_entity(&member)?;
        entities.push(member);
    }
    ctx.app
        .backend
        .write(Command::ApplyConfig {
            entities,
            delete_missing: false,
            select_tags: Vec::new(),
        })
        .await?;
    Ok(())
}

/// `POST /consumer_groups/{g}/consumers` with `consumer` = one or more
/// ids or usernames: 201 `{consumer_group, consumers}`.
pub async fn add_consumers<B: Backend>(ctx: &Ctx<B>) -> Result<Response, AdminError> {
    let decoded = ctx.decoded().await?;
    let state = ctx.app.backend.state();
    let group = group(&state, ctx.param("parent"))?;
    let mut pairs = Vec::new();
    let mut shown = Vec::new();
    for name in names(&decoded.value, "consumer")? {
        let consumer = consumer(&state, &name)?;
        if membership(&state, group.id(), consumer.id()).is_some() {
            return Err(AdminError::message(
                StatusCode::CONFLICT,
                format!("Consumer '{name}' already in group '{}'", group.id()),
            ));
        }
        pairs.push((group.id(), consumer.id()));
        shown.push(render(&state, &consumer));
    }
    join(ctx, &pairs).await?;
    let body = json!({"consumer_group": render(&state, &group), "consumers": shown});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `POST /consumers/{c}/consumer_groups` with `group` = one or more ids or
/// names: 201 `{consumer_groups, consumer}`.
pub async fn add_groups<B: Backend>(ctx: &Ctx<B>) -> Result<Response, AdminError> {
    let decoded = ctx.decoded().await?;
    let state = ctx.app.backend.state();
    let consumer = consumer(&state, ctx.param("parent"))?;
    let mut pairs = Vec::new();
    let mut shown = Vec::new();
    for name in names(&decoded.value, "group")? {
        let group = group(&state, &name)?;
        if membership(&state, group.id(), consumer.id()).is_some() {
            return Err(AdminError::message(
                StatusCode::CONFLICT,
                format!(
                    "Consumer '{}' already in group '{name}'",
                    ctx.param("parent")
                ),
            ));
        }
        pairs.push((group.id(), consumer.id()));
        shown.push(render(&state, &group));
    }
    join(ctx, &pairs).await?;
    let body = json!({"consumer_groups": shown, "consumer": render(&state, &consumer)});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// The membership a `/…/{parent}/…/{id}` path names, in either direction.
fn named_pair(
    state: &State,
    ctx_parent: &str,
    ctx_id: &str,
    group_first: bool,
) -> Result<(Entity, Entity), AdminError> {
    // Kong resolves the consumer first, then the group.
    let (group_key, consumer_key) = if group_first {
        (ctx_parent, ctx_id)
    } else {
        (ctx_id, ctx_parent)
    };
    let consumer = consumer(state, consumer_key)?;
    let group = group(state, group_key)?;
    Ok((group, consumer))
}

fn not_in_group(group: &Entity, consumer: &Entity) -> AdminError {
    not_found(format!(
        "Consumer '{}' not found in Group '{}'",
        consumer.id(),
        group.id()
    ))
}

/// `GET /consumer_groups/{g}/consumers/{c}` (`{consumer}`) and
/// `GET /consumers/{c}/consumer_groups/{g}` (`{consumer_group}`).
pub fn member<B: Backend>(ctx: &Ctx<B>, group_first: bool) -> Result<Response, AdminError> {
    let state = ctx.app.backend.state();
    let (group, consumer) = named_pair(&state, ctx.param("parent"), ctx.param("id"), group_first)?;
    if membership(&state, group.id(), consumer.id()).is_none() {
        return Err(not_in_group(&group, &consumer));
    }
    let body = if group_first {
        json!({ "consumer": render(&state, &consumer) })
    } else {
        json!({ "consumer_group": render(&state, &group) })
    };
    Ok(Json(body).into_response())
}

async fn leave<B: Backend>(ctx: &Ctx<B>, ids: Vec<Uuid>) -> Result<(), AdminError> {
    for id in ids {
        let command = Command::Delete {
            kind: EntityKind::ConsumerGroupMember,
            id,
        };
        match ctx.app.backend.write(command).await {
            Ok(_) | Err(super::WriteError::Rejected(ApplyError::NotFound)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// `DELETE /consumer_groups/{g}/consumers/{c}` and
/// `DELETE /consumers/{c}/consumer_groups/{g}`: 204, or 404 when the
/// consumer is not in the group.
pub async fn remove_member<B: Backend>(
    ctx: &Ctx<B>,
    group_first: bool,
) -> Result<Response, AdminError> {
    let state = ctx.app.backend.state();
    let (group, consumer) = named_pair(&state, ctx.param("parent"), ctx.param("id"), group_first)?;
    let id = membership(&state, group.id(), consumer.id())
        .ok_or_else(|| not_in_group(&group, &consumer))?;
    leave(ctx, vec![id]).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /consumer_groups/{g}/consumers` (empties the group) and
/// `DELETE /consumers/{c}/consumer_groups` (leaves every group): 204.
pub async fn remove_all<B: Backend>(ctx: &Ctx<B>, of_group: bool) -> Result<Response, AdminError> {
    let state = ctx.app.backend.state();
    let (field, id) = if of_group {
        ("consumer_group", group(&state, ctx.param("parent"))?.id())
    } else {
        ("consumer", consumer(&state, ctx.param("parent"))?.id())
    };
    let ids = memberships(&state, field, id).map(Entity::id).collect();
    leave(ctx, ids).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

//! Consumer group membership: `/consumer_groups/{g}/consumers` (list, add
//! with `{"consumer": "<id or username>"}` or a list of them, remove) and
//! `/consumers/{c}/consumer_groups`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use uuid::Uuid;

use super::backend::Backend;
use super::errors::AdminError;
use super::handlers::{now, render, Ctx};
use super::lookup::{find, parent_id};
use super::pagination::PageQuery;
use crate::model::{Command, ConsumerGroupMember, Entity, EntityKind, ForeignKey, State};

fn group<B: Backend>(ctx: &Ctx<B>, state: &State) -> Result<Entity, AdminError> {
    find(state, EntityKind::ConsumerGroup, ctx.param("parent"), None)
        .ok_or_else(AdminError::not_found)
}

fn memberships<'a>(
    state: &'a State,
    field: &'static str,
    id: Uuid,
) -> impl Iterator<Item = &'a Entity> + 'a {
    state
        .iter(EntityKind::ConsumerGroupMember)
        .filter(move |m| parent_id(m, field) == Some(id))
}

fn page_of(ctx_path: &str, query: &PageQuery, state: &State, mut items: Vec<Entity>) -> Value {
    items.sort_by_key(Entity::id);
    query.page(
        items.iter(),
        |e| e.id().to_string(),
        |e| render(state, e),
        ctx_path,
    )
}

/// `GET /consumer_groups/{g}/consumers`: the member consumers.
pub fn members<B: Backend>(ctx: &Ctx<B>) -> Result<Response, AdminError> {
    let state = ctx.app.backend.state();
    let page = PageQuery::parse(&ctx.query)?;
    let group = group(ctx, &state)?;
    let consumers: Vec<Entity> = memberships(&state, "consumer_group", group.id())
        .filter_map(|m| state.get(EntityKind::Consumer, parent_id(m, "consumer")?))
        .cloned()
        .collect();
    Ok(Json(page_of(&ctx.path, &page, &state, consumers)).into_response())
}

/// `GET /consumers/{c}/consumer_groups`: the groups a consumer is in.
pub fn of_consumer<B: Backend>(ctx: &Ctx<B>) -> Result<Response, AdminError> {
    let state = ctx.app.backend.state();
    let page = PageQuery::parse(&ctx.query)?;
    let consumer = find(&state, EntityKind::Consumer, ctx.param("parent"), None)
        .ok_or_else(AdminError::not_found)?;
    let groups: Vec<Entity> = memberships(&state, "consumer", consumer.id())
        .filter_map(|m| state.get(EntityKind::ConsumerGroup, parent_id(m, "consumer_group")?))
        .cloned()
        .collect();
    Ok(Json(page_of(&ctx.path, &page, &state, groups)).into_response())
}

/// `POST /consumer_groups/{g}/consumers`: adds one or more consumers.
pub async fn add<B: Backend>(ctx: &Ctx<B>) -> Result<Response, AdminError> {
    let decoded = ctx.decoded().await?;
    let state = ctx.app.backend.state();
    let group = group(ctx, &state)?;
    let names: Vec<String> = match decoded.value.get("consumer") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(AdminError::field("consumer", "expected a string")),
            })
            .collect::<Result<_, _>>()?,
        Some(Value::Object(o)) => match o.get("id").and_then(Value::as_str) {
            Some(id) => vec![id.to_string()],
            None => return Err(AdminError::field("consumer", "expected a string")),
        },
        _ => return Err(AdminError::field("consumer", "required field missing")),
    };
    let t = now();
    let mut consumers = Vec::new();
    let mut entities = Vec::new();
    for name in names {
        let consumer = find(&state, EntityKind::Consumer, &name, None).ok_or_else(|| {
            AdminError::message(
                StatusCode::NOT_FOUND,
                format!("Consumer '{name}' not found"),
            )
        })?;
        let already = memberships(&state, "consumer_group", group.id())
            .any(|m| parent_id(m, "consumer") == Some(consumer.id()));
        if already {
            return Err(AdminError::message(
                StatusCode::CONFLICT,
                format!("Consumer '{name}' already in group"),
            ));
        }
        let member = Entity::ConsumerGroupMember(ConsumerGroupMember {
            id: Uuid::new_v4(),
            created_at: t,
            consumer_group: ForeignKey::new(group.id()),
            consumer: ForeignKey::new(consumer.id()),
        });
        crate::model::validate::validate_entity(&member)?;
        entities.push(member);
        consumers.push(render(&state, &consumer));
    }
    ctx.app
        .backend
        .write(Command::ApplyConfig {
            entities,
            delete_missing: false,
            select_tags: Vec::new(),
        })
        .await?;
    let body = json!({"consumer_group": render(&state, &group), "consumers": consumers});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `DELETE /consumer_groups/{g}/consumers/{c}`: 204 whether or not the
/// consumer was a member.
pub async fn remove<B: Backend>(ctx: &Ctx<B>) -> Result<Response, AdminError> {
    let state = ctx.app.backend.state();
    let group = group(ctx, &state)?;
    if let Some(consumer) = find(&state, EntityKind::Consumer, ctx.param("id"), None) {
        let ids: Vec<Uuid> = memberships(&state, "consumer_group", group.id())
            .filter(|m| parent_id(m, "consumer") == Some(consumer.id()))
            .map(Entity::id)
            .collect();
        for id in ids {
            let command = Command::Delete {
                kind: EntityKind::ConsumerGroupMember,
                id,
            };
            match ctx.app.backend.write(command).await {
                Ok(_) | Err(super::WriteError::Rejected(crate::model::ApplyError::NotFound)) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

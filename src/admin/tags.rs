//! `GET /tags` and `GET /tags/{tag}`: every tagged entity as Kong lists
//! them, `{entity_name, entity_id, tag}` rows, paged.

use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::backend::Backend;
use super::errors::AdminError;
use super::handlers::Ctx;
use super::lookup::tags;
use super::pagination::PageQuery;
use crate::model::EntityKind;

/// Lists tag rows, ordered by kind, entity id and tag.
pub fn list<B: Backend>(ctx: &Ctx<B>) -> Result<Response, AdminError> {
    let state = ctx.app.backend.state();
    let page = PageQuery::parse(&ctx.query)?;
    let only = ctx.params.get("tag");
    let mut rows = Vec::new();
    for (index, kind) in EntityKind::ALL.iter().enumerate() {
        for entity in state.iter(*kind) {
            let mut entity_tags: Vec<&String> = tags(entity).iter().collect();
            entity_tags.sort();
            entity_tags.dedup();
            for tag in entity_tags {
                if only.is_none_or(|t| t == tag) {
                    let key = format!("{index:02}/{}/{tag}", entity.id());
                    rows.push((key, kind.collection(), entity.id(), tag.clone()));
                }
            }
        }
    }
    let body = page.page(
        rows.into_iter(),
        |(key, ..)| key.clone(),
        |(_, name, id, tag)| json!({"entity_name": name, "entity_id": id, "tag": tag}),
        &ctx.path,
    );
    Ok(Json(body).into_response())
}

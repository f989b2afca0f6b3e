//! Certificates with their SNIs: Kong accepts `snis` on a certificate
//! and shows it back, although SNIs are entities of their own.

use serde_json::Value;
use uuid::Uuid;

use super::backend::Backend;
use super::errors::AdminError;
use super::handlers::{now, render};
use crate::model::{validate, ApplyError, Command, Entity, EntityKind, ForeignKey, Sni};

/// Stores a certificate and makes its SNIs exactly `names`: the
/// certificate and its new SNIs in one command, then the SNIs it no longer
/// lists are removed. Answers the stored certificate as rendered.
pub async fn store_with_snis<B: Backend>(
    backend: &B,
    entity: Entity,
    names: Vec<String>,
    create: bool,
) -> Result<Value, AdminError> {
    let state = backend.state();
    let cert_id = entity.id();
    if create && state.get(EntityKind::Certificate, cert_id).is_some() {
        return Err(ApplyError::PrimaryKey {
            id: cert_id.to_string(),
        }
        .into());
    }
    let current: Vec<(Uuid, String)> = state
        .iter(EntityKind::Sni)
        .filter_map(|e| match e {
            Entity::Sni(s) if s.certificate.id == cert_id => Some((s.id, s.name.clone())),
            _ => None,
        })
        .collect();
    let t = now();
    let mut entities = vec![entity.clone()];
    for name in &names {
        if current.iter().any(|(_, n)| n == name) {
            continue;
        }
        let sni = Entity::Sni(Sni {
            id: Uuid::new_v4(),
            created_at: t,
            updated_at: t,
            name: name.clone(),
            certificate: ForeignKey::new(cert_id),
            tags: None,
        });
        validate::validate_entity(&sni)?;
        entities.push(sni);
    }
    backend
        .write(Command::ApplyConfig {
            entities,
            delete_missing: false,
            select_tags: Vec::new(),
        })
        .await?;
    for (id, name) in current {
        if !names.contains(&name) {
            backend
                .write(Command::Delete {
                    kind: EntityKind::Sni,
                    id,
                })
                .await?;
        }
    }
    let state = backend.state();
    let stored = state
        .get(EntityKind::Certificate, cert_id)
        .unwrap_or(&entity);
    Ok(render(&state, stored))
}

//! Finding entities the way Kong's Admin API addresses them: by id, or by
//! the kind's endpoint key (name, username then custom_id, instance_name,
//! credential key, SNI name for certificates), optionally inside a parent.
//!
//! `find` is the single place to swap for `State::find` once the model
//! provides it.

use uuid::Uuid;

use crate::model::{Entity, EntityKind, State};

/// The id of the entity that `entity.<field>` references, if any.
pub fn parent_id(entity: &Entity, field: &str) -> Option<Uuid> {
    use Entity::*;
    let fk = match (entity, field) {
        (Route(r), "service") => r.service.as_ref(),
        (Plugin(p), "service") => p.service.as_ref(),
        (Plugin(p), "route") => p.route.as_ref(),
        (Plugin(p), "consumer") => p.consumer.as_ref(),
        (Plugin(p), "consumer_group") => p.consumer_group.as_ref(),
        (Target(t), "upstream") => Some(&t.upstream),
        (JwtCredential(c), "consumer") => Some(&c.consumer),
        (KeyAuthCredential(c), "consumer") => Some(&c.consumer),
        (AclCredential(c), "consumer") => Some(&c.consumer),
        (Sni(s), "certificate") => Some(&s.certificate),
        (ConsumerGroupMember(m), "consumer_group") => Some(&m.consumer_group),
        (ConsumerGroupMember(m), "consumer") => Some(&m.consumer),
        (JwtRevocation(r), "consumer") => r.consumer.as_ref(),
        (JwtRevocation(r), "credential") => r.credential.as_ref(),
        _ => None,
    };
    fk.map(|k| k.id)
}

/// The foreign-key fields an entity kind has, with the kind they point to.
pub fn foreign_keys(kind: EntityKind) -> &'static [(&'static str, EntityKind)] {
    use EntityKind as K;
    match kind {
        K::Route => &[("service", K::Service)],
        K::Plugin => &[
            ("service", K::Service),
            ("route", K::Route),
            ("consumer", K::Consumer),
            ("consumer_group", K::ConsumerGroup),
        ],
        K::Target => &[("upstream", K::Upstream)],
        K::JwtCredential | K::KeyAuthCredential | K::AclCredential => &[("consumer", K::Consumer)],
        K::Sni => &[("certificate", K::Certificate)],
        K::ConsumerGroupMember => &[
            ("consumer_group", K::ConsumerGroup),
            ("consumer", K::Consumer),
        ],
        K::JwtRevocation => &[("consumer", K::Consumer), ("credential", K::JwtCredential)],
        _ => &[],
    }
}

/// The entity's tags (empty when it has none).
pub fn tags(entity: &Entity) -> &[String] {
    use Entity::*;
    let tags = match entity {
        Service(e) => &e.tags,
        Route(e) => &e.tags,
        Upstream(e) => &e.tags,
        Target(e) => &e.tags,
        Consumer(e) => &e.tags,
        ConsumerGroup(e) => &e.tags,
        ConsumerGroupMember(_) => return &[],
        Plugin(e) => &e.tags,
        JwtCredential(e) => &e.tags,
        KeyAuthCredential(e) => &e.tags,
        AclCredential(e) => &e.tags,
        Certificate(e) => &e.tags,
        Sni(e) => &e.tags,
        JwtRevocation(e) => &e.tags,
    };
    tags.as_deref().unwrap_or(&[])
}

/// The field PUT fills from the path when it names an absent entity.
pub fn endpoint_key_field(kind: EntityKind) -> Option<&'static str> {
    use EntityKind as K;
    match kind {
        K::Service | K::Route | K::Upstream | K::ConsumerGroup | K::Sni => Some("name"),
        K::Consumer => Some("username"),
        K::Plugin => Some("instance_name"),
        K::JwtCredential | K::KeyAuthCredential => Some("key"),
        K::Target => Some("target"),
        K::AclCredential => Some("group"),
        _ => None,
    }
}

/// Whether `key` (not a UUID) names `entity` by its endpoint key.
fn matches_key(entity: &Entity, key: &str) -> bool {
    use Entity::*;
    match entity {
        Service(e) => e.name.as_deref() == Some(key),
        Route(e) => e.name.as_deref() == Some(key),
        Upstream(e) => e.name == key,
        ConsumerGroup(e) => e.name == key,
        Sni(e) => e.name == key,
        Plugin(e) => e.instance_name.as_deref() == Some(key),
        JwtCredential(e) => e.key == key,
        KeyAuthCredential(e) => e.key == key,
        Target(e) => e.target == key,
        AclCredential(e) => e.group == key,
        // Consumers: username first, custom_id second (handled in `find`).
        Consumer(e) => e.username.as_deref() == Some(key),
        Certificate(_) | ConsumerGroupMember(_) | JwtRevocation(_) => false,
    }
}

/// A path segment or reference read as an id: only the hyphenated UUID
/// form, as Kong's `is_valid_uuid` (a 32-hex credential key is a key).
pub fn as_id(s: &str) -> Option<Uuid> {
    if s.len() != 36 {
        return None;
    }
    Uuid::parse_str(s).ok()
}

/// Looks an entity up by id or endpoint key, within `parent` (a foreign
/// key field and the parent's id) when given.
pub fn find(
    state: &State,
    kind: EntityKind,
    key: &str,
    parent: Option<(&str, Uuid)>,
) -> Option<Entity> {
    let in_parent = |e: &Entity| parent.is_none_or(|(field, id)| parent_id(e, field) == Some(id));
    if let Some(id) = as_id(key) {
        if let Some(found) = state.get(kind, id).filter(|e| in_parent(e)) {
            return Some(found.clone());
        }
    }
    if kind == EntityKind::Certificate {
        let sni = find(state, EntityKind::Sni, key, None)?;
        let cert = state.get(kind, parent_id(&sni, "certificate")?)?;
        return in_parent(cert).then(|| cert.clone());
    }
    let found = state
        .iter(kind)
        .find(|e| in_parent(e) && matches_key(e, key))
        .cloned();
    if found.is_none() && kind == EntityKind::Consumer {
        return state
            .iter(kind)
            .find(|e| matches!(e, Entity::Consumer(c) if c.custom_id.as_deref() == Some(key)))
            .cloned();
    }
    found
}

/// Names of the SNIs pointing at a certificate, sorted.
pub fn sni_names(state: &State, certificate: Uuid) -> Vec<String> {
    let mut names: Vec<String> = state
        .iter(EntityKind::Sni)
        .filter_map(|e| match e {
            Entity::Sni(s) if s.certificate.id == certificate => Some(s.name.clone()),
            _ => None,
        })
        .collect();
    names.sort();
    names
}

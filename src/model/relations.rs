//! How entities relate: the foreign keys each one holds, the unique keys
//! it claims (rendered as Kong prints them, e.g. `{username="bob"}`), what
//! happens to children when a parent is deleted, and a topological order
//! of kinds (parents before children). `State` builds its indexes from this.

use uuid::Uuid;

use super::command::{Entity, EntityKind};
use super::entities::ForeignKey;

/// A reference from an entity to its parent, through field `field`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reference {
    pub field: &'static str,
    pub parent: EntityKind,
    pub id: Uuid,
}

/// What deleting a parent does to a child that references it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDelete {
    /// The child is deleted with its parent.
    Cascade,
    /// The parent cannot be deleted while the child exists (Kong's
    /// "an existing 'routes' entity references this 'services' entity").
    Restrict,
}

/// Deleting a service with routes is refused (Kong's default "restrict");
/// every other reference cascades (Kong's `on_delete = "cascade"`).
pub fn on_delete(child: EntityKind, parent: EntityKind) -> OnDelete {
    match (child, parent) {
        (EntityKind::Route, EntityKind::Service) => OnDelete::Restrict,
        _ => OnDelete::Cascade,
    }
}

/// Position of a kind in a topological order: every parent kind comes
/// before its children.
pub fn rank(kind: EntityKind) -> u8 {
    match kind {
        EntityKind::Service
        | EntityKind::Upstream
        | EntityKind::Consumer
        | EntityKind::ConsumerGroup
        | EntityKind::Certificate => 0,
        EntityKind::Route
        | EntityKind::Target
        | EntityKind::Sni
        | EntityKind::ConsumerGroupMember
        | EntityKind::JwtCredential
        | EntityKind::KeyAuthCredential
        | EntityKind::AclCredential => 1,
        EntityKind::Plugin => 2,
        EntityKind::JwtRevocation => 3,
    }
}

fn push(
    out: &mut Vec<Reference>,
    field: &'static str,
    parent: EntityKind,
    fk: Option<&ForeignKey>,
) {
    if let Some(fk) = fk {
        out.push(Reference {
            field,
            parent,
            id: fk.id,
        });
    }
}

/// The entity's references to other entities.
pub fn references(entity: &Entity) -> Vec<Reference> {
    let mut out = Vec::new();
    match entity {
        Entity::Route(r) => {
            push(&mut out, "service", EntityKind::Service, r.service.as_ref());
            if let Some(agg) = &r.aggregate {
                for b in &agg.backends {
                    push(&mut out, "aggregate", EntityKind::Service, Some(&b.service));
                }
            }
        }
        Entity::Target(t) => push(
            &mut out,
            "upstream",
            EntityKind::Upstream,
            Some(&t.upstream),
        ),
        Entity::ConsumerGroupMember(m) => {
            push(
                &mut out,
                "consumer_group",
                EntityKind::ConsumerGroup,
                Some(&m.consumer_group),
            );
            push(
                &mut out,
                "consumer",
                EntityKind::Consumer,
                Some(&m.consumer),
            );
        }
        Entity::Plugin(p) => {
            push(&mut out, "service", EntityKind::Service, p.service.as_ref());
            push(&mut out, "route", EntityKind::Route, p.route.as_ref());
            push(
                &mut out,
                "consumer",
                EntityKind::Consumer,
                p.consumer.as_ref(),
            );
            push(
                &mut out,
                "consumer_group",
                EntityKind::ConsumerGroup,
                p.consumer_group.as_ref(),
            );
        }
        Entity::JwtCredential(c) => push(
            &mut out,
            "consumer",
            EntityKind::Consumer,
            Some(&c.consumer),
        ),
        Entity::KeyAuthCredential(c) => push(
            &mut out,
            "consumer",
            EntityKind::Consumer,
            Some(&c.consumer),
        ),
        Entity::AclCredential(c) => push(
            &mut out,
            "consumer",
            EntityKind::Consumer,
            Some(&c.consumer),
        ),
        Entity::Sni(s) => push(
            &mut out,
            "certificate",
            EntityKind::Certificate,
            Some(&s.certificate),
        ),
        Entity::JwtRevocation(r) => {
            push(
                &mut out,
                "consumer",
                EntityKind::Consumer,
                r.consumer.as_ref(),
            );
            push(
                &mut out,
                "credential",
                EntityKind::JwtCredential,
                r.credential.as_ref(),
            );
        }
        Entity::Service(_)
        | Entity::Upstream(_)
        | Entity::Consumer(_)
        | Entity::ConsumerGroup(_)
        | Entity::Certificate(_) => {}
    }
    out.dedup();
    out
}

/// The entity's tags (empty when it has none or its kind has no tags).
pub fn tags(entity: &Entity) -> &[String] {
    let tags = match entity {
        Entity::Service(e) => &e.tags,
        Entity::Route(e) => &e.tags,
        Entity::Upstream(e) => &e.tags,
        Entity::Target(e) => &e.tags,
        Entity::Consumer(e) => &e.tags,
        Entity::ConsumerGroup(e) => &e.tags,
        Entity::Plugin(e) => &e.tags,
        Entity::JwtCredential(e) => &e.tags,
        Entity::KeyAuthCredential(e) => &e.tags,
        Entity::AclCredential(e) => &e.tags,
        Entity::Certificate(e) => &e.tags,
        Entity::Sni(e) => &e.tags,
        Entity::JwtRevocation(e) => &e.tags,
        Entity::ConsumerGroupMember(_) => return &[],
    };
    tags.as_deref().unwrap_or(&[])
}

/// Kinds a declarative config manages (and `delete_missing` may delete):
/// everything but the revocation list, which is not configuration.
pub fn is_config_kind(kind: EntityKind) -> bool {
    kind != EntityKind::JwtRevocation
}

/// Renders a string the way Kong prints it inside a unique-violation key.
pub fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

fn fk_text(fk: Option<&ForeignKey>) -> String {
    match fk {
        Some(fk) => format!("{{id=\"{}\"}}", fk.id),
        None => "null".to_string(),
    }
}

/// `{field="value"}`, Kong's rendering of a one-field unique key.
pub fn unique_key(field: &str, value: &str) -> String {
    format!("{{{field}={}}}", quoted(value))
}

/// The unique keys the entity claims within its kind, already rendered as
/// Kong's error shows them (`{name="users"}`). Two entities of one kind
/// may not claim the same key.
pub fn unique_keys(entity: &Entity) -> Vec<String> {
    let mut out = Vec::new();
    let mut name = |field: &str, value: Option<&String>| {
        if let Some(v) = value {
            out.push(unique_key(field, v));
        }
    };
    match entity {
        Entity::Service(s) => name("name", s.name.as_ref()),
        Entity::Route(r) => name("name", r.name.as_ref()),
        Entity::Upstream(u) => name("name", Some(&u.name)),
        Entity::ConsumerGroup(g) => name("name", Some(&g.name)),
        Entity::Sni(s) => name("name", Some(&s.name)),
        Entity::Consumer(c) => {
            name("username", c.username.as_ref());
            name("custom_id", c.custom_id.as_ref());
        }
        Entity::JwtCredential(c) => name("key", Some(&c.key)),
        Entity::KeyAuthCredential(c) => name("key", Some(&c.key)),
        Entity::Plugin(p) => {
            name("instance_name", p.instance_name.as_ref());
            out.push(format!(
                "{{consumer={},consumer_group={},name={},route={},service={}}}",
                fk_text(p.consumer.as_ref()),
                fk_text(p.consumer_group.as_ref()),
                quoted(&p.name),
                fk_text(p.route.as_ref()),
                fk_text(p.service.as_ref()),
            ));
        }
        Entity::AclCredential(a) => out.push(format!(
            "{{consumer={},group={}}}",
            fk_text(Some(&a.consumer)),
            quoted(&a.group)
        )),
        Entity::Target(t) => out.push(format!(
            "{{target={},upstream={}}}",
            quoted(&t.target),
            fk_text(Some(&t.upstream))
        )),
        Entity::ConsumerGroupMember(m) => out.push(format!(
            "{{consumer={},consumer_group={}}}",
            fk_text(Some(&m.consumer)),
            fk_text(Some(&m.consumer_group))
        )),
        Entity::Certificate(_) | Entity::JwtRevocation(_) => {}
    }
    out
}

/// The keys by which `/{collection}/{key}` finds an entity when `key` is
/// not a UUID, in lookup order (Kong's `endpoint_key`; consumers also by
/// `custom_id`).
pub fn endpoint_keys(kind: EntityKind, key: &str) -> Vec<String> {
    match kind {
        EntityKind::Service
        | EntityKind::Route
        | EntityKind::Upstream
        | EntityKind::ConsumerGroup
        | EntityKind::Sni => vec![unique_key("name", key)],
        EntityKind::Consumer => vec![unique_key("username", key), unique_key("custom_id", key)],
        EntityKind::Plugin => vec![unique_key("instance_name", key)],
        EntityKind::JwtCredential | EntityKind::KeyAuthCredential => vec![unique_key("key", key)],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_points_to_a_lower_rank() {
        // A parent must always be applied before its children.
        let pairs = [
            (EntityKind::Route, EntityKind::Service),
            (EntityKind::Target, EntityKind::Upstream),
            (EntityKind::Sni, EntityKind::Certificate),
            (EntityKind::Plugin, EntityKind::Route),
            (EntityKind::Plugin, EntityKind::ConsumerGroup),
            (EntityKind::JwtRevocation, EntityKind::JwtCredential),
            (EntityKind::ConsumerGroupMember, EntityKind::Consumer),
        ];
        for (child, parent) in pairs {
            assert!(rank(parent) < rank(child), "{child:?} vs {parent:?}");
        }
    }

    #[test]
    fn keys_render_like_kong() {
        assert_eq!(unique_key("username", "bob"), "{username=\"bob\"}");
        assert_eq!(quoted("a\"b"), "\"a\\\"b\"");
        assert_eq!(
            on_delete(EntityKind::Route, EntityKind::Service),
            OnDelete::Restrict
        );
        assert_eq!(
            on_delete(EntityKind::Target, EntityKind::Upstream),
            OnDelete::Cascade
        );
    }
}

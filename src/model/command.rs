//! `Command`, the one enum of everything the cluster can change, and the
//! `Entity` wrapper that lets one command carry any kind of entity.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::entities::*;

macro_rules! entity_kinds {
    ($( $variant:ident($ty:ty) = $collection:literal ),+ $(,)?) => {
        /// Any entity the state machine stores.
        #[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
        #[serde(tag = "kind", content = "value", rename_all = "snake_case")]
        pub enum Entity {
            $( $variant($ty), )+
        }

        /// The kind of an entity; its collection name is Kong's.
        #[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[serde(rename_all = "snake_case")]
        pub enum EntityKind {
            $( $variant, )+
        }

        impl Entity {
            pub fn kind(&self) -> EntityKind {
                match self { $( Entity::$variant(_) => EntityKind::$variant, )+ }
            }
            pub fn id(&self) -> Uuid {
                match self { $( Entity::$variant(e) => e.id, )+ }
            }
            /// The entity as Kong's Admin API shows it.
            pub fn to_json(&self) -> serde_json::Value {
                match self {
                    $( Entity::$variant(e) => serde_json::to_value(e).unwrap_or_default(), )+
                }
            }
            /// Reads an entity of `kind` from its Admin API JSON form.
            pub fn from_json(kind: EntityKind, mut value: serde_json::Value) -> Result<Entity, serde_json::Error> {
                super::decode::subschema_defaults(kind, &mut value);
                Ok(match kind {
                    $( EntityKind::$variant => Entity::$variant(serde_json::from_value(value)?), )+
                })
            }
        }

        impl EntityKind {
            pub const ALL: &'static [EntityKind] = &[ $( EntityKind::$variant, )+ ];
            /// Kong's collection name, e.g. "services", "jwt_secrets".
            pub fn collection(self) -> &'static str {
                match self { $( EntityKind::$variant => $collection, )+ }
            }
            pub fn from_collection(name: &str) -> Option<EntityKind> {
                match name { $( $collection => Some(EntityKind::$variant), )+ _ => None }
            }
        }
    };
}

entity_kinds! {
    Service(Service) = "services",
    Route(Route) = "routes",
    // Boxed: with its health-check settings it is several times larger
    // than any other entity. Matching and field access are unchanged.
    Upstream(Box<Upstream>) = "upstreams",
    Target(Target) = "targets",
    Consumer(Consumer) = "consumers",
    ConsumerGroup(ConsumerGroup) = "consumer_groups",
    ConsumerGroupMember(ConsumerGroupMember) = "consumer_group_consumers",
    Plugin(Plugin) = "plugins",
    JwtCredential(JwtCredential) = "jwt_secrets",
    KeyAuthCredential(KeyAuthCredential) = "keyauth_credentials",
    AclCredential(AclCredential) = "acls",
    Certificate(Certificate) = "certificates",
    Sni(Sni) = "snis",
    JwtRevocation(JwtRevocation) = "jwt_revocations",
}

/// A command plus the id its proposer gave it, so that a write retried
/// across a leader change is applied once.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Proposal {
    pub request_id: Uuid,
    pub command: Command,
}

/// Everything the cluster can change. Ids and timestamps are chosen by the
/// proposer; applying a command is deterministic.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// POST: creates the entity; fails if its id already exists.
    Create { entity: Entity },
    /// PUT / PATCH: creates or replaces the entity with this id.
    Upsert { entity: Entity },
    /// DELETE: removes the entity (and what Kong cascades with it).
    Delete { kind: EntityKind, id: Uuid },
    /// A declarative config, applied all or nothing. Upserts every entity;
    /// when `delete_missing` is set, also deletes entities of the config
    /// kinds that the file lacks (restricted to those carrying every one
    /// of `select_tags`, when given).
    ApplyConfig {
        entities: Vec<Entity>,
        delete_missing: bool,
        #[serde(default)]
        select_tags: Vec<String>,
    },
    /// Drops revocations whose `expires_at` is before `now` (proposed by
    /// the leader, which read the clock).
    PurgeRevocations { now: Timestamp },
}

/// What a successfully applied command returns to its caller.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "result", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // short-lived: one per write
pub enum CommandOutput {
    Entity { entity: Entity },
    Deleted,
    Config { upserted: usize, deleted: usize },
    Purged { count: usize },
}

impl std::fmt::Display for Proposal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match &self.command {
            Command::Create { entity } => format!("create {:?} {}", entity.kind(), entity.id()),
            Command::Upsert { entity } => format!("upsert {:?} {}", entity.kind(), entity.id()),
            Command::Delete { kind, id } => format!("delete {kind:?} {id}"),
            Command::ApplyConfig { entities, .. } => {
                format!("config of {} entities", entities.len())
            }
            Command::PurgeRevocations { now } => format!("purge revocations before {now}"),
        };
        write!(f, "{op} (request {})", self.request_id)
    }
}

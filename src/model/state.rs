//! The replicated state: every entity, by kind and id, in persistent maps
//! (cloning a `State` is cheap, so each applied change can be published as
//! a new snapshot), with secondary indexes (unique keys, parent → children)
//! so that every cross-entity rule and lookup is O(log n). `apply` is the
//! state machine's transition function: Kong's unique and foreign-key
//! rules, cascading deletes, and declarative configs applied whole.
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use imbl::{OrdMap, Vector};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::command::{Command, CommandOutput, Entity, EntityKind, Proposal};
use super::entities::{Consumer, ConsumerGroup, JwtCredential, KeyAuthCredential};
use super::errors::ApplyError;
use super::relations::{self, OnDelete};
use super::validate::validate_entity;

/// How many applied request ids are remembered for de-duplication.
const REMEMBERED_REQUESTS: usize = 10_000;

type Outcome = Result<CommandOutput, ApplyError>;

/// parent kind, parent id, child kind, child id.
type RefKey = (EntityKind, Uuid, EntityKind, Uuid);

/// The entities and the indexes derived from them; restored whole when a
/// command fails.
#[derive(Clone, Debug, Default)]
struct Db {
    // Values are behind `Arc`: imbl keeps 64 values inline per node, and
    // large inline values make its tree operations use megabytes of stack.
    tables: BTreeMap<EntityKind, OrdMap<Uuid, Arc<Entity>>>,
    /// (kind, rendered unique key such as `{name="x"}`) → owner.
    unique: OrdMap<(EntityKind, String), Uuid>,
    /// Every reference, keyed from the parent; the value is the field.
    refs: OrdMap<RefKey, &'static str>,
}

#[derive(Clone, Debug, Default)]
pub struct State {
    db: Db,
    /// Outcomes of recently applied proposals, by request id, with the
    /// sequence number that orders them.
    recent: OrdMap<Uuid, (u64, Arc<Outcome>)>,
    /// The sequence number of the next remembered proposal.
    next_seq: u64,
    /// Request ids in the order they were applied (oldest first).
    recent_order: Vector<Uuid>,
    /// Bumped by every applied command that changed something.
    version: u64,
    /// Keys whose record changed since the last `take_dirty`.
    dirty: Vec<RecordKey>,
}

/// The key of one persisted record: an entity, a remembered request or the
/// version counter.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordKey {
    Entity(EntityKind, Uuid),
    Request(Uuid),
    Version,
}

#[derive(Serialize, Deserialize)]
enum Record {
    Entity(Entity),
    Request {
        id: Uuid,
        outcome: Outcome,
        seq: u64,
    },
    Version(u64),
}

impl RecordKey {
    /// Bytes that sort records of one kind together.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            RecordKey::Entity(kind, id) => format!("e/{}/{}", kind.collection(), id).into_bytes(),
            RecordKey::Request(id) => format!("r/{id}").into_bytes(),
            RecordKey::Version => b"v".to_vec(),
        }
    }
}

impl State {
    /// Applies one proposal. On error nothing changes. A proposal whose
    /// request id was already applied returns the first outcome again.
    pub fn apply(&mut self, proposal: &Proposal) -> Outcome {
        if let Some((_, previous)) = self.recent.get(&proposal.request_id) {
            return Outcome::clone(previous);
        }
        // O(1): the maps are persistent and share structure.
        let before = self.db.clone();
        let dirty_mark = self.dirty.len();
        let outcome = self.apply_command(&proposal.command);
        if outcome.is_err() {
            self.db = before;
            self.dirty.truncate(dirty_mark);
        } else {
            self.version += 1;
            self.dirty.push(RecordKey::Version);
        }
        self.remember(proposal.request_id, outcome.clone());
        outcome
    }

    fn remember(&mut self, request_id: Uuid, outcome: Outcome) {
        self.recent
            .insert(request_id, (self.next_seq, Arc::new(outcome)));
        self.next_seq += 1;
        self.recent_order.push_back(request_id);
        self.dirty.push(RecordKey::Request(request_id));
        while self.recent_order.len() > REMEMBERED_REQUESTS {
            if let Some(old) = self.recent_order.pop_front() {
                self.recent.remove(&old);
                self.dirty.push(RecordKey::Request(old));
            }
        }
    }

    fn apply_command(&mut self, command: &Command) -> Outcome {
        match command {
            Command::Create { entity } => {
                if self.get(entity.kind(), entity.id()).is_some() {
                    return Err(ApplyError::PrimaryKey {
                        id: entity.id().to_string(),
                    });
                }
                validate_entity(entity)?;
                self.put(entity.clone())?;
                Ok(CommandOutput::Entity {
                    entity: entity.clone(),
                })
            }
            Command::Upsert { entity } => {
                validate_entity(entity)?;
                self.put(entity.clone())?;
                Ok(CommandOutput::Entity {
                    entity: entity.clone(),
                })
            }
            Command::Delete { kind, id } => {
                if self.get(*kind, *id).is_none() {
                    return Err(ApplyError::NotFound);
                }
                let mut count = 0;
                self.delete(*kind, *id, &HashSet::new(), &mut count)?;
                Ok(CommandOutput::Deleted)
            }
            Command::ApplyConfig {
                entities,
                delete_missing,
                select_tags,
            } => self.apply_config(entities, *delete_missing, select_tags),
            Command::PurgeRevocations { now } => {
                let expired: Vec<Uuid> = self
                    .iter(EntityKind::JwtRevocation)
                    .filter_map(|e| match e {
                        Entity::JwtRevocation(r) if r.expires_at.is_some_and(|t| t < *now) => {
                            Some(r.id)
                        }
                        _ => None,
                    })
                    .collect();
                let mut count = 0;
                for id in &expired {
                    self.delete(EntityKind::JwtRevocation, *id, &HashSet::new(), &mut count)?;
                }
                Ok(CommandOutput::Purged {
                    count: expired.len(),
                })
            }
        }
    }

    /// Upserts a whole config, parents first so that references inside the
    /// batch resolve; with `delete_missing`, first deletes the configured
    /// entities (carrying every select tag) that the batch lacks.
    fn apply_config(
        &mut self,
        entities: &[Entity],
        delete_missing: bool,
        select_tags: &[String],
    ) -> Outcome {
        let in_batch: HashSet<(EntityKind, Uuid)> =
            entities.iter().map(|e| (e.kind(), e.id())).collect();
        let mut deleted = 0;
        if delete_missing {
            let mut doomed: Vec<(EntityKind, Uuid)> = EntityKind::ALL
                .iter()
                .filter(|k| relations::is_config_kind(**k))
                .flat_map(|k| self.iter(*k))
                .filter(|e| !in_batch.contains(&(e.kind(), e.id())))
                .filter(|e| {
                    // A membership has no tags: it is in scope with its consumer.
                    let owner = match e {
                        Entity::ConsumerGroupMember(m) => {
                            self.get(EntityKind::Consumer, m.consumer.id)
                        }
                        _ => Some(*e),
                    };
                    let tags = owner.map_or(&[][..], relations::tags);
                    select_tags.iter().all(|t| tags.contains(t))
                })
                .map(|e| (e.kind(), e.id()))
                .collect();
            // Children first, so a route leaving with its service does not
            // block the service's deletion.
            doomed.sort_by_key(|(kind, _)| std::cmp::Reverse(relations::rank(*kind)));
            for (kind, id) in doomed {
                self.delete(kind, id, &in_batch, &mut deleted)?;
            }
        }
        let mut ordered: Vec<&Entity> = entities.iter().collect();
        ordered.sort_by_key(|e| relations::rank(e.kind()));
        for entity in ordered {
            // What is stored was validated when it was written.
            if self.get(entity.kind(), entity.id()) != Some(entity) {
                validate_entity(entity)?;
            }
            self.put(entity.clone())?;
        }
        Ok(CommandOutput::Config {
            upserted: entities.len(),
            deleted,
        })
    }

    /// Inserts or replaces an entity, enforcing unique keys and foreign
    /// keys and keeping the indexes in step.
    fn put(&mut self, entity: Entity) -> Result<(), ApplyError> {
        let (kind, id) = (entity.kind(), entity.id());
        let old = self.db.tables.get(&kind).and_then(|t| t.get(&id)).cloned();
        // An unchanged entity (a re-applied config) is left as it is, and
        // not rewritten to disk; its parents must still exist.
        let unchanged = old.as_deref() == Some(&entity);
        if let Some(old) = old.filter(|_| !unchanged) {
            self.unindex(&old);
        }
        for key in relations::unique_keys(&entity)
            .into_iter()
            .filter(|_| !unchanged)
        {
            if let Some(owner) = self.db.unique.get(&(kind, key.clone())) {
                if *owner != id {
                    return Err(ApplyError::Unique { value: key });
                }
            }
        }
        for r in relations::references(&entity) {
            if self.get(r.parent, r.id).is_none() {
                let message = format!(
                    "the foreign key '{{id=\"{}\"}}' does not reference an existing '{}' entity.",
                    r.id,
                    r.parent.collection()
                );
                let mut fields = BTreeMap::new();
                fields.insert(
                    r.field.to_string(),
                    serde_json::Value::String(message.clone()),
                );
                return Err(ApplyError::ForeignKey { message, fields });
            }
        }
        if unchanged {
            return Ok(());
        }
        self.index(&entity);
        self.db
            .tables
            .entry(kind)
            .or_default()
            .insert(id, Arc::new(entity));
        self.dirty.push(RecordKey::Entity(kind, id));
        Ok(())
    }

    fn index(&mut self, entity: &Entity) {
        index_into(&mut self.db, entity);
    }

    fn unindex(&mut self, entity: &Entity) {
        let (kind, id) = (entity.kind(), entity.id());
        for key in relations::unique_keys(entity) {
            if self.db.unique.get(&(kind, key.clone())) == Some(&id) {
                self.db.unique.remove(&(kind, key));
            }
        }
        for r in relations::references(entity) {
            self.db.refs.remove(&(r.parent, r.id, kind, id));
        }
    }

    /// The children of (kind, id) as (kind, id, field), from the index.
    fn child_refs(&self, kind: EntityKind, id: Uuid) -> Vec<(EntityKind, Uuid, &'static str)> {
        let (first, last) = (
            EntityKind::ALL[0],
            EntityKind::ALL[EntityKind::ALL.len() - 1],
        );
        let lo = (kind, id, first, Uuid::nil());
        let hi = (kind, id, last, Uuid::max());
        self.db
            .refs
            .range(lo..=hi)
            .map(|((_, _, ck, cid), field)| (*ck, *cid, *field))
            .collect()
    }

    /// Deletes an entity and what Kong cascades with it. Children listed
    /// in `keep` (about to be re-upserted by the same config) are left.
    fn delete(
        &mut self,
        kind: EntityKind,
        id: Uuid,
        keep: &HashSet<(EntityKind, Uuid)>,
        count: &mut usize,
    ) -> Result<(), ApplyError> {
        let Some(entity) = self.db.tables.get(&kind).and_then(|t| t.get(&id)).cloned() else {
            return Ok(());
        };
        for (child_kind, child_id, _) in self.child_refs(kind, id) {
            if keep.contains(&(child_kind, child_id)) {
                continue;
            }
            match relations::on_delete(child_kind, kind) {
                OnDelete::Cascade => self.delete(child_kind, child_id, keep, count)?,
                OnDelete::Restrict => {
                    let message = format!(
                        "an existing '{}' entity references this '{}' entity",
                        child_kind.collection(),
                        kind.collection()
                    );
                    let mut fields = BTreeMap::new();
                    fields.insert(
                        "@referenced_by".to_string(),
                        serde_json::Value::String(child_kind.collection().to_string()),
                    );
                    return Err(ApplyError::ForeignKey { message, fields });
                }
            }
        }
        self.unindex(&entity);
        if let Some(table) = self.db.tables.get_mut(&kind) {
            table.remove(&id);
        }
        self.dirty.push(RecordKey::Entity(kind, id));
        *count += 1;
        Ok(())
    }

    /// Finds an entity by UUID or, failing that, by Kong's endpoint key:
    /// name (services, routes, upstreams, consumer groups, SNIs), username
    /// then custom_id (consumers), instance_name (plugins), key (jwt and
    /// key-auth credentials), or an SNI name (certificates).
    pub fn find(&self, kind: EntityKind, key: &str) -> Option<&Entity> {
        if let Ok(id) = Uuid::parse_str(key) {
            if let Some(entity) = self.get(kind, id) {
                return Some(entity);
            }
        }
        if kind == EntityKind::Certificate {
            return match self.find(EntityKind::Sni, key)? {
                Entity::Sni(sni) => self.get(kind, sni.certificate.id),
                _ => None,
            };
        }
        relations::endpoint_keys(kind, key)
            .into_iter()
            .find_map(|k| self.db.unique.get(&(kind, k)))
            .and_then(|id| self.get(kind, *id))
    }

    fn consumer(&self, id: Uuid) -> Option<&Consumer> {
        match self.get(EntityKind::Consumer, id)? {
            Entity::Consumer(c) => Some(c),
            _ => None,
        }
    }

    /// The jwt credential whose `key` is `key`, and its consumer.
    pub fn consumer_by_jwt_key(&self, key: &str) -> Option<(&JwtCredential, &Consumer)> {
        match self.find_by_key(EntityKind::JwtCredential, key)? {
            Entity::JwtCredential(c) => Some((c, self.consumer(c.consumer.id)?)),
            _ => None,
        }
    }

    /// The key-auth credential whose `key` is `key`, and its consumer.
    pub fn consumer_by_api_key(&self, key: &str) -> Option<(&KeyAuthCredential, &Consumer)> {
        match self.find_by_key(EntityKind::KeyAuthCredential, key)? {
            Entity::KeyAuthCredential(c) => Some((c, self.consumer(c.consumer.id)?)),
            _ => None,
        }
    }

    fn find_by_key(&self, kind: EntityKind, key: &str) -> Option<&Entity> {
        let id = self
            .db
            .unique
            .get(&(kind, relations::unique_key("key", key)))?;
        self.get(kind, *id)
    }

    /// The entities of `kind` that reference the `parent_kind` entity
    /// `parent_id` (routes of a service, targets of an upstream,
    /// credentials of a consumer, plugins of a route, …), ordered by id.
    pub fn children(
        &self,
        kind: EntityKind,
        parent_kind: EntityKind,
        parent_id: Uuid,
    ) -> impl Iterator<Item = &Entity> + '_ {
        let lo = (parent_kind, parent_id, kind, Uuid::nil());
        let hi = (parent_kind, parent_id, kind, Uuid::max());
        self.db
            .refs
            .range(lo..=hi)
            // A route naming the service as an aggregation backend is not
            // one of the service's routes.
            .filter(|(_, field)| **field != "aggregate")
            .filter_map(move |((_, _, _, id), _)| self.get(kind, *id))
    }

    /// The consumer groups the consumer belongs to.
    pub fn groups_of_consumer(&self, consumer_id: Uuid) -> Vec<&ConsumerGroup> {
        self.children(
            EntityKind::ConsumerGroupMember,
            EntityKind::Consumer,
            consumer_id,
        )
        .filter_map(|m| match m {
            Entity::ConsumerGroupMember(m) => {
                match self.get(EntityKind::ConsumerGroup, m.consumer_group.id)? {
                    Entity::ConsumerGroup(g) => Some(g),
                    _ => None,
                }
            }
            _ => None,
        })
        .collect()
    }

    /// One entity by kind and id.
    pub fn get(&self, kind: EntityKind, id: Uuid) -> Option<&Entity> {
        self.db.tables.get(&kind)?.get(&id).map(|e| &**e)
    }

    /// Every entity of a kind, ordered by id.
    pub fn iter(&self, kind: EntityKind) -> impl Iterator<Item = &Entity> + '_ {
        self.db
            .tables
            .get(&kind)
            .into_iter()
            .flat_map(|t| t.values().map(|e| &**e))
    }

    /// How many entities of a kind there are.
    pub fn count(&self, kind: EntityKind) -> usize {
        self.db.tables.get(&kind).map_or(0, |t| t.len())
    }

    /// Whether `self` and `other` share the very same table of `kind`
    /// (nothing of that kind changed between them). O(1): lets a compiled
    /// index of one kind outlive config changes that did not touch it.
    pub fn same_table(&self, other: &State, kind: EntityKind) -> bool {
        match (self.db.tables.get(&kind), other.db.tables.get(&kind)) {
            (Some(a), Some(b)) => a.ptr_eq(b),
            (None, None) => true,
            (Some(t), None) | (None, Some(t)) => t.is_empty(),
        }
    }

    /// The entities of `kind` that differ between `older` and `self`, as
    /// (before, after) pairs; subtrees the two states share are skipped,
    /// so the cost follows the number of changes, not the table's size.
    #[allow(clippy::type_complexity)]
    pub fn changes_since(
        &self,
        older: &State,
        kind: EntityKind,
    ) -> Vec<(Option<Arc<Entity>>, Option<Arc<Entity>>)> {
        let empty = OrdMap::new();
        let old = older.db.tables.get(&kind).unwrap_or(&empty);
        let new = self.db.tables.get(&kind).unwrap_or(&empty);
        old.diff(new)
            .map(|item| match item {
                imbl::ordmap::DiffItem::Add(_, v) => (None, Some(v.clone())),
                imbl::ordmap::DiffItem::Update { old, new } => {
                    (Some(old.1.clone()), Some(new.1.clone()))
                }
                imbl::ordmap::DiffItem::Remove(_, v) => (Some(v.clone()), None),
            })
            .collect()
    }

    /// Bumped by every applied change; names the configuration a node runs.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The keys changed since the last call, for the store to persist.
    pub fn take_dirty(&mut self) -> Vec<RecordKey> {
        let mut keys = std::mem::take(&mut self.dirty);
        keys.sort();
        keys.dedup();
        keys
    }

    /// The current persisted form of a record, `None` if it no longer exists.
    pub fn record(&self, key: &RecordKey) -> Option<Vec<u8>> {
        let record = match key {
            RecordKey::Entity(kind, id) => Record::Entity(self.get(*kind, *id)?.clone()),
            RecordKey::Request(id) => Record::Request {
                id: *id,
                outcome: Outcome::clone(&self.recent.get(id)?.1),
                seq: self.recent.get(id)?.0,
            },
            RecordKey::Version => Record::Version(self.version),
        };
        serde_json::to_vec(&record).ok()
    }

    /// Every record, for a snapshot.
    pub fn records(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut keys: Vec<RecordKey> = vec![RecordKey::Version];
        for (kind, table) in &self.db.tables {
            keys.extend(table.keys().map(|id| RecordKey::Entity(*kind, *id)));
        }
        keys.extend(self.recent_order.iter().map(|id| RecordKey::Request(*id)));
        keys.iter()
            .filter_map(|k| Some((k.to_bytes(), self.record(k)?)))
            .collect()
    }

    /// Rebuilds a state from the values of its records (any order).
    pub fn from_records<I>(values: I) -> Result<State, serde_json::Error>
    where
        I: IntoIterator<Item = Vec<u8>>,
    {
        let mut state = State::default();
        let mut requests = Vec::new();
        for value in values {
            match serde_json::from_slice::<Record>(&value)? {
                Record::Entity(entity) => {
                    let (kind, id) = (entity.kind(), entity.id());
                    index_into(&mut state.db, &entity);
                    state
                        .db
                        .tables
                        .entry(kind)
                        .or_default()
                        .insert(id, Arc::new(entity));
                }
                Record::Request { id, outcome, seq } => requests.push((seq, id, outcome)),
                Record::Version(v) => state.version = v,
            }
        }
        requests.sort_by_key(|(seq, _, _)| *seq);
        for (seq, id, outcome) in requests {
            state.recent.insert(id, (seq, Arc::new(outcome)));
            state.recent_order.push_back(id);
            state.next_seq = seq + 1;
        }
        Ok(state)
    }
}

/// Adds the entity's unique keys and references to the indexes.
fn index_into(db: &mut Db, entity: &Entity) {
    let (kind, id) = (entity.kind(), entity.id());
    for key in relations::unique_keys(entity) {
        db.unique.insert((kind, key), id);
    }
    for r in relations::references(entity) {
        db.refs.entry((r.parent, r.id, kind, id)).or_insert(r.field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn ent(kind: &str, id: u128, mut value: Value) -> Entity {
        value["id"] = json!(Uuid::from_u128(id));
        let kind = EntityKind::from_collection(kind).expect("kind");
        Entity::from_json(kind, value).expect("well-typed entity")
    }

    fn fk(id: u128) -> Value {
        json!({ "id": Uuid::from_u128(id) })
    }

    fn run(state: &mut State, command: Command) -> Outcome {
        state.apply(&Proposal {
            request_id: Uuid::new_v4(),
            command,
        })
    }

    fn upsert(state: &mut State, entity: Entity) -> Outcome {
        run(state, Command::Upsert { entity })
    }

    fn delete(state: &mut State, kind: EntityKind, id: u128) -> Outcome {
        run(
            state,
            Command::Delete {
                kind,
                id: Uuid::from_u128(id),
            },
        )
    }

    fn ok(outcome: Outcome) {
        if let Err(e) = outcome {
            panic!("unexpected error: {}", e.to_json());
        }
    }

    /// A consumer 1 "bob" with jwt credential 2, key-auth 3, acl 4, plugin
    /// 5, group 6 and membership 7; service 10 with route 11 and plugin 12.
    fn fixture() -> State {
        let mut s = State::default();
        for e in [
            ent(
                "consumers",
                1,
                json!({"username": "bob", "custom_id": "c-1"}),
            ),
            ent(
                "jwt_secrets",
                2,
                json!({"consumer": fk(1), "key": "bob-iss", "secret": "s"}),
            ),
            ent(
                "keyauth_credentials",
                3,
                json!({"consumer": fk(1), "key": "bob-key"}),
            ),
            ent("acls", 4, json!({"consumer": fk(1), "group": "admins"})),
            ent(
                "plugins",
                5,
                json!({"name": "rate-limiting", "consumer": fk(1), "config": {"minute": 5}}),
            ),
            ent("consumer_groups", 6, json!({"name": "gold"})),
            ent(
                "consumer_group_consumers",
                7,
                json!({"consumer": fk(1), "consumer_group": fk(6)}),
            ),
            ent(
                "services",
                10,
                json!({"name": "users", "host": "users.internal"}),
            ),
            ent(
                "routes",
                11,
                json!({"name": "users-route", "paths": ["/users"], "service": fk(10)}),
            ),
            ent(
                "plugins",
                12,
                json!({"name": "jwt", "service": fk(10), "instance_name": "users-jwt"}),
            ),
        ] {
            ok(upsert(&mut s, e));
        }
        s
    }

    #[test]
    fn unique_fields_are_enforced_with_kongs_rendering() {
        let mut s = fixture();
        let err = upsert(&mut s, ent("consumers", 20, json!({"username": "bob"}))).unwrap_err();
        assert_eq!(
            err,
            ApplyError::Unique {
                value: "{username=\"bob\"}".into()
            }
        );
        assert_eq!(
            err.to_json()["message"],
            "UNIQUE violation detected on '{username=\"bob\"}'"
        );
        assert_eq!(err.http_status(), 409);
        let err = upsert(&mut s, ent("consumers", 20, json!({"custom_id": "c-1"}))).unwrap_err();
        assert_eq!(
            err,
            ApplyError::Unique {
                value: "{custom_id=\"c-1\"}".into()
            }
        );
        let err = upsert(
            &mut s,
            ent(
                "jwt_secrets",
                21,
                json!({"consumer": fk(1), "key": "bob-iss"}),
            ),
        );
        assert!(matches!(err, Err(ApplyError::Unique { .. })));
        let err = upsert(
            &mut s,
            ent("services", 22, json!({"name": "users", "host": "h"})),
        );
        assert!(matches!(err, Err(ApplyError::Unique { .. })));
        // Same plugin name on the same service: 409; on another scope: fine.
        let err = upsert(
            &mut s,
            ent("plugins", 23, json!({"name": "jwt", "service": fk(10)})),
        )
        .unwrap_err();
        assert!(
            matches!(&err, ApplyError::Unique { value } if value.contains("name=\"jwt\"") && value.contains("route=null"))
        );
        ok(upsert(
            &mut s,
            ent("plugins", 23, json!({"name": "jwt", "route": fk(11)})),
        ));
        let err = upsert(
            &mut s,
            ent(
                "plugins",
                24,
                json!({"name": "cors", "instance_name": "users-jwt"}),
            ),
        );
        assert!(matches!(err, Err(ApplyError::Unique { .. })));
        // Re-putting an entity with its own keys is not a conflict.
        ok(upsert(
            &mut s,
            ent(
                "consumers",
                1,
                json!({"username": "bob", "custom_id": "c-1"}),
            ),
        ));
    }

    #[test]
    fn foreign_keys_must_exist() {
        let mut s = fixture();
        let err = upsert(
            &mut s,
            ent("routes", 30, json!({"paths": ["/x"], "service": fk(99)})),
        )
        .unwrap_err();
        let message = format!(
            "the foreign key '{{id=\"{}\"}}' does not reference an existing 'services' entity.",
            Uuid::from_u128(99)
        );
        assert_eq!(err.to_json()["fields"]["service"], message.as_str());
        assert_eq!(err.to_json()["message"], message.as_str());
        assert_eq!(err.code(), 4);
        let err = upsert(
            &mut s,
            ent("jwt_secrets", 31, json!({"consumer": fk(98), "key": "k"})),
        );
        assert!(matches!(err, Err(ApplyError::ForeignKey { .. })));
        assert_eq!(s.count(EntityKind::Route), 1);
    }

    #[test]
    fn invalid_entities_are_rejected_inside_apply() {
        let mut s = State::default();
        let err = upsert(&mut s, ent("consumers", 1, json!({}))).unwrap_err();
        assert_eq!(err.code(), 2);
        assert_eq!(s.count(EntityKind::Consumer), 0);
        assert_eq!(s.version(), 0);
    }

    #[test]
    fn renaming_updates_the_indexes() {
        let mut s = fixture();
        ok(upsert(
            &mut s,
            ent("consumers", 1, json!({"username": "robert"})),
        ));
        assert!(s.find(EntityKind::Consumer, "bob").is_none());
        assert!(s.find(EntityKind::Consumer, "c-1").is_none());
        assert_eq!(
            s.find(EntityKind::Consumer, "robert").map(Entity::id),
            Some(Uuid::from_u128(1))
        );
        ok(upsert(
            &mut s,
            ent("consumers", 40, json!({"username": "bob"})),
        ));
        // Re-pointing a credential moves it between consumers' children.
        ok(upsert(
            &mut s,
            ent(
                "jwt_secrets",
                2,
                json!({"consumer": fk(40), "key": "bob-iss"}),
            ),
        ));
        assert_eq!(
            s.children(
                EntityKind::JwtCredential,
                EntityKind::Consumer,
                Uuid::from_u128(1)
            )
            .count(),
            0
        );
        let (_, owner) = s.consumer_by_jwt_key("bob-iss").expect("credential");
        assert_eq!(owner.id, Uuid::from_u128(40));
    }

    #[test]
    fn lookups() {
        let s = fixture();
        let id = |n| Uuid::from_u128(n);
        assert_eq!(
            s.find(EntityKind::Consumer, "bob").map(Entity::id),
            Some(id(1))
        );
        assert_eq!(
            s.find(EntityKind::Consumer, "c-1").map(Entity::id),
            Some(id(1))
        );
        assert_eq!(
            s.find(EntityKind::Consumer, &id(1).to_string())
                .map(Entity::id),
            Some(id(1))
        );
        assert_eq!(
            s.find(EntityKind::Service, "users").map(Entity::id),
            Some(id(10))
        );
        assert_eq!(
            s.find(EntityKind::Route, "users-route").map(Entity::id),
            Some(id(11))
        );
        assert_eq!(
            s.find(EntityKind::Plugin, "users-jwt").map(Entity::id),
            Some(id(12))
        );
        assert_eq!(
            s.find(EntityKind::KeyAuthCredential, "bob-key")
                .map(Entity::id),
            Some(id(3))
        );
        assert!(s.find(EntityKind::Service, "nope").is_none());
        let (cred, consumer) = s.consumer_by_jwt_key("bob-iss").expect("jwt");
        assert_eq!((cred.id, consumer.id), (id(2), id(1)));
        let (cred, consumer) = s.consumer_by_api_key("bob-key").expect("key-auth");
        assert_eq!((cred.id, consumer.id), (id(3), id(1)));
        assert!(s.consumer_by_api_key("bob-iss").is_none());
        let routes: Vec<Uuid> = s
            .children(EntityKind::Route, EntityKind::Service, id(10))
            .map(Entity::id)
            .collect();
        assert_eq!(routes, vec![id(11)]);
        assert_eq!(
            s.children(EntityKind::Plugin, EntityKind::Consumer, id(1))
                .count(),
            1
        );
        let groups = s.groups_of_consumer(id(1));
        assert_eq!(
            groups.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(),
            vec!["gold"]
        );
    }

    #[test]
    fn deleting_a_consumer_cascades() {
        let mut s = fixture();
        ok(upsert(
            &mut s,
            ent("jwt_revocations", 50, json!({"credential": fk(2)})),
        ));
        ok(delete(&mut s, EntityKind::Consumer, 1));
        for kind in [
            EntityKind::Consumer,
            EntityKind::JwtCredential,
            EntityKind::KeyAuthCredential,
            EntityKind::AclCredential,
            EntityKind::ConsumerGroupMember,
            EntityKind::JwtRevocation,
        ] {
            assert_eq!(s.count(kind), 0, "{kind:?}");
        }
        assert_eq!(
            s.count(EntityKind::Plugin),
            1,
            "only the consumer's plugin goes"
        );
        assert_eq!(s.count(EntityKind::ConsumerGroup), 1);
        assert!(s.consumer_by_jwt_key("bob-iss").is_none());
        // Its unique keys are free again.
        let gone = upsert(
            &mut s,
            ent(
                "jwt_secrets",
                2,
                json!({"consumer": fk(1), "key": "bob-iss"}),
            ),
        );
        assert_eq!(gone.map_err(|e| e.code()), Err(4), "the consumer is gone");
        ok(upsert(
            &mut s,
            ent("consumers", 60, json!({"username": "bob"})),
        ));
    }

    #[test]
    fn a_service_with_routes_cannot_be_deleted() {
        let mut s = fixture();
        let err = delete(&mut s, EntityKind::Service, 10).unwrap_err();
        assert_eq!(
            err.to_string(),
            "an existing 'routes' entity references this 'services' entity"
        );
        assert_eq!(err.to_json()["fields"]["@referenced_by"], "routes");
        assert_eq!(s.count(EntityKind::Plugin), 2, "nothing was deleted");
        ok(delete(&mut s, EntityKind::Route, 11));
        ok(delete(&mut s, EntityKind::Service, 10));
        assert_eq!(
            s.count(EntityKind::Plugin),
            1,
            "the service's plugin went with it"
        );
        assert_eq!(
            delete(&mut s, EntityKind::Service, 10),
            Err(ApplyError::NotFound)
        );
    }

    #[test]
    fn upstream_and_certificate_cascades() {
        let mut s = State::default();
        let pem = |label: &str| format!("-----BEGIN {label}-----\nAAAA\n-----END {label}-----\n");
        for e in [
            ent("upstreams", 1, json!({"name": "up"})),
            ent(
                "targets",
                2,
                json!({"upstream": fk(1), "target": "10.0.0.1:80"}),
            ),
            ent(
                "certificates",
                3,
                json!({"cert": pem("CERTIFICATE"), "key": pem("PRIVATE KEY")}),
            ),
            ent(
                "snis",
                4,
                json!({"name": "example.com", "certificate": fk(3)}),
            ),
        ] {
            ok(upsert(&mut s, e));
        }
        let dup = upsert(
            &mut s,
            ent(
                "targets",
                5,
                json!({"upstream": fk(1), "target": "10.0.0.1:80"}),
            ),
        );
        assert!(matches!(dup, Err(ApplyError::Unique { .. })));
        assert_eq!(
            s.find(EntityKind::Certificate, "example.com")
                .map(Entity::id),
            Some(Uuid::from_u128(3))
        );
        ok(delete(&mut s, EntityKind::Upstream, 1));
        ok(delete(&mut s, EntityKind::Certificate, 3));
        assert_eq!(s.count(EntityKind::Target) + s.count(EntityKind::Sni), 0);
    }

    #[test]
    fn apply_config_is_whole_and_ordered() {
        let mut s = State::default();
        // Children listed before their parents still resolve.
        let batch = vec![
            ent("routes", 2, json!({"paths": ["/a"], "service": fk(1)})),
            ent("plugins", 3, json!({"name": "jwt", "route": fk(2)})),
            ent("services", 1, json!({"name": "a", "host": "a.internal"})),
        ];
        let out = run(
            &mut s,
            Command::ApplyConfig {
                entities: batch.clone(),
                delete_missing: false,
                select_tags: vec![],
            },
        );
        assert_eq!(
            out,
            Ok(CommandOutput::Config {
                upserted: 3,
                deleted: 0
            })
        );
        let version = s.version();
        // One bad entity: nothing of the batch lands.
        let mut bad = batch.clone();
        bad.push(ent(
            "services",
            4,
            json!({"name": "b", "host": "b.internal"}),
        ));
        bad.push(ent(
            "routes",
            5,
            json!({"paths": ["/b"], "service": fk(77)}),
        ));
        let err = run(
            &mut s,
            Command::ApplyConfig {
                entities: bad,
                delete_missing: true,
                select_tags: vec![],
            },
        );
        assert!(matches!(err, Err(ApplyError::ForeignKey { .. })));
        assert_eq!(s.count(EntityKind::Service), 1);
        assert_eq!(s.version(), version);
        assert!(s.find(EntityKind::Service, "b").is_none());
    }

    #[test]
    fn sync_deletes_what_the_config_lacks_within_select_tags() {
        let mut s = State::default();
        for e in [
            ent(
                "services",
                1,
                json!({"name": "a", "host": "a", "tags": ["team-a"]}),
            ),
            ent(
                "routes",
                2,
                json!({"paths": ["/a"], "service": fk(1), "tags": ["team-a"]}),
            ),
            ent(
                "services",
                3,
                json!({"name": "b", "host": "b", "tags": ["team-b"]}),
            ),
            ent("jwt_revocations", 4, json!({"jti": "x"})),
        ] {
            ok(upsert(&mut s, e));
        }
        let batch = vec![ent(
            "services",
            5,
            json!({"name": "c", "host": "c", "tags": ["team-a"]}),
        )];
        let out = run(
            &mut s,
            Command::ApplyConfig {
                entities: batch,
                delete_missing: true,
                select_tags: vec!["team-a".into()],
            },
        );
        assert_eq!(
            out,
            Ok(CommandOutput::Config {
                upserted: 1,
                deleted: 2
            })
        );
        let names: Vec<String> = s
            .iter(EntityKind::Service)
            .filter_map(|e| e.to_json()["name"].as_str().map(String::from))
            .collect();
        assert_eq!(names, vec!["b", "c"]);
        assert_eq!(
            s.count(EntityKind::JwtRevocation),
            1,
            "revocations are not config"
        );
        // A whole replacement may move a route to a new service in one go.
        let batch = vec![
            ent("services", 6, json!({"name": "d", "host": "d"})),
            ent("routes", 7, json!({"paths": ["/d"], "service": fk(6)})),
        ];
        ok(run(
            &mut s,
            Command::ApplyConfig {
                entities: batch,
                delete_missing: true,
                select_tags: vec![],
            },
        ));
        assert_eq!(s.count(EntityKind::Service), 1);
        // A route kept by the file may switch services while its old one goes.
        let batch = vec![
            ent("services", 8, json!({"name": "e", "host": "e"})),
            ent("routes", 7, json!({"paths": ["/d"], "service": fk(8)})),
        ];
        ok(run(
            &mut s,
            Command::ApplyConfig {
                entities: batch,
                delete_missing: true,
                select_tags: vec![],
            },
        ));
        assert_eq!(
            s.children(EntityKind::Route, EntityKind::Service, Uuid::from_u128(8))
                .count(),
            1
        );
    }

    #[test]
    fn scoped_sync_drops_memberships_of_consumers_in_scope() {
        let mut s = State::default();
        let tagged = |kind, id, mut v: Value| {
            v["tags"] = json!(["t"]);
            ent(kind, id, v)
        };
        let consumer = tagged("consumers", 1, json!({"username": "a"}));
        let group = tagged("consumer_groups", 2, json!({"name": "g"}));
        for e in [
            consumer.clone(),
            group.clone(),
            ent(
                "consumer_group_consumers",
                3,
                json!({"consumer": fk(1), "consumer_group": fk(2)}),
            ),
        ] {
            ok(upsert(&mut s, e));
        }
        let out = run(
            &mut s,
            Command::ApplyConfig {
                entities: vec![consumer, group],
                delete_missing: true,
                select_tags: vec!["t".into()],
            },
        );
        assert_eq!(
            out,
            Ok(CommandOutput::Config {
                upserted: 2,
                deleted: 1
            })
        );
        assert!(s.groups_of_consumer(Uuid::from_u128(1)).is_empty());
    }

    #[test]
    fn indexes_survive_records_round_trip() {
        let s = fixture();
        let values = s.records().into_iter().map(|(_, v)| v);
        let mut back = State::from_records(values).expect("records");
        assert_eq!(back.version(), s.version());
        assert_eq!(
            back.find(EntityKind::Consumer, "bob").map(Entity::id),
            Some(Uuid::from_u128(1))
        );
        assert!(back.consumer_by_jwt_key("bob-iss").is_some());
        let dup = upsert(&mut back, ent("consumers", 20, json!({"username": "bob"})));
        assert!(matches!(dup, Err(ApplyError::Unique { .. })));
        assert!(delete(&mut back, EntityKind::Service, 10).is_err());
    }

    #[test]
    fn a_retried_request_is_applied_once() {
        let mut s = State::default();
        let p = Proposal {
            request_id: Uuid::from_u128(1),
            command: Command::Create {
                entity: ent("consumers", 1, json!({"username": "a"})),
            },
        };
        assert!(s.apply(&p).is_ok());
        assert!(
            s.apply(&p).is_ok(),
            "the first outcome again, not a primary key error"
        );
        assert_eq!(s.version(), 1);
    }

    #[test]
    fn a_big_config_applies_fast() {
        let mut entities = Vec::new();
        for i in 0..10_000u128 {
            entities.push(ent(
                "consumers",
                100_000 + i,
                json!({"username": format!("user-{i}")}),
            ));
            entities.push(ent(
                "jwt_secrets",
                200_000 + i,
                json!({"consumer": fk(100_000 + i), "key": format!("iss-{i}"), "secret": "s"}),
            ));
        }
        for i in 0..1_000u128 {
            entities.push(ent(
                "services",
                300_000 + i,
                json!({"name": format!("svc-{i}"), "host": "backend.internal"}),
            ));
            entities.push(ent(
                "routes",
                400_000 + i,
                json!({"paths": [format!("/svc/{i}")], "service": fk(300_000 + i)}),
            ));
        }
        let mut s = State::default();
        let start = std::time::Instant::now();
        let out = run(
            &mut s,
            Command::ApplyConfig {
                entities: entities.clone(),
                delete_missing: true,
                select_tags: vec![],
            },
        );
        let first = start.elapsed();
        assert_eq!(
            out,
            Ok(CommandOutput::Config {
                upserted: 22_000,
                deleted: 0
            })
        );
        assert!(s.take_dirty().len() > 22_000);
        // Applying the same config again checks everything, rewrites nothing.
        let start = std::time::Instant::now();
        ok(run(
            &mut s,
            Command::ApplyConfig {
                entities,
                delete_missing: true,
                select_tags: vec![],
            },
        ));
        let second = start.elapsed();
        eprintln!("22,000 entities: first apply {first:?}, re-apply {second:?}");
        assert!(
            first.as_secs_f64() < 5.0 && second.as_secs_f64() < 5.0,
            "{first:?} {second:?}"
        );
        assert_eq!(s.count(EntityKind::JwtCredential), 10_000);
        let dirty = s.take_dirty();
        assert!(
            dirty.len() < 10,
            "an unchanged config rewrites nothing: {}",
            dirty.len()
        );
        assert!(s.consumer_by_jwt_key("iss-9999").is_some());
    }
}

#[cfg(test)]
mod retry_tests {
    use super::*;
    use crate::model::{Entity, EntityKind};

    fn create_service(request_id: Uuid, name: &str) -> Proposal {
        let entity = Entity::from_json(
            EntityKind::Service,
            serde_json::json!({"id": Uuid::new_v4(), "name": name, "host": "example.com"}),
        )
        .unwrap();
        Proposal {
            request_id,
            command: Command::Create { entity },
        }
    }

    #[test]
    fn a_retried_proposal_is_applied_once_and_answers_the_same() {
        let mut state = State::default();
        let request = Uuid::new_v4();
        let proposal = create_service(request, "once");
        let first = state.apply(&proposal).unwrap();
        let version = state.version();
        // The same proposal again (a retry after a leader change): the
        // remembered outcome, nothing applied twice.
        assert_eq!(state.apply(&proposal).unwrap(), first);
        assert_eq!(state.version(), version);
        assert_eq!(state.count(EntityKind::Service), 1);
        // Even a different command under the same request id is not applied.
        let other = create_service(request, "other");
        assert_eq!(state.apply(&other).unwrap(), first);
        assert_eq!(state.count(EntityKind::Service), 1);
        // The memory survives a snapshot round trip.
        let values = state.records().into_iter().map(|(_, v)| v);
        let mut restored = State::from_records(values).unwrap();
        assert_eq!(restored.apply(&proposal).unwrap(), first);
        assert_eq!(restored.count(EntityKind::Service), 1);
    }

    #[test]
    fn restored_states_forget_the_same_oldest_requests() {
        // Past REMEMBERED_REQUESTS, the oldest request is forgotten first;
        // a state restored from its records must forget the same one as a
        // state that never restarted, or nodes would answer retries apart.
        let mut live = State::default();
        let first = Uuid::new_v4();
        live.apply(&create_service(first, "first")).unwrap();
        for i in 0..REMEMBERED_REQUESTS - 2 {
            let _ = live.apply(&create_service(Uuid::new_v4(), &format!("s{i}")));
        }
        let values = live.records().into_iter().map(|(_, v)| v);
        let mut restored = State::from_records(values).unwrap();
        let late = Uuid::new_v4();
        for state in [&mut live, &mut restored] {
            state.apply(&create_service(late, "late")).unwrap();
            // One more evicts `first`, the oldest, and nothing else.
            state
                .apply(&create_service(Uuid::new_v4(), "last"))
                .unwrap();
            let retried = state.apply(&create_service(first, "first-again"));
            assert!(retried.is_ok(), "first was forgotten, so it applies anew");
            assert!(state.find(EntityKind::Service, "first-again").is_some());
            let again = state.apply(&create_service(late, "late-again")).unwrap();
            assert!(
                state.find(EntityKind::Service, "late-again").is_none(),
                "{again:?}"
            );
        }
    }
}

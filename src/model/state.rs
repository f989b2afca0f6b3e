//! The replicated state: every entity, by kind and id, in persistent maps
//! (cloning a `State` is cheap, so each applied change can be published as
//! a new snapshot). `apply` is the state machine's transition function.

use std::collections::BTreeMap;

use imbl::{OrdMap, Vector};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::command::{Command, CommandOutput, Entity, EntityKind, Proposal};
use super::errors::ApplyError;

/// How many applied request ids are remembered for de-duplication.
const REMEMBERED_REQUESTS: usize = 10_000;

type Outcome = Result<CommandOutput, ApplyError>;

#[derive(Clone, Debug, Default)]
pub struct State {
    tables: BTreeMap<EntityKind, OrdMap<Uuid, Entity>>,
    /// Outcomes of recently applied proposals, by request id.
    recent: OrdMap<Uuid, Outcome>,
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
        if let Some(previous) = self.recent.get(&proposal.request_id) {
            return previous.clone();
        }
        let before = self.clone_tables();
        let dirty_mark = self.dirty.len();
        let outcome = self.apply_command(&proposal.command);
        if outcome.is_err() {
            self.tables = before;
            self.dirty.truncate(dirty_mark);
        } else {
            self.version += 1;
            self.dirty.push(RecordKey::Version);
        }
        self.remember(proposal.request_id, outcome.clone());
        outcome
    }

    fn clone_tables(&self) -> BTreeMap<EntityKind, OrdMap<Uuid, Entity>> {
        self.tables.clone()
    }

    fn remember(&mut self, request_id: Uuid, outcome: Outcome) {
        self.recent.insert(request_id, outcome);
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
                self.put(entity.clone());
                Ok(CommandOutput::Entity {
                    entity: entity.clone(),
                })
            }
            Command::Upsert { entity } => {
                self.put(entity.clone());
                Ok(CommandOutput::Entity {
                    entity: entity.clone(),
                })
            }
            Command::Delete { kind, id } => {
                if self.remove(*kind, *id).is_none() {
                    return Err(ApplyError::NotFound);
                }
                Ok(CommandOutput::Deleted)
            }
            Command::ApplyConfig { entities, .. } => {
                for entity in entities {
                    self.put(entity.clone());
                }
                Ok(CommandOutput::Config {
                    upserted: entities.len(),
                    deleted: 0,
                })
            }
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
                for id in &expired {
                    self.remove(EntityKind::JwtRevocation, *id);
                }
                Ok(CommandOutput::Purged {
                    count: expired.len(),
                })
            }
        }
    }

    fn put(&mut self, entity: Entity) {
        let (kind, id) = (entity.kind(), entity.id());
        self.tables.entry(kind).or_default().insert(id, entity);
        self.dirty.push(RecordKey::Entity(kind, id));
    }

    fn remove(&mut self, kind: EntityKind, id: Uuid) -> Option<Entity> {
        let removed = self.tables.get_mut(&kind)?.remove(&id);
        if removed.is_some() {
            self.dirty.push(RecordKey::Entity(kind, id));
        }
        removed
    }

    /// One entity by kind and id.
    pub fn get(&self, kind: EntityKind, id: Uuid) -> Option<&Entity> {
        self.tables.get(&kind)?.get(&id)
    }

    /// Every entity of a kind, ordered by id.
    pub fn iter(&self, kind: EntityKind) -> impl Iterator<Item = &Entity> + '_ {
        self.tables.get(&kind).into_iter().flat_map(|t| t.values())
    }

    /// How many entities of a kind there are.
    pub fn count(&self, kind: EntityKind) -> usize {
        self.tables.get(&kind).map_or(0, |t| t.len())
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
                outcome: self.recent.get(id)?.clone(),
                seq: self.recent_order.index_of(id)? as u64,
            },
            RecordKey::Version => Record::Version(self.version),
        };
        serde_json::to_vec(&record).ok()
    }

    /// Every record, for a snapshot.
    pub fn records(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut keys: Vec<RecordKey> = vec![RecordKey::Version];
        for (kind, table) in &self.tables {
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
                    state.tables.entry(kind).or_default().insert(id, entity);
                }
                Record::Request { id, outcome, seq } => requests.push((seq, id, outcome)),
                Record::Version(v) => state.version = v,
            }
        }
        requests.sort_by_key(|(seq, _, _)| *seq);
        for (_, id, outcome) in requests {
            state.recent.insert(id, outcome);
            state.recent_order.push_back(id);
        }
        Ok(state)
    }
}

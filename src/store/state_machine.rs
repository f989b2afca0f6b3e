//! The state machine on sled. The applied `State` lives in memory and is
//! published to the rest of the node (admin reads, the data plane) through
//! a watch channel after every applied batch; its records are persisted in
//! sled together with `last_applied` in one transaction.
//!
//! Snapshots are the full list of records. Installing one replaces the
//! state trees whole; the snapshot is first stored durably, so a crash in
//! the middle of installing it is finished on the next start.

use std::io::{self, Cursor};
use std::sync::Arc;

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use tokio::sync::{watch, Mutex};

use super::codec::{decode, encode};
use super::types::{ApplyResult, LogId, Snapshot, SnapshotMeta, StoredMembership, TypeConfig};
use crate::blocking::cpu_bound;
use crate::model::State;

const LAST_APPLIED: &[u8] = b"last_applied";
const MEMBERSHIP: &[u8] = b"membership";
const SNAPSHOT_META: &[u8] = b"snapshot_meta";
const SNAPSHOT_DATA: &[u8] = b"snapshot_data";
const INSTALLING: &[u8] = b"installing";

/// What this node has applied, published after every change.
#[derive(Clone, Debug)]
pub struct Applied {
    pub state: Arc<State>,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

struct Inner {
    state: State,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

#[derive(Clone)]
pub struct StateMachine {
    db: sled::Db,
    records: sled::Tree,
    meta: sled::Tree,
    snapshots: sled::Tree,
    inner: Arc<Mutex<Inner>>,
    published: watch::Sender<Applied>,
}

fn sled_err(e: sled::Error) -> io::Error {
    io::Error::other(e)
}

fn tx_err(e: TransactionError<io::Error>) -> io::Error {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => sled_err(e),
    }
}

impl StateMachine {
    /// Opens the state machine stored in `db`, finishing an interrupted
    /// snapshot installation if there was one.
    pub fn open(db: &sled::Db) -> io::Result<Self> {
        let records = db.open_tree("sm_records").map_err(sled_err)?;
        let meta = db.open_tree("sm_meta").map_err(sled_err)?;
        let snapshots = db.open_tree("sm_snapshot").map_err(sled_err)?;

        if meta.get(INSTALLING).map_err(sled_err)?.is_some() {
            let snap_meta: SnapshotMeta = decode(&required(&snapshots, SNAPSHOT_META)?)?;
            let data = required(&snapshots, SNAPSHOT_DATA)?;
            replace_records(&records, &meta, &snap_meta, &data)?;
            db.flush().map_err(sled_err)?;
        }

        let mut values = Vec::new();
        for item in records.iter() {
            let (_, value) = item.map_err(sled_err)?;
            values.push(value.to_vec());
        }
        let state = State::from_records(values).map_err(io::Error::other)?;
        let last_applied: Option<LogId> = match meta.get(LAST_APPLIED).map_err(sled_err)? {
            Some(bytes) => decode(&bytes)?,
            None => None,
        };
        let membership: StoredMembership = match meta.get(MEMBERSHIP).map_err(sled_err)? {
            Some(bytes) => decode(&bytes)?,
            None => StoredMembership::default(),
        };
        let applied = Applied {
            state: Arc::new(state.clone()),
            last_applied,
            membership: membership.clone(),
        };
        let (published, _) = watch::channel(applied);
        Ok(Self {
            db: db.clone(),
            records,
            meta,
            snapshots,
            inner: Arc::new(Mutex::new(Inner {
                state,
                last_applied,
                membership,
            })),
            published,
        })
    }

    /// A receiver of every newly applied state.
    pub fn subscribe(&self) -> watch::Receiver<Applied> {
        self.published.subscribe()
    }

    fn publish(&self, inner: &Inner) {
        self.published.send_replace(Applied {
            state: Arc::new(inner.state.clone()),
            last_applied: inner.last_applied,
            membership: inner.membership.clone(),
        });
    }

    async fn flush(&self) -> io::Result<()> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush().map(|_| ()))
            .await
            .map_err(io::Error::other)?
            .map_err(sled_err)
    }
}

fn required(tree: &sled::Tree, key: &[u8]) -> io::Result<sled::IVec> {
    tree.get(key)
        .map_err(sled_err)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "missing snapshot part"))
}

/// Replaces every record with the snapshot's, and the applied markers with
/// the snapshot's, clearing the installing flag.
fn replace_records(
    records: &sled::Tree,
    meta: &sled::Tree,
    snap_meta: &SnapshotMeta,
    data: &[u8],
) -> io::Result<()> {
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = decode(data)?;
    records.clear().map_err(sled_err)?;
    let mut batch = sled::Batch::default();
    for (key, value) in pairs {
        batch.insert(key, value);
    }
    records.apply_batch(batch).map_err(sled_err)?;
    meta.insert(LAST_APPLIED, encode(&snap_meta.last_log_id)?)
        .map_err(sled_err)?;
    meta.insert(MEMBERSHIP, encode(&snap_meta.last_membership)?)
        .map_err(sled_err)?;
    meta.remove(INSTALLING).map_err(sled_err)?;
    Ok(())
}

type Responders = Vec<(openraft::storage::ApplyResponder<TypeConfig>, ApplyResult)>;

/// Applies a batch of entries to the in-memory state and persists what
/// changed together with the applied markers, in one sled transaction.
fn apply_batch(
    inner: &mut Inner,
    batch: Vec<openraft::storage::EntryResponder<TypeConfig>>,
    records: &sled::Tree,
    meta: &sled::Tree,
) -> io::Result<Responders> {
    let mut responders = Vec::new();
    for (entry, responder) in batch {
        let result = match &entry.payload {
            EntryPayload::Blank => ApplyResult(Ok(crate::model::CommandOutput::Deleted)),
            EntryPayload::Normal(proposal) => ApplyResult(inner.state.apply(proposal)),
            EntryPayload::Membership(membership) => {
                inner.membership = StoredMembership::new(Some(entry.log_id), membership.clone());
                ApplyResult(Ok(crate::model::CommandOutput::Deleted))
            }
        };
        inner.last_applied = Some(entry.log_id);
        if let Some(responder) = responder {
            responders.push((responder, result));
        }
    }
    let mut changes = Vec::new();
    for key in inner.state.take_dirty() {
        changes.push((key.to_bytes(), inner.state.record(&key)));
    }
    let last_applied = encode(&inner.last_applied)?;
    let membership = encode(&inner.membership)?;
    (records, meta)
        .transaction(|(records, meta)| {
            for (key, value) in &changes {
                match value {
                    Some(v) => records.insert(key.as_slice(), v.as_slice())?,
                    None => records.remove(key.as_slice())?,
                };
            }
            meta.insert(LAST_APPLIED, last_applied.as_slice())?;
            meta.insert(MEMBERSHIP, membership.as_slice())?;
            Ok::<(), ConflictableTransactionError<io::Error>>(())
        })
        .map_err(tx_err)?;
    Ok(responders)
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let (meta, data) = {
            let inner = self.inner.lock().await;
            let meta = SnapshotMeta {
                last_log_id: inner.last_applied,
                last_membership: inner.membership.clone(),
            };
            (meta, cpu_bound(|| encode(&inner.state.records()))?)
        };
        self.snapshots
            .insert(SNAPSHOT_META, encode(&meta)?)
            .map_err(sled_err)?;
        self.snapshots
            .insert(SNAPSHOT_DATA, data.clone())
            .map_err(sled_err)?;
        self.flush().await?;
        Ok(Snapshot {
            meta,
            snapshot: Cursor::new(data),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let inner = self.inner.lock().await;
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut batch = Vec::new();
        while let Some(item) = entries.try_next().await? {
            batch.push(item);
        }
        let mut inner = self.inner.lock().await;
        let inner = &mut *inner;
        let (records, meta) = (&self.records, &self.meta);
        let responders = cpu_bound(|| apply_batch(inner, batch, records, meta))?;
        // Not flushed here: the entries are already durable in the log, and
        // sled recovers a prefix of whole transactions, so after a crash the
        // state machine restarts at an older `last_applied` and the missing
        // entries are applied again from the log. The log is only purged
        // behind a snapshot, and building one flushes this tree first.
        self.publish(inner);

        for (responder, result) in responders {
            responder.send(result);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Self::SnapshotData,
    ) -> Result<(), io::Error> {
        let data = snapshot.into_inner();
        let state = cpu_bound(|| {
            let pairs: Vec<(Vec<u8>, Vec<u8>)> = decode(&data)?;
            State::from_records(pairs.into_iter().map(|(_, v)| v))
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        })?;

        let mut inner = self.inner.lock().await;
        // Store the snapshot durably first, flagged, so that a crash while
        // replacing the records is completed on the next start.
        self.snapshots
            .insert(SNAPSHOT_META, encode(meta)?)
            .map_err(sled_err)?;
        self.snapshots
            .insert(SNAPSHOT_DATA, data.as_slice())
            .map_err(sled_err)?;
        self.meta.insert(INSTALLING, &[1u8][..]).map_err(sled_err)?;
        self.flush().await?;
        cpu_bound(|| replace_records(&self.records, &self.meta, meta, &data))?;
        self.flush().await?;

        inner.state = state;
        inner.last_applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        self.publish(&inner);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let Some(meta) = self.snapshots.get(SNAPSHOT_META).map_err(sled_err)? else {
            return Ok(None);
        };
        let meta: SnapshotMeta = decode(&meta)?;
        let data = required(&self.snapshots, SNAPSHOT_DATA)?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Cursor::new(data.to_vec()),
        }))
    }
}

//! The Raft log and vote on sled. An append or a vote is acknowledged only
//! after sled has flushed it to disk (the flush runs on a blocking thread:
//! sled's `flush_async` can deadlock, sled #1308).

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader};

use super::codec::{decode, encode};
use super::types::{Entry, LogId, TypeConfig, Vote};

const VOTE: &[u8] = b"vote";
const LAST_PURGED: &[u8] = b"last_purged";
const COMMITTED: &[u8] = b"committed";

#[derive(Clone)]
pub struct LogStore {
    db: sled::Db,
    log: sled::Tree,
    meta: sled::Tree,
}

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

fn sled_err(e: sled::Error) -> io::Error {
    io::Error::other(e)
}

impl LogStore {
    pub fn open(db: &sled::Db) -> io::Result<Self> {
        Ok(Self {
            db: db.clone(),
            log: db.open_tree("raft_log").map_err(sled_err)?,
            meta: db.open_tree("raft_meta").map_err(sled_err)?,
        })
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> io::Result<Option<T>> {
        match self.meta.get(key).map_err(sled_err)? {
            Some(bytes) => Ok(Some(decode(&bytes)?)),
            None => Ok(None),
        }
    }

    fn put_meta<T: serde::Serialize>(&self, key: &[u8], value: &T) -> io::Result<()> {
        self.meta.insert(key, encode(value)?).map_err(sled_err)?;
        Ok(())
    }

    async fn flush(&self) -> io::Result<()> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush().map(|_| ()))
            .await
            .map_err(io::Error::other)?
            .map_err(sled_err)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let mut entries = Vec::new();
        for item in self.log.range(index_key(start)..) {
            let (key, value) = item.map_err(sled_err)?;
            let index = u64::from_be_bytes(key.as_ref().try_into().map_err(io::Error::other)?);
            if !range.contains(&index) {
                break;
            }
            entries.push(decode(&value)?);
        }
        Ok(entries)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.get_meta(VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id: Option<LogId> = self.get_meta(LAST_PURGED)?;
        let last_log_id = match self.log.last().map_err(sled_err)? {
            Some((_, value)) => {
                let entry: Entry = decode(&value)?;
                Some(entry.log_id)
            }
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.put_meta(VOTE, vote)?;
        self.flush().await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Not flushed on purpose: losing it only delays re-applying entries
        // after a crash until the leader tells the committed index again.
        self.put_meta(COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.get_meta::<Option<LogId>>(COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
    {
        let mut batch = sled::Batch::default();
        for entry in entries {
            batch.insert(&index_key(entry.log_id.index)[..], encode(&entry)?);
        }
        self.log.apply_batch(batch).map_err(sled_err)?;
        let flushed = self.flush().await;
        let failed = flushed
            .as_ref()
            .err()
            .map(|e| io::Error::new(e.kind(), e.to_string()));
        callback.io_completed(flushed);
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index + 1);
        let mut batch = sled::Batch::default();
        for item in self.log.range(index_key(from)..) {
            let (key, _) = item.map_err(sled_err)?;
            batch.remove(key);
        }
        self.log.apply_batch(batch).map_err(sled_err)?;
        self.flush().await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        self.put_meta(LAST_PURGED, &log_id)?;
        let mut batch = sled::Batch::default();
        for item in self.log.range(..=index_key(log_id.index)) {
            let (key, _) = item.map_err(sled_err)?;
            batch.remove(key);
        }
        self.log.apply_batch(batch).map_err(sled_err)?;
        self.flush().await
    }
}

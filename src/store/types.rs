//! openraft's type configuration for raftgate: the log payload is a
//! `Proposal`, the applied result is the command's outcome.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::model::{ApplyError, CommandOutput, Proposal};

/// What applying one log entry produced; returned to the writer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ApplyResult(pub Result<CommandOutput, ApplyError>);

openraft::declare_raft_types!(
    /// raftgate's Raft types.
    pub TypeConfig:
        D = Proposal,
        R = ApplyResult,
);

pub type NodeId = u64;
pub type Node = openraft::BasicNode;
pub type Raft = openraft::Raft<TypeConfig, super::state_machine::StateMachine>;
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, Cursor<Vec<u8>>>;

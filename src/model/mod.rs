//! Plain data: the gateway's entities, the `Command`s that change them (the
//! Raft log payload), the replicated `State` they live in, validation
//! (`validate` per entity, `plugin_schemas` per plugin config), the rules
//! between entities (`relations`), and Kong declarative files
//! (`declarative`). Nothing here does I/O, reads a clock or draws a random
//! number.

pub mod command;
pub mod declarative;
pub mod decode;
pub mod entities;
pub mod errors;
pub mod plugin_schemas;
pub mod relations;
pub mod state;
pub mod validate;

pub use command::{Command, CommandOutput, Entity, EntityKind, Proposal};
pub use declarative::DeclarativeConfig;
pub use entities::*;
pub use errors::ApplyError;
pub use state::State;

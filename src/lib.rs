//! raftgate: a Kong-compatible API gateway whose configuration is
//! replicated over Raft into embedded storage on every node.
//!
//! See DESIGN.md (shared) for the picture; each module's `//!` says what
//! it owns.

pub mod admin;
pub mod blocking;
pub mod cli;
pub mod cli_admin;
pub mod cli_config;
pub mod cli_revoke;
pub mod demo;
pub mod model;
pub mod observe;
pub mod plugins;
pub mod proxy;
pub mod ratelimit;
pub mod router;
pub mod settings;
pub mod store;

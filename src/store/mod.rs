//! The replicated store: openraft types, the log store and state machine
//! on sled, snapshots, and the network between nodes.

pub mod auth;
pub mod client;
pub mod codec;
pub mod log_store;
pub mod network;
pub mod node;
pub mod server;
pub mod state_machine;
pub mod types;

#[cfg(test)]
mod conformance;
pub use node::{Store, StoreConfig};

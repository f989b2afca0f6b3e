//! The Kong-compatible Admin API (axum): handlers, Kong's error format,
//! admin tokens. It talks to the replicated store only through `Backend`.

pub mod backend;

pub use backend::{Backend, WriteError};
pub mod interim;

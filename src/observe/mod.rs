//! What operators see: the status listener (`/status`, `/status/ready`,
//! `/status/live`), metrics and access logs.

pub mod status;

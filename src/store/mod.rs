//! The replicated store: openraft types, the log store and state machine
//! on sled, snapshots, and the network between nodes.

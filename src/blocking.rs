//! CPU-heavy work on the async runtime (applying or compiling a large
//! config, parsing a large declarative file, encoding a snapshot) without
//! stalling the other tasks, Raft heartbeats first.

/// Runs `work` in place; on a multi-threaded runtime the worker first hands
/// its other tasks to another thread. Elsewhere (current-thread runtimes in
/// tests, plain threads) it simply runs `work`.
pub fn cpu_bound<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

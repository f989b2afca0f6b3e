//! CLI entry: parse the command line, set up logging, run.

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// jemalloc rather than glibc's malloc: with a million revocations loaded,
/// glibc's fragmented arenas made every proxied request cost about half as
/// much CPU again (bench/revocation); jemalloc keeps it flat.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,openraft=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = raftgate::cli::Cli::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // openraft's futures are deep; debug builds overflow tokio's 2 MiB default.
        .thread_stack_size(16 * 1024 * 1024)
        .build()?
        .block_on(raftgate::cli::run(cli))
}

#!/usr/bin/env bash
# Admin write throughput and failover time on a 3-node loopback cluster.
set -euo pipefail
cd "$(dirname "$0")/../.."
target="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --bin raftgate --example bench-cluster
RAFTGATE_BIN="$target/release/raftgate" "$target"/release/examples/bench-cluster

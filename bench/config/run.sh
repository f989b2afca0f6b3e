#!/usr/bin/env bash
# 10,000 consumers with jwt credentials + 1,000 services with routes,
# applied through one node of a 3-node cluster: time until all serve it.
set -euo pipefail
cd "$(dirname "$0")/../.."
target="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --bin raftgate --example bench-config
RAFTGATE_BIN="$target/release/raftgate" "$target"/release/examples/bench-config

#!/usr/bin/env bash
# Runs the chaos scenarios: the local backend always, the Docker backend
# when a Docker engine answers. Prints one table per backend.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$PWD/target}"

# Debug build: the tests already built it, and timing checks have slack.
cargo build --bin raftgate --example chaos
RAFTGATE_BIN="$target/debug/raftgate" "$target"/debug/examples/chaos "$@"

if [ -x chaos/docker.sh ] && docker info >/dev/null 2>&1; then
  bash chaos/docker.sh
else
  echo "chaos (docker): skipped, no Docker engine or no docker scenarios"
fi

#!/usr/bin/env bash
# Builds the statically linked raftgate binary the Docker image copies.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS='-C target-feature=+crt-static' \
  cargo build --release --bin raftgate --target x86_64-unknown-linux-gnu

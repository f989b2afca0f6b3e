#!/usr/bin/env bash
# Builds the statically linked raftgate binary the Docker image copies.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS='-C target-feature=+crt-static' \
  cargo build --release --bin raftgate --target x86_64-unknown-linux-gnu
# The image copies the binary from ./target; bring it there when cargo
# built elsewhere (CARGO_TARGET_DIR).
built="${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release/raftgate"
if [ "$built" != "target/x86_64-unknown-linux-gnu/release/raftgate" ]; then
  mkdir -p target/x86_64-unknown-linux-gnu/release
  cp "$built" target/x86_64-unknown-linux-gnu/release/raftgate
fi

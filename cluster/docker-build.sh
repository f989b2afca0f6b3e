#!/usr/bin/env bash
# Builds the statically linked binaries the Docker images copy: raftgate,
# plus any example named (`--example NAME`; the chaos suite asks for its
# fault proxy).
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS='-C target-feature=+crt-static' \
  cargo build --release --bin raftgate "$@" --target x86_64-unknown-linux-gnu
# The images copy the binaries from ./target; bring them there when cargo
# built elsewhere (CARGO_TARGET_DIR).
out=target/x86_64-unknown-linux-gnu/release
built="${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release"
files=(raftgate)
while [ $# -gt 0 ]; do
  if [ "$1" = --example ] && [ $# -gt 1 ]; then files+=("examples/$2"); fi
  shift
done
if [ "$built" != "$out" ]; then
  for f in "${files[@]}"; do
    mkdir -p "$(dirname "$out/$f")"
    cp "$built/$f" "$out/$f"
  done
fi

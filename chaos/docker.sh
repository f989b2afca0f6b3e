#!/usr/bin/env bash
# The chaos scenarios against the Docker Compose cluster (project
# raftgate-chaos): builds the static binary and the FROM-scratch image,
# then runs the scenarios through ports published on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$PWD/target}"

if ! command -v iptables >/dev/null || ! command -v nsenter >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables util-linux >/dev/null
fi
bash cluster/docker-build.sh
bash cluster/compose.sh -p raftgate-chaos build
cargo build --example chaos
"$target"/debug/examples/chaos --docker "$@"

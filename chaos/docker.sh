#!/usr/bin/env bash
# The chaos scenarios against the Docker Compose cluster (project
# raftgate-chaos: docker-compose.yml with docker-compose.chaos.yml, which
# puts our fault proxy on the links between nodes): builds the static
# binaries and the FROM-scratch images, then runs the scenarios through
# ports published on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$PWD/target}"

if ! command -v iptables >/dev/null || ! command -v nsenter >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables util-linux >/dev/null
fi
bash cluster/docker-build.sh --example faultproxy
bash cluster/compose.sh -p raftgate-chaos -f docker-compose.yml -f docker-compose.chaos.yml build
cargo build --example chaos
"$target"/debug/examples/chaos --docker "$@"

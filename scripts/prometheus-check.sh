#!/usr/bin/env bash
# Installs Debian's `prometheus` package when promtool is absent, then runs
# the observability tests: promtool on /metrics, a real Prometheus server
# scraping a 3-node cluster, logs free of credentials, readiness.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus
fi
cargo test --test observe -- --test-threads 1

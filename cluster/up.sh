#!/usr/bin/env bash
# Starts a three-node raftgate cluster on loopback (configs: cluster/node*.toml)
# and stops every node on Ctrl-C. Data persists in cluster/data/.
set -euo pipefail
cd "$(dirname "$0")/.."

# RAFTGATE_BIN runs another build (e.g. target/debug/raftgate) as it is.
if [ -n "${RAFTGATE_BIN:-}" ]; then
  bin="$RAFTGATE_BIN"
else
  cargo build --release --bin raftgate
  bin="${CARGO_TARGET_DIR:-target}/release/raftgate"
fi
mkdir -p cluster/data
if [ ! -f cluster/data/cluster-secret ]; then
  (umask 077; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > cluster/data/cluster-secret)
fi

pids=()
cleanup() {
  echo; echo "stopping the cluster"
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

for i in 1 2 3; do
  "$bin" serve --config "cluster/node$i.toml" > "cluster/data/node$i.log" 2>&1 &
  pids+=($!)
  echo $! > "cluster/data/node$i.pid"
done
# Demo upstreams standing in for the seed's user-service and account-service.
"$bin" demo-upstream --listen 127.0.0.1:9081 --name user-service > cluster/data/user-service.log 2>&1 &
pids+=($!)
"$bin" demo-upstream --listen 127.0.0.1:9082 --name account-service > cluster/data/account-service.log 2>&1 &
pids+=($!)

for port in 8100 8110 8120; do
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/status/ready" >/dev/null && break
    sleep 0.1
  done
done

# The example config (the seed's kong.yaml with tiers and JWT); its service
# hosts are Compose names, pointed at the local demo upstreams here.
"$bin" config apply cluster/demo/kong.yaml --admin http://127.0.0.1:8001
for svc in user-service:9081 account-service:9082; do
  curl -sf -o /dev/null -X PATCH "http://127.0.0.1:8001/services/${svc%%:*}" \
    --data "url=http://127.0.0.1:${svc##*:}"
done

cat <<'MSG'
raftgate: three nodes are up (logs in cluster/data/node*.log)

  node  proxy            admin            status
  1     127.0.0.1:8000   127.0.0.1:8001   127.0.0.1:8100
  2     127.0.0.1:8010   127.0.0.1:8011   127.0.0.1:8110
  3     127.0.0.1:8020   127.0.0.1:8021   127.0.0.1:8120

  curl -s localhost:8001/cluster            # members, leader, term, lag
  curl -s localhost:8001/consumers          # the demo consumers (tiers: free, premium, internal)
  curl -s -XPOST localhost:8011/services -H 'content-type: application/json' \
       -d '{"name":"example","host":"example.com"}'   # write on any node

Ctrl-C stops every node.
MSG
wait

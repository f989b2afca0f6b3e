#!/usr/bin/env bash
# Proxy throughput and latency, side by side, on loopback only:
#   1. the upstream directly            (nginx answering a small static body)
#   2. nginx as a reverse proxy         (upstream keepalive pool)
#   3. raftgate with one route, no plugins
# Prints requests/s, p50 and p99 latency for each, raftgate's ratios to
# nginx, and each proxy's resident memory idle and under load.
#
# Pinning: the load generator (wrk), the upstream and the proxy under test
# run on separate cores when there are enough (taskset). With 2 cores the
# load generator gets core 0 and the proxy and the upstream share core 1;
# with 4 or more: wrk on 0, upstream on 1, proxy on 2 (override with
# LOAD_CPUS, UPSTREAM_CPUS, PROXY_CPUS). The proxy gets as many workers as
# it has cores (nginx worker_processes, TOKIO_WORKER_THREADS).
#
# Usage: bench/proxy/run.sh            (DURATION=10 CONNECTIONS=64 by default)
set -euo pipefail

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
UPSTREAM_PORT=${UPSTREAM_PORT:-18080}
NGINX_PROXY_PORT=${NGINX_PROXY_PORT:-18081}
RAFTGATE_PORT=${RAFTGATE_PORT:-18000}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/raftgate-bench.XXXXXX)
PIDS=()

cleanup() {
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

need() {
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "installing $2" >&2
        if [ "$(id -u)" = 0 ]; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
        else
            sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
        fi
    fi
}
need wrk wrk
need nginx nginx
need taskset util-linux

CPUS=$(nproc)
if [ "$CPUS" -ge 4 ]; then
    LOAD_CPUS=${LOAD_CPUS:-0}; UPSTREAM_CPUS=${UPSTREAM_CPUS:-1}; PROXY_CPUS=${PROXY_CPUS:-2}
elif [ "$CPUS" -ge 2 ]; then
    LOAD_CPUS=${LOAD_CPUS:-0}; UPSTREAM_CPUS=${UPSTREAM_CPUS:-1}; PROXY_CPUS=${PROXY_CPUS:-1}
else
    LOAD_CPUS=${LOAD_CPUS:-0}; UPSTREAM_CPUS=${UPSTREAM_CPUS:-0}; PROXY_CPUS=${PROXY_CPUS:-0}
fi
# Workers for the proxy under test: one per core it is pinned to.
PROXY_WORKERS=$(taskset -c "$PROXY_CPUS" nproc)

nginx_conf() { # name, body of the http block
    mkdir -p "$WORK/$1"
    cat >"$WORK/$1/nginx.conf" <<CONF
worker_processes $3;
pid $WORK/$1/nginx.pid;
error_log $WORK/$1/error.log warn;
daemon off;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $WORK/$1/body;
    proxy_temp_path $WORK/$1/proxy;
    fastcgi_temp_path $WORK/$1/fastcgi;
    uwsgi_temp_path $WORK/$1/uwsgi;
    scgi_temp_path $WORK/$1/scgi;
    keepalive_requests 1000000;
    $2
}
CONF
}

nginx_conf upstream "
    server {
        listen 127.0.0.1:$UPSTREAM_PORT reuseport;
        location / { default_type text/plain; return 200 'hello from the upstream\n'; }
    }" 1
nginx_conf nginx-proxy "
    upstream backend { server 127.0.0.1:$UPSTREAM_PORT; keepalive 256; }
    server {
        listen 127.0.0.1:$NGINX_PROXY_PORT reuseport;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }" "$PROXY_WORKERS"

start_pinned() { # cpus, command...
    local cpus=$1; shift
    taskset -c "$cpus" "$@" &
    PIDS+=($!)
}

wait_port() {
    for _ in $(seq 100); do
        (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listening on 127.0.0.1:$1" >&2
    return 1
}

rss_kib() { # pid → resident KiB of it and its children
    local total=0
    for p in $1 $(pgrep -P "$1" || true); do
        total=$((total + $(awk '/VmRSS/ {print $2}' /proc/"$p"/status 2>/dev/null || echo 0)))
    done
    echo "$total"
}

start_pinned "$UPSTREAM_CPUS" nginx -c "$WORK/upstream/nginx.conf"
wait_port "$UPSTREAM_PORT"
start_pinned "$PROXY_CPUS" nginx -c "$WORK/nginx-proxy/nginx.conf"
NGINX_PID=$!
wait_port "$NGINX_PROXY_PORT"

# --- raftgate -------------------------------------------------------------
# TODO(lead): start one raftgate node with one route `/` → service
# 127.0.0.1:$UPSTREAM_PORT and no plugins, listening on
# 127.0.0.1:$RAFTGATE_PORT, pinned with `start_pinned "$PROXY_CPUS" …` and
# TOKIO_WORKER_THREADS=$PROXY_WORKERS; set RAFTGATE_PID. Until the CLI is
# ready, the `proxy_one_route` example (the proxy alone, state built in
# memory) stands in for it; RAFTGATE_CMD overrides the command.
RAFTGATE_PID=""
if [ -z "${RAFTGATE_CMD:-}" ]; then
    (cd "$ROOT" && cargo build --release --quiet --example proxy_one_route)
    TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
    RAFTGATE_CMD="exec $TARGET_DIR/release/examples/proxy_one_route 127.0.0.1:$RAFTGATE_PORT 127.0.0.1:$UPSTREAM_PORT"
fi
if [ -n "${RAFTGATE_CMD:-}" ]; then
    TOKIO_WORKER_THREADS=$PROXY_WORKERS start_pinned "$PROXY_CPUS" bash -c "$RAFTGATE_CMD"
    RAFTGATE_PID=$!
    wait_port "$RAFTGATE_PORT"
fi

# --- load -------------------------------------------------------------------
declare -A RPS P50 P99 RSS_IDLE RSS_LOAD

to_ms() { # wrk latency ("812.00us", "1.20ms", "2.01s") → ms
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); print v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); print v + 0 }
        else if (v ~ /s$/) { sub(/s$/, "", v); print v * 1000 }
        else print v }'
}

run_load() { # name, port, pid-to-measure (optional)
    local name=$1 port=$2 pid=${3:-}
    [ -n "$pid" ] && RSS_IDLE[$name]=$(rss_kib "$pid")
    # Warm-up (pools, caches), then the measured run.
    taskset -c "$LOAD_CPUS" wrk -t"$THREADS" -c"$CONNECTIONS" -d2s "http://127.0.0.1:$port/" >/dev/null
    local out="$WORK/$name.wrk"
    taskset -c "$LOAD_CPUS" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency \
        "http://127.0.0.1:$port/" >"$out" &
    local wrk_pid=$!
    if [ -n "$pid" ]; then
        sleep $((DURATION / 2))
        RSS_LOAD[$name]=$(rss_kib "$pid")
    fi
    wait "$wrk_pid"
    if grep -q "Non-2xx" "$out"; then
        echo "WARNING: $name answered non-2xx responses:" >&2
        grep "Non-2xx" "$out" >&2
    fi
    RPS[$name]=$(awk '/Requests\/sec/ {print $2}' "$out")
    P50[$name]=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
    P99[$name]=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
}

echo "cores: load=$LOAD_CPUS upstream=$UPSTREAM_CPUS proxy=$PROXY_CPUS (workers $PROXY_WORKERS); wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s"
run_load upstream "$UPSTREAM_PORT"
run_load nginx "$NGINX_PROXY_PORT" "$NGINX_PID"
names=(upstream nginx)
if [ -n "$RAFTGATE_PID" ]; then
    run_load raftgate "$RAFTGATE_PORT" "$RAFTGATE_PID"
    names+=(raftgate)
else
    echo "raftgate: skipped (no RAFTGATE_CMD; see the TODO in this script)"
fi

printf '\n%-10s %12s %10s %10s %12s %12s\n' target req/s p50_ms p99_ms rss_idle_KiB rss_load_KiB
for n in "${names[@]}"; do
    printf '%-10s %12s %10s %10s %12s %12s\n' "$n" "${RPS[$n]}" "${P50[$n]}" "${P99[$n]}" \
        "${RSS_IDLE[$n]:--}" "${RSS_LOAD[$n]:--}"
done
if [ -n "$RAFTGATE_PID" ]; then
    awk -v r="${RPS[raftgate]}" -v n="${RPS[nginx]}" -v rp="${P99[raftgate]}" -v np="${P99[nginx]}" \
        'BEGIN { printf "\nraftgate/nginx: throughput %.2fx (goal >= 1.0), p99 %.2fx (goal <= 1.0)\n", r / n, rp / np }'
fi

#!/usr/bin/env bash
# System calls per proxied request, nginx as the proxy beside raftgate:
# counted by `perf stat` on the kernel's syscall tracepoints while wrk
# runs, so the figure does not depend on how busy the machine is.
#
# Starts an nginx upstream (a small static body), nginx as the reverse
# proxy (one worker in one process, keepalive pool, as in run.sh) and the
# raftgate binary (one worker); for each proxy, a warm-up, then a wrk run
# with perf attached to the proxy's process only.
#
# Usage: bench/proxy/syscalls.sh PROXY_BIN   (a proxy_one_route build;
#        SECONDS_LOAD=4 CONNECTIONS=64)
set -euo pipefail
BIN=${1:?usage: bench/proxy/syscalls.sh PROXY_BIN}
SECONDS_LOAD=${SECONDS_LOAD:-4}
CONNECTIONS=${CONNECTIONS:-64}
UPSTREAM_PORT=${UPSTREAM_PORT:-18280}
NGINX_PORT=${NGINX_PORT:-18281}
PROXY_PORT=${PROXY_PORT:-18200}
WORK=$(mktemp -d /tmp/raftgate-syscalls.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

. "$(dirname "$0")/lib.sh"
command -v perf >/dev/null || {
    echo "installing linux-perf" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null
}

nginx_conf "$WORK/up" 1 off "server {
        listen 127.0.0.1:$UPSTREAM_PORT;
        location / { default_type text/plain; return 200 'hello from the upstream\n'; }
    }"
nginx_conf "$WORK/proxy" 1 off "upstream backend { server 127.0.0.1:$UPSTREAM_PORT; keepalive 256; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; }
    }"

nginx -c "$WORK/up/nginx.conf" &
PIDS+=($!)
nginx -c "$WORK/proxy/nginx.conf" &
PIDS+=($!)
NGINX_PID=$!
PROXY_WORKERS=1 "$BIN" "127.0.0.1:$PROXY_PORT" "127.0.0.1:$UPSTREAM_PORT" &
PIDS+=($!)
RAFTGATE_PID=$!
wait_port "$UPSTREAM_PORT"
wait_port "$NGINX_PORT"
wait_port "$PROXY_PORT" 300

events=raw_syscalls:sys_enter
for call in recvfrom read sendto write writev getsockopt epoll_wait; do
    events+=",syscalls:sys_enter_$call"
done
for name in nginx raftgate; do
    if [ "$name" = nginx ]; then port=$NGINX_PORT pid=$NGINX_PID; else port=$PROXY_PORT pid=$RAFTGATE_PID; fi
    wrk -t1 -c"$CONNECTIONS" -d2s "http://127.0.0.1:$port/" >/dev/null
    perf stat -x, -e "$events" -p "$pid" -o "$WORK/$name.perf" &
    perf_pid=$!
    sleep 0.3
    wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_LOAD}s" "http://127.0.0.1:$port/" >"$WORK/$name.wrk"
    sleep 0.3
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
    requests=$(awk '/requests in/ {print $1}' "$WORK/$name.wrk")
    awk -F, -v n="$requests" -v who="$name" '
        $3 ~ /sys_enter/ && $1 ~ /^[0-9]+$/ && $1 > 0 {
            call = $3; sub(/.*sys_enter_?/, "", call); if (call == "") call = "all"
            line = line sprintf(" %s %.2f", call, $1 / n)
        }
        END { printf "%s: %d requests, system calls per request:%s\n", who, n, line }' "$WORK/$name.perf"
done

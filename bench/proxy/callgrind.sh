#!/usr/bin/env bash
# Instructions and heap allocations per proxied request, under callgrind:
# repeatable on a loaded machine (instruction counts do not depend on what
# else runs), so good for comparing two builds of the proxy.
#
# Starts an nginx upstream (a small static body), the proxy binary under
# callgrind with instrumentation off, warms it up, collects over a fixed wrk
# run, and prints Ir per request and malloc/calloc/realloc calls per
# request (startup and warm-up excluded).
#
# Usage: bench/proxy/callgrind.sh PROXY_BIN [PROXY_BIN …]
#        (each a proxy_one_route build; SECONDS_LOAD=10 CONNECTIONS=8)
#        PROXY_BIN may be the word `nginx`: nginx as the reverse proxy, one
#        worker in a single process, keepalive pool, as in run.sh: the same
#        count for the proxy the goal is set against. Like the rest, it
#        counts user-space instructions only, not the kernel's work.
set -euo pipefail
SECONDS_LOAD=${SECONDS_LOAD:-10}
CONNECTIONS=${CONNECTIONS:-8}
UPSTREAM_PORT=${UPSTREAM_PORT:-18180}
PROXY_PORT=${PROXY_PORT:-18100}
WORK=$(mktemp -d /tmp/raftgate-callgrind.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
    [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

. "$(dirname "$0")/lib.sh"

nginx_conf "$WORK/up" 1 on "
    server {
        listen 127.0.0.1:$UPSTREAM_PORT;
        location / { default_type text/plain; return 200 'hello from the upstream\n'; }
    }"
nginx -c "$WORK/up/nginx.conf" &
PIDS+=($!)
wait_port "$UPSTREAM_PORT" 300

nginx_conf "$WORK/nginx" 1 off "
    upstream backend { server 127.0.0.1:$UPSTREAM_PORT; keepalive 256; }
    server {
        listen 127.0.0.1:$PROXY_PORT;
        location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; }
    }"

for bin in "$@"; do
    out="$WORK/callgrind.out"
    if [ "$bin" = nginx ]; then
        command=(nginx -c "$WORK/nginx/nginx.conf")
    else
        command=("$bin" "127.0.0.1:$PROXY_PORT" "127.0.0.1:$UPSTREAM_PORT")
    fi
    PROXY_WORKERS=1 valgrind --tool=callgrind --instr-atstart=no \
        --callgrind-out-file="$out" "${command[@]}" 2>"$WORK/valgrind.log" &
    vg=$!
    wait_port "$PROXY_PORT" 300
    wrk -t1 -c"$CONNECTIONS" -d3s "http://127.0.0.1:$PROXY_PORT/" >/dev/null
    callgrind_control -i on "$vg" >/dev/null
    wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_LOAD}s" "http://127.0.0.1:$PROXY_PORT/" >"$WORK/wrk.out"
    callgrind_control -i off "$vg" >/dev/null
    kill -INT "$vg"
    wait "$vg" || true
    requests=$(awk '/requests in/ {print $1}' "$WORK/wrk.out")
    python3 - "$out" "$requests" "$bin" <<'PY'
import re, sys
path, requests, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
names, total, allocs, cur = {}, 0, 0, None
for line in open(path, errors="replace"):
    if line.startswith("summary:") or line.startswith("totals:"):
        total = int(line.split()[1])
    m = re.match(r"(c?)fn=\((\d+)\)(?: (.*))?", line)
    if m:
        if m.group(3):
            names[m.group(2)] = m.group(3).strip()
        if m.group(1):
            cur = names.get(m.group(2), "")
        continue
    if line.startswith("calls=") and cur is not None:
        # glibc's entry points, and jemalloc's (the node's allocator).
        if cur in ("malloc", "calloc", "realloc", "_rjem_malloc", "_rjem_mallocx",
                   "_rjem_calloc", "_rjem_realloc", "_rjem_rallocx"):
            allocs += int(line[6:].split()[0])
        cur = None
print(f"{name}: {requests} requests, {total / requests:,.0f} Ir/request, {allocs / requests:.1f} allocations/request")
PY
done

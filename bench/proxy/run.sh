#!/usr/bin/env bash
# Proxy throughput, latency and CPU cost, side by side, on loopback only:
#   direct    the upstream alone        (nginx answering a small static body)
#   nginx     nginx as a reverse proxy  (upstream keepalive pool)
#   raftgate  one route, no plugins     (the proxy_one_route example)
#   nginx-kh  nginx doing the header work Kong (and raftgate) does on every
#             request: X-Forwarded-For/-Proto/-Host/-Port/-Path, X-Real-IP
#             upstream; Via and the X-Kong latency headers downstream. For
#             information: the goal is judged against plain `nginx`.
# Each measured run is repeated ROUNDS times, interleaved (nginx, raftgate,
# direct, nginx-kh; then raftgate, nginx, nginx-kh, direct; and again), and
# the median round is reported, so that a noisy neighbour on a shared
# machine hits all alike. raftgate's ratios to nginx are given twice: of
# the medians, and round by round (each round's pair of runs, seconds
# apart), their median and spread.
#
# Per target: requests/s, p50 and p99 latency (wrk), CPU per request (user
# and system microseconds of the server under test, from /proc, over the
# measured run), resident memory idle and under load; then raftgate's
# ratios to nginx, and the load average before and after.
#
# Pinning: wrk gets core 0; the upstream and the proxy under test share
# core 1 (2 cores). With 4 or more: wrk on 0, upstream on 1, proxy on 2.
# Override with LOAD_CPUS, UPSTREAM_CPUS, PROXY_CPUS. One worker each:
# nginx worker_processes 1, raftgate's proxy workers 1 (PROXY_WORKERS).
# Both proxies keep upstream connections alive and take up to a million
# requests on one client connection (nginx keepalive_requests).
#
# Usage: bench/proxy/run.sh   (DURATION=10 CONNECTIONS=64 ROUNDS=3)
#        RAFTGATE_BIN=path/to/proxy_one_route  uses a prebuilt binary.
set -euo pipefail

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
UPSTREAM_PORT=${UPSTREAM_PORT:-18080}
NGINX_PROXY_PORT=${NGINX_PROXY_PORT:-18081}
NGINX_KH_PORT=${NGINX_KH_PORT:-18082}
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
PROXY_WORKERS=${PROXY_WORKERS:-1}
CLK_TCK=$(getconf CLK_TCK)

. "$ROOT/bench/proxy/lib.sh"

nginx_conf "$WORK/upstream" 1 on "
    server {
        listen 127.0.0.1:$UPSTREAM_PORT reuseport;
        location / { default_type text/plain; return 200 'hello from the upstream\n'; }
    }"
nginx_conf "$WORK/nginx-proxy" "$PROXY_WORKERS" on "
    upstream backend { server 127.0.0.1:$UPSTREAM_PORT; keepalive 256; }
    server {
        listen 127.0.0.1:$NGINX_PROXY_PORT reuseport;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }"

nginx_conf "$WORK/nginx-kh" "$PROXY_WORKERS" on "
    upstream backend { server 127.0.0.1:$UPSTREAM_PORT; keepalive 256; }
    server {
        listen 127.0.0.1:$NGINX_KH_PORT reuseport;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Real-IP \$remote_addr;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
            proxy_set_header X-Forwarded-Port \$server_port;
            proxy_set_header X-Forwarded-Path \$uri;
            add_header Via \"1.1 kong/3.9.0\";
            add_header X-Kong-Upstream-Latency \$upstream_response_time;
            add_header X-Kong-Proxy-Latency 0;
        }
    }"

start_pinned() { # cpus, command...
    local cpus=$1; shift
    taskset -c "$cpus" "$@" &
    PIDS+=($!)
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
start_pinned "$PROXY_CPUS" nginx -c "$WORK/nginx-kh/nginx.conf"
NGINX_KH_PID=$!
wait_port "$NGINX_KH_PORT"

# --- raftgate -------------------------------------------------------------
if [ -z "${RAFTGATE_CMD:-}" ]; then
    if [ -z "${RAFTGATE_BIN:-}" ]; then
        (cd "$ROOT" && cargo build --release --quiet --example proxy_one_route)
        RAFTGATE_BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/proxy_one_route
    fi
    RAFTGATE_CMD="exec $RAFTGATE_BIN 127.0.0.1:$RAFTGATE_PORT 127.0.0.1:$UPSTREAM_PORT"
fi
PROXY_WORKERS=$PROXY_WORKERS start_pinned "$PROXY_CPUS" bash -c "$RAFTGATE_CMD"
RAFTGATE_PID=$!
wait_port "$RAFTGATE_PORT"
UPSTREAM_PID=$(cat "$WORK/upstream/nginx.pid")

# --- load -------------------------------------------------------------------
declare -A PORT=([direct]=$UPSTREAM_PORT [nginx]=$NGINX_PROXY_PORT [raftgate]=$RAFTGATE_PORT [nginx-kh]=$NGINX_KH_PORT)
declare -A SERVER=([direct]=$UPSTREAM_PID [nginx]=$NGINX_PID [raftgate]=$RAFTGATE_PID [nginx-kh]=$NGINX_KH_PID)
declare -A RSS_IDLE RSS_LOAD
declare -A ROWS # name → lines "rps p50 p99 user_us sys_us", one per round

to_ms() { # wrk latency ("812.00us", "1.20ms", "2.01s") → ms
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); print v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); print v + 0 }
        else if (v ~ /s$/) { sub(/s$/, "", v); print v * 1000 }
        else print v }'
}

cpu_ticks() { # pid → "user system" clock ticks of it and its children
    local u=0 s=0
    for p in $1 $(pgrep -P "$1" || true); do
        read -r pu ps < <(awk '{ sub(/^.*\) /, ""); print $12, $13 }' /proc/"$p"/stat 2>/dev/null || echo "0 0")
        u=$((u + pu)); s=$((s + ps))
    done
    echo "$u $s"
}

run_load() { # name
    local name=$1 port=${PORT[$1]} pid=${SERVER[$1]}
    [ -z "${RSS_IDLE[$name]:-}" ] && RSS_IDLE[$name]=$(rss_kib "$pid")
    # Warm-up (pools, caches), then the measured run.
    taskset -c "$LOAD_CPUS" wrk -t"$THREADS" -c"$CONNECTIONS" -d2s "http://127.0.0.1:$port/" >/dev/null
    local out="$WORK/$name.wrk"
    read -r u0 s0 < <(cpu_ticks "$pid")
    taskset -c "$LOAD_CPUS" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency \
        "http://127.0.0.1:$port/" >"$out" &
    local wrk_pid=$!
    sleep $((DURATION / 2))
    local rss
    rss=$(rss_kib "$pid")
    [ "$rss" -gt "${RSS_LOAD[$name]:-0}" ] && RSS_LOAD[$name]=$rss
    wait "$wrk_pid"
    read -r u1 s1 < <(cpu_ticks "$pid")
    if grep -q "Non-2xx\|Socket errors" "$out"; then
        echo "WARNING: $name:" >&2
        grep "Non-2xx\|Socket errors" "$out" >&2
    fi
    local requests rps p50 p99
    requests=$(awk '/requests in/ {print $1}' "$out")
    rps=$(awk '/Requests\/sec/ {print $2}' "$out")
    p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
    ROWS[$name]+="$(awk -v r="$rps" -v a="$p50" -v b="$p99" -v n="$requests" -v t="$CLK_TCK" \
        -v u=$((u1 - u0)) -v s=$((s1 - s0)) \
        'BEGIN { printf "%s %s %s %.1f %.1f", r, a, b, u * 1e6 / t / n, s * 1e6 / t / n }')
"
    echo "  round $round $name: $(echo "${ROWS[$name]}" | tail -n 2 | head -n 1)"
}

median() { # column number; reads rows on stdin
    sort -g -k"$1" | awk -v c="$1" '{ v[NR] = $c } END { print v[int((NR + 1) / 2)] }'
}

echo "cores: load=$LOAD_CPUS upstream=$UPSTREAM_CPUS proxy=$PROXY_CPUS (workers $PROXY_WORKERS); wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s; $ROUNDS rounds"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq "$ROUNDS"); do
    # Each proxy goes first in every other round, so that a drift within
    # a round (a neighbour starting, the host warming) favours neither.
    if [ $((round % 2)) = 1 ]; then
        names=(nginx raftgate direct nginx-kh)
    else
        names=(raftgate nginx nginx-kh direct)
    fi
    for n in "${names[@]}"; do
        run_load "$n"
    done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

declare -A M
printf '\nmedians of %s rounds (CPU: the server under test only; direct = the upstream)\n' "$ROUNDS"
printf '%-10s %10s %8s %8s %9s %9s %9s %12s %12s\n' target req/s p50_ms p99_ms user_us sys_us cpu_us rss_idle_KiB rss_load_KiB
for n in direct nginx raftgate nginx-kh; do
    for c in 1 2 3 4 5; do
        M[$n,$c]=$(printf '%s' "${ROWS[$n]}" | grep . | median "$c")
    done
    printf '%-10s %10s %8s %8s %9s %9s %9s %12s %12s\n' "$n" "${M[$n,1]}" "${M[$n,2]}" "${M[$n,3]}" \
        "${M[$n,4]}" "${M[$n,5]}" "$(awk -v a="${M[$n,4]}" -v b="${M[$n,5]}" 'BEGIN { print a + b }')" \
        "${RSS_IDLE[$n]:--}" "${RSS_LOAD[$n]:--}"
done
awk -v r="${M[raftgate,1]}" -v n="${M[nginx,1]}" -v rp="${M[raftgate,3]}" -v np="${M[nginx,3]}" \
    -v rc="$(awk -v a="${M[raftgate,4]}" -v b="${M[raftgate,5]}" 'BEGIN { print a + b }')" \
    -v nc="$(awk -v a="${M[nginx,4]}" -v b="${M[nginx,5]}" 'BEGIN { print a + b }')" \
    'BEGIN { printf "\nraftgate/nginx: throughput %.2fx (goal >= 1.0), p99 %.2fx (goal <= 1.0), CPU per request %.2fx\n", r / n, rp / np, rc / nc }'
awk -v r="${M[raftgate,1]}" -v n="${M[nginx-kh,1]}" -v rp="${M[raftgate,3]}" -v np="${M[nginx-kh,3]}" \
    'BEGIN { printf "raftgate/nginx-kh (same header work, for information): throughput %.2fx, p99 %.2fx\n", r / n, rp / np }'
# The same ratios round by round: each round's two runs were taken
# seconds apart, so their ratio is steadier than the ratio of medians
# when the host's speed drifts over the run.
paste <(printf '%s' "${ROWS[raftgate]}" | grep .) <(printf '%s' "${ROWS[nginx]}" | grep .) | awk '
    { t[NR] = $1 / $6; p[NR] = $3 / $8; ahead += ($1 >= $6); below += ($3 <= $8) }
    function med(a, n,   i, j, x) {
        for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    END {
        mt = med(t, NR); mp = med(p, NR) # sorts t and p
        printf "raftgate/nginx round by round: throughput median %.2fx (%.2f-%.2f, ahead in %d of %d), ", mt, t[1], t[NR], ahead, NR
        printf "p99 median %.2fx (%.2f-%.2f, at or below in %d of %d)\n", mp, p[1], p[NR], below, NR
    }'
echo "load average: before $LOAD_BEFORE, after $LOAD_AFTER ($(nproc) cores)"

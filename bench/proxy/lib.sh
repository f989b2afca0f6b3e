# Helpers shared by bench/proxy/run.sh and bench/proxy/callgrind.sh.

# wait_port PORT [TRIES]: waits (0.1 s per try, 100 tries by default) until
# something listens on 127.0.0.1:PORT.
wait_port() {
    for _ in $(seq "${2:-100}"); do
        (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listening on 127.0.0.1:$1" >&2
    return 1
}

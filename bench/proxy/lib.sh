# Helpers shared by the scripts in bench/proxy (run.sh, callgrind.sh, syscalls.sh).

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

# nginx_conf DIR WORKERS MASTER HTTP: writes DIR/nginx.conf for an nginx in
# the foreground with WORKERS worker processes, its master process on or
# off (MASTER), no access log, its pid, error log and temporary files in
# DIR, up to a million requests per client connection, and HTTP inside
# its http block.
nginx_conf() {
    mkdir -p "$1"
    cat >"$1/nginx.conf" <<CONF
worker_processes $2;
master_process $3;
pid $1/nginx.pid;
error_log $1/error.log warn;
daemon off;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $1/body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
    keepalive_requests 1000000;
    $4
}
CONF
}

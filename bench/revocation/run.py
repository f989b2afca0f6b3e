#!/usr/bin/env python3
"""Revocation benchmarks on a three-node loopback cluster (issue 5).

(a) throughput: wrk on node 1's proxy, no plugin vs jwt HS256 vs jwt RS256,
    the jwt runs as ratios to the no-plugin run; interleaved rounds, the
    median of each. First with 0 revocations, then with --big (1,000,000)
    loaded through the batch form of POST /jwt-revocations (one Raft entry
    per --batch). Also each node's resident memory (VmRSS) before and
    after loading them: bytes per entry, and per 1,000,000 entries.
(b) propagation: --n revocations by jti POSTed to node 3; for each, the
    time from the POST's answer until the proxies of nodes 1, 2 and 3 all
    answer 401 "Token revoked" for a token they accepted just before;
    p50/p99/max (ms). Probes go to one node after the other on kept-alive
    connections, so the figure includes up to three probe round trips
    (each well under a millisecond). Then the same with ?wait=all, where
    every node must reject the token at its first probe.

usage: python3 bench/revocation/run.py [--bin PATH] [--n 1000]
       [--big 1000000] [--batch 10000] [--duration 10] [--rounds 3]
--bin defaults to $CARGO_TARGET_DIR/release/raftgate, else
target/release/raftgate. Needs python3 with PyJWT + cryptography, and wrk.
Prints one JSON document at the end (also written to --out if given).
"""
import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

SECRET = "bench-cluster-secret-0123456789abcdef"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Node:
    def __init__(self, i, tmp):
        self.id = i
        self.proxy, self.admin, self.status, self.cluster = (free_port() for _ in range(4))
        self.dir = os.path.join(tmp, f"node{i}")
        self.log = open(os.path.join(tmp, f"node{i}.log"), "ab")
        self.proc = None


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(claims, secret):
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


_conns = {}


def request(port, method, path, body=None, headers=None, timeout=120):
    """One request on a kept-alive connection per port; (status, json|text).
    A kept-alive connection the server closed while idle is reopened once."""
    data = json.dumps(body).encode() if body is not None else None
    h = {"content-type": "application/json"} if data is not None else {}
    h.update(headers or {})
    for attempt in (1, 2):
        conn = _conns.get(port)
        reused = conn is not None
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            _conns[port] = conn
        try:
            conn.request(method, path, body=data, headers=h)
            resp = conn.getresponse()
            text = resp.read()
            break
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            _conns.pop(port, None)
            conn.close()
            if not reused or attempt == 2:
                raise
        except (http.client.HTTPException, OSError):
            _conns.pop(port, None)
            conn.close()
            raise
    try:
        return resp.status, json.loads(text) if text else None
    except ValueError:
        return resp.status, text


def must(answer, what):
    st, body = answer
    if st not in (200, 201):
        raise SystemExit(f"{what}: {st} {str(body)[:400]}")
    return body


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def cpu_ticks(pid):
    """utime + stime of a process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def wrk(port, path, headers, duration, pid):
    """(requests/s, CPU microseconds the node at `pid` spent per request).
    The second is far less sensitive than the first to whatever else the
    machine runs at the time."""
    cmd = ["wrk", "-t2", "-c32", f"-d{duration}s"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    before = cpu_ticks(pid)
    out = subprocess.run(cmd + [f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True).stdout
    ticks = cpu_ticks(pid) - before
    rps = total = None
    for line in out.splitlines():
        if "Non-2xx or 3xx responses" in line:
            raise SystemExit(f"wrk {path}: errors\n{out}")
        if line.startswith("Requests/sec:"):
            rps = float(line.split()[1])
        if "requests in" in line:
            total = int(line.split()[0])
    if rps is None or not total:
        raise SystemExit(out)
    return rps, ticks * 1e6 / os.sysconf("SC_CLK_TCK") / total


def main():
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(target, "release", "raftgate"))
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--big", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out")
    ap.add_argument("--keep", action="store_true", help="keep the nodes' data and logs")
    ap.add_argument("--preload", help="LD_PRELOAD for the nodes (e.g. an allocator to compare)")
    args = ap.parse_args()
    if not os.access(args.bin, os.X_OK):
        raise SystemExit(f"{args.bin}: not found; cargo build --release first")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not on PATH")
    import jwt as pyjwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    tmp = tempfile.mkdtemp(prefix="raftgate-bench-rev-")
    secret_file = os.path.join(tmp, "secret")
    with open(secret_file, "w") as f:
        f.write(SECRET)
    nodes = [Node(i, tmp) for i in (1, 2, 3)]
    initial = ",".join(f"{n.id}=127.0.0.1:{n.cluster}" for n in nodes)
    up_port = free_port()
    procs = [subprocess.Popen([args.bin, "demo-upstream", "--listen", f"127.0.0.1:{up_port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    results = {"machine": {"nproc": os.cpu_count(), "loadavg_start": loadavg()},
               "args": vars(args)}
    try:
        for n in nodes:
            n.proc = subprocess.Popen(
                [args.bin, "serve", "--node-id", str(n.id), "--data-dir", n.dir,
                 "--cluster-secret-file", secret_file,
                 "--proxy-listen", f"127.0.0.1:{n.proxy}", "--proxy-tls-listen", "off",
                 "--admin-listen", f"127.0.0.1:{n.admin}",
                 "--status-listen", f"127.0.0.1:{n.status}",
                 "--cluster-listen", f"127.0.0.1:{n.cluster}", "--initial-cluster", initial,
                 "--access-log", "off"],
                stdout=n.log, stderr=n.log,
                env={**os.environ, "RUST_LOG": "warn",
                     **({"LD_PRELOAD": args.preload} if args.preload else {})})
            procs.append(n.proc)
        for n in nodes:
            for _ in range(600):
                try:
                    if request(n.status, "GET", "/status/ready")[0] == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.1)
            else:
                raise SystemExit(f"node {n.id} not ready")
        a = nodes[0].admin
        must(request(a, "POST", "/services",
                     {"name": "echo", "url": f"http://127.0.0.1:{up_port}"}), "service")
        for route in ("open", "hs", "rs"):
            must(request(a, "POST", "/services/echo/routes",
                         {"name": route, "paths": [f"/{route}"]}), "route")
        must(request(a, "POST", "/routes/hs/plugins", {"name": "jwt"}), "plugin")
        must(request(a, "POST", "/routes/rs/plugins", {"name": "jwt"}), "plugin")
        must(request(a, "POST", "/consumers", {"username": "bench"}), "consumer")
        must(request(a, "POST", "/consumers/bench/jwt",
                     {"key": "bench-hs", "algorithm": "HS256", "secret": "bench-secret"}), "hs")
        priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pub = priv.public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        must(request(a, "POST", "/consumers/bench/jwt",
                     {"key": "bench-rs", "algorithm": "RS256", "rsa_public_key": pub}), "rs")
        rs_token = pyjwt.encode({"iss": "bench-rs", "jti": "rs-keep"}, priv, algorithm="RS256")
        hs_token = hs256({"iss": "bench-hs", "jti": "hs-keep"}, "bench-secret")
        # Every node proxies the three routes before anything is measured.
        for n in nodes:
            for _ in range(200):
                ok = [request(n.proxy, "GET", "/open")[0],
                      request(n.proxy, "GET", "/hs", headers={"authorization": f"Bearer {hs_token}"})[0],
                      request(n.proxy, "GET", "/rs", headers={"authorization": f"Bearer {rs_token}"})[0]]
                if ok == [200, 200, 200]:
                    break
                time.sleep(0.05)
            else:
                raise SystemExit(f"node {n.id} does not proxy: {ok}")

        def revocations():
            st, body = request(nodes[0].status, "GET", "/metrics")
            for line in (body if isinstance(body, str) else body.decode()).splitlines():
                if line.startswith("raftgate_jwt_revocations_active "):
                    return int(float(line.split()[1]))
            return None

        def throughput(label):
            pid = nodes[0].proc.pid
            runs = {"none": [], "hs256": [], "rs256": []}
            cpu = {"none": [], "hs256": [], "rs256": []}
            targets = {"none": ("/open", {}),
                       "hs256": ("/hs", {"authorization": f"Bearer {hs_token}"}),
                       "rs256": ("/rs", {"authorization": f"Bearer {rs_token}"})}
            for _ in range(args.rounds):
                for k, (path, headers) in targets.items():
                    rps, us = wrk(nodes[0].proxy, path, headers, args.duration, pid)
                    runs[k].append(rps)
                    cpu[k].append(us)
            med = {k: statistics.median(v) for k, v in runs.items()}
            cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
            tp = {
                "revocations_active": revocations(),
                "rps_runs": {k: [round(x) for x in v] for k, v in runs.items()},
                "rps_median": {k: round(v) for k, v in med.items()},
                "hs256_ratio": round(med["hs256"] / med["none"], 3),
                "rs256_ratio": round(med["rs256"] / med["none"], 3),
                "cpu_us_per_request_runs": {k: [round(x, 1) for x in v] for k, v in cpu.items()},
                "cpu_us_per_request_median": {k: round(v, 1) for k, v in cpu_med.items()},
                # Throughput a CPU-bound node would reach, relative to no plugin.
                "hs256_cpu_ratio": round(cpu_med["none"] / cpu_med["hs256"], 3),
                "rs256_cpu_ratio": round(cpu_med["none"] / cpu_med["rs256"], 3),
                "loadavg_after": loadavg(),
            }
            results[f"throughput_{label}"] = tp
            print(label, json.dumps(tp), flush=True)

        # (a) throughput with no revocation at all.
        throughput("0_revocations")

        # (b) propagation.
        def probe(n, token):
            st, body = request(n.proxy, "GET", "/hs", headers={"authorization": f"Bearer {token}"})
            if st == 401 and body == {"message": "Token revoked"}:
                return True
            if st != 200:
                raise SystemExit(f"node {n.id}: unexpected {st} {body}")
            return False

        for mode in ("plain", "wait_all"):
            lat, first_probe_all_rejected = [], 0
            path = "/jwt-revocations" + ("?wait=all" if mode == "wait_all" else "")
            for i in range(args.n):
                jti = f"{mode}-{i}"
                token = hs256({"iss": "bench-hs", "jti": jti}, "bench-secret")
                for n in nodes:
                    if probe(n, token):
                        raise SystemExit(f"{jti} rejected before its revocation")
                st, body = request(nodes[2].admin, "POST", path, {"jti": jti})
                answered = time.perf_counter()
                if st != 201 or (mode == "wait_all" and not body["wait"]["all_applied"]):
                    raise SystemExit(f"revoking {jti}: {st} {body}")
                pending, first, done_at = {n.id for n in nodes}, True, answered
                while pending:
                    for n in nodes:
                        if n.id in pending and probe(n, token):
                            pending.discard(n.id)
                            done_at = time.perf_counter()
                    if pending:
                        first = False
                first_probe_all_rejected += first
                lat.append((done_at - answered) * 1000)
            r = {"n": len(lat), "p50_ms": round(pct(lat, 50), 3), "p99_ms": round(pct(lat, 99), 3),
                 "max_ms": round(max(lat), 3),
                 "rejected_by_all_at_first_probe": first_probe_all_rejected}
            results[f"propagation_{mode}"] = r
            print(mode, json.dumps(r), flush=True)

        # Load --big revocations: half jti, half whole-token digests.
        rss_before = {n.id: rss_kb(n.proc.pid) for n in nodes}
        before_count = revocations()
        loaded, t0 = 0, time.perf_counter()
        while loaded < args.big:
            batch = []
            for k in range(loaded, min(args.big, loaded + args.batch)):
                if k % 2:
                    batch.append({"jti": f"big-{k}"})
                else:
                    batch.append({"token_sha256": hashlib.sha256(f"t{k}".encode()).hexdigest()})
            t1 = time.perf_counter()
            st, body = request(a, "POST", "/jwt-revocations", batch, timeout=600)
            if st != 201:
                raise SystemExit(f"loading revocations: {st} {str(body)[:300]}")
            loaded += len(batch)
            if loaded % (args.batch * 10) == 0:
                print(f"loaded {loaded} (last batch {time.perf_counter() - t1:.2f} s)",
                      flush=True)
        load_s = time.perf_counter() - t0
        # Every node has applied them (the last batch is applied on node 1
        # at its answer; wait for the other two).
        st, body = request(a, "POST", "/jwt-revocations?wait=all&timeout_ms=60000",
                           {"jti": "load-marker"})
        if st != 201 or not body["wait"]["all_applied"]:
            raise SystemExit(f"load marker: {st} {body}")
        time.sleep(5)
        rss_after = {n.id: rss_kb(n.proc.pid) for n in nodes}
        count = revocations()
        results["load"] = {
            "entries": loaded, "seconds": round(load_s, 1),
            "entries_per_second": round(loaded / load_s),
            "revocations_active_before_after": [before_count, count],
            "rss_kb_before": rss_before, "rss_kb_after": rss_after,
            "rss_bytes_per_entry": {i: round((rss_after[i] - rss_before[i]) * 1024 / loaded, 1)
                                    for i in rss_before},
            "rss_mib_per_million": {i: round((rss_after[i] - rss_before[i]) / 1024 * 1e6 / loaded, 1)
                                    for i in rss_before},
        }
        print("load", json.dumps(results["load"]), flush=True)

        # (a) again, with them.
        throughput(f"{count}_revocations")
        results["machine"]["loadavg_end"] = loadavg()
        doc = json.dumps(results, indent=2)
        print(doc)
        if args.out:
            with open(args.out, "w") as f:
                f.write(doc + "\n")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

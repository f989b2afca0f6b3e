#!/usr/bin/env python3
"""Revocation benchmarks on a three-node loopback cluster (issue 5).

(a) propagation: for N revocations (by jti) POSTed to node 3, the time from
    the POST's answer until the proxies of nodes 1, 2 and 3 all reject the
    token (401 "Token revoked"); p50/p99/max. Then the same with
    ?wait=all, where every node must reject it at the answer (0 ms).
(b) throughput: wrk on node 1's proxy, no plugin vs jwt HS256 vs jwt
    RS256, with 0 revocations and with --big revocations loaded by
    POST /config batches... (see --big); plus the node's RSS before and
    after loading them (memory per entry).

usage: python3 bench/revocation/run.py [--bin target/release/raftgate]
       [--n 1000] [--big 1000000] [--duration 10]
Needs: python3 with PyJWT + cryptography, wrk.
"""
import argparse
import base64
import hashlib
import hmac
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
import http.client
import uuid

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


def request(port, method, path, body=None, headers=None, conn_cache={}):
    key = port
    conn = conn_cache.get(key)
    if conn is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn_cache[key] = conn
    data = json.dumps(body).encode() if body is not None else None
    h = {"content-type": "application/json"} if data else {}
    h.update(headers or {})
    try:
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        text = resp.read()
    except (http.client.HTTPException, OSError):
        conn_cache.pop(key, None)
        conn.close()
        raise
    try:
        return resp.status, json.loads(text) if text else None
    except ValueError:
        return resp.status, text


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def wrk(port, path, headers, duration):
    cmd = ["wrk", "-t2", "-c32", f"-d{duration}s", "--latency"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run(cmd + [f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise SystemExit(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/raftgate")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--big", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=20_000)
    ap.add_argument("--duration", type=int, default=10)
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="raftgate-bench-rev-")
    secret_file = os.path.join(tmp, "secret")
    with open(secret_file, "w") as f:
        f.write(SECRET)
    nodes = [Node(i, tmp) for i in (1, 2, 3)]
    initial = ",".join(f"{n.id}=127.0.0.1:{n.cluster}" for n in nodes)
    up_port = free_port()
    procs = [subprocess.Popen([args.bin, "demo-upstream", "--listen", f"127.0.0.1:{up_port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for n in nodes:
            n.proc = subprocess.Popen(
                [args.bin, "serve", "--node-id", str(n.id), "--data-dir", n.dir,
                 "--cluster-secret-file", secret_file,
                 "--proxy-listen", f"127.0.0.1:{n.proxy}", "--proxy-tls-listen", "off",
                 "--admin-listen", f"127.0.0.1:{n.admin}", "--status-listen", f"127.0.0.1:{n.status}",
                 "--cluster-listen", f"127.0.0.1:{n.cluster}", "--initial-cluster", initial],
                stdout=n.log, stderr=n.log, env={**os.environ, "RUST_LOG": "warn"})
            procs.append(n.proc)
        for n in nodes:
            for _ in range(300):
                try:
                    if request(n.status, "GET", "/status/ready")[0] == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.1)
        a = nodes[0].admin
        request(a, "POST", "/services", {"name": "echo", "url": f"http://127.0.0.1:{up_port}"})
        request(a, "POST", "/services/echo/routes", {"name": "open", "paths": ["/open"]})
        request(a, "POST", "/services/echo/routes", {"name": "hs", "paths": ["/hs"]})
        request(a, "POST", "/services/echo/routes", {"name": "rs", "paths": ["/rs"]})
        request(a, "POST", "/routes/hs/plugins", {"name": "jwt"})
        request(a, "POST", "/routes/rs/plugins", {"name": "jwt"})
        request(a, "POST", "/consumers", {"username": "bench"})
        request(a, "POST", "/consumers/bench/jwt", {"key": "bench-hs", "algorithm": "HS256", "secret": "bench-secret"})
        import jwt as pyjwt
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pub = priv.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        request(a, "POST", "/consumers/bench/jwt", {"key": "bench-rs", "algorithm": "RS256", "rsa_public_key": pub})
        rs_token = pyjwt.encode({"iss": "bench-rs", "jti": "rs-keep"}, priv, algorithm="RS256")
        hs_token = hs256({"iss": "bench-hs", "jti": "hs-keep"}, "bench-secret")
        time.sleep(1)
        results = {}

        # (a) propagation
        def rejected_everywhere(token, since):
            waits = {}
            pending = {n.id for n in nodes}
            while pending:
                for n in nodes:
                    if n.id in pending:
                        st, _ = request(n.proxy, "GET", "/hs", headers={"authorization": f"Bearer {token}"})
                        if st == 401:
                            pending.discard(n.id)
                            waits[n.id] = time.perf_counter() - since
            return max(waits.values())

        for mode in ("plain", "wait_all"):
            lat = []
            path = "/jwt-revocations" + ("?wait=all" if mode == "wait_all" else "")
            for i in range(args.n):
                jti = f"{mode}-{i}"
                token = hs256({"iss": "bench-hs", "jti": jti}, "bench-secret")
                st, body = request(nodes[2].admin, "POST", path, {"jti": jti})
                answered = time.perf_counter()
                assert st == 201, (st, body)
                lat.append(rejected_everywhere(token, answered) * 1000)
            results[f"propagation_{mode}_ms"] = {
                "n": len(lat), "p50": round(pct(lat, 50), 3), "p99": round(pct(lat, 99), 3),
                "max": round(max(lat), 3)}
            print(mode, results[f"propagation_{mode}_ms"], flush=True)

        # (b) throughput, 0 revocations beyond the 2n above
        def run_tp(label):
            tp = {
                "none": wrk(nodes[0].proxy, "/open", {}, args.duration),
                "hs256": wrk(nodes[0].proxy, "/hs", {"authorization": f"Bearer {hs_token}"}, args.duration),
                "rs256": wrk(nodes[0].proxy, "/rs", {"authorization": f"Bearer {rs_token}"}, args.duration),
            }
            tp["hs256_ratio"] = round(tp["hs256"] / tp["none"], 3)
            tp["rs256_ratio"] = round(tp["rs256"] / tp["none"], 3)
            results[f"throughput_{label}"] = tp
            print(label, tp, flush=True)

        run_tp("few_revocations")
        before = rss_kb(nodes[0].proc.pid)
        # Load --big revocations (jti and token digests, half each) through
        # POST /config?... no: plain batches of declarative `apply` would
        # replace the config; use the Admin API in parallel instead.
        loaded = 0
        t0 = time.time()
        while loaded < args.big:
            entities = []
            for j in range(min(args.batch, args.big - loaded)):
                k = loaded + j
                if k % 2:
                    entities.append({"id": str(uuid.uuid4()), "jti": f"big-{k}"})
                else:
                    entities.append({"id": str(uuid.uuid4()),
                                     "token_sha256": hashlib.sha256(f"t{k}".encode()).hexdigest()})
            st, body = request(a, "POST", "/config?mode=apply",
                               {"_format_version": "3.0", "jwt_revocations": entities})
            if st >= 300:
                raise SystemExit(f"loading revocations: {st} {str(body)[:300]}")
            loaded += len(entities)
        results["load_seconds"] = round(time.time() - t0, 1)
        time.sleep(2)
        after = rss_kb(nodes[0].proc.pid)
        results["rss_kb_before_after"] = [before, after]
        results["bytes_per_entry_rss"] = round((after - before) * 1024 / max(1, args.big), 1)
        run_tp(f"{args.big}_revocations")
        print(json.dumps(results, indent=2))
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""HAProxy fail-over harness (a harness that prints figures, not a timed test).

Starts two hailo-clip daemons on 127.0.0.1 behind HAProxy (scripts/haproxy/hailo-clip.cfg),
drives classify requests through HAProxy from several clients, kills daemon b with SIGKILL
mid-load, restarts it, and reports: requests sent and failed (split into those that started
before the kill and after it), and the time until HAProxy sent traffic back to the
restarted daemon. Needs Debian's haproxy (apt-get install haproxy) and Python 3 only.

    scripts/haproxy-failover.py --binary target/release/hailo-clip [--seconds 30] [--clients 4]
"""
import argparse
import base64
import http.client
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_health(port, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def start_daemon(binary, port, model, log):
    return subprocess.Popen(
        [binary, "--model-dir", str(model), "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env={k: v for k, v in os.environ.items() if k not in ("HAILO_CLIP_MODEL_DIR", "RUST_LOG")}
        | {"HAILO_CLIP_CONFIG": str(ROOT / "config/hailo-clip.yaml")},
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", required=True)
    ap.add_argument("--model-dir", default=str(ROOT / "assets/models/clip-tiny-random"))
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--clients", type=int, default=4)
    args = ap.parse_args()
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not os.path.exists(haproxy):
        sys.exit("haproxy not found: apt-get install haproxy")

    work = pathlib.Path(tempfile.mkdtemp(prefix="hc-haproxy-"))
    ports = {"a": free_port(), "b": free_port()}
    front = free_port()
    logs = {n: open(work / f"daemon-{n}.log", "wb") for n in ports}
    daemons = {n: start_daemon(args.binary, p, args.model_dir, logs[n]) for n, p in ports.items()}
    for n, p in ports.items():
        if not wait_health(p):
            sys.exit(f"daemon {n} never became ready (log: {work}/daemon-{n}.log)")
    env = dict(os.environ, HAPROXY_BIND=f"127.0.0.1:{front}", HC_A=f"127.0.0.1:{ports['a']}", HC_B=f"127.0.0.1:{ports['b']}")
    proxy = subprocess.Popen([haproxy, "-db", "-f", str(ROOT / "scripts/haproxy/hailo-clip.cfg")], env=env,
                             stdout=open(work / "haproxy.log", "wb"), stderr=subprocess.STDOUT)
    if not wait_health(front, 30):
        sys.exit(f"haproxy never answered (log: {work}/haproxy.log)")

    image = base64.b64encode((ROOT / "assets/selftest/cat.jpg").read_bytes()).decode()
    body = json.dumps({"image": image, "prompts": ["cat", "dog", "rocket"]})
    results = []  # (start, end, status, served_by)
    lock = threading.Lock()
    stop = threading.Event()
    t0 = time.monotonic()

    def client():
        while not stop.is_set():
            start = time.monotonic() - t0
            try:
                c = http.client.HTTPConnection("127.0.0.1", front, timeout=30)
                c.request("POST", "/v1/classify", body, {"Content-Type": "application/json"})
                r = c.getresponse()
                r.read()
                status, by = r.status, r.getheader("X-Served-By", "?")
            except OSError as e:
                status, by = f"error: {e.__class__.__name__}", "?"
            with lock:
                results.append((start, time.monotonic() - t0, status, by))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(args.clients)]
    for t in threads:
        t.start()
    kill_at = args.seconds * 0.3
    restart_at = args.seconds * 0.55
    time.sleep(kill_at)
    kill_time = time.monotonic() - t0
    daemons["b"].send_signal(signal.SIGKILL)
    daemons["b"].wait()
    time.sleep(max(0.0, restart_at - (time.monotonic() - t0)))
    restart_time = time.monotonic() - t0
    daemons["b"] = start_daemon(args.binary, ports["b"], args.model_dir, logs["b"])
    wait_health(ports["b"])
    ready_time = time.monotonic() - t0
    time.sleep(max(0.0, args.seconds - (time.monotonic() - t0)))
    stop.set()
    for t in threads:
        t.join(35)

    def failed(r):
        return r[2] != 200

    before = [r for r in results if r[0] < kill_time]
    in_flight = [r for r in before if r[1] >= kill_time]
    after = [r for r in results if r[0] >= kill_time]
    back = [r for r in results if r[0] >= restart_time and r[3] == "b"]
    print(f"haproxy fail-over: {len(results)} requests from {args.clients} clients over {args.seconds:.0f} s")
    print(f"  daemon b SIGKILLed at {kill_time:.2f} s, restarted at {restart_time:.2f} s, ready at {ready_time:.2f} s")
    print(f"  requests started before the kill: {len(before)} ({len(in_flight)} in flight at the kill), failed: {sum(map(failed, before))}")
    print(f"  requests started after the kill:  {len(after)}, failed: {sum(map(failed, after))}")
    statuses = sorted({str(r[2]) for r in results if failed(r)})
    if statuses:
        print(f"  failures: {', '.join(statuses)}")
    if back:
        first = min(r[1] for r in back)
        print(f"  first answer from the restarted daemon {first - restart_time:.2f} s after the restart "
              f"({first - ready_time:.2f} s after its /health said ready)")
    else:
        print("  the restarted daemon got no traffic before the end")
    served = {n: sum(1 for r in results if r[3] == n) for n in ("a", "b")}
    print(f"  served by a: {served['a']}, by b: {served['b']}")
    proxy.terminate()
    for d in daemons.values():
        d.terminate()
        d.wait()
    proxy.wait()
    shutil.rmtree(work, ignore_errors=True)
    return 1 if sum(map(failed, after)) else 0


if __name__ == "__main__":
    sys.exit(main())

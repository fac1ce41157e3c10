#!/usr/bin/env python3
"""README's curl examples, run verbatim against a daemon serving the bundled model on
127.0.0.1:5000 (the address they name), each answer checked; the answers can then be compared
with another build's (scripts/test-aarch64.sh: the aarch64 build under qemu against x86_64).

  readme_curls.py run OUT.json          runs the examples, checks them, writes the answers
  readme_curls.py compare A.json B.json  same similarities and embeddings within --tolerance

The examples are the curl lines of README's "Try it" block and its /ping line. Prints one
line a check and ends with "N passed, M failed"; exits 1 when a check failed.
"""
import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def examples():
    """The curl command lines, in README order: "Try it", then /ping."""
    readme = (REPO / "README.md").read_text()
    try_it = readme.split("## Try it", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    lines = [line for line in try_it.splitlines() if "curl " in line]
    lines += [line for line in readme.splitlines() if re.match(r"curl -s http://127\.0\.0\.1:5000/ping\b", line)][:1]
    return lines


class Checks:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, ok, what):
        print(f"{'ok  ' if ok else 'FAIL'} {what}", flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed += 1

    def end(self):
        print(f"{self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)


def unit(v):
    return abs(sum(x * x for x in v) ** 0.5 - 1) < 1e-3


def check_answer(checks, line, out):
    """What each example must answer; returns the parsed JSON (None for /ping)."""
    if line.rstrip("; echo").endswith("/ping"):
        checks.check(out.strip() == "pong", f"/ping answers pong: {out.strip()!r}")
        return None
    try:
        body = json.loads(out)
    except ValueError:
        checks.check(False, f"JSON from {line[:60]}...: {out[:200]!r}")
        return None
    if "/health" in line:
        checks.check(body.get("status") == "ok" and body.get("model_loaded") is True,
                     f"/health: status ok, model_loaded: {out[:120]}")
    elif "/v1/classify" in line:
        got = body.get("classifications", [])
        want = 2 if '"top_k": 2' in line else 3
        ranked = [c.get("rank") for c in got] == list(range(1, want + 1))
        checks.check(len(got) == want and ranked and {c["text"] for c in got} <= {"cat", "dog", "car"},
                     f"/v1/classify: {want} ranked prompts: {[(c.get('text'), c.get('similarity')) for c in got]}")
    elif "/v1/embed/text" in line:
        e = body.get("embeddings", [])
        checks.check(len(e) == 2 and all(unit(v) for v in e), f"/v1/embed/text: 2 unit vectors of {len(e[0]) if e else 0}")
    elif "/v1/embed/image" in line:
        e = body.get("embeddings", body.get("embedding"))
        e = e if e and isinstance(e[0], list) else [e or []]
        checks.check(len(e) == 1 and unit(e[0]), f"/v1/embed/image: 1 unit vector of {len(e[0])}")
    else:
        checks.check(False, f"no check for {line}")
    return body


def run(out_path):
    checks = Checks()
    lines = examples()
    checks.check(len(lines) == 6, f"README has 6 curl examples (found {len(lines)})")
    answers = {}
    for line in lines:
        r = subprocess.run(["bash", "-c", line], cwd=REPO, capture_output=True, text=True, timeout=120)
        checks.check(r.returncode == 0, f"exit 0: {line[:90]}")
        answers[line] = check_answer(checks, line, r.stdout)
    Path(out_path).write_text(json.dumps(answers))
    checks.end()


def numbers(answer):
    """The similarities (classify) or embedding components (embed) of one answer."""
    if not answer:
        return []
    if "classifications" in answer:
        return [(c["text"], c["similarity"]) for c in answer["classifications"]]
    e = answer.get("embeddings", answer.get("embedding", []))
    flat = [x for v in e for x in v] if e and isinstance(e[0], list) else e
    return list(enumerate(flat))


def compare(a_path, b_path, tolerance):
    checks = Checks()
    a, b = json.loads(Path(a_path).read_text()), json.loads(Path(b_path).read_text())
    for line in a:
        if a[line] is None or "/health" in line:
            continue
        na, nb = numbers(a[line]), numbers(b.get(line))
        same_keys = [k for k, _ in na] == [k for k, _ in nb] and na
        diff = max((abs(x - y) for (_, x), (_, y) in zip(na, nb)), default=float("inf"))
        checks.check(bool(same_keys) and diff <= tolerance, f"max |diff| {diff:.2e} <= {tolerance:g}: {line[:80]}")
    checks.end()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("out")
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("--tolerance", type=float, default=1e-4)
    args = p.parse_args()
    if args.cmd == "run":
        run(args.out)
    else:
        compare(args.a, args.b, args.tolerance)


if __name__ == "__main__":
    main()

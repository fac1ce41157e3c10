#!/usr/bin/env python3
"""A stand-in for the Hugging Face Hub and for the Model Zoo's S3 bucket, for hailo-clip's tests
and benchmarks (nothing here reaches the internet). It answers as they do, as read in
huggingface_hub (src/huggingface_hub/hf_api.py model_info, file_download.py, utils/_http.py) and
in S3's documented behaviour:

Hub, on http://127.0.0.1:PORT (the endpoint):
  GET /api/models/ORG/NAME/revision/REV[?blobs=true]
      200 {"id", "sha": COMMIT, "siblings": [{"rfilename", "size", "blobId", "lfs": {"size",
      "sha256", "pointerSize"}}]}; REV is main, the commit, or a tag in --tags.
      A missing repo: 401 with X-Error-Code: RepoNotFound (the Hub answers a missing repo as a
      private one). A missing revision: 404 with X-Error-Code: RevisionNotFound.
  GET /ORG/NAME/resolve/REV/PATH
      a small file: 200, ETag (the git blob id), X-Repo-Commit;
      an LFS file (*.onnx, *.onnx_data, or larger than --lfs-min): 302 to the CDN on a second
      host name, http://localhost:PORT/cdn/..., with X-Repo-Commit, X-Linked-Etag (the
      sha256), X-Linked-Size; a missing file 404 X-Error-Code: EntryNotFound.
CDN, on http://localhost:PORT/cdn/ORG/NAME/PATH: the file, with Range (206 and Content-Range).
S3 bucket, on http://127.0.0.1:PORT/zoo/VERSION/ARCH/NAME.hef (files under --zoo-root):
  ETag "MD5" (or "MD5-2", a multipart upload's, with --multipart-etag), Range; a key that does not
  exist answers 403 AccessDenied (a bucket without list permission) or, with --zoo-listable, 404
  NoSuchKey, in S3's XML.

Faults, for the tests: --cut PATH=BYTES closes the connection after BYTES of the first transfer
of PATH (the CDN or bucket path's tail, e.g. visual/model.onnx); --flip PATH=OFFSET flips one
byte of PATH at OFFSET in every transfer; --rate MBPS paces file bodies like a network link. (No network is a closed port: the tests use one.) Every
request is appended to --log as a JSON line (method, path, host, headers) for assertions.
Prints "listening PORT" when ready.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".onnx", ".onnx_data", ".hef", ".bin", ".safetensors")
# A file's listing entry by (path, mtime, size): hashed once, not on every request.
INFO_CACHE: dict = {}
MD5_CACHE: dict = {}


def file_hash(h, path: str) -> str:
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class Repo:
    def __init__(self, root: str, name: str, lfs_min: int):
        self.name = name
        self.dir = os.path.join(root, name)
        self.files = {}
        for base, _, names in os.walk(self.dir):
            for n in names:
                full = os.path.join(base, n)
                rel = os.path.relpath(full, self.dir).replace(os.sep, "/")
                self.files[rel] = full
        self.lfs_min = lfs_min
        h = hashlib.sha1()
        for rel in sorted(self.files):
            h.update(rel.encode())
            h.update(self.info(rel)["blobId"].encode())
        self.commit = h.hexdigest()

    def is_lfs(self, rel: str) -> bool:
        return rel.endswith(LFS_SUFFIXES) or os.path.getsize(self.files[rel]) >= self.lfs_min

    def info(self, rel: str) -> dict:
        path = self.files[rel]
        st = os.stat(path)
        key = (path, st.st_mtime_ns, st.st_size)
        if key not in INFO_CACHE:
            INFO_CACHE[key] = self._info(rel)
        return INFO_CACHE[key]

    def _info(self, rel: str) -> dict:
        path = self.files[rel]
        size = os.path.getsize(path)
        if self.is_lfs(rel):
            sha = file_hash(hashlib.sha256(), path)
            pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {size}\n".encode()
            blob = hashlib.sha1(b"blob %d\0" % len(pointer) + pointer).hexdigest()
            return {"rfilename": rel, "size": size, "blobId": blob,
                    "lfs": {"size": size, "sha256": sha, "pointerSize": len(pointer)}}
        h = hashlib.sha1(b"blob %d\0" % size)
        blob = file_hash(h, path)
        return {"rfilename": rel, "size": size, "blobId": blob}


class State:
    def __init__(self, args):
        self.args = args
        self.cut = dict(kv.split("=", 1) for kv in args.cut)
        self.cut = {k: int(v) for k, v in self.cut.items()}
        self.flip = {k: int(v) for k, v in (kv.split("=", 1) for kv in args.flip)}
        self.lock = threading.Lock()
        self.port = 0

    def repo(self, org: str, name: str):
        full = f"{org}/{name}"
        if not os.path.isdir(os.path.join(self.args.root, full)):
            return None
        return Repo(self.args.root, full, self.args.lfs_min)

    def log(self, entry: dict):
        if self.args.log:
            with self.lock, open(self.args.log, "a") as f:
                f.write(json.dumps(entry) + "\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hub-standin"

    def log_message(self, *a):
        pass

    def handle(self):
        # A connection the stand-in cut on purpose, or a client that went away.
        try:
            super().handle()
        except OSError:
            pass

    @property
    def state(self) -> State:
        return self.server.state  # type: ignore[attr-defined]

    def reply(self, status: int, body: bytes = b"", headers: dict | None = None, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        url = urlsplit(self.path)
        path = unquote(url.path)
        host = self.headers.get("Host", "")
        self.state.log({"method": self.command, "path": path, "query": url.query, "host": host,
                        "headers": {k.lower(): v for k, v in self.headers.items()}})
        parts = path.strip("/").split("/")
        try:
            if parts[:2] == ["api", "models"] and len(parts) >= 4:
                return self.api(parts[2:])
            if parts[0] == "cdn":
                return self.cdn(parts[1:])
            if parts[0] == "zoo":
                return self.zoo("/".join(parts[1:]))
            if len(parts) >= 5 and parts[2] == "resolve":
                return self.resolve(parts)
        except (BrokenPipeError, ConnectionResetError):
            return
        self.reply(404, b'{"error":"not found"}')

    def api(self, parts):
        org, name = parts[0], parts[1]
        rev = "main"
        if len(parts) >= 4 and parts[2] == "revision":
            rev = unquote(parts[3])
        repo = self.state.repo(org, name)
        if repo is None:
            return self.reply(401, b'{"error":"Repository not found"}',
                              {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})
        if rev not in ("main", repo.commit, *self.state.args.tags):
            return self.reply(404, json.dumps({"error": f"Invalid rev id: {rev}"}).encode(),
                              {"X-Error-Code": "RevisionNotFound", "X-Error-Message": f"Invalid rev id: {rev}"})
        blobs = "blobs=true" in urlsplit(self.path).query
        siblings = []
        for rel in sorted(repo.files):
            info = repo.info(rel)
            siblings.append(info if blobs else {"rfilename": rel})
        body = {"_id": "x", "id": repo.name, "modelId": repo.name, "sha": repo.commit,
                "private": False, "siblings": siblings}
        self.reply(200, json.dumps(body).encode())

    def resolve(self, parts):
        org, name, rev = parts[0], parts[1], parts[3]
        rel = "/".join(parts[4:])
        repo = self.state.repo(org, name)
        if repo is None:
            return self.reply(401, b"", {"X-Error-Code": "RepoNotFound"})
        if rev not in ("main", repo.commit, *self.state.args.tags):
            return self.reply(404, b"", {"X-Error-Code": "RevisionNotFound"})
        if rel not in repo.files:
            return self.reply(404, b"", {"X-Error-Code": "EntryNotFound"})
        info = repo.info(rel)
        common = {"X-Repo-Commit": repo.commit}
        if "lfs" in info:
            location = f"http://localhost:{self.state.port}/cdn/{org}/{name}/{rel}"
            return self.reply(302, b"", {**common, "Location": location,
                                         "X-Linked-Etag": f'"{info["lfs"]["sha256"]}"',
                                         "X-Linked-Size": str(info["size"]),
                                         "ETag": f'"{info["blobId"]}"'})
        return self.send_file(repo.files[rel], rel, {**common, "ETag": f'"{info["blobId"]}"'})

    def cdn(self, parts):
        org, name = parts[0], parts[1]
        rel = "/".join(parts[2:])
        repo = self.state.repo(org, name)
        if repo is None or rel not in repo.files:
            return self.reply(404, b"<Error><Code>NoSuchKey</Code></Error>", content_type="application/xml")
        self.send_file(repo.files[rel], rel, {})

    def zoo(self, key):
        path = os.path.join(self.state.args.zoo_root or "/nonexistent", key)
        if not self.state.args.zoo_root or not os.path.isfile(path):
            if self.state.args.zoo_listable:
                return self.reply(404, b"<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>",
                                  content_type="application/xml")
            return self.reply(403, b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>",
                              content_type="application/xml")
        st = os.stat(path)
        cache_key = (path, st.st_mtime_ns, st.st_size)
        if cache_key not in MD5_CACHE:
            MD5_CACHE[cache_key] = file_hash(hashlib.md5(), path)
        md5 = MD5_CACHE[cache_key]
        etag = f'"{md5}-2"' if self.state.args.multipart_etag else f'"{md5}"'
        self.send_file(path, key.split("/", 2)[-1], {"ETag": etag})

    def send_file(self, path: str, rel: str, headers: dict):
        size = os.path.getsize(path)
        start, end = 0, size - 1
        status = 200
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            a, _, b = rng[6:].partition("-")
            start = int(a) if a else 0
            end = int(b) if b else size - 1
            if start >= size:
                return self.reply(416, b"", {"Content-Range": f"bytes */{size}"})
            end = min(end, size - 1)
            status = 206
            headers = {**headers, "Content-Range": f"bytes {start}-{end}/{size}"}
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command == "HEAD":
            return
        cut = None
        with self.state.lock:
            # The first transfer that reaches the cut (a 1-byte probe does not).
            key = next((k for k in self.state.cut if rel.endswith(k) and length > self.state.cut[k]), None)
            if key is not None:
                cut = self.state.cut.pop(key)
        flip = next((v for k, v in self.state.flip.items() if rel.endswith(k)), None)
        rate = self.state.args.rate * 1e6 if self.state.args.rate else None
        began = time.monotonic()
        with open(path, "rb") as f:
            f.seek(start)
            pos = start
            while pos <= end:
                chunk = f.read(min(1 << 20, end - pos + 1))
                if not chunk:
                    break
                if flip is not None and pos <= flip < pos + len(chunk):
                    b = bytearray(chunk)
                    b[flip - pos] ^= 0xFF
                    chunk = bytes(b)
                if cut is not None and pos + len(chunk) - start > cut:
                    self.wfile.write(chunk[: max(0, cut - (pos - start))])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(chunk)
                pos += len(chunk)
                if rate:
                    # A link of --rate MB/s: the bytes sent so far are due no sooner.
                    ahead = (pos - start) / rate - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)


class DualStackServer(ThreadingHTTPServer):
    daemon_threads = True
    address_family = socket.AF_INET6

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True, help="folder of ORG/NAME repositories")
    ap.add_argument("--zoo-root", help="folder of VERSION/ARCH/NAME.hef")
    ap.add_argument("--zoo-listable", action="store_true")
    ap.add_argument("--multipart-etag", action="store_true")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--lfs-min", type=int, default=10 << 20)
    ap.add_argument("--tags", nargs="*", default=[])
    ap.add_argument("--cut", action="append", default=[])
    ap.add_argument("--flip", action="append", default=[])
    ap.add_argument("--log")
    ap.add_argument("--rate", type=float, help="pace file bodies at this many MB/s (a network link)")
    args = ap.parse_args()
    try:
        server = DualStackServer(("::", args.port), Handler)
    except OSError:
        # No IPv6 here: IPv4 only (localhost then resolves to 127.0.0.1 alone, or fails over).
        DualStackServer.address_family = socket.AF_INET
        DualStackServer.server_bind = ThreadingHTTPServer.server_bind
        server = DualStackServer(("127.0.0.1", args.port), Handler)
    state = State(args)
    state.port = server.server_address[1]
    server.state = state  # type: ignore[attr-defined]
    print(f"listening {state.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

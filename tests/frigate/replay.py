#!/usr/bin/env python3
"""Frigate's llama.cpp embeddings client, replayed against hailo-clip.

    replay.py BASE_URL MODEL [--api-key KEY] [--marker MARKER]

Written from blakeblackshear/frigate frigate/genai/plugins/llama_cpp.py at commit
06ce190d94488b2cfe0714372b4f71e011884bd8 (read, not copied): what LlamaCppClient sends and
how it reads the answers.

* `_init_provider`: `base_url` with every "/v1" removed; then `_get_model_info`:
  GET {base}/v1/models (timeout 10), the entry whose `id` (or an alias) is the configured
  model, `architecture.input_modalities` for vision; then `_fetch_llama_props`:
  GET {base}/props?model=MODEL, `modalities`, `default_generation_settings.n_ctx` and
  `media_marker`.
* `embed(texts, images)`: each image through `_to_jpeg` (PIL: RGB, JPEG quality 85), base64;
  `content` is the texts as `{"prompt_string": text}`, then each image as
  `{"prompt_string": marker + "\\n", "multimodal_data": [b64]}`; POST {base}/embeddings with
  `{"model", "content"}`; the answer's items (a list, or a dict's `data`) each give
  `embedding`, averaged over its rows when it has more than one, padded with zeros (or cut)
  to 768.
* `_auth_headers`: `Authorization: Bearer KEY` when an api_key is configured.

Then checks, exiting 1 on the first failure: the embeddings equal hailo-clip's own
/v1/embed/text and /v1/embed/image for the same texts and the same JPEG bytes; padding to 768
leaves every cosine as it was; bad input gets 4xx naming the item; with --api-key, a request
without the key gets 401 on /v1/models, /props and /embeddings, as on /v1/embed/text.
--marker is the marker the daemon was configured with (llamacpp.media_marker).
Needs numpy and pillow (scripts/double-venv.sh has both).
"""

import argparse
import base64
import io
import json
import os
import sys
import urllib.error
import urllib.request

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EMBEDDING_DIM = 768  # Frigate's, in embed()
TEXTS = [
    "a person walking a dog",
    "red car in the driveway",
    "delivery van at the gate",
    "A Cat!! on the porch...",
]
IMAGES = [
    "tests/fixtures/images/chelsea.png",
    "tests/fixtures/images/chelsea.webp",
    "tests/fixtures/images/chelsea_alpha.png",
    "tests/fixtures/images/rocket.jpg",
    "tests/fixtures/previews/camera_preview_gray.jpg",
]


class Client:
    def __init__(self, base_url, key):
        self.base = base_url.rstrip("/").replace("/v1", "")
        self.key = key

    def request(self, method, path, body=None, key=True, timeout=60):
        headers = {}
        if key and self.key:
            headers["Authorization"] = "Bearer " + self.key
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode(errors="replace")


def fail(message):
    print(f"replay: FAIL: {message}")
    sys.exit(1)


def to_jpeg(raw):
    """Frigate's _to_jpeg."""
    img = Image.open(io.BytesIO(raw))
    if img.mode != "RGB":
        img = img.convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def model_info(client, model):
    status, models = client.request("GET", "/v1/models", timeout=10)
    if status != 200:
        fail(f"GET /v1/models: {status} {models}")
    entry = next((m for m in models.get("data", [])
                  if model == m.get("id") or model in m.get("aliases", [])), None)
    if entry is None:
        fail(f"model {model!r} not in /v1/models: {models}")
    modalities = (entry.get("architecture") or {}).get("input_modalities") or []
    status, props = client.request("GET", "/props?model=" + urllib.request.quote(model), timeout=10)
    if status != 200:
        fail(f"GET /props: {status} {props}")
    marker = props.get("media_marker")
    if not (isinstance(marker, str) and marker):
        fail(f"/props has no media_marker: {props}")
    vision = "image" in modalities or bool(props.get("modalities", {}).get("vision"))
    n_ctx = props.get("default_generation_settings", {}).get("n_ctx")
    return vision, marker, n_ctx


def frigate_vector(emb):
    arr = np.array(emb, dtype=np.float32)
    if arr.ndim > 1:
        arr = arr.mean(axis=0)
    arr = arr.flatten()
    if arr.size > EMBEDDING_DIM:
        return arr[:EMBEDDING_DIM], arr.size
    return np.pad(arr, (0, EMBEDDING_DIM - arr.size), mode="constant", constant_values=0), arr.size


def embed(client, model, marker, texts, jpegs):
    content = [{"prompt_string": t} for t in texts]
    content += [{"prompt_string": f"{marker}\n", "multimodal_data": [base64.b64encode(j).decode()]}
                for j in jpegs]
    status, result = client.request("POST", "/embeddings", {"model": model, "content": content})
    if status != 200:
        fail(f"POST /embeddings: {status} {result}")
    items = result.get("data", result) if isinstance(result, dict) else result
    if not isinstance(items, list) or len(items) != len(content):
        fail(f"POST /embeddings: {len(content)} items sent, answer {str(result)[:200]}")
    if [it.get("index") for it in items] != list(range(len(content))):
        fail(f"answers out of order: {[it.get('index') for it in items]}")
    return [frigate_vector(it["embedding"]) for it in items]


def cosine(a, b):
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def check_against_own_routes(client, vectors, texts, jpegs):
    status, own = client.request("POST", "/v1/embed/text", {"text": texts})
    if status != 200:
        fail(f"/v1/embed/text: {status} {own}")
    own_vectors = [np.array(e, dtype=np.float32) for e in own["embeddings"]]
    for j in jpegs:
        status, one = client.request("POST", "/v1/embed/image", {"image": base64.b64encode(j).decode()})
        if status != 200:
            fail(f"/v1/embed/image: {status} {one}")
        own_vectors.append(np.array(one["embedding"], dtype=np.float32))
    worst = 1.0
    for i, ((padded, dim), mine) in enumerate(zip(vectors, own_vectors)):
        if dim != mine.size:
            fail(f"item {i}: {dim} values, /v1/embed gives {mine.size}")
        diff = float(np.abs(padded[:dim] - mine).max())
        if diff > 1e-6:
            fail(f"item {i}: differs from /v1/embed by {diff}")
        # Frigate's zero padding changes no cosine.
        mine_padded = np.pad(mine, (0, EMBEDDING_DIM - dim)) if dim < EMBEDDING_DIM else mine
        for k, (other, _) in enumerate(vectors):
            other_mine = own_vectors[k]
            plain = cosine(mine, other_mine)
            padded_cos = cosine(padded, other) if dim <= EMBEDDING_DIM else plain
            if abs(plain - padded_cos) > 1e-5:
                fail(f"items {i},{k}: cosine {plain} unpadded, {padded_cos} padded")
        worst = min(worst, cosine(padded, mine_padded))
    return worst


def check_bad_input(client, model, marker, jpeg):
    b64 = base64.b64encode(jpeg).decode()
    cases = [
        ("marker missing", {"model": model, "content": [
            {"prompt_string": "a cat"}, {"prompt_string": "photo\n", "multimodal_data": [b64]}]}, "content[1]"),
        ("marker twice", {"model": model, "content": [
            {"prompt_string": f"{marker}{marker}\n", "multimodal_data": [b64]}]}, "content[0]"),
        ("marker without an image", {"model": model, "content": [{"prompt_string": f"{marker}\n"}]}, "content[0]"),
        ("bad base64", {"model": model, "content": [
            {"prompt_string": "x"}, {"prompt_string": "y"},
            {"prompt_string": f"{marker}\n", "multimodal_data": ["not base64!"]}]}, "content[2]"),
        ("not an image", {"model": model, "content": [
            {"prompt_string": f"{marker}\n", "multimodal_data": [base64.b64encode(b"GIF89a nope").decode()]}]},
         "content[0]"),
        ("unknown field in an item", {"model": model, "content": [
            {"prompt_string": "a", "image_data": []}]}, "content[0]"),
        ("unknown field", {"model": model, "content": [{"prompt_string": "a"}], "pooling": "mean"}, "pooling"),
        ("no content", {"model": model, "content": []}, "content"),
        ("content not a list", {"model": model, "content": "a cat"}, "content"),
        ("another model", {"model": "gpt-4", "content": [{"prompt_string": "a"}]}, "gpt-4"),
    ]
    for what, body, named in cases:
        status, answer = client.request("POST", "/embeddings", body)
        if not 400 <= status < 500:
            fail(f"{what}: status {status}, expected 4xx: {answer}")
        message = json.dumps(answer)
        if named not in message:
            fail(f"{what}: the error does not name {named}: {message}")
        if not (isinstance(answer, dict) and isinstance(answer.get("error"), dict)
                and answer["error"].get("code") == status and "message" in answer["error"]):
            fail(f"{what}: not llama.cpp's error shape: {message}")
    return len(cases)


def check_keys(client, model, marker):
    for method, path, body in [
        ("GET", "/v1/models", None),
        ("GET", "/props", None),
        ("POST", "/embeddings", {"model": model, "content": [{"prompt_string": "a cat"}]}),
        ("POST", "/v1/embed/text", {"text": ["a cat"]}),
    ]:
        status, answer = client.request(method, path, body, key=False)
        if status != 401:
            fail(f"{method} {path} without the key: {status}, expected 401: {answer}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base_url")
    ap.add_argument("model")
    ap.add_argument("--api-key")
    ap.add_argument("--marker")
    args = ap.parse_args()
    client = Client(args.base_url, args.api_key)
    vision, marker, n_ctx = model_info(client, args.model)
    if not vision:
        fail("the model does not say it takes images")
    if args.marker and marker != args.marker:
        fail(f"/props media_marker {marker!r}, configured {args.marker!r}")
    jpegs = [to_jpeg(open(os.path.join(REPO, p), "rb").read()) for p in IMAGES]
    vectors = embed(client, args.model, marker, TEXTS, jpegs)
    worst = check_against_own_routes(client, vectors, TEXTS, jpegs)
    bad = check_bad_input(client, args.model, marker, jpegs[0])
    if args.api_key:
        check_keys(client, args.model, marker)
    print(f"replay: ok: {len(TEXTS)} texts and {len(jpegs)} images, embeddings of "
          f"{vectors[0][1]} values padded to {EMBEDDING_DIM}, smallest cosine with /v1/embed "
          f"{worst:.7f}; n_ctx {n_ctx}; {bad} bad inputs answered 4xx naming the item"
          + ("; without the key 401" if args.api_key else ""))


if __name__ == "__main__":
    main()

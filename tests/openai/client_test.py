#!/usr/bin/env python3
"""The official `openai` Python client (pinned in requirements.txt), unchanged, against the
live daemon: its default base64 encoding, floats, lists, images as data URIs, token usage,
model listing, and OpenAI-shaped errors. Run by tests/openai/run.sh; prints "N passed, M failed".
"""
import base64
import json
import math
import os
import pathlib
import sys
import urllib.request

import openai

BASE = sys.argv[1]  # http://127.0.0.1:PORT
ROOT = pathlib.Path(__file__).resolve().parents[2]
# The daemon requires an API key (tests/lib/live-daemon.sh): the client sends it as
# Authorization: Bearer, as it does to OpenAI.
KEY = os.environ["HAILO_CLIP_API_KEY"]
client = openai.OpenAI(base_url=f"{BASE}/v1", api_key=KEY, max_retries=0)
results = []


def check(name, fn):
    try:
        fn()
        results.append((name, None))
        print(f"ok   {name}")
    except Exception as e:  # noqa: BLE001 - each check reports its own failure
        results.append((name, e))
        print(f"FAIL {name}: {e!r}")


def ours(path, body):
    req = urllib.request.Request(f"{BASE}{path}", json.dumps(body).encode(),
                                 {"Content-Type": "application/json", "X-API-Key": KEY})
    return json.load(urllib.request.urlopen(req))


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


MODEL = client.models.list().data[0].id


def models():
    listing = client.models.list()
    assert [m.id for m in listing.data] == ["clip-tiny-random"], listing
    assert listing.data[0].owned_by == "hailo-clip"


def default_base64():
    # The client asks for base64 by default and decodes it to floats itself.
    r = client.embeddings.create(model=MODEL, input="a photo of a cat")
    assert r.object == "list" and r.model == MODEL
    v = r.data[0].embedding
    want = ours("/v1/embed/text", {"text": "a photo of a cat"})["embedding"]
    assert len(v) == len(want) == 32
    assert cosine(v, want) >= 0.99999, cosine(v, want)
    assert r.usage.prompt_tokens == r.usage.total_tokens == 7, r.usage


def floats_and_lists():
    texts = ["a cat", "a dog", "a rocket on a launch pad"]
    r = client.embeddings.create(model=MODEL, input=texts, encoding_format="float")
    assert [d.index for d in r.data] == [0, 1, 2]
    want = ours("/v1/embed/text", {"text": texts})["embeddings"]
    for d, w in zip(r.data, want):
        assert cosine(d.embedding, w) >= 0.99999
    assert abs(sum(x * x for x in r.data[0].embedding) - 1) < 1e-4


def images():
    photo = (ROOT / "tests/fixtures/images/rocket.jpg").read_bytes()
    uri = "data:image/jpeg;base64," + base64.b64encode(photo).decode()
    r = client.embeddings.create(model=MODEL, input=[uri], extra_body={"modality": "image"})
    want = ours("/v1/embed/image", {"image": uri})["embedding"]
    assert cosine(r.data[0].embedding, want) >= 0.99999
    assert r.usage.prompt_tokens == 0


def errors():
    try:
        client.embeddings.create(model="text-embedding-3-small", input="x")
        raise AssertionError("an unknown model was accepted")
    except openai.NotFoundError as e:
        assert e.status_code == 404
        assert e.body["code"] == "model_not_found" and e.body["param"] == "model", e.body
        assert e.body["type"] == "invalid_request_error"
    try:
        client.embeddings.create(model=MODEL, input="x", dimensions=8)
        raise AssertionError("dimensions 8 was accepted")
    except openai.UnprocessableEntityError as e:
        assert e.body["param"] == "dimensions", e.body
    try:
        client.embeddings.create(model=MODEL, input=["https://example.com/cat.jpg"], extra_body={"modality": "image"})
        raise AssertionError("a URL was accepted")
    except openai.BadRequestError as e:
        assert "never fetched" in e.body["message"], e.body


def wrong_key():
    # A client with a wrong key is refused in OpenAI's shape (the client itself refuses to
    # run without one).
    for bad in [openai.OpenAI(base_url=f"{BASE}/v1", api_key="wrong", max_retries=0)]:
        try:
            bad.embeddings.create(model=MODEL, input="x")
            raise AssertionError("a wrong key was accepted")
        except openai.AuthenticationError as e:
            assert e.status_code == 401
            assert e.body["code"] == "unauthorized" and e.body["type"] == "invalid_request_error", e.body


for name, fn in [("wrong key refused (401)", wrong_key), ("models", models), ("default base64", default_base64), ("floats and lists", floats_and_lists),
                 ("images as data URIs", images), ("errors in OpenAI's shape", errors)]:
    check(name, fn)
failed = sum(1 for _, e in results if e)
print(f"{len(results) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)

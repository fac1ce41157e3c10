#!/usr/bin/env bash
# The Hailo text path's memory with SigLIP2's vocabulary, against CLIP's.
#
#   scripts/bench-text-memory.sh [--prompts N] [--debug | --binary BIN]
#
# Serves two model directories on the HailoRT test double (cargo feature `hailo-fake`), one
# after the other, each as `hailo-clip pull NAME --hef` leaves it (`model.dir` alone), with
# full-size synthetic text files (random values, the real shapes):
#   SigLIP2 ViT-B-32-256: token_embedding_lut.npy 256000 x 768 f32 (786 MB, Gemma's
#       vocabulary), text_projection.npy 768 x 768 and its bias, context 64, 256-px images,
#       and a Unigram tokenizer.json of 256,000 pieces (tests/fixtures/immich-tiny-siglip's,
#       grown; Gemma's own is a BPE of that size);
#   CLIP ViT-B-32: token_embedding_lut.npy 49408 x 512 f32 (101 MB), text_projection.npy
#       512 x 512, context 77, 224-px images (tests/fixtures/immich-tiny-random);
# on HEFs of the double whose outputs are functions of their inputs (their sizes are the Model
# Zoo's networks'). Each daemon encodes N (500) distinct prompts through /v1/embed/text, 50 a
# request, after which its VmRSS and VmHWM (/proc/PID/status) are read. Prints one line per
# model and the difference; the target is SigLIP2 within 100 MB of CLIP.
#
# The token-embedding table is memory-mapped: a prompt's rows are read from the page cache
# and count in RSS only while mapped pages are touched (see src/backends/hailo/assets.rs).
# Writes 900 MB under target/bench-text-memory/ (removed at the end). Needs numpy, from
# scripts/double-venv.sh. --debug builds and runs the dev profile; --binary runs BIN (a
# `hailo-fake` build) without building.
set -euo pipefail
cd "$(dirname "$0")/.."
prompts=500
profile=release
bin=
while [ $# -gt 0 ]; do
  case "$1" in
    --prompts) prompts=$2; shift 2 ;;
    --debug) profile=debug; shift ;;
    --binary) bin=$2; shift 2 ;;
    -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "bench-text-memory: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ -z "$bin" ]; then
  scripts/build-deps.sh >&2
  if [ "$profile" = release ]; then
    cargo build --release --locked --features hailo-fake --quiet
  else
    cargo build --locked --features hailo-fake --quiet
  fi
  bin=$PWD/target/$profile/hailo-clip
else
  profile="given ($bin)"
fi
python=$(scripts/double-venv.sh)

work=$PWD/target/bench-text-memory
rm -rf "$work"
mkdir -p "$work"
daemon=
cleanup() { [ -z "$daemon" ] || { kill "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null || true; }; rm -rf "$work"; }
trap cleanup EXIT
touch "$work/hailo0"

# model FIXTURE NAME VOCAB HIDDEN EMBED CONTEXT SIZE BIAS: the fixture's directory with
# full-size text files and double HEFs in hailo/hailo10h/.
model() {
  local dir=$work/$2 files=$work/$2/hailo/hailo10h
  cp -r "tests/fixtures/$1" "$dir"
  mkdir -p "$files"
  "$python" - "$dir" "$files" "$3" "$4" "$5" "$8" <<'PY'
import json, sys
import numpy as np
model, out, vocab, hidden, embed, bias = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
tokenizer = json.load(open(f"{model}/textual/tokenizer.json"))
if tokenizer["model"]["type"] == "Unigram":
    # A vocabulary of the full size (Gemma's 256,000 pieces for SigLIP2), so that the
    # tokenizer's own memory is counted too: the fixture's pieces, then "▁w<i>".
    pieces = tokenizer["model"]["vocab"]
    pieces += [[f"\u2581w{i}", -12.0] for i in range(vocab - len(pieces))]
    json.dump(tokenizer, open(f"{model}/textual/tokenizer.json", "w"))
json.dump(tokenizer, open(f"{out}/clip_tokenizer.json", "w"))
rng = np.random.default_rng(7)
# Written in slices through a memory map, so that this script needs no 786 MB of its own.
lut = np.lib.format.open_memmap(f"{out}/token_embedding_lut.npy", mode="w+", dtype="<f4", shape=(vocab, hidden))
for start in range(0, vocab, 16384):
    stop = min(start + 16384, vocab)
    lut[start:stop] = rng.standard_normal((stop - start, hidden), dtype=np.float32) * 0.02
lut.flush()
np.save(f"{out}/text_projection.npy", (rng.standard_normal((hidden, embed)) * 0.05).astype("<f4"))
if bias == "bias":
    np.save(f"{out}/text_projection_bias.npy", (rng.standard_normal(embed) * 0.01).astype("<f4"))
PY
  cat >"$files/image_encoder.hef" <<EOF
hailo-clip-fake-hef 1
transform image_channel_means
input images $7 $7 3 uint8 nhwc
output embedding 1 1 $5 uint8 nc 128 0.01
EOF
  cat >"$files/text_encoder.hef" <<EOF
hailo-clip-fake-hef 1
transform text_causal_mean
input tokens 1 $6 $4 float32 nhwc
output states 1 $6 $4 float32 nhwc
EOF
}
model immich-tiny-siglip ViT-B-32-SigLIP2-256__webli 256000 768 768 64 256 bias
model immich-tiny-random ViT-B-32__openai 49408 512 512 77 224 none

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
measure() { # NAME: serve it, encode the prompts, print "NAME rss_mb hwm_mb"
  cat >"$work/$1.yaml" <<EOF
server: {host: 127.0.0.1, port: $port}
backend: hailo
model: {dir: $work/$1}
logging: {level: warn}
selftest: {enabled: false}
hailo: {device_path: $work/hailo0}
EOF
  "$bin" --config "$work/$1.yaml" serve >"$work/$1.log" 2>&1 &
  daemon=$!
  python3 - "$port" "$prompts" "$daemon" "$1" <<'PY' || { cat "$work/$1.log" >&2; exit 1; }
import json, sys, time, urllib.request
port, prompts, pid, name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
url = f"http://127.0.0.1:{port}"
for _ in range(600):
    try:
        health = json.load(urllib.request.urlopen(url + "/health", timeout=2))
        if health.get("status") == "ok":
            break
    except OSError:
        pass
    time.sleep(0.1)
else:
    sys.exit(f"{name}: the daemon did not become ready")
assert health["text_encoder"]["backend"] == "hailo", health
def rss():
    status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status") if ":" in line)
    return int(status["VmRSS"].split()[0]) / 1024
at_ready = rss()
words = "red green blue garden garage door open closed cat dog car bike person parcel".split()
sent = 0
while sent < prompts:
    # "w<n>" is one piece of the SigLIP2 vocabulary (rows all over its table), several of
    # CLIP's BPE.
    texts = [f"{words[(sent + i) % len(words)]} w{(sent + i) * 509 % 250000} {words[(sent + 3 * i) % len(words)]}"
             for i in range(min(50, prompts - sent))]
    body = json.dumps({"text": texts}).encode()
    request = urllib.request.Request(url + "/v1/embed/text", body, {"Content-Type": "application/json"})
    answer = json.load(urllib.request.urlopen(request, timeout=60))
    assert len(answer["embeddings"]) == len(texts)
    sent += len(texts)
status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status") if ":" in line)
kb = lambda key: int(status[key].split()[0])
print(f"{name} {kb('VmRSS') / 1024:.1f} {kb('VmHWM') / 1024:.1f} {at_ready:.1f}")
PY
  kill "$daemon"; wait "$daemon" 2>/dev/null || true; daemon=
}
siglip=$(measure ViT-B-32-SigLIP2-256__webli)
clip=$(measure ViT-B-32__openai)
echo "bench-text-memory: $prompts prompts, $profile build, the HailoRT test double, $(nproc) cores"
python3 - "$siglip" "$clip" <<'PY'
import sys
rows = [line.split() for line in sys.argv[1:]]
for name, rss, hwm, ready in rows:
    print(f"{name}: VmRSS {float(rss):.1f} MB (at ready {float(ready):.1f} MB), VmHWM {float(hwm):.1f} MB")
(_, s_rss, s_hwm, _), (_, c_rss, c_hwm, _) = rows
print(f"SigLIP2 - CLIP: VmRSS {float(s_rss) - float(c_rss):+.1f} MB, VmHWM {float(s_hwm) - float(c_hwm):+.1f} MB (target within 100 MB)")
PY

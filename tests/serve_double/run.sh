#!/usr/bin/env bash
# scripts/serve-hailo-double.sh --model-dir on the bundled Immich fixture, against
# `hailo-clip serve` on the CPU engine on the same directory: /health says both encoders run
# on the device, and /v1/embed/text and /v1/embed/image agree with the CPU daemon's within
# cosine 0.9999 (prompts with case, punctuation and runs of spaces, one longer than the
# context; a JPEG preview, a PNG, a WebP). Ends with "N passed, M failed".
#   tests/serve_double/run.sh [BINARY [MODEL_DIR]]
# BINARY serves the CPU side (default target/debug/hailo-clip); MODEL_DIR is the model
# directory both serve (default the bundled Immich fixture; e.g. a full-size random ViT-B/32
# from scripts/make_immich_fixture.py --full-size ViT-B-32 OUT).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-target/debug/hailo-clip}
work=$(mktemp -d "${TMPDIR:-/tmp}/serve-double.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
source_dir=${2:-tests/fixtures/immich-tiny-random}
model=$work/$(basename "${2:-ViT-B-32__openai}")
cp -r "$source_dir" "$model"
hailo_port=$(free_port)
cpu_port=$(free_port)
scripts/serve-hailo-double.sh --debug --port "$hailo_port" --model-dir "$model" --log-level warn \
  >"$work/hailo.log" 2>&1 &
pids+=($!)
printf 'server: {host: 127.0.0.1, port: %s}\nbackend: cpu\nmodel: {dir: %s}\nselftest: {enabled: false}\nlogging: {level: warn}\n' \
  "$cpu_port" "$model" >"$work/cpu.yaml"
"$bin" --config "$work/cpu.yaml" serve >"$work/cpu.log" 2>&1 &
pids+=($!)
python3 - "$hailo_port" "$cpu_port" "$work" <<'PY'
import base64, json, math, sys, time, urllib.request

hailo, cpu, work = sys.argv[1], sys.argv[2], sys.argv[3]
passed = failed = 0

def check(what, ok, detail=""):
    global passed, failed
    print(("ok   " if ok else "FAIL ") + what + (f" ({detail})" if detail else ""))
    passed, failed = passed + ok, failed + (not ok)

def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return json.load(r)

def post(port, path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.load(r)

def ready(port, log):
    deadline = time.time() + 900  # the first run builds the daemon
    while time.time() < deadline:
        try:
            return get(port, "/health")
        except Exception:
            time.sleep(1)
    sys.exit(f"no /health on {port}; its log:\n" + open(f"{work}/{log}").read()[-3000:])

health = ready(hailo, "hailo.log")
ready(cpu, "cpu.log")
for enc in ("image_encoder", "text_encoder"):
    check(f"/health: the {enc} runs on the double's device", health[enc]["backend"] == "hailo",
          health[enc]["backend"])

def cos(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

prompts = ["a photo of a cat", "A Photo Of A CAT!", "a   photo\tof  a   dog ,  maybe...",
           "what's that? (a rocket; or a cup of coffee)",
           "a very long description of a garden with many flowers and trees " * 12]
a = post(hailo, "/v1/embed/text", {"text": prompts})["embeddings"]
b = post(cpu, "/v1/embed/text", {"text": prompts})["embeddings"]
for p, x, y in zip(prompts, a, b):
    c = cos(x, y)
    check(f"text {p[:40]!r}: cosine >= 0.9999", c >= 0.9999, f"{c:.6f}")
for name in ["tests/fixtures/previews/chelsea_preview.jpg", "tests/fixtures/images/coffee.png",
             "tests/fixtures/images/chelsea.webp"]:
    image = base64.b64encode(open(name, "rb").read()).decode()
    c = cos(post(hailo, "/v1/embed/image", {"image": image})["embedding"],
            post(cpu, "/v1/embed/image", {"image": image})["embedding"])
    check(f"image {name.rsplit('/', 1)[1]}: cosine >= 0.9999", c >= 0.9999, f"{c:.6f}")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY

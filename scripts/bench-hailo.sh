#!/usr/bin/env bash
# The Hailo path under load, on the HailoRT test double whose jobs cost what the device's do.
#
#   scripts/bench-hailo.sh [--clients C] [--seconds S] [--fixed-ms F --frame-ms T]
#       [--batch-size N] [--jobs-in-flight J] [--image PATH] [--uncached-prompts P]
#
# Serves the double with scripts/serve-hailo-double.sh (an image job of n frames costs
# F + n x T ms, default 12.51 + 1.42 n: the Model Zoo's clip_vit_b_32 on a Hailo-10H; the
# text network keeps that script's defaults) and drives it with wrk (Debian's package,
# installed when missing) from C clients (8) for S seconds (20), after a 2 s warm-up:
#   --uncached-prompts 0 (default): POST /predict as Immich sends it, `entries` for the CLIP
#       visual model and the image;
#   --uncached-prompts P: POST /v1/classify (multipart, the image and two prompts); P % of
#       the requests carry prompts never seen before (text jobs on the device), the rest the
#       same two (cached after the first).
# --image is the JPEG sent: tests/fixtures/images/coffee_224.jpg by default (224 px, so the
# host's decode is small); tests/fixtures/previews/coffee_preview.jpg is an Immich preview.
# --batch-size is hailo.batch_size (8), --jobs-in-flight hailo.jobs_in_flight (auto).
#
# One line of figures:
#   served X img/s | batch-N rate R img/s | ratio X/R | p50 .. ms p99 .. ms | batches 1:a 2:b .. N:h | text jobs t | host busy b%
# R is the device's rate with every job full (N / (F + N x T)); batches counts the image
# network's jobs by frame count during the run (hailo_clip_device_jobs_total). Needs a
# free port on 127.0.0.1; sends nothing anywhere else.
set -euo pipefail
cd "$(dirname "$0")/.."
fixed=12.51
frame=1.42
seconds=20
clients=8
batch=8
jobs=auto
image=tests/fixtures/images/coffee_224.jpg
uncached=0
while [ $# -gt 0 ]; do
  case "$1" in
    --fixed-ms) fixed=$2; shift 2 ;;
    --frame-ms) frame=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --batch-size) batch=$2; shift 2 ;;
    --jobs-in-flight) jobs=$2; shift 2 ;;
    --image) image=$2; shift 2 ;;
    --uncached-prompts) uncached=$2; shift 2 ;;
    -h | --help) sed -n '2,25p' "$0"; exit 0 ;;
    *) echo "bench-hailo: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -f "$image" ] || { echo "bench-hailo: no image at $image" >&2; exit 2; }

command -v wrk >/dev/null || {
  sudo=(); [ "$(id -u)" = 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -q >/dev/null && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null
}
scripts/build-deps.sh
cargo build --release --locked --features hailo-fake --quiet

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-hailo.XXXXXX")
daemon=
cleanup() { [ -z "$daemon" ] || { kill "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null || true; }; rm -rf "$work"; }
trap cleanup EXIT

# wrk's script: the bodies are built once (Immich's /predict) or per request (classify).
cat >"$work/bench.lua" <<EOF
local f = io.open("$PWD/$image", "rb")
if not f then f = io.open("$image", "rb") end
local jpeg = f:read("*all")
f:close()
local boundary = "hailoclipbench"
local uncached = $uncached
local function part(name, value, filename)
  local disposition = 'form-data; name="' .. name .. '"'
  if filename then disposition = disposition .. '; filename="' .. filename .. '"' end
  return "--" .. boundary .. "\r\nContent-Disposition: " .. disposition .. "\r\n\r\n" .. value .. "\r\n"
end
local headers = { ["Content-Type"] = "multipart/form-data; boundary=" .. boundary }
local predict = part("entries", '{"clip":{"visual":{"modelName":"ViT-B-32__openai"}}}')
  .. part("image", jpeg, "blob") .. "--" .. boundary .. "--\r\n"
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end
local sent = 0
request = function()
  if uncached == 0 then
    return wrk.format("POST", "/predict", headers, predict)
  end
  sent = sent + 1
  local a, b = "cat", "dog"
  if (sent * 7919) % 100 < uncached then
    -- Prompts no request has carried before: text jobs on the device.
    a = "thing " .. id .. " " .. sent .. " a"
    b = "thing " .. id .. " " .. sent .. " b"
  end
  local body = part("image", jpeg, "photo.jpg") .. part("prompts", a) .. part("prompts", b)
    .. "--" .. boundary .. "--\r\n"
  return wrk.format("POST", "/v1/classify", headers, body)
end
done = function(summary, latency, requests)
  io.write(string.format("WRK %d %d %d %.3f %.3f\n", summary.requests, summary.duration,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
EOF

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port

# The image network's jobs by frame count, text jobs, and the machine's busy and total jiffies.
sample() {
  python3 - "$url/metrics" <<'PY'
import re, sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=10).read().decode()
jobs = {}
text_jobs = 0.0
for line in text.splitlines():
    if not line.startswith("hailo_clip_device_jobs_total{"):
        continue
    labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
    value = float(line.rsplit(" ", 1)[1])
    if labels.get("network") == "image":
        jobs[int(labels["frames"])] = value
    else:
        text_jobs += value
total = [int(v) for v in open("/proc/stat").readline().split()[1:]]
idle = total[3] + total[4]
print(",".join(f"{k}:{v:g}" for k, v in sorted(jobs.items())) or "-", text_jobs, sum(total) - idle, sum(total))
PY
}

scripts/serve-hailo-double.sh --port "$port" --fixed-ms "$fixed" --frame-ms "$frame" \
  --batch-size "$batch" --jobs-in-flight "$jobs" --max-queue $((2 * clients + 16)) \
  --log-level warn >"$work/daemon.log" 2>&1 &
daemon=$!
python3 - "$url" <<'PY' || { cat "$work/daemon.log" >&2; exit 1; }
import sys, time, urllib.request
for _ in range(1200):
    try:
        urllib.request.urlopen(sys.argv[1] + "/health", timeout=2)
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
PY
wrk -t 1 -c "$clients" -d 2s -s "$work/bench.lua" "$url" >/dev/null
read -r j0 x0 b0 t0 < <(sample)
threads=$((clients < 2 ? 1 : 2))
out=$(wrk -t "$threads" -c "$clients" -d "${seconds}s" --timeout 30s -s "$work/bench.lua" "$url")
read -r j1 x1 b1 t1 < <(sample)
read -r _ requests duration errors p50 p99 < <(grep '^WRK ' <<<"$out")
[ "$errors" = 0 ] || { echo "bench-hailo: $errors of $requests requests failed" >&2; echo "$out" >&2; tail -5 "$work/daemon.log" >&2; exit 1; }
kind=$([ "$uncached" = 0 ] && echo "Immich /predict" || echo "/v1/classify, $uncached % uncached prompts")
echo "bench-hailo: $clients clients, $kind, $(basename "$image"), image job ${fixed} + n x ${frame} ms, hailo.batch_size $batch, hailo.jobs_in_flight $jobs, ${seconds} s, $(nproc) cores"
python3 - "$requests" "$duration" "$p50" "$p99" "$j0" "$j1" "$x0" "$x1" "$b0" "$b1" "$t0" "$t1" "$batch" "$fixed" "$frame" <<'PY'
import sys
a = sys.argv[1:]
requests, duration_us, p50, p99 = int(a[0]), int(a[1]), float(a[2]), float(a[3])
def jobs(s):
    return {} if s == "-" else {int(k): float(v) for k, v in (p.split(":") for p in s.split(","))}
j0, j1 = jobs(a[4]), jobs(a[5])
text_jobs = float(a[7]) - float(a[6])
busy = (float(a[9]) - float(a[8])) / max(float(a[11]) - float(a[10]), 1)
batch, fixed, frame = int(a[12]), float(a[13]), float(a[14])
served = requests / (duration_us / 1e6)
rate = batch * 1000 / (fixed + batch * frame)
counts = " ".join(f"{n}:{j1.get(n, 0) - j0.get(n, 0):g}" for n in range(1, batch + 1))
print(f"served {served:.1f} img/s | batch-{batch} rate {rate:.1f} img/s | ratio {served / rate:.2f} | "
      f"p50 {p50:.1f} ms p99 {p99:.1f} ms | batches {counts} | text jobs {text_jobs:g} | host busy {busy:.0%}")
PY

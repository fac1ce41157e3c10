#!/usr/bin/env bash
# The Hailo path under Immich-style load, on the HailoRT test double paced like a device.
#
#   scripts/bench-hailo.sh [--device-fps F] [--latency-ms L] [--seconds S] [--clients C]
#
# Builds the hailo-fake release binary, writes fake HEFs paced with `device_rate` (image: F
# frames a second, L ms pipeline fill; text: the Model Zoo's 99 FPS) and the text assets of
# the bundled test model, serves them, and drives the daemon with wrk (Debian's package,
# installed when missing): POST /predict as Immich sends it, the preview of a photo as
# Immich makes it (tests/fixtures/previews/coffee_preview.jpg: shorter side 1440, quality 80,
# 4:4:4, an ICC profile; scripts/make_previews.py) with `entries` for the CLIP visual model.
#
# Three runs, one line each:
#   default                      hailo.jobs_in_flight auto, performance.jpeg_scaled_decode true
#   hailo.jobs_in_flight: 1      one job at a time: the device waits while the host works
#   jpeg_scaled_decode: false    every preview decoded whole
# each as
#   device F fps | served X img/s | ratio X/F | p50 .. ms p99 .. ms | host ms/image: decode D, resize R, other O
# Host ms/image is the daemon's CPU time per image served (/proc/PID/stat): decode and resize
# from its own histograms (/metrics), other = the rest (HTTP, multipart, JSON, queue, and
# the double's own work standing in for the device). When the ratio is below 0.9 a line
# names what bounds it. Needs a free port on 127.0.0.1; sends nothing anywhere else.
set -euo pipefail
cd "$(dirname "$0")/.."
fps=335
latency=14
seconds=20
clients=8
while [ $# -gt 0 ]; do
  case "$1" in
    --device-fps) fps=$2; shift 2 ;;
    --latency-ms) latency=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    -h | --help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "bench-hailo: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

command -v wrk >/dev/null || {
  sudo=(); [ "$(id -u)" = 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -q >/dev/null && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null
}
scripts/build-deps.sh
cargo build --release --locked --features hailo-fake --quiet
bin=$PWD/target/release/hailo-clip

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-hailo.XXXXXX")
daemon=
cleanup() { [ -z "$daemon" ] || { kill "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null || true; }; rm -rf "$work"; }
trap cleanup EXIT

"$bin" export-text-assets --hf-dir tests/fixtures/hf-clip-tiny-random --out "$work/resources" >/dev/null
touch "$work/hailo0"
# The bundled model's sizes: 224 px input, 32-wide embeddings and text hidden states.
# queue_size: HailoRT's async queue, in frames; twice the batch, as hailort_server sizes its
# buffer pools (hailort v5.2.0 hailort_server.cpp, ASYNC_QUEUE_SIZE_FACTOR).
cat >"$work/image.hef" <<EOF
hailo-clip-fake-hef 1
transform image_channel_means
input images 224 224 3 uint8 nhwc
output embedding 1 1 32 uint8 nc 128 0.01
queue_size 16
device_rate $fps $latency
EOF
cat >"$work/text.hef" <<EOF
hailo-clip-fake-hef 1
transform text_causal_mean
input tokens 1 77 32 float32 nhwc
output states 1 77 32 float32 nhwc
queue_size 16
device_rate 99 10
EOF
python3 - "$work/body" <<'PY'
import json, sys
boundary = "hailoclipbench"
preview = open("tests/fixtures/previews/coffee_preview.jpg", "rb").read()
entries = json.dumps({"clip": {"visual": {"modelName": "ViT-B-32__openai"}}})
body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"entries\"\r\n\r\n{entries}\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"blob\"\r\n"
        "Content-Type: application/octet-stream\r\n\r\n").encode() + preview + f"\r\n--{boundary}--\r\n".encode()
open(sys.argv[1], "wb").write(body)
PY
cat >"$work/predict.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=hailoclipbench"
local f = io.open("$work/body", "rb")
wrk.body = f:read("*all")
f:close()
done = function(summary, latency, requests)
  io.write(string.format("WRK %d %d %d %.3f %.3f\n", summary.requests, summary.duration,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
EOF

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port

# Counters the lines are made of: images served, decode and resize seconds (sum, count),
# the daemon's CPU seconds, and the machine's busy and total jiffies.
sample() {
  python3 - "$url/metrics" "$daemon" <<'PY'
import os, sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=10).read().decode()
values = {}
for line in text.splitlines():
    if line and not line.startswith("#"):
        name, _, value = line.rpartition(" ")
        values[name] = float(value)
def get(name):
    return values.get(name, 0.0)
stat = open(f"/proc/{sys.argv[2]}/stat").read().rsplit(")", 1)[1].split()
cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
total = [int(v) for v in open("/proc/stat").readline().split()[1:]]
idle = total[3] + total[4]
print(get("hailo_clip_image_decode_seconds_sum"), get("hailo_clip_image_decode_seconds_count"),
      get("hailo_clip_image_resize_seconds_sum"), cpu, sum(total) - idle, sum(total))
PY
}

run() { # LABEL JOBS_IN_FLIGHT SCALED_DECODE
  cat >"$work/config.yaml" <<EOF
server: {host: 127.0.0.1, port: $port}
backend: hailo
model: {dir: $PWD/assets/models/clip-tiny-random}
performance: {jpeg_scaled_decode: $3, max_queue_size: 64}
logging: {level: warn}
selftest: {enforce: false}
hailo:
  resources_dir: $work/resources
  image_hef: $work/image.hef
  text_hef: $work/text.hef
  device_path: $work/hailo0
  jobs_in_flight: $2
  batch_size: 8
EOF
  "$bin" --config "$work/config.yaml" serve >"$work/daemon.log" 2>&1 &
  daemon=$!
  python3 - "$url" <<'PY' || { cat "$work/daemon.log" >&2; exit 1; }
import sys, time, urllib.request
for _ in range(600):
    try:
        urllib.request.urlopen(sys.argv[1] + "/health", timeout=2)
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
PY
  # A short warm-up, then the measured run.
  wrk -t 1 -c "$clients" -d 2s -s "$work/predict.lua" "$url/predict" >/dev/null
  read -r d0 n0 r0 c0 b0 t0 < <(sample)
  out=$(wrk -t 2 -c "$clients" -d "${seconds}s" --timeout 30s -s "$work/predict.lua" "$url/predict")
  read -r d1 n1 r1 c1 b1 t1 < <(sample)
  kill "$daemon"; wait "$daemon" 2>/dev/null || true; daemon=
  read -r _ requests duration errors p50 p99 < <(grep '^WRK ' <<<"$out")
  [ "$errors" = 0 ] || { echo "bench-hailo: $errors of $requests requests failed ($1)" >&2; echo "$out" >&2; exit 1; }
  echo "run: $1"
  python3 - "$fps" "$requests" "$duration" "$p50" "$p99" "$d0" "$d1" "$n0" "$n1" "$r0" "$r1" "$c0" "$c1" "$b0" "$b1" "$t0" "$t1" "$clients" "$(nproc)" "$2" "$latency" <<'PY'
import sys
a = sys.argv[1:]
fps, requests, duration_us = float(a[0]), int(a[1]), int(a[2])
p50, p99 = float(a[3]), float(a[4])
d0, d1, n0, n1, r0, r1, c0, c1, b0, b1, t0, t1 = map(float, a[5:17])
clients, cores, jobs, fill = int(a[17]), int(a[18]), a[19], float(a[20])
served = requests / (duration_us / 1e6)
images = max(n1 - n0, 1)
decode, resize = (d1 - d0) / images * 1e3, (r1 - r0) / images * 1e3
host = (c1 - c0) / images * 1e3
ratio = served / fps
print(f"device {fps:g} fps | served {served:.1f} img/s | ratio {ratio:.2f} | p50 {p50:.1f} ms p99 {p99:.1f} ms "
      f"| host ms/image: decode {decode:.2f}, resize {resize:.2f}, other {host - decode - resize:.2f}")
busy = (b1 - b0) / max(t1 - t0, 1)
if ratio < 0.9:
    if jobs == "1":
        print(f"  bound: one job in flight: the device waits out each job's {fill:g} ms fill and the host's "
              f"turn-around between jobs ({busy:.0%} of the {cores} cores busy)")
    elif busy >= 0.85:
        print(f"  bound: the host's CPU ({cores} cores {busy:.0%} busy, load generator included; "
              f"{host:.1f} ms of daemon CPU per image caps it near {cores * 1000 / host:.0f} img/s)")
    else:
        print(f"  bound: not the host's CPU ({busy:.0%} busy): {clients} clients waiting {p50:.1f} ms each "
              f"keep at most {clients * 1000 / max(p50, 0.001):.0f} img/s in flight; jobs do not fill the device")
PY
}

echo "bench-hailo: device ${fps} fps, ${latency} ms fill; ${clients} clients for ${seconds} s a run; $(nproc) cores"
run "default (hailo.jobs_in_flight auto, performance.jpeg_scaled_decode true)" auto true
run "hailo.jobs_in_flight: 1" 1 true
run "performance.jpeg_scaled_decode: false" auto false

#!/usr/bin/env bash
# Serves the Hailo path with no device: the daemon built against the HailoRT test double
# (cargo feature `hailo-fake`), on fake HEFs whose jobs cost what the device's do.
#
#   scripts/serve-hailo-double.sh --port P [--model-dir DIR] [--fixed-ms F --frame-ms T]
#       [--text-fixed-ms F --text-frame-ms T] [--switch-ms S] [--batch-size N]
#       [--jobs-in-flight J] [--max-queue Q] [--host H] [--log-level L]
#       [--fault KIND --fault-every S] [--debug]
#
# --debug builds and runs the dev profile (the build the test suite already made) instead
# of release: quicker to build, slower to run; for tests, not figures.
#
# --model-dir DIR serves that model directory (Immich's layout or the flat one) with both
# encoders on the double, on fake HEFs that run DIR's own subgraphs, cut where the Model
# Zoo's HEFs begin and end (scripts/make_double_hefs.py; its Python, with onnx, is made by
# scripts/double-venv.sh): its answers are the model's, and equal the CPU path's. DIR's own
# hailo/hailo10h/*.hef are used when it has such HEFs; otherwise they are made, next to a
# view of DIR in target/hailo-double/PORT/ (DIR itself is not written). Without
# --model-dir, the HEFs are synthetic functions of their inputs, on the bundled test
# model's sizes.
#
# A job of n frames on the double's device costs FIXED + n x FRAME ms, one job at a time
# for both networks, plus S ms when the device turns to the other network or another batch
# size (tests/hailo_fake/fake_hailort.cpp, device_cost). The defaults are the Model Zoo's
# clip_vit_b_32 on a Hailo-10H (hailo_model_zoo v5.2.0, docs/public_models/HAILO10H):
#   image: 71.8 FPS at batch 1 and 335 at batch 8: F + T = 1000/71.8 = 13.93 ms and
#          F + 8T = 8000/335 = 23.88 ms, so T = 1.42 ms and F = 12.51 ms
#   text:  49.5 and 99 FPS: F + T = 20.20 ms, F + 8T = 80.81 ms: T = 8.66 ms, F = 11.54 ms
#   switch: 0 ms (no figure for it in Hailo's sources; see docs/HAILO.md)
# --batch-size is hailo.batch_size (8), --jobs-in-flight hailo.jobs_in_flight (auto),
# --max-queue performance.max_queue_size (32).
#
# --fault makes the double's device fail S seconds after each time it was created (so after
# every recovery, never during one), as HailoRT reports each kind (tests/hailo_fake/
# fake_hailort.cpp, "Faults"): communication_closed, device_not_connected (and the next 2
# re-creations fail), timeout (the device hangs until re-created), device_in_use (as
# communication_closed, then one re-creation finds the device in use). The daemon recovers
# without a restart (docs/HAILO.md, "Device faults"); watch /health's `device`.
#
# Without --model-dir the HEFs take the bundled test model's sizes (224-px images, 32-wide
# embeddings) and the text files are exported from its checkpoint; the double's answers are
# then not CLIP's. Either way the self-test is off (selftest.enabled: false) and /health
# carries a warning saying the answers come from the test double. Files go to
# target/hailo-double/PORT/; the daemon runs in the foreground (this script execs it:
# SIGTERM stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
port=
host=127.0.0.1
fixed=12.51
frame=1.42
text_fixed=11.54
text_frame=8.66
switch=0
batch=8
jobs=auto
queue=32
level=info
fault=
fault_every=
model_dir=
profile=release
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port=$2; shift 2 ;;
    --model-dir) model_dir=$2; shift 2 ;;
    --debug) profile=debug; shift ;;
    --host) host=$2; shift 2 ;;
    --fixed-ms) fixed=$2; shift 2 ;;
    --frame-ms) frame=$2; shift 2 ;;
    --text-fixed-ms) text_fixed=$2; shift 2 ;;
    --text-frame-ms) text_frame=$2; shift 2 ;;
    --switch-ms) switch=$2; shift 2 ;;
    --batch-size) batch=$2; shift 2 ;;
    --jobs-in-flight) jobs=$2; shift 2 ;;
    --max-queue) queue=$2; shift 2 ;;
    --log-level) level=$2; shift 2 ;;
    --fault) fault=$2; shift 2 ;;
    --fault-every) fault_every=$2; shift 2 ;;
    -h | --help) sed -n '2,45p' "$0"; exit 0 ;;
    *) echo "serve-hailo-double: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -n "$port" ] || { echo "serve-hailo-double: --port P is required (see --help)" >&2; exit 2; }
case "$fault" in
  "" | communication_closed | device_not_connected | timeout | device_in_use) ;;
  *) echo "serve-hailo-double: --fault is one of communication_closed, device_not_connected, timeout, device_in_use" >&2; exit 2 ;;
esac
if [ -n "$fault" ] && [ -z "$fault_every" ]; then
  echo "serve-hailo-double: --fault needs --fault-every S" >&2; exit 2
fi

scripts/build-deps.sh >&2
if [ "$profile" = release ]; then
  cargo build --release --locked --features hailo-fake --quiet
else
  cargo build --locked --features hailo-fake --quiet
fi
bin=$PWD/target/$profile/hailo-clip

work=$PWD/target/hailo-double/$port
rm -rf "$work"
mkdir -p "$work"
# The device node the daemon checks for before it asks HailoRT (hailo.device_path).
touch "$work/hailo0"
costs() { # HEF FIXED FRAME: what the device charges, and HailoRT's async queue
  printf 'queue_size %s\ndevice_cost %s %s %s\n' "$((2 * batch))" "$2" "$3" "$switch" >>"$1"
}
if [ -n "$model_dir" ]; then
  [ -d "$model_dir" ] || { echo "serve-hailo-double: --model-dir $model_dir is not a directory" >&2; exit 2; }
  model_dir=$(cd "$model_dir" && pwd)
  # A view of DIR whose hailo/hailo10h/ holds this run's HEFs: DIR's entries linked, its own
  # double HEFs copied (the costs are appended), or new ones made.
  model=$work/$(basename "$model_dir")
  mkdir -p "$model"
  for entry in "$model_dir"/*; do [ "$(basename "$entry")" = hailo ] || ln -s "$entry" "$model/"; done
  if grep -qs '^transform onnx' "$model_dir"/hailo/hailo10h/*.hef; then
    cp -r "$model_dir/hailo" "$model/"
  else
    python=$(scripts/double-venv.sh)
    "$python" scripts/make_double_hefs.py "$model_dir" "$model" --hailo-clip "$bin" >&2
  fi
  for hef in "$model"/hailo/hailo10h/*.hef; do
    sed -i '/^queue_size\|^device_cost/d' "$hef"
    case "$hef" in
      *text*) costs "$hef" "$text_fixed" "$text_frame" ;;
      *) costs "$hef" "$fixed" "$frame" ;;
    esac
  done
else
  "$bin" export-text-assets --hf-dir tests/fixtures/hf-clip-tiny-random --out "$work/resources" >/dev/null
fi
# queue_size: HailoRT's async queue, in frames; twice the batch, as hailort_server sizes its
# buffer pools (hailort v5.2.0 hailort_server.cpp, ASYNC_QUEUE_SIZE_FACTOR).
[ -n "$model_dir" ] || cat >"$work/image.hef" <<EOF
hailo-clip-fake-hef 1
transform image_channel_means
input images 224 224 3 uint8 nhwc
output embedding 1 1 32 uint8 nc 128 0.01
queue_size $((2 * batch))
device_cost $fixed $frame $switch
EOF
[ -n "$model_dir" ] || cat >"$work/text.hef" <<EOF
hailo-clip-fake-hef 1
transform text_causal_mean
input tokens 1 77 32 float32 nhwc
output states 1 77 32 float32 nhwc
queue_size $((2 * batch))
device_cost $text_fixed $text_frame $switch
EOF
# The double's device file: its state, and the fault it is scheduled to have. HailoRT takes
# device ids of at most 31 characters, so it lives in /tmp.
device_line=
if [ -n "$fault" ]; then
  device_file=/tmp/hcd-$port
  echo "ok fault $fault $fault_every" >"$device_file"
  device_line="  device_id: $device_file"
fi
# With --model-dir, the HEFs and text files come from the model directory (model.dir alone,
# as after `hailo-clip pull --hef`); otherwise from this run's synthetic ones.
if [ -n "$model_dir" ]; then
  files="  device_path: $work/hailo0"
else
  model=$PWD/assets/models/clip-tiny-random
  files="  resources_dir: $work/resources
  image_hef: $work/image.hef
  text_hef: $work/text.hef
  device_path: $work/hailo0"
fi
cat >"$work/config.yaml" <<EOF
server: {host: $host, port: $port}
backend: hailo
model: {dir: $model}
performance: {max_queue_size: $queue}
logging: {level: $level}
selftest: {enabled: false}
hailo:
$files
  batch_size: $batch
  jobs_in_flight: $jobs
$device_line
EOF
echo "serve-hailo-double: the HailoRT test double on http://$host:$port${model_dir:+, serving $model_dir on its own subgraphs} (image job ${fixed} + n x ${frame} ms, text job ${text_fixed} + n x ${text_frame} ms, batch $batch${fault:+; fault $fault every $fault_every s})" >&2
exec "$bin" --config "$work/config.yaml" serve

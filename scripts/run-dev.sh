#!/usr/bin/env bash
# Builds hailo-clip and serves it on 127.0.0.1:5000 from this checkout.
#
# Model: $HAILO_CLIP_MODEL_DIR if set; else the installed real model at
# /usr/local/share/hailo-clip/models/clip-vit-base-patch32 if present; else the bundled
# tiny test model, whose weights are RANDOM (the log and /health say so loudly).
# Extra arguments go to `hailo-clip serve` (e.g. --port 5001).
set -euo pipefail
cd "$(dirname "$0")/.."
installed=/usr/local/share/hailo-clip/models/clip-vit-base-patch32
bundled=assets/models/clip-tiny-random
if [ -n "${HAILO_CLIP_MODEL_DIR:-}" ]; then
  model="$HAILO_CLIP_MODEL_DIR"
elif [ -f "$installed/manifest.json" ]; then
  model="$installed"
else
  model="$bundled"
  echo "run-dev: no real model at $installed: serving the bundled RANDOM test model ($bundled); its scores are meaningless." >&2
fi
# ONNX Runtime for the CPU engine, from PyPI into ~/.cache (cpu.engine: auto finds it there);
# without it tract serves.
scripts/fetch-onnxruntime.sh >/dev/null || echo "run-dev: ONNX Runtime could not be fetched: the CPU engine will be tract" >&2
scripts/build-deps.sh
cargo build --release --locked
exec target/release/hailo-clip --config config/hailo-clip.yaml --model-dir "$model" serve "$@"

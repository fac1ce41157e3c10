#!/usr/bin/env bash
# Builds hailo-clip and serves it on 127.0.0.1:5000 from this checkout.
#
# Model: $HAILO_CLIP_MODEL_DIR if set; else an installed real model, as the daemon's default
# model.dir finds it: /usr/local/share/hailo-clip/models/ViT-B-32__openai (where
# `sudo hailo-clip pull ViT-B-32__openai` installs), else the flat export in
# .../models/clip-vit-base-patch32; else the bundled tiny test model, whose weights are
# RANDOM (the log and /health say so loudly).
# Extra arguments go to `hailo-clip serve` (e.g. --port 5001).
set -euo pipefail
cd "$(dirname "$0")/.."
models=/usr/local/share/hailo-clip/models
bundled=assets/models/clip-tiny-random
if [ -n "${HAILO_CLIP_MODEL_DIR:-}" ]; then
  model="$HAILO_CLIP_MODEL_DIR"
elif [ -f "$models/ViT-B-32__openai/config.json" ]; then
  model="$models/ViT-B-32__openai"
elif [ -f "$models/clip-vit-base-patch32/manifest.json" ]; then
  model="$models/clip-vit-base-patch32"
else
  model="$bundled"
  echo "run-dev: no real model in $models (ViT-B-32__openai or clip-vit-base-patch32): serving the bundled RANDOM test model ($bundled); its scores are meaningless. Get one with: sudo target/release/hailo-clip pull ViT-B-32__openai" >&2
fi
echo "run-dev: model directory $model" >&2
# ONNX Runtime for the CPU engine, from PyPI into ~/.cache (cpu.engine: auto finds it there);
# without it tract serves.
scripts/fetch-onnxruntime.sh >/dev/null || echo "run-dev: ONNX Runtime could not be fetched: the CPU engine will be tract" >&2
scripts/build-deps.sh
cargo build --release --locked
exec target/release/hailo-clip --config config/hailo-clip.yaml --model-dir "$model" serve "$@"

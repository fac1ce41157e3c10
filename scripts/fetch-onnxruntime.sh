#!/usr/bin/env bash
# Puts ONNX Runtime's shared library (from the `onnxruntime` wheel on PyPI, which ships it
# under onnxruntime/capi/ for x86_64 and aarch64) into a cache directory, and prints its path.
# Usage: scripts/fetch-onnxruntime.sh [DIR]   (default: ~/.cache/hailo-clip/onnxruntime)
# Nothing is downloaded when DIR already has it. Then: ORT_DYLIB_PATH=$(scripts/fetch-onnxruntime.sh)
# or cpu.onnxruntime_library in the config.
set -euo pipefail
version=1.32.0
dir=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/hailo-clip/onnxruntime}
lib=$dir/libonnxruntime.so.$version
if [ ! -f "$lib" ]; then
  mkdir -p "$dir"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "onnxruntime==$version" >&2
  python3 - "$tmp" "$lib" <<'PY'
import glob, shutil, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/onnxruntime-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if "/capi/libonnxruntime.so" in n)
    with z.open(name) as src, open(sys.argv[2] + ".part", "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
  mv "$lib.part" "$lib"
fi
echo "$lib"

#!/usr/bin/env bash
# Puts ONNX Runtime's shared library (from the `onnxruntime` wheel on PyPI, which ships it
# under onnxruntime/capi/ for x86_64 and aarch64) into a cache directory, and prints its path.
# Usage: scripts/fetch-onnxruntime.sh [--version V] [--arch aarch64|x86_64] [DIR]
#   default version: 1.32.0; another version goes into its own VERSION/ below the cache, where
#   the daemon does not look (CI fetches 1.20.1, older than the default and still served:
#   tests/onnxruntime_versions.rs; wheels before 1.17 ship no libonnxruntime.so);
#   default arch: this machine's (pip picks the wheel, so a Pi gets the aarch64 one by itself);
#   default DIR: ~/.cache/hailo-clip/onnxruntime, where the daemon looks, or for another
#   machine's arch ~/.cache/hailo-clip/onnxruntime/ARCH (the cross test run: ORT_DYLIB_PATH).
# Nothing is downloaded when DIR already has it. Then: ORT_DYLIB_PATH=$(scripts/fetch-onnxruntime.sh)
# or cpu.onnxruntime_library in the config.
set -euo pipefail
default_version=1.32.0
version=$default_version
arch=$(uname -m)
if [ "${1:-}" = --version ]; then
  version=${2:?--version needs an onnxruntime release, e.g. 1.20.1}
  shift 2
fi
if [ "${1:-}" = --arch ]; then
  arch=${2:?--arch needs aarch64 or x86_64}
  shift 2
fi
cache=${XDG_CACHE_HOME:-$HOME/.cache}/hailo-clip/onnxruntime
[ "$version" = "$default_version" ] || cache=$cache/$version
platform=()
case "$arch" in
  "$(uname -m)") ;;
  aarch64 | x86_64)
    cache=$cache/$arch
    # The wheel for another machine: any CPython wheel carries the same library.
    platform=(--python-version 3.11 --implementation cp)
    for tag in manylinux_2_28 manylinux_2_27 manylinux2014; do platform+=(--platform "${tag}_$arch"); done
    ;;
  *) echo "fetch-onnxruntime: --arch $arch: the onnxruntime wheels are for aarch64 and x86_64" >&2; exit 2 ;;
esac
dir=${1:-$cache}
lib=$dir/libonnxruntime.so.$version
if [ ! -f "$lib" ]; then
  mkdir -p "$dir"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download -q --no-deps --only-binary=:all: "${platform[@]}" -d "$tmp" "onnxruntime==$version" >&2
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

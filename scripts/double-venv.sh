#!/usr/bin/env bash
# Makes target/double-venv, the Python that scripts/make_double_hefs.py runs with (onnx,
# numpy; onnxruntime and pillow for its --quantize), when it is missing, and prints its
# python's path. Pinned as in scripts/requirements-fixture.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${DOUBLE_VENV:-$PWD/target/double-venv}
if ! "$venv/bin/python" -c 'import onnx, numpy, onnxruntime, PIL' 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q onnx==1.23.2 numpy==2.4.6 onnxruntime==1.32.0 pillow==13.0.0 >&2
fi
echo "$venv/bin/python"

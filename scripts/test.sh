#!/usr/bin/env bash
# The project's test command (README "Run the tests"; .ci/run calls it):
# 0. the layers point one way (scripts/check-layers.sh);
# 1. every test with the default features (CPU engine, HTTP API, CLI, doctor, systemd
#    notify, parity with transformers and Immich on the committed fixtures, the replay of
#    Frigate's llama.cpp client);
# 2. install.sh and the systemd unit (shellcheck, staged install, systemd-analyze);
# 3. against the live daemon: Schemathesis, every check on (tests/schemathesis/run.sh); the
#    official `openai` client (tests/openai/run.sh); the page in headless Chromium
#    (tests/browser/run.sh, which installs Debian's chromium when missing); their Python
#    tools are pinned and installed into venvs under target/;
# 4. the Hailo-path tests against the HailoRT test double (tests/hailo_fake/), parity with
#    the CPU path on fake HEFs that run the model's own subgraphs included, in-process and
#    through scripts/serve-hailo-double.sh --model-dir (tests/serve_double/run.sh);
# 5. the aarch64 part, under qemu (scripts/test-aarch64.sh): unit, CPU parity, HTTP API,
#    self-test and Hailo suite tests built for aarch64, and README's curl examples against the
#    aarch64 daemon, compared with this machine's build.
# Ends with one line "N passed, M failed" summing every runner's counts.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT

scripts/check-layers.sh 2>&1 | tee -a "$log"
# Python with onnx, numpy, onnxruntime and pillow, in a venv of its own: the parity tests run
# fake HEFs made of the model's own subgraphs with it (scripts/make_double_hefs.py), and the
# replay of Frigate's client (tests/frigate/replay.py) converts images with pillow as Frigate
# does. Given to the cargo runs that need it, not exported (the aarch64 part runs without).
double_python=$(scripts/double-venv.sh)
HAILO_CLIP_DOUBLE_PYTHON=$double_python HAILO_CLIP_REQUIRE_DOUBLE_PYTHON=1 \
  cargo test --locked --all-targets 2>&1 | tee -a "$log"
# The binary the tests above built (default features) is the one install.sh stages.
scripts/test-install.sh --binary target/debug/hailo-clip 2>&1 | tee -a "$log"
tests/schemathesis/run.sh target/debug/hailo-clip 2>&1 | tee -a "$log"
tests/openai/run.sh target/debug/hailo-clip 2>&1 | tee -a "$log"
tests/browser/run.sh target/debug/hailo-clip 2>&1 | tee -a "$log"
HAILO_CLIP_DOUBLE_PYTHON=$double_python HAILO_CLIP_REQUIRE_DOUBLE_PYTHON=1 \
  cargo test --locked --features hailo-fake --test hailo 2>&1 | tee -a "$log"
# scripts/serve-hailo-double.sh --model-dir on the bundled Immich fixture against the CPU daemon.
tests/serve_double/run.sh target/debug/hailo-clip 2>&1 | tee -a "$log"
scripts/test-aarch64.sh target/debug/hailo-clip 2>&1 | tee -a "$log"

# cargo: "test result: ok. 25 passed; 0 failed; ..."; test-install.sh: "12 passed, 0 failed".
awk '
  /^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
  /^[0-9]+ passed, [0-9]+ failed$/ { p += $1; f += $3 }
  END { printf "%d passed, %d failed\n", p, f }
' "$log"

#!/usr/bin/env bash
# The aarch64 part of the tests (scripts/test.sh calls it; README "Tests and benchmarks"):
# builds for aarch64-unknown-linux-gnu with scripts/cross-aarch64.sh in the `emulated` profile
# (Cargo.toml: dev with dependencies at opt-level 1, to keep CI's build time down) and runs
# under qemu (scripts/run-aarch64.sh):
#   1. the library's unit tests, the CPU parity tests on tract and on ONNX Runtime's aarch64
#      library (tests/cpu_parity.rs, tests/preview_parity.rs: the x86_64 bounds), the HTTP API
#      (tests/http_api.rs), the self-test (tests/selftest.rs), access (tests/access.rs), slow
#      uploads (tests/connections.rs) and systemd with socket activation (tests/systemd.rs);
#   2. the Hailo suite against the HailoRT double built by the aarch64 g++
#      (--features hailo-fake --test hailo);
#   3. the aarch64 daemon on the bundled model answering README's curl examples, on each CPU
#      engine, with the same similarities and embeddings as the x86_64 build's
#      (BINARY_X86, default target/debug/hailo-clip) within 1e-4.
# Tests that need this host's speed are skipped under emulation (qemu runs the code 5-20x
# slower): the list below, printed as it runs. The other tests that measure time assert only
# what holds however slow the machine is (a lower bound, or an upper bound far above it). Usage: scripts/test-aarch64.sh [BINARY_X86]
set -euo pipefail
cd "$(dirname "$0")/.."
x86=${1:-target/debug/hailo-clip}
cross=(scripts/cross-aarch64.sh --profile emulated)

"${cross[@]}" --tests >/dev/null
ORT_DYLIB_PATH=$(scripts/fetch-onnxruntime.sh --arch aarch64)
export ORT_DYLIB_PATH HAILO_CLIP_REQUIRE_ONNXRUNTIME=1

# Each: a test's name, then why it cannot hold under emulation.
timed=(
  a_part_batch_waits_for_images_on_their_way_and_a_lone_one_does_not "a lone request must be answered within 0.9 s (4.3 s under qemu)"
  hailo_lone_request_is_submitted_at_once "a lone request on the double must be answered within its 1 s batch_wait_ms"
  hailo_closed_loop_clients_fill_their_jobs "clients must come back within the 10 ms return window for jobs to fill"
  hailo_soak_through "the soaks through device faults (tests/hailo/soak.rs) time faults 8 s apart and a 1 s device timeout"
  flood_of_idle_and_half_open_connections_under_ulimit_1024 "/health must answer within 1 s beside a flood of 2,000 connections"
  trickled_bodies_are_cut_at_their_deadline_and_cannot_starve_the_queue "tricklers are timed against a 10 s body deadline"
  bodies_being_received_have_their_own_budget "a trickler's byte must reach the daemon within 300 ms"
  keyless_tricklers_cannot_stop_keyed_uploads "40 s of tricklers against the share of honest requests served"
  tricklers_to_the_upload_route_hold_only_what_they_sent "30 s of tricklers against the share of honest requests served"
  one_byte_tricklers_hold_a_kib_each_and_honest_uploads_pass "25 s of 600 tricklers against the share of honest 1 MB uploads served"
  sd_notify_ready_only_after_warm_up_then_watchdog_and_stopping "watchdog pings are expected every 200 ms"
  watchdog_pings_stop_while_the_listener_cannot_answer "watchdog pings are timed in 100 ms windows"
  sigterm_lets_in_flight_requests_finish "SIGTERM must land while requests are in flight"
)
skip=()
for ((i = 0; i < ${#timed[@]}; i += 2)); do
  echo "aarch64: skipped under emulation: ${timed[i]} (${timed[i + 1]})"
  skip+=(--skip "${timed[i]}")
done

echo "== aarch64 (qemu): unit tests, CPU parity (tract, ONNX Runtime aarch64), HTTP API, self-test, access, slow uploads, socket activation"
"${cross[@]}" cargo test --no-fail-fast --lib --test cpu_parity --test preview_parity --test http_api --test selftest \
  --test access --test connections --test systemd -- "${skip[@]}"
echo "== aarch64 (qemu): the Hailo suite against the HailoRT double (aarch64 g++)"
"${cross[@]}" cargo test --no-fail-fast --features hailo-fake --test hailo -- "${skip[@]}"

echo "== aarch64 (qemu): README's curl examples, on each CPU engine, against $x86"
arm=target/aarch64-unknown-linux-gnu/emulated/hailo-clip
work=$(mktemp -d)
daemon=
stop() { [ -z "$daemon" ] || { kill "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null || true; }; daemon=; }
trap 'stop; rm -rf "$work"' EXIT
serve() { # ENGINE RUNNER... BINARY: the README's daemon (127.0.0.1:5000) on that engine
  local engine=$1
  shift
  printf 'cpu:\n  engine: %s\n' "$engine" >"$work/$engine.yaml"
  if python3 -c 'import socket; socket.create_connection(("127.0.0.1", 5000), 1)' 2>/dev/null; then
    echo "aarch64: 127.0.0.1:5000 is taken: README's examples need it free" >&2
    exit 1
  fi
  "$@" --config "$work/$engine.yaml" --model-dir assets/models/clip-tiny-random serve >"$work/daemon.log" 2>&1 &
  daemon=$!
  python3 - <<'PY' || { cat "$work/daemon.log" >&2; exit 1; }
import sys, time, urllib.request
for _ in range(1800):
    try:
        urllib.request.urlopen("http://127.0.0.1:5000/health", timeout=2)
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
PY
}
command -v curl >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q curl >/dev/null; }
for engine in onnxruntime tract; do
  echo "-- $engine: aarch64"
  serve "$engine" scripts/run-aarch64.sh "$arm"
  python3 tests/readme_curls.py run "$work/arm-$engine.json"
  stop
  echo "-- $engine: x86_64 ($x86), the same examples"
  # The x86_64 build loads the x86_64 library from the cache fetch-onnxruntime.sh fills.
  serve "$engine" env -u ORT_DYLIB_PATH "$x86"
  python3 tests/readme_curls.py run "$work/x86-$engine.json" >/dev/null
  stop
  echo "-- $engine: aarch64 against x86_64"
  python3 tests/readme_curls.py compare "$work/arm-$engine.json" "$work/x86-$engine.json" --tolerance 1e-4
done

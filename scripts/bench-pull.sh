#!/usr/bin/env bash
# Benchmark of `hailo-clip pull` (prints figures and ratios; not a timed test):
#   * its throughput against curl fetching the same files from the same stand-in Hub
#     (tests/standins/hub.py on loopback: the Hub's 302 to a second host name for the large
#     files, as huggingface.co does), one file after another as pull does;
#   * its peak RSS (GNU time's "Maximum resident set size"): files stream to disk and are
#     hashed as they go, never held in memory.
# The model is the Immich-layout test fixture plus a large external-data file beside its image
# graph (visual/model.onnx_data, random bytes), which pull fetches as part of the model.
#
#   scripts/bench-pull.sh [--mb 512] [--runs 3] [--rate MBPS] [--binary target/release/hailo-clip]
#
# Unpaced, loopback is faster than any network and the figure is this machine's CPU: the stand-in
# server, the receiver and pull's hashing share its cores. --rate 117 paces the stand-in like a
# gigabit link (what a Pi 5's Ethernet carries), where the network is the bound for both.
set -euo pipefail
cd "$(dirname "$0")/.."
MB=512 RUNS=3 BINARY=target/release/hailo-clip RATE=
while [ "$#" -gt 0 ]; do
  case "$1" in
    --mb) MB=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --binary) BINARY=$2; shift 2 ;;
    *) echo "usage: $0 [--mb N] [--runs N] [--binary PATH]" >&2; exit 2 ;;
  esac
done
[ -x "$BINARY" ] || { echo "bench-pull: build first: cargo build --release (or --binary PATH)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench-pull: needs GNU time (apt install time)" >&2; exit 1; }
command -v curl >/dev/null || { echo "bench-pull: needs curl" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/bench-pull.XXXXXX")
server=
cleanup() { [ -z "$server" ] || kill "$server" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

repo=$work/hub/immich-app/bench-model
mkdir -p "$repo"
cp -r tests/fixtures/immich-tiny-random/. "$repo/"
head -c "$((MB << 20))" /dev/urandom >"$repo/visual/model.onnx_data"

python3 tests/standins/hub.py --root "$work/hub" ${RATE:+--rate "$RATE"} >"$work/port" 2>"$work/server.log" &
server=$!
for _ in $(seq 100); do grep -q listening "$work/port" 2>/dev/null && break; sleep 0.1; done
port=$(awk '/listening/ {print $2}' "$work/port")
endpoint=http://127.0.0.1:$port
# The listing is hashed once by the stand-in; ask it before timing anything.
curl -fsS -o /dev/null "$endpoint/api/models/immich-app/bench-model/revision/main?blobs=true"

files=(config.json visual/preprocess_cfg.json textual/tokenizer_config.json textual/tokenizer.json
  visual/model.onnx textual/model.onnx visual/model.onnx_data)
total=0
for f in "${files[@]}"; do total=$((total + $(stat -c %s "$repo/$f"))); done

now() { date +%s.%N; }
best_curl='' best_sync='' best_pull='' rss=''
for run in $(seq "$RUNS"); do
  rm -rf "$work/curl" "$work/models"
  mkdir -p "$work/curl"
  sync
  t0=$(now)
  for f in "${files[@]}"; do
    curl -fsS -L -H 'Accept-Encoding: identity' -o "$work/curl/${f//\//_}" \
      "$endpoint/immich-app/bench-model/resolve/main/$f"
  done
  t1=$(now)
  sync
  t1s=$(now)
  t2=$(now)
  HF_ENDPOINT=$endpoint /usr/bin/time -v "$BINARY" pull bench-model --to "$work/models/bench-model" \
    >/dev/null 2>"$work/pull.log" || { cat "$work/pull.log" >&2; exit 1; }
  t3=$(now)
  c=$(echo "$t1 - $t0" | bc -l) cs=$(echo "$t1s - $t0" | bc -l) p=$(echo "$t3 - $t2" | bc -l)
  r=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$work/pull.log")
  printf 'run %d: curl %.2f s (%.2f s with sync), pull %.2f s, pull peak RSS %.1f MB\n' \
    "$run" "$c" "$cs" "$p" "$(echo "$r / 1024" | bc -l)"
  if [ -z "$best_curl" ] || [ "$(echo "$c < $best_curl" | bc)" = 1 ]; then best_curl=$c; fi
  if [ -z "$best_sync" ] || [ "$(echo "$cs < $best_sync" | bc)" = 1 ]; then best_sync=$cs; fi
  if [ -z "$best_pull" ] || [ "$(echo "$p < $best_pull" | bc)" = 1 ]; then best_pull=$p; fi
  if [ -z "$rss" ] || [ "$r" -gt "$rss" ]; then rss=$r; fi
done
mb=$(echo "$total / 1000000" | bc -l)
printf 'files: %d, %.1f MB (the model plus %d MiB of external data); the stand-in %s\n' "${#files[@]}" "$mb" "$MB" \
  "$([ -n "$RATE" ] && echo "paced at $RATE MB/s" || echo "unpaced, on loopback")"
printf 'curl (best of %d): %.2f s, %.0f MB/s\n' "$RUNS" "$best_curl" "$(echo "$mb / $best_curl" | bc -l)"
printf 'pull (best of %d): %.2f s, %.0f MB/s (verified: sha256 of the LFS files, git blob sha1 of the rest)\n' \
  "$RUNS" "$best_pull" "$(echo "$mb / $best_pull" | bc -l)"
printf 'curl + sync (best of %d): %.2f s: the durability pull gives (it fsyncs each file before the model moves into place)\n' "$RUNS" "$best_sync"
printf 'pull / curl throughput: %.2f (target >= 0.9); against curl + sync: %.2f\n' \
  "$(echo "$best_curl / $best_pull" | bc -l)" "$(echo "$best_sync / $best_pull" | bc -l)"
printf 'pull peak RSS (largest of %d): %.1f MB (target <= 50 MB)\n' "$RUNS" "$(echo "$rss / 1024" | bc -l)"

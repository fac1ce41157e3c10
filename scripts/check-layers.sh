#!/usr/bin/env bash
# The layers point one way (README "Layout"): a module may use its own layer and the ones
# below it, never one above. Prints each violation and "N passed, M failed" (one check per
# source file); exits 1 on any violation.
#   4  main, daemon, doctor, fetch   (the program: wires everything; fetch is pull's, and
#                                     daemon must not use it: `serve` never downloads)
#   3  http                          (axum: routes, wire types, protocol adapters)
#   2  service                       (admission, queue, cache, self-test)
#   1  backends                      (cpu: onnxruntime | tract; hailo)
#   0  encoder, config, model, preprocess, tokenize, similarity, template, metrics
# and inside backends/hailo: engine → session → device → ffi.
set -euo pipefail
cd "$(dirname "$0")/../src"
rank() {
  case "$1" in
    main | daemon | doctor | fetch) echo 4 ;;
    http) echo 3 ;;
    service) echo 2 ;;
    backends) echo 1 ;;
    encoder | config | model | preprocess | tokenize | similarity | template | metrics | lib) echo 0 ;;
    *) echo "unknown module $1" >&2; exit 2 ;;
  esac
}
passed=0
failed=0
while IFS= read -r file; do
  top=${file%%/*}
  top=${top%.rs}
  mine=$(rank "$top")
  bad=""
  # `crate::X` paths, and `hailo_clip::X` from main.rs.
  while IFS= read -r used; do
    [ -z "$used" ] || [ "$used" = "$top" ] && continue
    if [ "$(rank "$used")" -gt "$mine" ]; then
      bad="$bad $used"
    fi
  done < <(grep -oE '(crate|hailo_clip)::[a-z_]+' "$file" | sed -E 's/^(crate|hailo_clip):://' | sort -u)
  # Same layer, but `serve` never downloads: only main and fetch itself may use fetch.
  case "$top" in main | fetch) ;; *) grep -qE '(crate|hailo_clip)::fetch\b' "$file" && bad="$bad fetch" ;; esac
  if [ -n "$bad" ]; then
    echo "FAIL src/$file (layer $mine: $top) uses a layer above it:$bad"
    failed=$((failed + 1))
  else
    passed=$((passed + 1))
  fi
done < <(find . -name '*.rs' | sed 's|^\./||' | sort)
# Inside the Hailo backend too: engine → session → device → ffi, never back.
hailo_rank() { case "$1" in ffi) echo 0 ;; device) echo 1 ;; session) echo 2 ;; engine) echo 3 ;; *) echo -1 ;; esac; }
for mod in device session engine; do
  file=backends/hailo/$mod.rs
  bad=""
  while IFS= read -r used; do
    [ -z "$used" ] || [ "$(hailo_rank "$used")" -lt "$(hailo_rank "$mod")" ] || bad="$bad $used"
  done < <(grep -oE 'super::(ffi|device|session|engine)\b' "$file" | sed 's/super:://' | sort -u)
  if [ -n "$bad" ]; then
    echo "FAIL src/$file (hailo $mod) uses a module at or above it:$bad"
    failed=$((failed + 1))
  else
    passed=$((passed + 1))
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]

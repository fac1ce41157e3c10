#!/usr/bin/env bash
# The official `openai` Python client against the live daemon (tests/openai/client_test.py).
# Usage: tests/openai/run.sh BINARY. Installs the pinned client into a venv under target/.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
binary=$1
venv=${OPENAI_TEST_VENV:-$here/../../target/openai-venv}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import openai' 2>/dev/null; then
  python3 -m venv "$venv" && "$venv/bin/pip" install -q -r "$here/requirements.txt" || {
    echo "cannot install the openai client (tests/openai/requirements.txt)" >&2
    exit 1
  }
fi
log=$(mktemp)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$binary" --model-dir "$here/../../assets/models/clip-tiny-random" serve --port "$port" >"$log" 2>&1 &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null; rm -f "$log"' EXIT
python3 - "$port" <<'PY' || { cat "$log"; exit 1; }
import sys, time, urllib.request
for _ in range(600):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=2)
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
PY
"$venv/bin/python" "$here/client_test.py" "http://127.0.0.1:$port"

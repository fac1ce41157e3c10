#!/usr/bin/env bash
# The page at / in headless Chromium (tests/browser/page_test.py). Usage:
#   tests/browser/run.sh BINARY [--screenshot docs/page.png]
# Installs Debian's chromium and chromium-driver with apt-get when missing (as root, or
# with sudo), and the pinned Selenium into a venv under target/.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
binary=$1
shift
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  sudo_cmd=()
  [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  echo "== installing chromium and chromium-driver with apt-get"
  "${sudo_cmd[@]}" apt-get update -qq && "${sudo_cmd[@]}" apt-get install -y -qq chromium chromium-driver >/dev/null || {
    echo "cannot install chromium and chromium-driver" >&2
    exit 1
  }
fi
venv=${BROWSER_TEST_VENV:-$here/../../target/browser-venv}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import selenium' 2>/dev/null; then
  python3 -m venv "$venv" && "$venv/bin/pip" install -q -r "$here/requirements.txt" || {
    echo "cannot install selenium (tests/browser/requirements.txt)" >&2
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
# Selenium Manager must not try to download a driver: the Service names Debian's.
SE_OFFLINE=true "$venv/bin/python" "$here/page_test.py" "http://127.0.0.1:$port" "$@"

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
  if ! { "${sudo_cmd[@]}" apt-get update -qq && "${sudo_cmd[@]}" apt-get install -y -qq chromium chromium-driver >/dev/null; }; then
    echo "cannot install chromium and chromium-driver" >&2
    exit 1
  fi
fi
# shellcheck source=tests/lib/live-daemon.sh
. "$here/../lib/live-daemon.sh"
venv_with "$here/requirements.txt" "${BROWSER_TEST_VENV:-$repo/target/browser-venv}"
start_daemon "$binary"
# Selenium Manager must not try to download a driver: the Service names Debian's.
SE_OFFLINE=true "$venv/bin/python" "$here/page_test.py" "http://127.0.0.1:$port" "$@"

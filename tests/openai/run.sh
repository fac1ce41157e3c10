#!/usr/bin/env bash
# The official `openai` Python client against the live daemon (tests/openai/client_test.py).
# Usage: tests/openai/run.sh BINARY. Installs the pinned client into a venv under target/.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/lib/live-daemon.sh
. "$here/../lib/live-daemon.sh"
venv_with "$here/requirements.txt" "${OPENAI_TEST_VENV:-$repo/target/openai-venv}"
start_daemon "$1"
"$venv/bin/python" "$here/client_test.py" "http://127.0.0.1:$port"

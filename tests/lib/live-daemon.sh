# shellcheck shell=bash
# Shared by the scripts that test the live daemon (tests/{schemathesis,openai,browser}/run.sh);
# source it, then:
#   venv_with REQUIREMENTS VENV   installs the pinned tools into VENV unless present; sets $venv
#   start_daemon BINARY           serves the bundled model on a free port with an API key
#                                 required (server.api_keys_file), waits for /health, stops it
#                                 on exit; sets $port, $daemon_log and $api_key, and exports
#                                 the key as HAILO_CLIP_API_KEY for the test programs
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

venv_with() { # REQUIREMENTS VENV
  venv=$2
  # A copy of the requirements it was made from says the venv is current.
  if cmp -s "$1" "$venv/.requirements" 2>/dev/null; then
    return 0
  fi
  if ! { python3 -m venv "$venv" && "$venv/bin/pip" install -q -r "$1"; }; then
    echo "cannot install $1 into $venv" >&2
    exit 1
  fi
  cp "$1" "$venv/.requirements"
}

start_daemon() { # BINARY
  daemon_log=$(mktemp)
  daemon_dir=$(mktemp -d)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  api_key=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
  export HAILO_CLIP_API_KEY=$api_key
  (umask 077 && printf '# live-daemon tests\n%s\n' "$api_key" >"$daemon_dir/keys")
  printf 'server:\n  api_keys_file: %s\n' "$daemon_dir/keys" >"$daemon_dir/config.yaml"
  "$1" --config "$daemon_dir/config.yaml" --model-dir "$repo/assets/models/clip-tiny-random" serve --port "$port" >"$daemon_log" 2>&1 &
  daemon=$!
  trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null; rm -rf "$daemon_log" "$daemon_dir"' EXIT
  # Python rather than curl: a fresh machine has Python, not necessarily curl.
  python3 - "$port" <<'PY' || { cat "$daemon_log"; exit 1; }
import sys, time, urllib.request
for _ in range(600):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=2)
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
PY
}

#!/usr/bin/env bash
# scripts/test-install.sh: CI test of install.sh and systemd/hailo-clip.service.
#
#   scripts/test-install.sh [--binary PATH]
#
# Everything is installed with --destdir into temporary roots: this machine's users,
# /etc and services are never touched, and systemd need not be running. Downloads go to a
# small HTTP server on 127.0.0.1 (with Range support, and transfers it breaks off on
# purpose), never to the internet. The last part boots a throwaway systemd-nspawn container
# (tmpfs root, this machine's /usr read-only) and runs install.sh --warmup in it for real;
# where nspawn cannot boot, it says so and skips that part.
# The binary is --binary PATH, or $HAILO_CLIP_BINARY, or target/release/hailo-clip built
# here with cargo build --release --locked.
# Installs shellcheck, systemd (systemd-analyze), systemd-container (systemd-nspawn), curl
# and python3 with apt-get when missing. Prints one line per check and ends with
# "N passed, M failed"; exits non-zero when any check fails.
# TEST_INSTALL_KEEP=1 keeps the temporary directory (roots, logs) for a look afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
BINARY=${HAILO_CLIP_BINARY:-}
while [ "$#" -gt 0 ]; do
  case "$1" in
    --binary) BINARY=${2:?--binary needs a path}; shift 2 ;;
    --binary=*) BINARY=${1#*=}; shift ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "test-install: unknown option $1" >&2; exit 2 ;;
  esac
done
START=$SECONDS

# ---------------------------------------------------------------- tools

need=()
command -v shellcheck >/dev/null || need+=(shellcheck)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
if [ "${#need[@]}" -gt 0 ]; then
  echo "== installing ${need[*]} with apt-get"
  if ! command -v apt-get >/dev/null; then
    echo "test-install: ${need[*]} missing and apt-get is not available: install them by hand" >&2
    exit 1
  fi
  sudo_cmd=()
  [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  if ! { "${sudo_cmd[@]}" apt-get update -qq &&
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"; } >/tmp/test-install-apt.log 2>&1; then
    tail -n 20 /tmp/test-install-apt.log >&2
    echo "test-install: apt-get install ${need[*]} failed (log: /tmp/test-install-apt.log)" >&2
    exit 1
  fi
fi
echo "== $(shellcheck --version | sed -n 2p), $(systemd-analyze --version | head -n 1)"

if [ -z "$BINARY" ]; then
  echo "== cargo build --release --locked"
  cargo build --release --locked
  BINARY=$REPO/target/release/hailo-clip
fi
[ -x "$BINARY" ] || { echo "test-install: $BINARY is not an executable" >&2; exit 1; }
BINARY=$(cd "$(dirname "$BINARY")" && pwd)/$(basename "$BINARY")
echo "== binary $BINARY ($("$BINARY" --version))"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/hailo-clip-test-install.XXXXXX")
SERVER_PID=
finish() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
  if [ -n "${TEST_INSTALL_KEEP:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap finish EXIT

# ---------------------------------------------------------------- checks

PASSED=0
FAILED=0
LAST_LOG=/dev/null
check() { # DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@" >"$WORK/check.out" 2>&1; then
    PASSED=$((PASSED + 1))
    echo "ok   $what"
  else
    FAILED=$((FAILED + 1))
    echo "FAIL $what"
    sed 's/^/     | /' "$WORK/check.out" | tail -n 20
    if [ "$LAST_LOG" != /dev/null ] && [ "$LOG_SHOWN" = 0 ]; then
      LOG_SHOWN=1
      echo "     output of install.sh $LAST_ARGS:"
      sed 's/^/     | /' "$LAST_LOG" | tail -n 40
    fi
  fi
}

RC=0
N_RUN=0
LOG_SHOWN=0
LAST_ARGS=
# Runs install.sh ARGS..., output in $LAST_LOG, exit code in $RC.
inst() {
  N_RUN=$((N_RUN + 1))
  LAST_LOG=$WORK/run$N_RUN.log
  LAST_ARGS="$*"
  LOG_SHOWN=0
  RC=0
  "$REPO/install.sh" "$@" >"$LAST_LOG" 2>&1 </dev/null || RC=$?
}

rc_is() { [ "$RC" = "$1" ] || { echo "install.sh exited $RC, expected $1"; return 1; }; }
log_has() { grep -qF -- "$1" "$LAST_LOG" || { echo "install.sh output lacks: $1"; return 1; }; }
log_lacks() { ! grep -qF -- "$1" "$LAST_LOG" || { echo "install.sh output has: $1"; return 1; }; }
mode_is() { # PATH MODE
  [ -f "$1" ] || { echo "$1 does not exist"; return 1; }
  [ "$(stat -c %a "$1")" = "$2" ] || { echo "$1 has mode $(stat -c %a "$1"), expected $2"; return 1; }
}
absent() { for p in "$@"; do if [ -e "$p" ]; then echo "$p exists"; return 1; fi; done; }
present() { for p in "$@"; do if [ ! -e "$p" ]; then echo "$p is missing"; return 1; fi; done; }
same_file() { cmp "$1" "$2"; }
snapshot() { # DIR -> every path with mode, owner, size, mtime and content hash
  (cd "$1" && find . -printf '%p %m %u %g %s %T@\n' | sort && find . -type f -exec sha256sum {} + | sort -k2)
}
same_snapshot() { diff "$1" "$2"; }
unit_has() { grep -qxF -- "$2" "$1" || { echo "$1 lacks the line: $2"; return 1; }; }
staged_member() { # ROOT GROUP USER
  awk -F: -v g="$2" -v u="$3" '$1 == g { n = split($4, m, ","); for (i = 1; i <= n; i++) if (m[i] == u) f = 1 } END { exit !f }' "$1/etc/group" ||
    { echo "$1/etc/group: $3 is not in $2"; grep -E "^($2|$3):" "$1/etc/group"; return 1; }
}
same_file_mode() { cmp "$1" "$2" && mode_is "$2" "$3"; }
no_user() { # ROOT
  if grep -n 'hailo-clip' "$1/etc/passwd" "$1/etc/group"; then return 1; fi
}

U=etc/systemd/system/hailo-clip.service
C=etc/hailo/hailo-clip.yaml
B=usr/local/bin/hailo-clip
S=usr/local/lib/sysusers.d/hailo-clip.conf
MR=usr/local/share/hailo-clip/models

# ---------------------------------------------------------------- shellcheck

echo "== shellcheck"
for f in install.sh scripts/*.sh; do
  check "shellcheck $f" shellcheck "$f"
done

# ---------------------------------------------------------------- unit file

echo "== unit file"
unit=$REPO/systemd/hailo-clip.service
for line in Type=notify "ExecStart=/usr/local/bin/hailo-clip serve" User=hailo-clip Group=hailo-clip \
  SupplementaryGroups=hailo "DeviceAllow=/dev/hailo0 rw" NoNewPrivileges=yes ProtectSystem=strict \
  ProtectHome=yes PrivateTmp=yes PrivateDevices=no ProtectKernelTunables=yes ProtectKernelModules=yes \
  ProtectKernelLogs=yes "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX" CapabilityBoundingSet= \
  SystemCallFilter=@system-service MemoryMax=3G Restart=on-failure TimeoutStartSec=120 TimeoutStopSec=30 \
  StateDirectory=hailo-clip; do
  check "unit has $line" unit_has "$unit" "$line"
done
check "unit sets WatchdogSec" grep -qE '^WatchdogSec=[1-9]' "$unit"
check "unit sets CPUQuota" grep -qE '^CPUQuota=[1-9][0-9]*%$' "$unit"
check "unit sets RestartSec" grep -qE '^RestartSec=[1-9]' "$unit"
check "unit requires its socket (socket activation)" unit_has "$unit" "Requires=hailo-clip.socket"
check "socket unit listens on the default address" unit_has "$REPO/systemd/hailo-clip.socket" "ListenStream=127.0.0.1:5000"

# ---------------------------------------------------------------- install into a staging root

echo "== install --destdir"
real_before=$(cat /etc/passwd /etc/group | sha256sum)
R1=$WORK/root1
inst --destdir "$R1" --binary "$BINARY"
check "install exits 0" rc_is 0
check "binary installed, mode 0755" mode_is "$R1/$B" 755
check "binary is the given one" same_file "$BINARY" "$R1/$B"
check "unit installed, mode 0644" mode_is "$R1/$U" 644
check "unit ExecStart is the installed binary" unit_has "$R1/$U" "ExecStart=/usr/local/bin/hailo-clip serve"
check "socket unit installed, mode 0644" mode_is "$R1/etc/systemd/system/hailo-clip.socket" 644
check "socket unit listens where the config says" unit_has "$R1/etc/systemd/system/hailo-clip.socket" "ListenStream=127.0.0.1:5000"
check "config installed, mode 0644" mode_is "$R1/$C" 644
check "config is the reference config" same_file "$REPO/config/hailo-clip.yaml" "$R1/$C"
check "installed binary accepts the installed config" "$R1/$B" --config "$R1/$C" check-config
check "sysusers.d file installed, mode 0644" mode_is "$R1/$S" 644
check "user hailo-clip staged with home /var/lib/hailo-clip and no login" \
  grep -qE '^hailo-clip:x:[0-9]+:[0-9]+:[^:]*:/var/lib/hailo-clip:/usr/sbin/nologin$' "$R1/etc/passwd"
check "hailo-clip staged as a member of the device group hailo" staged_member "$R1" hailo hailo-clip
check "this machine's /etc/passwd and /etc/group untouched" test "$real_before" = "$(cat /etc/passwd /etc/group | sha256sum)"

echo "== idempotency"
snapshot "$R1" >"$WORK/snap1"
inst --destdir "$R1" --binary "$BINARY"
check "second run exits 0" rc_is 0
check "second run reports 0 changed" log_has "done: 0 changed"
snapshot "$R1" >"$WORK/snap2"
check "second run changes no file, mode or mtime" same_snapshot "$WORK/snap1" "$WORK/snap2"

echo "== dry run"
inst --destdir "$R1" --binary "$BINARY" --dry-run --device-group video
snapshot "$R1" >"$WORK/snap3"
check "dry run on an installed root exits 0" rc_is 0
check "dry run changes nothing" same_snapshot "$WORK/snap1" "$WORK/snap3"
check "dry run prints the unit change it would make" log_has "would:     replace $R1/$U"
R0=$WORK/never-created
inst --destdir "$R0" --binary "$BINARY" --dry-run
check "dry run into a new root exits 0" rc_is 0
check "dry run creates no directory" absent "$R0"
for p in "$B" "$U" "$C" "$S"; do
  check "dry run prints: install /$p" log_has "would:     install $R0/$p"
done
check "dry run prints the user it would create" log_has "would:     create system user hailo-clip"

echo "== config handling"
printf '\n# edited by the test\n' >>"$R1/$C"
cp "$R1/$C" "$WORK/edited.yaml"
inst --destdir "$R1" --binary "$BINARY"
check "rerun with an edited config exits 0" rc_is 0
check "edited config untouched" same_file "$WORK/edited.yaml" "$R1/$C"
check "new default written beside it as .new" same_file "$REPO/config/hailo-clip.yaml" "$R1/$C.new"
check ".new is mode 0644" mode_is "$R1/$C.new" 644
check "install.sh says so" log_has "kept your edited /etc/hailo/hailo-clip.yaml; the new default config is /etc/hailo/hailo-clip.yaml.new"
snapshot "$R1" >"$WORK/snap4"
inst --destdir "$R1" --binary "$BINARY"
snapshot "$R1" >"$WORK/snap5"
check "rerun with the edited config changes nothing" same_snapshot "$WORK/snap4" "$WORK/snap5"
cp "$REPO/config/hailo-clip.yaml" "$R1/$C"
inst --destdir "$R1" --binary "$BINARY"
check "config back to the default: stale .new removed" absent "$R1/$C.new"
# An unedited default from an earlier version is updated in place (no .new).
printf '# an older default\nbackend: auto\n' | tee "$R1/$C" >"$R1/usr/local/share/hailo-clip/hailo-clip.yaml.dist"
inst --destdir "$R1" --binary "$BINARY"
check "unedited older default updated in place" same_file "$REPO/config/hailo-clip.yaml" "$R1/$C"
check "no .new for an unedited config" absent "$R1/$C.new"

echo "== prefix and device group"
R2=$WORK/root2
inst --destdir "$R2" --binary "$BINARY" --prefix /opt/hailo-clip --device-group video
check "install with --prefix exits 0" rc_is 0
check "binary under the prefix, mode 0755" mode_is "$R2/opt/hailo-clip/bin/hailo-clip" 755
check "unit ExecStart follows the prefix" unit_has "$R2/$U" "ExecStart=/opt/hailo-clip/bin/hailo-clip serve"
check "unit SupplementaryGroups follows --device-group" unit_has "$R2/$U" "SupplementaryGroups=video"
check "config model.dir follows the prefix" grep -qx '  dir: /opt/hailo-clip/share/hailo-clip/models/ViT-B-32__openai' "$R2/$C"
check "hailo-clip staged as a member of video" staged_member "$R2" video hailo-clip
check "the --prefix config is valid" "$R2/opt/hailo-clip/bin/hailo-clip" --config "$R2/$C" check-config

# ---------------------------------------------------------------- downloads

echo "== downloads (HTTP server on 127.0.0.1)"
SRV=$WORK/srv
mkdir -p "$SRV/models"
tar -czf "$SRV/models/clip-tiny-random.tar.gz" -C "$REPO/assets/models" clip-tiny-random
mkdir -p "$WORK/broken/clip-broken"
cp "$REPO/assets/models/clip-tiny-random/"* "$WORK/broken/clip-broken/"
sed -i 's/"name": "clip-tiny-random"/"name": "clip-broken"/' "$WORK/broken/clip-broken/manifest.json"
head -c 1000 "$REPO/assets/models/clip-tiny-random/visual.onnx" >"$WORK/broken/clip-broken/visual.onnx"
tar -czf "$SRV/models/clip-broken.tar.gz" -C "$WORK/broken" clip-broken
printf 'not a tarball\n' >"$SRV/models/not-a.tar.gz"

cat >"$WORK/server.py" <<'EOF'
# Static files with Range support, to test resuming: DROP_ONCE lists paths whose first
# full (non-range) transfer is cut off halfway. Every request is logged.
import http.server, os, sys
root, port_file, log_file = sys.argv[1:4]
log = open(log_file, "a", buffering=1)
drop_once = set(p for p in os.environ.get("DROP_ONCE", "").split(",") if p)

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        rng = self.headers.get("Range")
        path = os.path.join(root, self.path.lstrip("/"))
        if not os.path.isfile(path):
            log.write(f"{self.path} range={rng} 404\n")
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = open(path, "rb").read()
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        status = 206 if rng else 200
        log.write(f"{self.path} range={rng} {status}\n")
        self.send_response(status)
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in drop_once and not rng:
            drop_once.discard(self.path)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
EOF
DROP_ONCE=/models/clip-tiny-random.tar.gz python3 "$WORK/server.py" "$SRV" "$WORK/port" "$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 50); do [ -s "$WORK/port" ] && break; sleep 0.1; done
PORT=$(cat "$WORK/port")
ZOO=http://127.0.0.1:$PORT
# A port nothing listens on: bound once by the kernel's choice, then closed.
DEAD_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
R5=$WORK/root5
# install.sh downloads nothing itself: the binary does (hailo-clip download, hailo-clip pull).
# curl only asks the installed daemon ($url, in --warmup); nothing runs wget.
check "install.sh runs no downloader of its own" sh -c "! grep -nE '\b(curl|wget) -' '$REPO/install.sh' | grep -v '\\\$url/'"

echo "== CPU model"
inst --destdir "$R5" --binary "$BINARY" --models cpu --model-url "$ZOO/models/clip-tiny-random.tar.gz"
check "random-weights model refused: exit 2" rc_is 2
check "install.sh says the download it asked for" log_has "hailo-clip download $ZOO/models/clip-tiny-random.tar.gz --to $R5/var/cache/hailo-clip/clip-tiny-random.tar.gz"
check "random-weights model refused: says why" log_has "has RANDOM weights"
check "random-weights model refused: not installed" absent "$R5/$MR/clip-tiny-random"
inst --destdir "$R5" --binary "$BINARY" --models cpu --model-url "$ZOO/models/clip-tiny-random.tar.gz" --allow-random-weights
check "--allow-random-weights: exit 0" rc_is 0
check "the tarball came through the binary, resumed where its transfer broke off (Range)" \
  grep -qE '^/models/clip-tiny-random.tar.gz range=bytes=[1-9][0-9]*- 206$' "$WORK/server.log"
for f in visual.onnx textual.onnx tokenizer.json manifest.json; do
  check "model file $f installed whole, mode 0644" \
    same_file_mode "$REPO/assets/models/clip-tiny-random/$f" "$R5/$MR/clip-tiny-random/$f" 644
done
check "random model installed under its own name, not as the configured model" absent "$R5/$MR/clip-vit-base-patch32"
check "install.sh points at model.dir" log_has "to serve this model set model.dir: /usr/local/share/hailo-clip/models/clip-tiny-random"
snapshot "$R5" >"$WORK/snap8"
inst --destdir "$R5" --binary "$BINARY" --models cpu --model-url "$ZOO/models/clip-tiny-random.tar.gz" --allow-random-weights
snapshot "$R5" >"$WORK/snap9"
check "CPU model rerun changes nothing" same_snapshot "$WORK/snap8" "$WORK/snap9"
inst --destdir "$R5" --binary "$BINARY" --models cpu --model-archive "$REPO/assets/models/clip-tiny-random" \
  --allow-random-weights --model-name clip-vit-base-patch32
check "random model never installed as the configured model: exit 2" rc_is 2
check "random model never installed as the configured model: absent" absent "$R5/$MR/clip-vit-base-patch32"
inst --destdir "$R5" --binary "$BINARY" --models cpu --model-url "$ZOO/models/clip-broken.tar.gz"
check "corrupt model refused: exit 2" rc_is 2
check "corrupt model refused: not installed" absent "$R5/$MR/clip-broken"
inst --destdir "$R5" --binary "$BINARY" --models cpu --model-url "$ZOO/models/missing.tar.gz"
check "--model-url not found: exit 2" rc_is 2
check "--model-url not found: names the URL and the status" log_has "$ZOO/models/missing.tar.gz: HTTP 404"
inst --destdir "$R5" --binary "$BINARY" --models cpu --model-url "http://127.0.0.1:$DEAD_PORT/m.tar.gz"
check "--model-url unreachable: exit 2" rc_is 2
check "--model-url unreachable: says so" log_has "cannot reach the server at http://127.0.0.1:$DEAD_PORT/m.tar.gz"
inst --destdir "$R5" --binary "$BINARY" --models cpu --model-url "$ZOO/models/not-a.tar.gz"
check "--model-url not a tarball: exit 2" rc_is 2
check "--model-url not a tarball: says so" log_has "$ZOO/models/not-a.tar.gz is not a tar archive"
inst --destdir "$R5" --binary "$BINARY" --models cpu
check "no model source: exit 2" rc_is 2
check "no model source: says what to do" log_has "No package registry ships CLIP weights"

# ---------------------------------------------------------------- --model NAME (hailo-clip pull)

# The Hub and the Model Zoo bucket as the stand-in answers them (tests/standins/hub.py):
# Immich's export of the test model as immich-app/ViT-B-32__openai, HEFs for hailo10h v5.2.0.
HUB=$WORK/hub
mkdir -p "$HUB/immich-app" "$WORK/zoo/v5.2.0/hailo10h"
cp -r "$REPO/tests/fixtures/immich-tiny-random" "$HUB/immich-app/ViT-B-32__openai"
for n in clip_vit_b_32_image_encoder clip_vit_b_32_text_encoder; do
  head -c 300000 /dev/urandom >"$WORK/zoo/v5.2.0/hailo10h/$n.hef"
done
python3 "$REPO/tests/standins/hub.py" --root "$HUB" --zoo-root "$WORK/zoo" >"$WORK/hub.port" 2>"$WORK/hub.log" &
HUB_PID=$!
for _ in $(seq 100); do grep -q listening "$WORK/hub.port" 2>/dev/null && break; sleep 0.1; done
HUB_URL=http://127.0.0.1:$(awk '/listening/ {print $2}' "$WORK/hub.port")
R6=$WORK/root6 PM=usr/local/share/hailo-clip/models/ViT-B-32__openai
HF_ENDPOINT=$HUB_URL inst --destdir "$R6" --binary "$BINARY" --model ViT-B-32__openai --dry-run
check "--model dry run: exits 0" rc_is 0
check "--model dry run: says the pull it would run" log_has "would:     hailo-clip pull ViT-B-32__openai --to $R6/$PM"
check "--model dry run: fetches nothing" absent "$R6/$PM"
HF_ENDPOINT=$HUB_URL inst --destdir "$R6" --binary "$BINARY" --model ViT-B-32__openai --models hailo10h \
  --hailort-version 5.2.0 --zoo-url "$HUB_URL/zoo"
check "--model: exits 0" rc_is 0
check "--model: the model pulled into PREFIX/share/hailo-clip/models/NAME" \
  present "$R6/$PM/config.json" "$R6/$PM/visual/model.onnx" "$R6/$PM/textual/model.onnx" "$R6/$PM/hailo-clip-pull.json"
check "--model: Immich's other runtimes not fetched" absent "$R6/$PM/visual/rknpu"
check "--model --models hailo10h: the Model Zoo's HEFs for HailoRT 5.2.0" \
  same_file "$WORK/zoo/v5.2.0/hailo10h/clip_vit_b_32_text_encoder.hef" "$R6/$PM/hailo/hailo10h/clip_vit_b_32_text_encoder.hef"
check "--model --models hailo10h: the text files from the pulled graph" "$BINARY" check-text-assets "$R6/$PM/hailo/hailo10h"
check "--model: the new config serves it" grep -qx "  dir: /$PM" "$R6/$C"
check "--model: the binary reads it by its pulled name" test "$("$BINARY" check-model "$R6/$PM" --get name)" = ViT-B-32__openai
snapshot "$R6" >"$WORK/snap6"
HF_ENDPOINT=$HUB_URL inst --destdir "$R6" --binary "$BINARY" --model ViT-B-32__openai --models hailo10h \
  --hailort-version 5.2.0 --zoo-url "$HUB_URL/zoo"
check "--model rerun: exits 0" rc_is 0
check "--model rerun: the pull is a no-op" log_has "unchanged: $R6/$PM (ViT-B-32__openai)"
snapshot "$R6" >"$WORK/snap7"
check "--model rerun: changes no file" same_snapshot "$WORK/snap6" "$WORK/snap7"
# An edited config is never rewritten: it is told the line to change.
R7=$WORK/root7
mkdir -p "$R7/etc/hailo"
printf 'model:\n  dir: /srv/my-model\n' >"$R7/$C"
HF_ENDPOINT=$HUB_URL inst --destdir "$R7" --binary "$BINARY" --model ViT-B-32__openai
check "--model with an edited config: exits 0" rc_is 0
check "--model with an edited config: says the line to change" \
  log_has "to serve ViT-B-32__openai change that line to: model.dir: /$PM"
check "--model with an edited config: left as it was" grep -qx '  dir: /srv/my-model' "$R7/$C"
# --models hailo10h with no --model pulls the default model with its HEFs; a checkpoint
# (--hf-dir) is for --models cpu alone.
inst --destdir "$WORK/root9" --binary "$BINARY" --models hailo10h --hailort-version 5.2.0 --dry-run
check "--models hailo10h alone: pulls ViT-B-32__openai with its HEFs" \
  log_has "would:     hailo-clip pull ViT-B-32__openai --to $WORK/root9/$PM --hef --arch hailo10h --hailort-version 5.2.0"
inst --destdir "$WORK/root9" --binary "$BINARY" --models hailo10h --hf-dir "$REPO/tests/fixtures/hf-clip-tiny-random" --dry-run
check "--models hailo10h --hf-dir: refused, saying why" log_has "--hf-dir, --model-archive and --model-url are for --models cpu alone"
HF_ENDPOINT=$HUB_URL inst --destdir "$WORK/root8" --binary "$BINARY" --model nope__none
check "--model of an unknown repository: exits 2 (installed, model missing)" rc_is 2
check "--model of an unknown repository: says so in words" log_has "repository immich-app/nope__none was not found"
kill "$HUB_PID" 2>/dev/null || true

# ---------------------------------------------------------------- uninstall

echo "== uninstall"
snapshot "$R6" >"$WORK/snap10"
inst --destdir "$R6" --uninstall --dry-run
snapshot "$R6" >"$WORK/snap11"
check "uninstall --dry-run changes nothing" same_snapshot "$WORK/snap10" "$WORK/snap11"
inst --destdir "$R6" --uninstall
check "uninstall exits 0" rc_is 0
check "uninstall removes the binary, unit and sysusers file" absent "$R6/$B" "$R6/$U" "$R6/$S"
check "uninstall keeps the config" present "$R6/$C"
check "uninstall keeps the models" present "$R6/$PM/hailo/hailo10h/clip_vit_b_32_image_encoder.hef" "$R6/$PM/visual/model.onnx"
check "uninstall keeps the user" grep -q '^hailo-clip:' "$R6/etc/passwd"
inst --destdir "$R6" --uninstall --purge
check "purge exits 0" rc_is 0
check "purge removes the config and the share directory (models too)" absent "$R6/$C" "$R6/etc/hailo" "$R6/usr/local/share/hailo-clip"
check "purge removes the staged user, its group and its membership" no_user "$R6"

# ---------------------------------------------------------------- systemd-analyze

echo "== systemd-analyze"
# verify resolves ExecStart= and the units the service depends on inside --root: give it
# the staged unit and binary plus this machine's own systemd units.
VR=$WORK/verify-root
mkdir -p "$VR/etc/systemd/system" "$VR/usr/local/bin" "$VR/usr/lib/systemd"
cp "$R1/$U" "$VR/$U"
cp "$R1/etc/systemd/system/hailo-clip.socket" "$VR/etc/systemd/system/"
ln "$R1/$B" "$VR/$B" 2>/dev/null || cp "$R1/$B" "$VR/$B"
# ExecReload= runs /bin/kill.
mkdir -p "$VR/bin" && cp "$(type -P kill)" "$VR/bin/kill"
units=/usr/lib/systemd/system
[ -d "$units" ] || units=/lib/systemd/system
cp -r "$units" "$VR/usr/lib/systemd/system"
verify() {
  local out rc=0
  out=$(systemd-analyze verify --root="$1" hailo-clip.service hailo-clip.socket 2>&1) || rc=$?
  [ -n "$out" ] && printf '%s\n' "$out"
  [ "$rc" = 0 ] && [ -z "$out" ]
}
verify_fails() { ! systemd-analyze verify --root="$1" hailo-clip.service; }
check "systemd-analyze verify: staged unit is clean" verify "$VR"
systemd-analyze verify --root="$VR" hailo-clip.service 2>&1 | sed 's/^/     | /' || true
rm "$VR/$B"
check "systemd-analyze verify catches a missing ExecStart binary (the check is real)" verify_fails "$VR"
systemd-analyze security --offline=yes "$R1/$U" >"$WORK/security.txt" 2>&1 || true
score=$(sed -n 's/.*Overall exposure level for hailo-clip.service: \([0-9.]*\).*/\1/p' "$WORK/security.txt")
grep -E '^✗' "$WORK/security.txt" | sed 's/^/     | /' || true
echo "systemd-analyze security exposure: ${score:-unknown} (target <= 2.0)"
check "systemd-analyze security exposure ${score:-unknown} <= 2.0" awk -v s="${score:-99}" 'BEGIN { exit !(s + 0 <= 2.0) }'

# ---------------------------------------------------------------- install.sh on a systemd host

echo "== boot test: install.sh --warmup on a systemd host (systemd-nspawn)"
# A throwaway container boots systemd on a tmpfs root with this machine's /usr read-only
# (--volatile=yes), this checkout at /src, and its own loopback-only network (so port 5000
# inside never meets a daemon running on this machine). A probe unit runs install.sh there for real
# (prefix /opt/hailo-clip, as /usr is read-only), checks the running service, uninstalls it
# and powers the container off. Nothing is written outside $WORK. The bundled RANDOM test
# model stands in for a real one: install.sh puts it under its own name, never as the
# configured model.dir, so a drop-in points the daemon at it (HAILO_CLIP_MODEL_DIR).
NR=$WORK/nspawn
mkdir -p "$NR/system/multi-user.target.wants" "$NR/out" "$NR/bin"
cp "$BINARY" "$NR/bin/hailo-clip"
printf '[Unit]\nAfter=multi-user.target\n[Service]\nType=oneshot\nExecStart=/out/probe.sh\n' >"$NR/system/probe.service"
ln -s ../probe.service "$NR/system/multi-user.target.wants/probe.service"
ln -s /dev/null "$NR/system/systemd-firstboot.service"
cat >"$NR/out/probe.sh" <<'EOF'
#!/bin/bash
# Runs inside the container; records facts in /out/results.
r() { echo "$1=$2" >>/out/results; }
model=/opt/hailo-clip/share/hailo-clip/models/clip-tiny-random
args=(--prefix /opt/hailo-clip --binary /test-bin/hailo-clip --models cpu
  --model-archive /src/assets/models/clip-tiny-random --allow-random-weights)
mkdir -p /etc/systemd/system/hailo-clip.service.d
# The test model, and a short watchdog to see the daemon keep it fed within the probe's time.
printf '[Service]\nEnvironment=HAILO_CLIP_MODEL_DIR=%s\nWatchdogSec=4s\n' "$model" \
  >/etc/systemd/system/hailo-clip.service.d/test.conf
/src/install.sh "${args[@]}" --warmup >/out/install.log 2>&1
r install_rc $?
r enabled "$(systemctl is-enabled hailo-clip)"
r state "$(systemctl is-active hailo-clip)"
r status_text "$(systemctl show -p StatusText --value hailo-clip)"
r passwd "$(getent passwd hailo-clip | cut -d: -f6,7)"
pid=$(systemctl show -p MainPID --value hailo-clip)
field() { sed -n "s/^$1:[[:space:]]*//p" "/proc/$pid/status"; }
r uid "$(field Uid | cut -f1)"
r expected_uid "$(id -u hailo-clip)"
r groups " $(field Groups) "
r hailo_gid "$(getent group hailo | cut -d: -f3)"
r no_new_privs "$(field NoNewPrivs)"
r seccomp "$(field Seccomp)"
r cap_eff "$(field CapEff)"
r state_dir "$(stat -c '%U %a' /var/lib/hailo-clip)"
/src/install.sh "${args[@]}" >/out/install2.log 2>&1
r install2_rc $?
r same_pid "$([ "$(systemctl show -p MainPID --value hailo-clip)" = "$pid" ] && echo yes || echo no)"
r socket_state "$(systemctl is-active hailo-clip.socket) $(systemctl is-enabled hailo-clip.socket)"
# Restart under load: 4 clients send requests on fresh connections for 8 s while the daemon
# restarts; with the socket held by systemd, none may be refused.
python3 - >/out/restart.log 2>&1 <<'PY' &
import concurrent.futures, http.client, time
def client(_):
    counts = {}
    end = time.monotonic() + 8
    while time.monotonic() < end:
        try:
            c = http.client.HTTPConnection("127.0.0.1", 5000, timeout=30)
            c.request("GET", "/v1/models")
            key = str(c.getresponse().status)
            c.close()
        except ConnectionRefusedError:
            key = "refused"
        except Exception as e:
            key = type(e).__name__
        counts[key] = counts.get(key, 0) + 1
    return counts
with concurrent.futures.ThreadPoolExecutor(4) as pool:
    total = {}
    for counts in pool.map(client, range(4)):
        for k, v in counts.items():
            total[k] = total.get(k, 0) + v
print(" ".join(f"{k}={v}" for k, v in sorted(total.items())))
PY
load=$!
sleep 2
systemctl restart hailo-clip
r restart_rc $?
wait "$load"
r restart_load "$(tail -n 1 /out/restart.log)"
pid=$(systemctl show -p MainPID --value hailo-clip)
sleep 10
r state_after_watchdog "$(systemctl is-active hailo-clip)"
r restarts "$(systemctl show -p NRestarts --value hailo-clip)"
systemctl stop hailo-clip
r result "$(systemctl show -p Result --value hailo-clip)"
r exit_status "$(systemctl show -p ExecMainStatus --value hailo-clip)"
journalctl -u hailo-clip --no-pager >/out/journal.txt 2>&1
/src/install.sh --prefix /opt/hailo-clip --uninstall >/out/uninstall.log 2>&1
r uninstall_rc $?
r unit_after_uninstall "$(systemctl show -p LoadState --value hailo-clip)"
r config_after_uninstall "$([ -f /etc/hailo/hailo-clip.yaml ] && echo kept || echo gone)"
r finished yes
systemctl poweroff
EOF
chmod +x "$NR/out/probe.sh"
boot_rc=0
if [ "$(id -u)" = 0 ]; then
  timeout 150 systemd-nspawn -q --volatile=yes -D / --machine="hailo-clip-test-$$" --register=no --keep-unit --private-network \
    --bind-ro="$REPO:/src" --bind-ro="$NR/bin:/test-bin" --bind="$NR/system:/etc/systemd/system" \
    --bind-ro=/etc/alternatives \
    --bind="$NR/out:/out" --boot >"$NR/console.log" 2>&1 </dev/null || boot_rc=$?
else
  boot_rc="not root"
fi
result() { sed -n "s/^$1=//p" "$NR/out/results" 2>/dev/null | tail -n 1; }
BOOT_LOGS_SHOWN=0
result_is() {
  [ "$(result "$1")" = "$2" ] && return 0
  echo "$1 is '$(result "$1")', expected '$2'"
  if [ "$BOOT_LOGS_SHOWN" = 0 ]; then
    BOOT_LOGS_SHOWN=1
    for f in install.log install2.log uninstall.log journal.txt; do
      if [ -s "$NR/out/$f" ]; then echo "-- $f"; tail -n 15 "$NR/out/$f"; fi
    done
  fi
  return 1
}
not_refused() { [[ "$1" == *"200="* && "$1" != *refused* ]] || { echo "answers: '$1'"; return 1; }; }
has_group() { [[ "$1" == *" $2 "* ]] || { echo "groups '$1' lack $2"; return 1; }; }
if [ ! -s "$NR/out/results" ]; then
  # The probe never ran: this machine cannot boot a systemd-nspawn container.
  echo "boot test not run: systemd-nspawn could not boot a container here (exit $boot_rc):"
  tail -n 5 "$NR/console.log" 2>/dev/null | sed 's/^/     | /'
else
  LAST_LOG=$NR/out/install.log
  LOG_SHOWN=1
  check "boot test: install.sh --warmup exits 0" result_is install_rc 0
  check "boot test: --warmup waited for /health 200" log_has 'ready: http://127.0.0.1:5000/health -> {"status":"ok"'
  check "boot test: --warmup printed a sample classification" log_has '{"classifications":[{"text":"cat"'
  check "boot test: --warmup ran the self-test" log_has 'self-test skipped (random weights)'
  check "boot test: config installed" log_has "changed:   /etc/hailo/hailo-clip.yaml (mode 0644)"
  check "boot test: test model installed under its own name" log_has "to serve this model set model.dir: /opt/hailo-clip/share/hailo-clip/models/clip-tiny-random"
  check "boot test: daemon-reload and enable ran" log_has "changed:   systemctl enable hailo-clip"
  check "boot test: unit enabled" result_is enabled enabled
  check "boot test: Type=notify service active (READY=1)" result_is state active
  check "boot test: the daemon's STATUS= line shows in systemctl" result_is status_text "ready: serving on http://127.0.0.1:5000"
  check "boot test: user hailo-clip created (home, nologin)" result_is passwd "/var/lib/hailo-clip:/usr/sbin/nologin"
  check "boot test: runs as user hailo-clip" result_is uid "$(result expected_uid)"
  check "boot test: has the device group hailo" has_group "$(result groups)" "$(result hailo_gid)"
  check "boot test: NoNewPrivileges" result_is no_new_privs 1
  check "boot test: seccomp filter on" result_is seccomp 2
  check "boot test: no capabilities" result_is cap_eff 0000000000000000
  check "boot test: StateDirectory owned by hailo-clip, mode 750" result_is state_dir "hailo-clip 750"
  LAST_LOG=$NR/out/install2.log
  check "boot test: second install.sh exits 0" result_is install2_rc 0
  check "boot test: second install.sh changes nothing" log_has "done: 0 changed"
  check "boot test: second install.sh leaves the daemon running (same PID)" result_is same_pid yes
  check "boot test: the socket unit is active and enabled" result_is socket_state "active enabled"
  check "boot test: systemctl restart under load exits 0" result_is restart_rc 0
  echo "     restart under load: $(result restart_load)"
  check "boot test: no connection refused during the restart" not_refused "$(result restart_load)"
  check "boot test: watchdog kept fed (WatchdogSec=4s, still active 10 s later)" result_is state_after_watchdog active
  check "boot test: no restart" result_is restarts 0
  check "boot test: stop exits 0" result_is exit_status 0
  check "boot test: stop result success" result_is result success
  check "boot test: --uninstall exits 0" result_is uninstall_rc 0
  check "boot test: --uninstall removes the unit" result_is unit_after_uninstall not-found
  check "boot test: --uninstall keeps the config" result_is config_after_uninstall kept
  check "boot test: the probe finished" result_is finished yes
fi

echo "== $((SECONDS - START)) s"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]

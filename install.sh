#!/usr/bin/env bash
# install.sh: installs hailo-clip as a systemd service (binary, unit, config, system user)
# and optionally its models. Idempotent: a second run with the same options changes
# nothing. docs/INSTALL.md describes every option; ./install.sh --help lists them.
set -euo pipefail
umask 022

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SCRIPT_DIR
readonly SERVICE=hailo-clip
readonly SERVICE_USER=hailo-clip
readonly HEF_ARCH=hailo10h
# The model --models hailo10h pulls when --model names none: Immich's default, whose twin
# HEFs the Model Zoo publishes (the daemon's default model.dir).
readonly DEFAULT_MODEL=ViT-B-32__openai
readonly CPU_MODEL_FILES=(visual.onnx textual.onnx tokenizer.json manifest.json)
# Where --models cpu installs the flat export of openai/clip-vit-base-patch32 (its manifest name).
readonly FLAT_MODEL=clip-vit-base-patch32

PREFIX=/usr/local DESTDIR='' BINARY='' FEATURES=auto MODELS=none HF_DIR='' DEVICE_GROUP=''
MODEL_ARCHIVE='' MODEL_URL='' MODEL_NAME='' ALLOW_RANDOM=0 HAILORT_VERSION='' MODEL=''
ZOO_URL=${HAILO_CLIP_ZOO_URL:-}
WARMUP=0 DRY_RUN=0 UNINSTALL=0 PURGE=0 PYTHON=${PYTHON:-python3}

usage() {
  cat <<'EOF'
Usage: sudo ./install.sh [OPTIONS]    (docs/INSTALL.md explains each option)

Installs hailo-clip: the binary, the systemd unit, /etc/hailo/hailo-clip.yaml, the system user
hailo-clip (in the Hailo device group) and, with --models, the model files. A second run with
the same options changes nothing. Run as root, or with --destdir.

  --prefix DIR              install prefix (default /usr/local)
  --destdir DIR             stage everything under DIR: no systemctl, users staged in DIR/etc
  --binary PATH             install this binary instead of building one
  --features auto|hailo|cpu cargo features for the build (auto: hailo when HailoRT is installed)
  --device-group NAME       group allowed to use the Hailo device (default: the device's group, or hailo)
  --warmup                  start the service, wait for /health 200, classify a sample, run the self-test
  --dry-run                 print every action without doing any of them
  --model NAME              a real model by name, with no Python: `hailo-clip pull NAME` fetches Immich's
                            ONNX export (immich-app/NAME on the Hugging Face Hub, e.g. ViT-B-32__openai)
                            into PREFIX/share/hailo-clip/models/NAME, with its Model Zoo HEFs and the
                            Hailo text files when --models has hailo10h; a config this run creates
                            serves it (model.dir)
  --models LIST             none (default), cpu, hailo10h, or a comma-separated list: which backends get
                            files (hailo10h adds the HEFs to the pull of --model, ViT-B-32__openai if none)
  --hf-dir DIR              cpu: a Hugging Face CLIP checkpoint with no Immich export, exported by
                            scripts/export_onnx.py ($PYTHON with torch)
  --model-archive PATH      cpu: an exported model directory, or a tarball holding one
  --model-url URL           cpu: such a tarball, downloaded by `hailo-clip download` (resumable)
  --model-name NAME         cpu: directory name under models/ (default: the manifest name)
  --allow-random-weights    cpu: accept a random-weights test model (never as model.dir)
  --hailort-version X.Y.Z   hailo10h: this HailoRT version instead of the detected one
  --zoo-url URL             hailo10h: Model Zoo base URL (default the public one, or $HAILO_CLIP_ZOO_URL)
  --uninstall               stop and disable the service; remove the binary and the unit
  --purge                   with --uninstall: also the config, CPU models, state, logs and user
  -h, --help                this text

Exit status: 0 done; 1 error; 2 installed, but a requested model is missing (the message
says what to do).
EOF
}

# ---------------------------------------------------------------- output and bookkeeping

CHANGED=0 UNCHANGED=0 PLANNED=0 MODEL_FAILURES=0 RESTART_NEEDED=0 SOCKET_CHANGED=0

say() { printf 'install.sh: %s\n' "$*"; }
warn() { printf 'install.sh: warning: %s\n' "$*" >&2; }
die() { printf 'install.sh: error: %s\n' "$*" >&2 && exit 1; }
changed() { CHANGED=$((CHANGED + 1)) && printf '  changed:   %s\n' "$*"; }
unchanged() { UNCHANGED=$((UNCHANGED + 1)) && printf '  unchanged: %s\n' "$*"; }
would() { PLANNED=$((PLANNED + 1)) && printf '  would:     %s\n' "$*"; }
model_failure() { MODEL_FAILURES=$((MODEL_FAILURES + 1)) && printf 'install.sh: model: %s\n' "$*" >&2; }

# The staged path of an absolute path.
R() { printf '%s%s' "$DESTDIR" "$1"; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/hailo-clip-install.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# ---------------------------------------------------------------- options

need_arg() {
  if [ "$#" -lt 2 ] || [ -z "$2" ]; then die "$1 needs a value (see --help)"; fi
}

while [ "$#" -gt 0 ]; do
  # --option=value is --option value.
  if [[ "$1" == --*=* ]]; then set -- "${1%%=*}" "${1#*=}" "${@:2}"; fi
  case "$1" in
    # Each option sets the variable of its name: --hf-dir DIR sets HF_DIR, --dry-run DRY_RUN=1.
    --prefix | --destdir | --binary | --features | --model | --models | --hf-dir | --model-archive | --model-url | \
      --model-name | --hailort-version | --zoo-url | --device-group)
      need_arg "$@"; v=${1#--}; v=${v^^}; printf -v "${v//-/_}" '%s' "$2"; shift 2 ;;
    --warmup | --dry-run | --uninstall | --purge) v=${1#--}; v=${v^^}; printf -v "${v//-/_}" 1; shift ;;
    --allow-random-weights) ALLOW_RANDOM=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

safe_path() { [[ "$1" =~ ^/[A-Za-z0-9/._+-]*$ ]]; }
safe_path "$PREFIX" || die "--prefix must be an absolute path of letters, digits and / . _ + - (got '$PREFIX')"
PREFIX=${PREFIX%/}
[ -n "$PREFIX" ] || PREFIX=/
if [ -n "$DESTDIR" ]; then
  [ "$DRY_RUN" = 1 ] || mkdir -p "$DESTDIR" || die "cannot create --destdir $DESTDIR"
  if [ -d "$DESTDIR" ]; then DESTDIR=$(cd "$DESTDIR" && pwd); elif [ "${DESTDIR#/}" = "$DESTDIR" ]; then DESTDIR=$PWD/$DESTDIR; fi
  DESTDIR=${DESTDIR%/}
  [ "$DESTDIR" != "" ] || die "--destdir / is the real system: leave --destdir out instead"
fi
case "$FEATURES" in auto | hailo | cpu) ;; *) die "--features takes auto, hailo or cpu (got '$FEATURES')" ;; esac
WANT_CPU=0 WANT_HAILO=0
for m in ${MODELS//,/ }; do
  case "$m" in none) ;; cpu) WANT_CPU=1 ;; hailo10h) WANT_HAILO=1 ;;
    *) die "--models takes none, cpu, hailo10h or a comma-separated list of them (got '$m')" ;; esac
done
[ -z "$DEVICE_GROUP" ] || [[ "$DEVICE_GROUP" =~ ^[a-z_][a-z0-9_-]*$ ]] || die "--device-group: '$DEVICE_GROUP' is not a group name"
[ -z "$MODEL_NAME" ] || [[ "$MODEL_NAME" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die "--model-name: '$MODEL_NAME' is not a plain directory name"
[ -z "$HAILORT_VERSION" ] || [[ "$HAILORT_VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "--hailort-version takes X.Y.Z, e.g. 5.1.1 (got '$HAILORT_VERSION')"
ZOO_URL=${ZOO_URL%/}
[ "$PURGE" = 0 ] || [ "$UNINSTALL" = 1 ] || die "--purge goes with --uninstall"
[ "$UNINSTALL" = 0 ] || { [ "$WARMUP" = 0 ] && [ "$MODELS" = none ]; } || die "--uninstall does not go with --warmup or --models"
[ "$WARMUP" = 0 ] || [ -z "$DESTDIR" ] || die "--warmup starts the installed service, which a --destdir staging is not"
[ "$WANT_CPU" = 1 ] || { [ -z "$MODEL_ARCHIVE$MODEL_URL$MODEL_NAME" ] && [ "$ALLOW_RANDOM" = 0 ]; } ||
  die "--model-archive, --model-url, --model-name and --allow-random-weights go with --models cpu"
[ -z "$MODEL_ARCHIVE" ] || [ -z "$MODEL_URL" ] || die "give --model-archive or --model-url, not both"
if [ "$WANT_HAILO" = 1 ] && [ -z "$MODEL" ]; then
  [ -z "$HF_DIR$MODEL_ARCHIVE$MODEL_URL" ] || die "--models hailo10h pulls its model with its HEFs (--model NAME, default $DEFAULT_MODEL): --hf-dir, --model-archive and --model-url are for --models cpu alone"
  MODEL=$DEFAULT_MODEL
fi
if [ -n "$MODEL" ]; then
  [[ "$MODEL" =~ ^([A-Za-z0-9][A-Za-z0-9._-]*/)?[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die "--model takes NAME or ORG/NAME, e.g. ViT-B-32__openai (got '$MODEL')"
  [ -z "$HF_DIR$MODEL_ARCHIVE$MODEL_URL" ] || die "--model fetches the model: it does not go with --hf-dir, --model-archive or --model-url"
fi
if [ -n "$HF_DIR" ]; then
  [ "$WANT_CPU" = 1 ] || die "--hf-dir goes with --models cpu"
  [ -d "$HF_DIR" ] || die "--hf-dir $HF_DIR is not a directory"
  HF_DIR=$(cd "$HF_DIR" && pwd)
  [ "$WANT_CPU" = 0 ] || [ -z "$MODEL_ARCHIVE$MODEL_URL" ] || die "for --models cpu give one source: --hf-dir, --model-archive or --model-url"
fi
[ -n "$DESTDIR" ] || [ "$DRY_RUN" = 1 ] || [ "$(id -u)" = 0 ] ||
  die "installing into the system needs root: sudo $0 ... (or --dry-run, or --destdir DIR to stage)"

# ---------------------------------------------------------------- paths

BIN_PATH=$PREFIX/bin/hailo-clip
[ "$PREFIX" != / ] || BIN_PATH=/bin/hailo-clip
SHARE_DIR=${PREFIX%/}/share/hailo-clip
MODELS_ROOT=$SHARE_DIR/models
PULLED_DIR=''
[ -z "$MODEL" ] || PULLED_DIR=$MODELS_ROOT/${MODEL##*/}
CONFIG_DIST=$SHARE_DIR/hailo-clip.yaml.dist
SYSUSERS_PATH=${PREFIX%/}/lib/sysusers.d/hailo-clip.conf
readonly UNIT_PATH=/etc/systemd/system/hailo-clip.service CONFIG_DIR=/etc/hailo CONFIG_PATH=/etc/hailo/hailo-clip.yaml
readonly SOCKET_PATH=/etc/systemd/system/hailo-clip.socket SOCKET_SRC=$SCRIPT_DIR/systemd/hailo-clip.socket
readonly STATE_DIR=/var/lib/hailo-clip LOG_DIR=/var/log/hailo-clip CACHE_DIR=/var/cache/hailo-clip
readonly UNIT_SRC=$SCRIPT_DIR/systemd/hailo-clip.service CONFIG_SRC=$SCRIPT_DIR/config/hailo-clip.yaml

systemd_running() { [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; }

# ---------------------------------------------------------------- file helpers

ensure_dir() { # DIR MODE
  [ ! -d "$1" ] || return 0
  if [ "$DRY_RUN" = 1 ]; then would "create directory $1 (mode $2)"; else install -d -m "$2" "$1" && changed "created directory $1"; fi
}

# Installs SRC at DEST with MODE, atomically (a temporary file beside DEST, then mv).
install_file() { # SRC DEST MODE
  local src=$1 dest=$2 mode=$3 tmp
  if [ -f "$dest" ] && cmp -s "$src" "$dest" && [ "$(stat -c %a "$dest")" = "${mode#0}" ]; then unchanged "$dest"; return 0; fi
  if [ "$DRY_RUN" = 1 ] && [ -e "$dest" ]; then would "replace $dest (mode $mode)"; return 0; fi
  if [ "$DRY_RUN" = 1 ]; then would "install $dest (mode $mode)"; return 0; fi
  ensure_dir "$(dirname "$dest")" 0755
  tmp="$dest.tmp.$$"
  install -m "$mode" "$src" "$tmp"
  mv -f "$tmp" "$dest"
  changed "$dest (mode $mode)"
}

remove_path() { # PATH
  if [ ! -e "$1" ] && [ ! -L "$1" ]; then return 0; fi
  if [ "$DRY_RUN" = 1 ]; then would "remove $1"; else rm -rf -- "$1" && changed "removed $1"; fi
}

# ---------------------------------------------------------------- asking the binary

# Model files, manifests and the config are checked by the binary that will read them
# (hailo-clip check-model, check-text-assets, check-config --get), never re-parsed here.
# ASK_ERROR is the last error it printed. Built-in defaults unless --config is given.
: >"$TMP/defaults.yaml"
ASK_ERROR=
ask() {
  local rc=0
  HAILO_CLIP_CONFIG=$TMP/defaults.yaml "$NEW_BIN" "$@" 2>"$TMP/ask.err" || rc=$?
  ASK_ERROR=$(sed -n 's/^error: //p' "$TMP/ask.err" | tail -n 1)
  [ -n "$ASK_ERROR" ] || ASK_ERROR=$(tail -n 1 "$TMP/ask.err")
  return "$rc"
}

# The installed config's KEY (e.g. model.dir); empty when it cannot be read.
config_get() { # KEY
  [ -f "$(R "$CONFIG_PATH")" ] && [ "$BIN_RUNS" = 1 ] && [ -n "$NEW_BIN" ] || return 0
  ask --config "$(R "$CONFIG_PATH")" check-config --get "$1" || true
}

# ---------------------------------------------------------------- the binary

exists() { local f; for f in "$@"; do [ ! -e "$f" ] || return 0; done; return 1; }
hailort_installed() { # HailoRT's headers and library, where the hailo feature's build looks
  exists "${HAILORT_INCLUDE_DIR:-/usr/include}/hailo/hailort.hpp" /usr/include/hailo/hailort.hpp /usr/local/include/hailo/hailort.hpp &&
    exists "${HAILORT_LIB_DIR:-/usr/lib}/libhailort.so" /usr/lib/libhailort.so /usr/lib/*-linux-gnu/libhailort.so /usr/local/lib/libhailort.so
}

# The binary to install: --binary, or one built now. Sets NEW_BIN (empty in a dry run
# that would build) and BIN_RUNS (0 when it is for another machine).
NEW_BIN=
BIN_RUNS=1
prepare_binary() {
  local want_hailo=0 cargo target features=() as_user=()
  if [ -n "$BINARY" ]; then
    { [ -f "$BINARY" ] && [ -x "$BINARY" ]; } || die "--binary $BINARY is not an executable file"
    NEW_BIN=$(cd "$(dirname "$BINARY")" && pwd)/$(basename "$BINARY")
  else
    case "$FEATURES" in
      hailo) hailort_installed || die "--features hailo: HailoRT is not installed (no hailo/hailort.hpp and libhailort.so; on Raspberry Pi OS: sudo apt install hailo-h10-all, or set HAILORT_INCLUDE_DIR/HAILORT_LIB_DIR)"
        want_hailo=1 ;;
      auto)
        if hailort_installed; then
          want_hailo=1
        elif command -v hailortcli >/dev/null; then
          warn "HailoRT is installed (hailortcli) but its headers (hailo/hailort.hpp) or libhailort.so are not where the build looks: building without the Hailo backend. Set HAILORT_INCLUDE_DIR / HAILORT_LIB_DIR, or pass --features hailo to make this an error"
        fi
        ;;
    esac
    [ "$want_hailo" = 0 ] || features=(--features hailo)
    [ -f "$SCRIPT_DIR/Cargo.toml" ] || die "no --binary given and no Cargo.toml beside install.sh to build from"
    target=${CARGO_TARGET_DIR:-$SCRIPT_DIR/target}
    cargo=$(command -v cargo || true)
    if [ "$(id -u)" = 0 ] && [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
      # Build as the user who ran sudo: their toolchain, and no root-owned target/.
      local user_home
      user_home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
      if [ -z "$cargo" ] && [ -x "$user_home/.cargo/bin/cargo" ]; then cargo=$user_home/.cargo/bin/cargo; fi
      as_user=(sudo -u "$SUDO_USER" -H)
    fi
    # Debian's cargo-web (Rust 1.96 in bookworm and trixie, so Raspberry Pi OS) is
    # /usr/bin/cargo and builds this as well as rustup's toolchain does.
    [ -n "$cargo" ] || die "cargo not found: sudo apt install cargo-web (Debian 12/13, Raspberry Pi OS: Rust 1.96), or install rustup's toolchain, or pass --binary PATH"
    local build_cmd="cargo build --release --locked${features[*]:+ ${features[*]}}"
    say "building: $build_cmd ($([ "$want_hailo" = 1 ] && echo "with the Hailo backend" || echo "CPU engine only")) with $cargo ($("$cargo" --version 2>/dev/null || echo "version unknown"))"
    if [ "$DRY_RUN" = 1 ]; then would "build $target/release/hailo-clip with: $build_cmd"; return 0; fi
    "$SCRIPT_DIR/scripts/build-deps.sh" || die "the build needs CMake (and NASM on x86_64): apt install cmake nasm"
    (cd "$SCRIPT_DIR" && "${as_user[@]}" env "PATH=$(dirname "$cargo"):$PATH" "$cargo" build --release --locked "${features[@]}") ||
      die "the build failed (see above); fix it or pass --binary PATH"
    NEW_BIN=$target/release/hailo-clip
  fi
  if ! "$NEW_BIN" --version >/dev/null 2>&1; then
    # Staging a binary for another machine (e.g. an arm64 build on an x86 host) is fine.
    [ -n "$DESTDIR" ] || die "$NEW_BIN does not run here (wrong architecture, or a missing library: ldd $NEW_BIN)"
    warn "$NEW_BIN does not run on this machine (another architecture?): staging it unchecked; models cannot be checked or exported here"
    BIN_RUNS=0
    return 0
  fi
  if ldd "$NEW_BIN" 2>/dev/null | grep -q 'libhailort\.so'; then
    say "binary: $NEW_BIN ($("$NEW_BIN" --version), Hailo backend linked)"
    return 0
  fi
  say "binary: $NEW_BIN ($("$NEW_BIN" --version), CPU engine only)"
  if [ "$FEATURES" = hailo ] || { [ "$FEATURES" = auto ] && [ -n "$BINARY" ] && hailort_installed; }; then
    warn "this binary has no Hailo backend (not built with --features hailo): the daemon will use the CPU engine"
  fi
}

# ---------------------------------------------------------------- users and groups

# The group that may open the Hailo device.
choose_device_group() {
  local node grp mode
  [ -z "$DEVICE_GROUP" ] || return 0
  DEVICE_GROUP=hailo
  for node in /dev/hailo[0-9]* /dev/h1x-[0-9]*; do
    [ -c "$node" ] || continue
    grp=$(stat -c %G "$node")
    mode=$(stat -c %a "$node")
    if [ "$grp" != root ]; then
      DEVICE_GROUP=$grp
      say "device $node: group $grp, mode $mode: hailo-clip joins group $grp"
    elif [ $((0$mode & 6)) = 6 ]; then
      say "device $node: root:root mode $mode (HailoRT's udev rule), open to every user; hailo-clip joins group hailo in case you restrict it"
    else
      warn "$node is root:root mode $mode: hailo-clip cannot open it. Install the HailoRT driver's udev rule (it sets mode 0666), or restrict the device to group hailo with /etc/udev/rules.d/60-hailo-clip.rules: SUBSYSTEM==\"hailo_chardev|hailo1x\", GROUP=\"hailo\", MODE=\"0660\" (docs/INSTALL.md)"
    fi
    return 0
  done
}

# getent, reading the staged root's files when there is one.
ent() { if [ -n "$DESTDIR" ]; then grep -s "^$2:" "$DESTDIR/etc/$1"; else getent "$1" "$2"; fi; } # DATABASE KEY

users_in_place() { # -> 0 when the user, its group and the device-group membership exist
  ent passwd "$SERVICE_USER" >/dev/null && ent group "$SERVICE_USER" >/dev/null &&
    ent group "$DEVICE_GROUP" | cut -d: -f4 | tr ',' '\n' | grep -qx "$SERVICE_USER"
}

# systemd-sysusers creates them from the sysusers.d file (staged: into DESTDIR/etc only).
create_users() {
  local conf
  conf=$(R "$SYSUSERS_PATH")
  if users_in_place; then unchanged "user $SERVICE_USER (group $SERVICE_USER, member of $DEVICE_GROUP)"; return 0; fi
  if [ "$DRY_RUN" = 1 ]; then
    would "create system user $SERVICE_USER (home $STATE_DIR, no login) and group $SERVICE_USER; create group $DEVICE_GROUP if missing; add $SERVICE_USER to $DEVICE_GROUP${DESTDIR:+ (staged in $DESTDIR/etc)}"
    return 0
  fi
  if [ -n "$DESTDIR" ] && { [ "$(id -u)" != 0 ] || ! command -v systemd-sysusers >/dev/null; }; then
    say "not staging users (needs root and systemd-sysusers): $SYSUSERS_PATH declares them for the target system"
    return 0
  fi
  mkdir -p "$DESTDIR/etc"
  { systemd-sysusers ${DESTDIR:+--root="$DESTDIR"} "$conf" >"$TMP/sysusers.log" 2>&1 && users_in_place; } ||
    { cat "$TMP/sysusers.log" >&2; die "systemd-sysusers $conf did not create user $SERVICE_USER in group $DEVICE_GROUP (above): create them by hand (docs/INSTALL.md), and run install.sh again"; }
  sed 's/^/    /' "$TMP/sysusers.log"
  changed "user $SERVICE_USER (group $SERVICE_USER, member of $DEVICE_GROUP)${DESTDIR:+ staged in $DESTDIR/etc/passwd and $DESTDIR/etc/group}"
  RESTART_NEEDED=1
}

# ---------------------------------------------------------------- config and unit

install_config() {
  local new=$TMP/hailo-clip.yaml cfg dist
  # The model a config made here serves: the pulled one; the flat export --models cpu puts in
  # place; else the default (where `hailo-clip pull $DEFAULT_MODEL` installs) under the prefix.
  local dir=$MODELS_ROOT/$DEFAULT_MODEL
  if [ -n "$PULLED_DIR" ]; then dir=$PULLED_DIR; elif [ "$WANT_CPU" = 1 ]; then dir=$MODELS_ROOT/$FLAT_MODEL; fi
  sed "s|^\([[:space:]]*dir:[[:space:]]*\)/usr/local/share/hailo-clip/models/.*|\1$dir|" "$CONFIG_SRC" >"$new"
  cfg=$(R "$CONFIG_PATH")
  dist=$(R "$CONFIG_DIST")
  ensure_dir "$(R "$CONFIG_DIR")" 0755
  if [ ! -e "$cfg" ]; then
    install_file "$new" "$cfg" 0644
    RESTART_NEEDED=1
  elif cmp -s "$new" "$cfg"; then
    unchanged "$cfg"
    remove_path "$cfg.new"
  elif [ -f "$dist" ] && cmp -s "$dist" "$cfg"; then
    # Still the default an earlier run installed, never edited: take the new default.
    say "$CONFIG_PATH is the unedited default of an earlier install: updating it"
    install_file "$new" "$cfg" 0644
    RESTART_NEEDED=1
  else
    install_file "$new" "$cfg.new" 0644
    say "kept your edited $CONFIG_PATH; the new default config is $CONFIG_PATH.new (compare: diff -u $CONFIG_PATH $CONFIG_PATH.new)"
  fi
  install_file "$new" "$dist" 0644
}

install_unit() {
  local out=$TMP/hailo-clip.service before=$CHANGED
  sed -e "s|^ExecStart=/usr/local/bin/hailo-clip |ExecStart=$BIN_PATH |" \
    -e "s|^SupplementaryGroups=.*|SupplementaryGroups=$DEVICE_GROUP|" "$UNIT_SRC" >"$out"
  install_file "$out" "$(R "$UNIT_PATH")" 0644
  [ "$CHANGED" != "$before" ] || return 0
  RESTART_NEEDED=1
  if systemd_running; then systemctl daemon-reload && changed "systemctl daemon-reload"; fi
}

# The socket unit, listening where the config says (the binary reads the config). A binary
# that cannot run here (staged for another machine) leaves the default 127.0.0.1:5000.
install_socket() {
  local out=$TMP/hailo-clip.socket before=$CHANGED host port listen
  host=$(config_get server.host)
  port=$(config_get server.port)
  if [ -z "$host" ] || [ -z "$port" ]; then
    host=127.0.0.1 port=5000
    [ "$BIN_RUNS" = 1 ] || warn "the socket unit listens on $host:$port (the binary cannot read the config here): edit ListenStream= in $SOCKET_PATH if server.host/server.port differ"
  fi
  case "$host" in *:*) listen="[$host]:$port" ;; *) listen="$host:$port" ;; esac
  sed "s|^ListenStream=.*|ListenStream=$listen|" "$SOCKET_SRC" >"$out"
  install_file "$out" "$(R "$SOCKET_PATH")" 0644
  [ "$CHANGED" != "$before" ] || return 0
  SOCKET_CHANGED=1
  if systemd_running; then systemctl daemon-reload && changed "systemctl daemon-reload"; fi
}

# ---------------------------------------------------------------- models: hailo10h

detect_hailort_version() {
  local f
  {
    [ -z "$HAILORT_VERSION" ] || echo "$HAILORT_VERSION"
    ! command -v hailortcli >/dev/null || hailortcli --version 2>/dev/null
    ! command -v dpkg-query >/dev/null || dpkg-query -W -f='${Version}\n' h10-hailort hailort 2>/dev/null
    for f in /usr/lib/libhailort.so.* /usr/lib/*/libhailort.so.* /usr/local/lib/libhailort.so.*; do [ ! -e "$f" ] || basename "$f"; done
  } | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -n 1 || true
}

# ---------------------------------------------------------------- models: cpu

# ONNX Runtime for the CPU engine (cpu.engine: auto takes it; tract serves without it):
# libonnxruntime.so from the onnxruntime wheel on PyPI, beside the binary in
# PREFIX/lib/hailo-clip/, where the daemon looks. A machine without pip or network keeps tract.
install_onnxruntime() {
  local lib
  if [ "$DRY_RUN" = 1 ]; then would "fetch ONNX Runtime (scripts/fetch-onnxruntime.sh, pip) into $(R "$PREFIX/lib/hailo-clip")"; return 0; fi
  if ! lib=$("$SCRIPT_DIR/scripts/fetch-onnxruntime.sh" 2>"$TMP/ort.log"); then
    warn "ONNX Runtime could not be fetched with pip ($(tail -n 1 "$TMP/ort.log")): the CPU engine will be tract, about half as fast; rerun install.sh with network, or set cpu.onnxruntime_library"
    return 0
  fi
  install_file "$lib" "$(R "$PREFIX/lib/hailo-clip/$(basename "$lib")")" 0644
}

# Puts the model directory SRC in place under MODELS_ROOT, atomically, once the binary
# has loaded it and run it (check-model).
place_cpu_model() { # SRC DESCRIPTION
  local src=$1 what=$2 name random dest root staged f configured
  if [ "$BIN_RUNS" = 0 ] || [ -z "$NEW_BIN" ]; then
    if [ "$DRY_RUN" = 1 ]; then would "check and install the model $what under $MODELS_ROOT"; return 0; fi
    model_failure "cannot check $what: the binary does not run on this machine; install the model on the target"
    return 0
  fi
  if ! name=$(ask check-model "$src" --get name) || ! random=$(ask check-model "$src" --get random_weights); then
    model_failure "$what is not a hailo-clip model directory: $ASK_ERROR"
    return 0
  fi
  name=${MODEL_NAME:-$name}
  [[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || { model_failure "$what: manifest name '$name' cannot be a directory name; pass --model-name NAME"; return 0; }
  root=$(R "$MODELS_ROOT")
  dest=$root/$name
  configured=$(config_get model.dir)
  configured=${configured:-$MODELS_ROOT/$FLAT_MODEL}
  if [ "$random" = true ]; then
    if [ "$ALLOW_RANDOM" = 0 ]; then
      model_failure "$what has RANDOM weights (manifest.json: random_weights: true): its scores are meaningless, so it is not installed. Give a real exported CLIP model (docs/INSTALL.md); --allow-random-weights installs a random one for tests"
      return 0
    fi
    if [ "$MODELS_ROOT/$name" = "$configured" ]; then
      model_failure "refusing to install the RANDOM-weights model $name as the configured model ($configured)"
      return 0
    fi
    warn "installing a model with RANDOM weights ($name) for testing; it is not the configured model.dir and its scores are meaningless"
  fi
  for f in "${CPU_MODEL_FILES[@]}"; do
    cmp -s "$src/$f" "$dest/$f" || break
    [ "$f" != "${CPU_MODEL_FILES[-1]}" ] || { unchanged "$dest"; return 0; }
  done
  if [ "$DRY_RUN" = 1 ]; then would "install the model $what as $dest"; return 0; fi
  ask check-model "$src" >/dev/null || { model_failure "$what does not load and run in the CPU engine ($ASK_ERROR); not installed"; return 0; }
  ensure_dir "$root" 0755
  staged=$(mktemp -d "$root/.$name.new.XXXXXX")
  install -m 0644 "${CPU_MODEL_FILES[@]/#/$src/}" "$staged/"
  chmod 0755 "$staged"
  [ ! -d "$dest" ] || mv "$dest" "$staged.old"
  mv "$staged" "$dest"
  rm -rf "$staged.old"
  changed "$dest (model $name from $what)"
  RESTART_NEEDED=1
  [ "$MODELS_ROOT/$name" = "$configured" ] ||
    say "note: $CONFIG_PATH has model.dir: $configured; to serve this model set model.dir: $MODELS_ROOT/$name"
}

install_cpu_model() {
  local src dir configured archive
  if [ -n "$HF_DIR" ]; then
    [ "$DRY_RUN" = 0 ] || { would "export $HF_DIR with $PYTHON scripts/export_onnx.py and install it under $MODELS_ROOT"; return 0; }
    src=$TMP/export
    say "exporting $HF_DIR to ONNX (a few minutes for ViT-B/32)"
    if "$PYTHON" "$SCRIPT_DIR/scripts/export_onnx.py" --hf-dir "$HF_DIR" --out "$src" ${MODEL_NAME:+--name "$MODEL_NAME"}; then
      place_cpu_model "$src" "$HF_DIR (exported)"
    else
      model_failure "scripts/export_onnx.py failed for $HF_DIR (see above)"
    fi
    return 0
  fi
  if [ -n "$MODEL_URL" ]; then
    archive=$(R "$CACHE_DIR")/$(basename "${MODEL_URL%%\?*}")
    if [ -f "$archive" ] && tar -tf "$archive" >/dev/null 2>&1; then
      unchanged "$archive (downloaded earlier)"
    elif [ "$DRY_RUN" = 1 ] || [ -z "$NEW_BIN" ] || [ "$BIN_RUNS" = 0 ]; then
      [ "$DRY_RUN" = 1 ] || { model_failure "the binary does not run here, so it cannot download $MODEL_URL: pass --model-archive FILE"; return 0; }
      would "hailo-clip download $MODEL_URL --to $archive, then install the model in it under $MODELS_ROOT"; return 0
    else
      ensure_dir "$(dirname "$archive")" 0755
      say "hailo-clip download $MODEL_URL --to $archive"
      ask download "$MODEL_URL" --to "$archive" >/dev/null ||
        { model_failure "$ASK_ERROR; run install.sh again to resume, or download it elsewhere and pass --model-archive FILE"; return 0; }
      tar -tf "$archive" >/dev/null 2>&1 || { rm -f "$archive"; model_failure "$MODEL_URL is not a tar archive"; return 0; }
      changed "$archive (downloaded from $MODEL_URL)"
    fi
    MODEL_ARCHIVE=$archive
  fi
  if [ -n "$MODEL_ARCHIVE" ]; then
    dir=$MODEL_ARCHIVE
    if [ ! -d "$dir" ]; then
      [ -f "$dir" ] || { model_failure "$dir does not exist"; return 0; }
      dir=$(mktemp -d "$TMP/archive.XXXXXX")
      tar -xf "$MODEL_ARCHIVE" -C "$dir" --no-same-owner 2>"$TMP/tar.err" ||
        { model_failure "$MODEL_ARCHIVE is not a readable tar archive: $(head -n 3 "$TMP/tar.err")"; return 0; }
      dir=$(find "$dir" -maxdepth 2 -name manifest.json -printf '%h\n' | head -n 1)
      [ -n "$dir" ] || { model_failure "$MODEL_ARCHIVE holds no manifest.json"; return 0; }
    fi
    place_cpu_model "$dir" "$MODEL_ARCHIVE"
    return 0
  fi
  # No source: the configured model must already be there.
  configured=$(config_get model.dir)
  configured=${configured:-$MODELS_ROOT/$FLAT_MODEL}
  if [ -z "$NEW_BIN" ] || [ "$BIN_RUNS" = 0 ]; then
    if [ "$DRY_RUN" = 1 ]; then would "check the CPU model in $(R "$configured")"; return 0; fi
    model_failure "cannot check the CPU model in $configured: the binary does not run on this machine; check it on the target (hailo-clip check-model)"
    return 0
  fi
  if ask check-model "$(R "$configured")" --get name >/dev/null; then unchanged "$(R "$configured") (CPU model)"; return 0; fi
  model_failure "no CPU model: $ASK_ERROR"
  printf '%s\n' "  No package registry ships CLIP weights: export the model once from a Hugging Face checkpoint and" \
    "  install it with --hf-dir DIR (exports here; needs torch), --model-archive FILE or --model-url URL" \
    "  (docs/INSTALL.md, 'CPU model'), or copy the exported directory to $configured by hand." >&2
}

# ---------------------------------------------------------------- models: --model NAME

# `hailo-clip pull`: the Hub's Immich export of MODEL into PULLED_DIR (verified, resumable,
# atomic, a no-op when installed), with the Model Zoo HEFs and the Hailo text files in
# PULLED_DIR/hailo/ARCH/ when hailo10h is wanted. The binary does all of it; no curl, no Python.
install_pulled_model() {
  local args version configured out rc=0
  args=(pull "$MODEL" --to "$(R "$PULLED_DIR")")
  if [ "$WANT_HAILO" = 1 ]; then
    args+=(--hef --arch "$HEF_ARCH")
    version=$(detect_hailort_version)
    if [ -n "$version" ]; then
      args+=(--hailort-version "$version")
    else
      model_failure "cannot tell the installed HailoRT version for the HEFs (no hailortcli, no h10-hailort/hailort package, no libhailort.so.X.Y.Z): install HailoRT first, or pass --hailort-version X.Y.Z"
      return 0
    fi
  fi
  if [ -z "$NEW_BIN" ] || [ "$BIN_RUNS" = 0 ]; then
    if [ "$DRY_RUN" = 1 ]; then would "hailo-clip ${args[*]}"; return 0; fi
    model_failure "the binary does not run on this machine, so it cannot pull $MODEL here: run hailo-clip ${args[*]} on the target"
    return 0
  fi
  if [ "$DRY_RUN" = 1 ]; then would "hailo-clip ${args[*]}"; return 0; fi
  ensure_dir "$(R "$MODELS_ROOT")" 0755
  say "hailo-clip ${args[*]}"
  out=$(HAILO_CLIP_CONFIG=$TMP/defaults.yaml HAILO_CLIP_ZOO_URL=$ZOO_URL "$NEW_BIN" "${args[@]}") || rc=$?
  [ -z "$out" ] || printf '  %s\n' "$out"
  if [ "$rc" != 0 ]; then
    model_failure "hailo-clip pull $MODEL failed (above); run install.sh again to resume it"
    return 0
  fi
  case "$out" in
    *"nothing to do"*) unchanged "$(R "$PULLED_DIR") ($MODEL)" ;;
    *) changed "$(R "$PULLED_DIR") ($MODEL)"; RESTART_NEEDED=1 ;;
  esac
  configured=$(config_get model.dir)
  [ -z "$configured" ] || [ "$configured" = "$PULLED_DIR" ] ||
    say "note: $CONFIG_PATH has model.dir: $configured; to serve $MODEL change that line to: model.dir: $PULLED_DIR"
}

# ---------------------------------------------------------------- service

enable_service() {
  if [ -n "$DESTDIR" ]; then say "staged in $DESTDIR: on the target, run: systemctl daemon-reload && systemctl enable --now $SERVICE"; return 0; fi
  if ! systemd_running; then
    say "systemd is not running here (a container?): the unit is installed but not enabled; start the daemon by hand with: runuser -u $SERVICE_USER -- $BIN_PATH serve"
    return 0
  fi
  if systemctl is-enabled --quiet "$SERVICE" 2>/dev/null; then unchanged "$SERVICE.service enabled"
  elif [ "$DRY_RUN" = 1 ]; then would "systemctl enable $SERVICE"
  else systemctl enable --quiet "$SERVICE" && changed "systemctl enable $SERVICE (starts at boot)"; fi
  if systemctl is-enabled --quiet "$SERVICE.socket" 2>/dev/null; then unchanged "$SERVICE.socket enabled"
  elif [ "$DRY_RUN" = 1 ]; then would "systemctl enable $SERVICE.socket"
  else systemctl enable --quiet "$SERVICE.socket" && changed "systemctl enable $SERVICE.socket"; fi
  # A new or changed socket takes the port: the daemon, if it bound the port itself (an
  # install before the socket unit) or listens on the old address, stops first.
  if [ "$SOCKET_CHANGED" = 1 ] || ! systemctl is-active --quiet "$SERVICE.socket"; then
    if [ "$DRY_RUN" = 1 ]; then would "systemctl restart $SERVICE.socket (and $SERVICE, if running)"; return 0; fi
    local was_active=0
    ! systemctl is-active --quiet "$SERVICE" || was_active=1
    [ "$was_active" = 0 ] || systemctl stop "$SERVICE"
    systemctl restart "$SERVICE.socket" || warn "the socket did not start: systemctl status $SERVICE.socket (is the port in use?)"
    changed "systemctl restart $SERVICE.socket"
    if [ "$was_active" = 1 ]; then
      systemctl start "$SERVICE" || warn "start failed: systemctl status $SERVICE; journalctl -u $SERVICE -n 50"
      changed "systemctl start $SERVICE"
    fi
    return 0
  fi
  { [ "$RESTART_NEEDED" = 1 ] && systemctl is-active --quiet "$SERVICE"; } || return 0
  if [ "$DRY_RUN" = 1 ]; then would "systemctl restart $SERVICE (running with the old files)"; return 0; fi
  say "restarting the running $SERVICE to pick up the new files"
  systemctl restart "$SERVICE" || warn "restart failed: systemctl status $SERVICE; journalctl -u $SERVICE -n 50"
  changed "systemctl restart $SERVICE"
}

warmup_fail() { # MESSAGE
  systemctl status --no-pager --lines=30 "$SERVICE" >&2 || true
  die "$1: journalctl -u $SERVICE -n 100 --no-pager shows why"
}

warmup() {
  local host port url deadline image service_env
  if [ "$DRY_RUN" = 1 ]; then would "systemctl start $SERVICE, wait for /health 200, classify a sample image"; return 0; fi
  systemd_running || die "--warmup needs systemd running (it is not here): start the daemon by hand with: $BIN_PATH serve"
  command -v curl >/dev/null || die "--warmup needs curl: sudo apt install curl"
  [ "$MODEL_FAILURES" = 0 ] || warn "a requested model is missing (above): the service will not become ready; starting it anyway"
  host=$(config_get server.host)
  port=$(config_get server.port)
  case "$host" in "" | 0.0.0.0) host=127.0.0.1 ;; "::") host='[::1]' ;; *:*) host="[$host]" ;; esac
  url=http://$host:${port:-5000}
  say "starting $SERVICE and waiting for $url/health (loading and warming up both encoders takes up to a couple of minutes)"
  systemctl start "$SERVICE" || warmup_fail "$SERVICE did not start"
  deadline=$((SECONDS + 150))
  until curl -fsS -o "$TMP/health.json" "$url/health" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || warmup_fail "$url/health did not answer 200 in 150 s"
    case "$(systemctl is-active "$SERVICE" 2>/dev/null || true)" in
      active | activating | reloading) sleep 1 ;;
      *) warmup_fail "$SERVICE stopped while starting" ;;
    esac
  done
  say "ready: $url/health -> $(cat "$TMP/health.json")"
  image=$SCRIPT_DIR/tests/fixtures/images/chelsea.png
  if [ -f "$image" ]; then
    say "sample: curl -F image=@$image -F prompts=cat -F prompts=dog -F prompts=car $url/v1/classify"
    curl -fsS -F "image=@$image" -F prompts=cat -F prompts=dog -F prompts=car "$url/v1/classify" ||
      die "the sample classification failed: journalctl -u $SERVICE -n 50 --no-pager"
    echo
  fi
  # The daemon ran the known-answer self-test before it said ready; run it once more in
  # the open, with the service's environment (a drop-in may set HAILO_CLIP_MODEL_DIR).
  service_env=$(systemctl show -p Environment --value "$SERVICE" 2>/dev/null || true)
  say "self-test: ${service_env:+env $service_env }$BIN_PATH --config $CONFIG_PATH selftest"
  # shellcheck disable=SC2086 # the unit's Environment is a list of NAME=VALUE words
  env $service_env "$BIN_PATH" --config "$CONFIG_PATH" selftest ||
    die "the self-test failed: the installed model gives wrong answers (table above; docs/HAILO.md)"
}

# ---------------------------------------------------------------- uninstall

remove_user() {
  local f
  if [ -z "$DESTDIR" ]; then
    userdel "$SERVICE_USER"
    ! getent group "$SERVICE_USER" >/dev/null || groupdel "$SERVICE_USER"
    return 0
  fi
  # Staged: drop the user's lines and its group memberships from DESTDIR/etc.
  for f in passwd shadow group gshadow; do
    [ -f "$DESTDIR/etc/$f" ] || continue
    sed -E -e "/^$SERVICE_USER:/d" -e "s/^([^:]*:[^:]*:[^:]*:)(.*,)?$SERVICE_USER(,|$)/\1\2/" -e 's/,$//' \
      "$DESTDIR/etc/$f" >"$TMP/$f" && cat "$TMP/$f" >"$DESTDIR/etc/$f"
  done
}

uninstall() {
  say "uninstalling $SERVICE${DESTDIR:+ from $DESTDIR}"
  if systemd_running && systemctl cat "$SERVICE" >/dev/null 2>&1; then
    if [ "$DRY_RUN" = 1 ]; then would "systemctl disable --now $SERVICE $SERVICE.socket"; else
      systemctl disable --now --quiet "$SERVICE" "$SERVICE.socket" 2>/dev/null || systemctl disable --now --quiet "$SERVICE" || true
      changed "systemctl disable --now $SERVICE $SERVICE.socket"
    fi
  fi
  for p in "$UNIT_PATH" "$SOCKET_PATH" "$BIN_PATH" "$SYSUSERS_PATH"; do remove_path "$(R "$p")"; done
  if systemd_running && [ "$DRY_RUN" = 0 ]; then systemctl daemon-reload && { systemctl reset-failed "$SERVICE" 2>/dev/null || true; }; fi
  if [ "$PURGE" = 0 ]; then
    say "kept: $CONFIG_PATH, the models in $MODELS_ROOT, and user $SERVICE_USER (--purge removes them)"
    return 0
  fi
  for p in "$CONFIG_PATH" "$CONFIG_PATH.new" "$SHARE_DIR" "$STATE_DIR" "$LOG_DIR" "$CACHE_DIR"; do remove_path "$(R "$p")"; done
  if [ -d "$(R "$CONFIG_DIR")" ] && [ -z "$(ls -A "$(R "$CONFIG_DIR")")" ]; then remove_path "$(R "$CONFIG_DIR")"; fi
  if ent passwd "$SERVICE_USER" >/dev/null || ent group "$SERVICE_USER" >/dev/null; then
    if [ "$DRY_RUN" = 1 ]; then would "remove user and group $SERVICE_USER${DESTDIR:+ from $DESTDIR/etc}"; else
      remove_user
      changed "removed user and group $SERVICE_USER${DESTDIR:+ from $DESTDIR/etc}"
    fi
  fi
  say "kept: the device group"
}

# ---------------------------------------------------------------- main

summary() {
  if [ "$DRY_RUN" = 1 ]; then say "dry run: $PLANNED actions would run, $UNCHANGED already in place; nothing was changed"
  else say "done: $CHANGED changed, $UNCHANGED unchanged"; fi
}

[ "$DRY_RUN" = 0 ] || say "dry run: printing the actions, doing none of them"

if [ "$UNINSTALL" = 1 ]; then uninstall && summary && exit 0; fi
for f in "$UNIT_SRC" "$SOCKET_SRC" "$CONFIG_SRC"; do [ -f "$f" ] || die "$f is missing: run install.sh from a hailo-clip checkout"; done

say "installing $SERVICE${DESTDIR:+ into $DESTDIR} (prefix $PREFIX)"
prepare_binary
choose_device_group

before=$CHANGED
if [ -n "$NEW_BIN" ]; then install_file "$NEW_BIN" "$(R "$BIN_PATH")" 0755; else would "install $(R "$BIN_PATH") (mode 0755) from the build"; fi
[ "$CHANGED" = "$before" ] || RESTART_NEEDED=1

cat >"$TMP/sysusers.conf" <<EOF
# hailo-clip's system user, and the group that may use the Hailo device (install.sh).
u $SERVICE_USER - "hailo-clip daemon" $STATE_DIR /usr/sbin/nologin
g $DEVICE_GROUP -
m $SERVICE_USER $DEVICE_GROUP
EOF
install_file "$TMP/sysusers.conf" "$(R "$SYSUSERS_PATH")" 0644
create_users
install_config
install_unit
install_socket

if [ -n "$MODEL" ]; then
  say "model: $MODEL into $PULLED_DIR"
  install_pulled_model
  # The pulled model's ONNX files serve the CPU engine (and the text encoder where no text
  # HEF is published); ONNX Runtime makes that twice as fast as tract.
  install_onnxruntime
fi
if [ "$WANT_CPU" = 1 ] && [ -z "$MODEL" ]; then
  say "models: cpu into $MODELS_ROOT"
  install_cpu_model
  install_onnxruntime
fi

enable_service
summary
if [ "$MODEL_FAILURES" -gt 0 ] && [ "$DRY_RUN" = 1 ]; then warn "$MODEL_FAILURES model problem(s) above would remain after this install"
elif [ "$MODEL_FAILURES" -gt 0 ]; then warn "$MODEL_FAILURES model problem(s) above: hailo-clip is installed, but will not become ready until the model files are in place"; fi
[ "$WARMUP" = 0 ] || warmup
[ "$MODEL_FAILURES" = 0 ] || exit 2
exit 0

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
readonly DEFAULT_ZOO_URL=https://hailo-model-zoo.s3.eu-west-2.amazonaws.com/ModelZoo/Compiled
readonly HEF_ARCH=hailo10h
readonly HEF_NAMES=(clip_vit_b_32_image_encoder clip_vit_b_32_text_encoder)
readonly TEXT_ASSETS=(clip_tokenizer.json token_embedding_lut.npy text_projection.npy)
readonly CPU_MODEL_FILES=(visual.onnx textual.onnx tokenizer.json manifest.json)

PREFIX=/usr/local
DESTDIR=
BINARY=
FEATURES=auto
MODELS=none
HF_DIR=
MODEL_ARCHIVE=
MODEL_URL=
MODEL_NAME=
ALLOW_RANDOM=0
HAILORT_VERSION=
ZOO_URL=${HAILO_CLIP_ZOO_URL:-$DEFAULT_ZOO_URL}
RESOURCES_DIR=/usr/local/hailo/resources
DEVICE_GROUP=
WARMUP=0
DRY_RUN=0
UNINSTALL=0
PURGE=0
PYTHON=${PYTHON:-python3}

usage() {
  cat <<'EOF'
Usage: ./install.sh [OPTIONS]

Installs hailo-clip: the binary, the systemd unit, /etc/hailo/hailo-clip.yaml, the system
user hailo-clip (in the Hailo device group), and with --models the model files.
A second run with the same options changes nothing. Run as root, or with --destdir.

Install:
  --prefix DIR            install prefix (default /usr/local): DIR/bin/hailo-clip,
                          DIR/share/hailo-clip/models, DIR/lib/sysusers.d/hailo-clip.conf
  --destdir DIR           stage everything under DIR (packaging, tests): no systemctl, no
                          change to this machine's users (they are staged into DIR/etc)
  --binary PATH           install this prebuilt binary instead of building one
  --features auto|hailo|cpu
                          cargo features for the build (default auto: hailo when the
                          HailoRT headers and libhailort are installed, else cpu)
  --device-group NAME     group allowed to use /dev/hailoN or /dev/h1x-N (default: the group owning
                          the device node when it is not root, else hailo)
  --warmup                start the service, wait until /health answers 200, print
                          a sample classification, then run `hailo-clip selftest`
  --dry-run               print every action without doing any of them

Models (--models takes one value or a comma-separated list, e.g. hailo10h,cpu):
  --models none|cpu|hailo10h
                          none (default): install no model files
                          hailo10h: the Model Zoo CLIP ViT-B/32 HEFs compiled for
                            hailo10h for the installed HailoRT version, and the text
                            assets (from --hf-dir) into --resources-dir
                          cpu: an ONNX model directory (from --hf-dir, --model-archive
                            or --model-url) into PREFIX/share/hailo-clip/models/NAME
  --hf-dir DIR            a local Hugging Face CLIP checkpoint (save_pretrained output):
                          cpu exports it with scripts/export_onnx.py (needs torch,
                          transformers, onnx, onnxruntime; $PYTHON picks the python);
                          hailo10h writes the text assets with export-text-assets
  --model-archive PATH    cpu: an exported model directory, or a .tar/.tar.gz/.tgz/.tar.xz
                          holding one
  --model-url URL         cpu: download such an archive (resumable), then install it
  --model-name NAME       cpu: directory name under models/ (default: the manifest name)
  --allow-random-weights  cpu: accept a model whose manifest says random_weights: true
                          (tests only: installed under its own name, never as the
                          configured model)
  --hailort-version X.Y.Z hailo10h: use this HailoRT version instead of detecting it
  --zoo-url URL           base URL of the compiled Model Zoo (default
                          https://hailo-model-zoo.s3.eu-west-2.amazonaws.com/ModelZoo/Compiled,
                          or $HAILO_CLIP_ZOO_URL); files are URL/vVERSION/hailo10h/NAME.hef
  --resources-dir DIR     where the Hailo files go (default /usr/local/hailo/resources,
                          the config's hailo.resources_dir)

Remove:
  --uninstall             stop and disable the service, remove the binary and the unit;
                          keep the config, the models and the user
  --purge                 with --uninstall: also remove the config, the CPU models, the
                          state and log directories and the hailo-clip user and group
                          (never the Hailo resources directory, which hailo-apps shares)

  -h, --help              this text

Exit status: 0 done; 1 error; 2 installed, but a requested model is missing (the message
says what to do).
EOF
}

# ---------------------------------------------------------------- output and bookkeeping

CHANGED=0
UNCHANGED=0
PLANNED=0
MODEL_FAILURES=0
RESTART_NEEDED=0

say() { printf 'install.sh: %s\n' "$*"; }
warn() { printf 'install.sh: warning: %s\n' "$*" >&2; }
die() {
  printf 'install.sh: error: %s\n' "$*" >&2
  exit 1
}
changed() {
  CHANGED=$((CHANGED + 1))
  printf '  changed:   %s\n' "$*"
}
unchanged() {
  UNCHANGED=$((UNCHANGED + 1))
  printf '  unchanged: %s\n' "$*"
}
would() {
  PLANNED=$((PLANNED + 1))
  printf '  would:     %s\n' "$*"
}
model_failure() {
  MODEL_FAILURES=$((MODEL_FAILURES + 1))
  printf 'install.sh: model: %s\n' "$*" >&2
}

# The staged path of an absolute path.
R() { printf '%s%s' "$DESTDIR" "$1"; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/hailo-clip-install.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# ---------------------------------------------------------------- options

need_arg() {
  if [ "$#" -lt 2 ] || [ -z "$2" ]; then die "$1 needs a value (see --help)"; fi
}

while [ "$#" -gt 0 ]; do
  case "$1" in
    --prefix) need_arg "$@"; PREFIX=$2; shift 2 ;;
    --prefix=*) PREFIX=${1#*=}; shift ;;
    --destdir) need_arg "$@"; DESTDIR=$2; shift 2 ;;
    --destdir=*) DESTDIR=${1#*=}; shift ;;
    --binary) need_arg "$@"; BINARY=$2; shift 2 ;;
    --binary=*) BINARY=${1#*=}; shift ;;
    --features) need_arg "$@"; FEATURES=$2; shift 2 ;;
    --features=*) FEATURES=${1#*=}; shift ;;
    --models) need_arg "$@"; MODELS=$2; shift 2 ;;
    --models=*) MODELS=${1#*=}; shift ;;
    --hf-dir) need_arg "$@"; HF_DIR=$2; shift 2 ;;
    --hf-dir=*) HF_DIR=${1#*=}; shift ;;
    --model-archive) need_arg "$@"; MODEL_ARCHIVE=$2; shift 2 ;;
    --model-archive=*) MODEL_ARCHIVE=${1#*=}; shift ;;
    --model-url) need_arg "$@"; MODEL_URL=$2; shift 2 ;;
    --model-url=*) MODEL_URL=${1#*=}; shift ;;
    --model-name) need_arg "$@"; MODEL_NAME=$2; shift 2 ;;
    --model-name=*) MODEL_NAME=${1#*=}; shift ;;
    --allow-random-weights) ALLOW_RANDOM=1; shift ;;
    --hailort-version) need_arg "$@"; HAILORT_VERSION=$2; shift 2 ;;
    --hailort-version=*) HAILORT_VERSION=${1#*=}; shift ;;
    --zoo-url) need_arg "$@"; ZOO_URL=$2; shift 2 ;;
    --zoo-url=*) ZOO_URL=${1#*=}; shift ;;
    --resources-dir) need_arg "$@"; RESOURCES_DIR=$2; shift 2 ;;
    --resources-dir=*) RESOURCES_DIR=${1#*=}; shift ;;
    --device-group) need_arg "$@"; DEVICE_GROUP=$2; shift 2 ;;
    --device-group=*) DEVICE_GROUP=${1#*=}; shift ;;
    --warmup) WARMUP=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    --purge) PURGE=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

safe_path() { [[ "$1" =~ ^/[A-Za-z0-9/._+-]*$ ]]; }
safe_path "$PREFIX" || die "--prefix must be an absolute path of letters, digits and / . _ + - (got '$PREFIX')"
safe_path "$RESOURCES_DIR" || die "--resources-dir must be an absolute path of letters, digits and / . _ + - (got '$RESOURCES_DIR')"
PREFIX=${PREFIX%/}
[ -n "$PREFIX" ] || PREFIX=/
if [ -n "$DESTDIR" ]; then
  if [ "$DRY_RUN" = 0 ]; then mkdir -p "$DESTDIR" || die "cannot create --destdir $DESTDIR"; fi
  if [ -d "$DESTDIR" ]; then
    DESTDIR=$(cd "$DESTDIR" && pwd)
  elif [ "${DESTDIR#/}" = "$DESTDIR" ]; then
    DESTDIR=$PWD/$DESTDIR
  fi
  DESTDIR=${DESTDIR%/}
  [ "$DESTDIR" != "" ] || die "--destdir / is the real system: leave --destdir out instead"
fi
case "$FEATURES" in auto | hailo | cpu) ;; *) die "--features takes auto, hailo or cpu (got '$FEATURES')" ;; esac
WANT_CPU=0
WANT_HAILO=0
IFS=',' read -r -a model_list <<<"$MODELS"
for m in "${model_list[@]}"; do
  case "$m" in
    none) ;;
    cpu) WANT_CPU=1 ;;
    hailo10h) WANT_HAILO=1 ;;
    *) die "--models takes none, cpu, hailo10h or a comma-separated list of them (got '$m')" ;;
  esac
done
if [ -n "$DEVICE_GROUP" ] && ! [[ "$DEVICE_GROUP" =~ ^[a-z_][a-z0-9_-]*$ ]]; then
  die "--device-group: '$DEVICE_GROUP' is not a group name"
fi
if [ -n "$MODEL_NAME" ] && ! [[ "$MODEL_NAME" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]]; then
  die "--model-name: '$MODEL_NAME' is not a plain directory name"
fi
if [ -n "$HAILORT_VERSION" ] && ! [[ "$HAILORT_VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
  die "--hailort-version takes X.Y.Z, e.g. 5.1.1 (got '$HAILORT_VERSION')"
fi
ZOO_URL=${ZOO_URL%/}
[ "$PURGE" = 0 ] || [ "$UNINSTALL" = 1 ] || die "--purge goes with --uninstall"
if [ "$UNINSTALL" = 1 ] && { [ "$WARMUP" = 1 ] || [ "$MODELS" != none ]; }; then
  die "--uninstall does not go with --warmup or --models"
fi
if [ "$WARMUP" = 1 ] && [ -n "$DESTDIR" ]; then
  die "--warmup starts the installed service, which a --destdir staging is not"
fi
if [ "$WANT_CPU" = 0 ] && { [ -n "$MODEL_ARCHIVE" ] || [ -n "$MODEL_URL" ] || [ -n "$MODEL_NAME" ] || [ "$ALLOW_RANDOM" = 1 ]; }; then
  die "--model-archive, --model-url, --model-name and --allow-random-weights go with --models cpu"
fi
[ -z "$MODEL_ARCHIVE" ] || [ -z "$MODEL_URL" ] || die "give --model-archive or --model-url, not both"
if [ -n "$HF_DIR" ]; then
  [ "$WANT_CPU" = 1 ] || [ "$WANT_HAILO" = 1 ] || die "--hf-dir goes with --models cpu or --models hailo10h"
  [ -d "$HF_DIR" ] || die "--hf-dir $HF_DIR is not a directory"
  HF_DIR=$(cd "$HF_DIR" && pwd)
fi
if [ "$WANT_CPU" = 1 ] && [ -n "$HF_DIR" ] && { [ -n "$MODEL_ARCHIVE" ] || [ -n "$MODEL_URL" ]; }; then
  die "for --models cpu give one source: --hf-dir, --model-archive or --model-url"
fi

if [ -z "$DESTDIR" ] && [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then
  die "installing into the system needs root: sudo $0 ... (or --dry-run, or --destdir DIR to stage)"
fi

# ---------------------------------------------------------------- paths

BIN_PATH=$PREFIX/bin/hailo-clip
[ "$PREFIX" != / ] || BIN_PATH=/bin/hailo-clip
SHARE_DIR=${PREFIX%/}/share/hailo-clip
MODELS_ROOT=$SHARE_DIR/models
CONFIG_DIST=$SHARE_DIR/hailo-clip.yaml.dist
SYSUSERS_PATH=${PREFIX%/}/lib/sysusers.d/hailo-clip.conf
readonly UNIT_PATH=/etc/systemd/system/hailo-clip.service
readonly CONFIG_DIR=/etc/hailo
readonly CONFIG_PATH=/etc/hailo/hailo-clip.yaml
readonly STATE_DIR=/var/lib/hailo-clip
readonly LOG_DIR=/var/log/hailo-clip
readonly CACHE_DIR=/var/cache/hailo-clip
readonly UNIT_SRC=$SCRIPT_DIR/systemd/hailo-clip.service
readonly CONFIG_SRC=$SCRIPT_DIR/config/hailo-clip.yaml

systemd_running() { [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; }

# ---------------------------------------------------------------- file helpers

file_mode() { stat -c %a "$1"; }

ensure_dir() { # DIR MODE
  if [ -d "$1" ]; then return 0; fi
  if [ "$DRY_RUN" = 1 ]; then
    would "create directory $1 (mode $2)"
    return 0
  fi
  mkdir -p "$1"
  chmod "$2" "$1"
  changed "created directory $1"
}

# Installs SRC at DEST with MODE, atomically (a temporary file beside DEST, then mv).
install_file() { # SRC DEST MODE
  local src=$1 dest=$2 mode=$3 tmp
  if [ -f "$dest" ] && cmp -s "$src" "$dest" && [ "$(file_mode "$dest")" = "${mode#0}" ]; then
    unchanged "$dest"
    return 0
  fi
  if [ "$DRY_RUN" = 1 ]; then
    if [ -e "$dest" ]; then would "replace $dest (mode $mode)"; else would "install $dest (mode $mode)"; fi
    return 0
  fi
  ensure_dir "$(dirname "$dest")" 0755
  tmp="$dest.tmp.$$"
  cp "$src" "$tmp"
  chmod "$mode" "$tmp"
  mv -f "$tmp" "$dest"
  changed "$dest (mode $mode)"
}

remove_path() { # PATH
  if [ ! -e "$1" ] && [ ! -L "$1" ]; then return 0; fi
  if [ "$DRY_RUN" = 1 ]; then
    would "remove $1"
    return 0
  fi
  rm -rf -- "$1"
  changed "removed $1"
}

# The value of KEY in the top-level SECTION of a simple YAML file (the shape of
# config/hailo-clip.yaml); empty when absent.
yaml_get() { # FILE SECTION KEY
  [ -f "$1" ] || return 0
  awk -v sec="$2" -v key="$3" '
    /^[^[:space:]#][^:]*:/ { insec = (index($0, sec ":") == 1); next }
    insec && $0 ~ ("^[[:space:]]+" key ":") {
      sub("^[[:space:]]+" key ":[[:space:]]*", "")
      sub("[[:space:]]+#.*$", "")
      gsub(/^["\047]|["\047]$/, "")
      print
      exit
    }' "$1"
}

# ---------------------------------------------------------------- checks of files

hef_problem() { # FILE -> prints why it is not a HEF; nothing when it is one
  local magic
  if [ ! -s "$1" ]; then
    echo "the file is empty"
    return 0
  fi
  magic=$(od -An -tx1 -N4 "$1" | tr -d ' \n')
  # HailoRT's HEF header starts with the big-endian magic 0x01484546 ("\x01HEF").
  if [ "$magic" != 01484546 ]; then
    if head -c 256 "$1" | grep -qiE '<(\?xml|html|error)'; then
      echo "the server sent an error page, not a HEF"
    else
      echo "no HEF magic (first bytes $magic, expected 01484546)"
    fi
  fi
}

npy_problem() { # FILE
  if [ ! -s "$1" ]; then echo "the file is empty"; return 0; fi
  [ "$(od -An -tx1 -N6 "$1" | tr -d ' \n')" = 934e554d5059 ] || echo "not a .npy file (no NUMPY magic)"
}

json_problem() { # FILE
  if [ ! -s "$1" ]; then echo "the file is empty"; return 0; fi
  [ "$(head -c 1 "$1")" = "{" ] || echo "not a JSON object"
}

onnx_problem() { # FILE
  if [ ! -s "$1" ]; then echo "the file is empty"; return 0; fi
  # An ONNX ModelProto starts with field 1 (ir_version, varint): byte 0x08.
  [ "$(od -An -tx1 -N1 "$1" | tr -d ' \n')" = 08 ] || echo "not an ONNX model"
}

manifest_random() { # MANIFEST -> 0 when it says random_weights: true
  grep -Eq '"random_weights"[[:space:]]*:[[:space:]]*true' "$1"
}

manifest_name() { # MANIFEST
  sed -n 's/.*"name"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' "$1" | head -n 1
}

# Why DIR is not a CPU model directory; nothing when it is one.
cpu_model_problem() { # DIR
  local f p
  for f in "${CPU_MODEL_FILES[@]}"; do
    [ -s "$1/$f" ] || { echo "$1/$f is missing or empty"; return 0; }
  done
  for f in visual.onnx textual.onnx; do
    p=$(onnx_problem "$1/$f")
    [ -z "$p" ] || { echo "$1/$f: $p"; return 0; }
  done
  p=$(json_problem "$1/manifest.json")
  [ -z "$p" ] || { echo "$1/manifest.json: $p"; return 0; }
  grep -q '"format_version"' "$1/manifest.json" || echo "$1/manifest.json has no format_version: not a hailo-clip model manifest"
}

# ---------------------------------------------------------------- downloads

LAST_DOWNLOAD_ERROR=
# Downloads URL to DEST: into DEST.part (resumed when an earlier run left one for the same
# URL, which DEST.part.url names), checked with CHECK_FN, then renamed onto DEST.
# Returns 0 done, 10 not found, 11 server unreachable, 12 interrupted (DEST.part kept for
# the next run), 13 downloaded but invalid.
download() { # URL DEST CHECK_FN
  local url=$1 dest=$2 check=$3 part="$2.part" from="$2.part.url" attempt rc code problem
  local progress=(-sS)
  [ -t 2 ] && progress=(-S --progress-bar)
  command -v curl >/dev/null || die "curl is needed for downloads: sudo apt install curl"
  if [ "$DRY_RUN" = 1 ]; then
    would "download $url -> $dest"
    return 0
  fi
  ensure_dir "$(dirname "$dest")" 0755
  if [ -e "$part" ] && [ "$(cat "$from" 2>/dev/null)" != "$url" ]; then
    rm -f "$part" # left by a download of another URL: useless here
  fi
  printf '%s\n' "$url" >"$from"
  [ ! -s "$part" ] || say "resuming $part ($(stat -c %s "$part") bytes so far)"
  for attempt in 1 2 3; do
    rc=0
    code=$(curl -fL "${progress[@]}" --connect-timeout 20 --retry 2 --retry-delay 2 \
      -C - -o "$part" -w '%{http_code}' "$url") || rc=$?
    case "$rc" in
      0) break ;;
      22)
        if [ "$code" = 416 ] && [ -s "$part" ]; then rc=0; break; fi # .part already whole
        case "$code" in
          403 | 404 | 410) rm -f "$part" "$from"; return 10 ;;
        esac
        ;;
      33) rm -f "$part" ;; # the server cannot resume: start again from byte 0
      5 | 6 | 7 | 28 | 35 | 60) return 11 ;;
    esac
    [ "$attempt" = 3 ] || say "download interrupted (curl exit $rc); resuming (attempt $((attempt + 1)) of 3)"
  done
  if [ "$rc" != 0 ]; then
    LAST_DOWNLOAD_ERROR="curl exit $rc${code:+, HTTP $code}"
    return 12
  fi
  problem=$("$check" "$part")
  if [ -n "$problem" ]; then
    rm -f "$part" "$from"
    say "$url: $problem; the download was discarded"
    return 13
  fi
  chmod 0644 "$part"
  mv -f "$part" "$dest"
  rm -f "$from"
  changed "$dest (downloaded from $url, sha256 $(sha256sum "$dest" | cut -c1-64))"
}

# ---------------------------------------------------------------- the binary

hailort_installed() {
  local inc lib d
  inc=
  for d in ${HAILORT_INCLUDE_DIR:+"$HAILORT_INCLUDE_DIR"} /usr/include /usr/local/include; do
    [ -f "$d/hailo/hailort.hpp" ] && inc=$d && break
  done
  lib=
  for d in ${HAILORT_LIB_DIR:+"$HAILORT_LIB_DIR"} /usr/lib /usr/lib/aarch64-linux-gnu /usr/lib/x86_64-linux-gnu /usr/local/lib; do
    [ -e "$d/libhailort.so" ] && lib=$d && break
  done
  [ -n "$inc" ] && [ -n "$lib" ]
}

# The binary to install: --binary, or one built now. Sets NEW_BIN (empty in a dry run
# that would build).
NEW_BIN=
BIN_RUNS=1
prepare_binary() {
  local want_hailo=0 cargo user_home target features=()
  if [ -n "$BINARY" ]; then
    if [ ! -f "$BINARY" ] || [ ! -x "$BINARY" ]; then die "--binary $BINARY is not an executable file"; fi
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
    local as_user=()
    if [ "$(id -u)" = 0 ] && [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
      # Build as the user who ran sudo: their toolchain, and no root-owned target/.
      user_home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
      if [ -z "$cargo" ] && [ -x "$user_home/.cargo/bin/cargo" ]; then cargo=$user_home/.cargo/bin/cargo; fi
      as_user=(sudo -u "$SUDO_USER" -H)
    fi
    [ -n "$cargo" ] || die "cargo not found: install the Rust toolchain (rustup), or pass --binary PATH"
    local build_cmd="cargo build --release --locked${features[*]:+ ${features[*]}}"
    say "building: $build_cmd ($([ "$want_hailo" = 1 ] && echo "with the Hailo backend" || echo "CPU engine only"))"
    if [ "$DRY_RUN" = 1 ]; then
      would "build $target/release/hailo-clip with: $build_cmd"
      return 0
    fi
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
  else
    say "binary: $NEW_BIN ($("$NEW_BIN" --version), CPU engine only)"
    if [ "$FEATURES" = hailo ] || { [ "$FEATURES" = auto ] && [ -n "$BINARY" ] && hailort_installed; }; then
      warn "this binary has no Hailo backend (not built with --features hailo): the daemon will use the CPU engine"
    fi
  fi
}

# ---------------------------------------------------------------- users and groups

# The group that may open the Hailo device.
choose_device_group() {
  local node grp mode
  if [ -n "$DEVICE_GROUP" ]; then return 0; fi
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

passwd_has() { # FILE NAME
  [ -f "$1" ] && grep -q "^$2:" "$1"
}

group_has_member() { # FILE GROUP USER
  [ -f "$1" ] && awk -F: -v g="$2" -v u="$3" '$1 == g { n = split($4, m, ","); for (i = 1; i <= n; i++) if (m[i] == u) found = 1 } END { exit !found }' "$1"
}

users_in_place() { # -> 0 when the user, its group and the device-group membership exist
  local etc=/etc
  [ -z "$DESTDIR" ] || etc=$DESTDIR/etc
  passwd_has "$etc/passwd" "$SERVICE_USER" && passwd_has "$etc/group" "$SERVICE_USER" &&
    passwd_has "$etc/group" "$DEVICE_GROUP" && group_has_member "$etc/group" "$DEVICE_GROUP" "$SERVICE_USER"
}

create_users() {
  local conf
  conf=$(R "$SYSUSERS_PATH")
  if users_in_place; then
    unchanged "user $SERVICE_USER (group $SERVICE_USER, member of $DEVICE_GROUP)"
    return 0
  fi
  if [ "$DRY_RUN" = 1 ]; then
    would "create system user $SERVICE_USER (home $STATE_DIR, no login) and group $SERVICE_USER; create group $DEVICE_GROUP if missing; add $SERVICE_USER to $DEVICE_GROUP${DESTDIR:+ (staged in $DESTDIR/etc)}"
    return 0
  fi
  if [ -n "$DESTDIR" ]; then
    # Staged: the entries go into DESTDIR/etc/{passwd,group}, never this machine's.
    if [ "$(id -u)" = 0 ] && command -v systemd-sysusers >/dev/null; then
      mkdir -p "$DESTDIR/etc"
      systemd-sysusers --root="$DESTDIR" "$conf" >"$TMP/sysusers.log" 2>&1 ||
        { cat "$TMP/sysusers.log" >&2; die "systemd-sysusers --root=$DESTDIR failed (above)"; }
      sed 's/^/    /' "$TMP/sysusers.log"
      changed "user $SERVICE_USER and group $DEVICE_GROUP staged in $DESTDIR/etc/passwd and $DESTDIR/etc/group"
    else
      say "not staging users (needs root and systemd-sysusers): $SYSUSERS_PATH declares them for the target system"
    fi
    return 0
  fi
  if command -v systemd-sysusers >/dev/null; then
    systemd-sysusers "$conf" || die "systemd-sysusers $conf failed (above): create user $SERVICE_USER and group $DEVICE_GROUP by hand, or fix that, and run install.sh again"
  else
    getent group "$SERVICE_USER" >/dev/null || groupadd --system "$SERVICE_USER"
    getent passwd "$SERVICE_USER" >/dev/null ||
      useradd --system --gid "$SERVICE_USER" --home-dir "$STATE_DIR" --no-create-home \
        --shell /usr/sbin/nologin --comment "hailo-clip daemon" "$SERVICE_USER"
    getent group "$DEVICE_GROUP" >/dev/null || groupadd --system "$DEVICE_GROUP"
    id -nG "$SERVICE_USER" | tr ' ' '\n' | grep -qx "$DEVICE_GROUP" || usermod -aG "$DEVICE_GROUP" "$SERVICE_USER"
  fi
  users_in_place || die "could not create user $SERVICE_USER in group $DEVICE_GROUP"
  changed "user $SERVICE_USER (group $SERVICE_USER, member of $DEVICE_GROUP)"
  RESTART_NEEDED=1
}

# ---------------------------------------------------------------- config

render_config() { # -> path of the default config for this prefix
  local out=$TMP/hailo-clip.yaml
  sed "s|^\([[:space:]]*dir:[[:space:]]*\)/usr/local/share/hailo-clip/models/|\1$MODELS_ROOT/|" "$CONFIG_SRC" >"$out"
  echo "$out"
}

install_config() {
  local new cfg dist
  new=$(render_config)
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

# ---------------------------------------------------------------- unit

install_unit() {
  local out=$TMP/hailo-clip.service before
  sed -e "s|^ExecStart=/usr/local/bin/hailo-clip |ExecStart=$BIN_PATH |" \
    -e "s|^SupplementaryGroups=.*|SupplementaryGroups=$DEVICE_GROUP|" "$UNIT_SRC" >"$out"
  before=$CHANGED
  install_file "$out" "$(R "$UNIT_PATH")" 0644
  if [ "$CHANGED" != "$before" ]; then
    RESTART_NEEDED=1
    if systemd_running; then
      systemctl daemon-reload
      changed "systemctl daemon-reload"
    fi
  fi
}

# ---------------------------------------------------------------- models: hailo10h

detect_hailort_version() {
  local v f
  if [ -n "$HAILORT_VERSION" ]; then echo "$HAILORT_VERSION"; return 0; fi
  if command -v hailortcli >/dev/null; then
    v=$(hailortcli --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -n 1 || true)
    [ -z "$v" ] || { echo "$v"; return 0; }
  fi
  if command -v dpkg-query >/dev/null; then
    v=$(dpkg-query -W -f='${Version}\n' h10-hailort hailort 2>/dev/null | grep -oE '^[0-9]+\.[0-9]+\.[0-9]+' | head -n 1 || true)
    [ -z "$v" ] || { echo "$v"; return 0; }
  fi
  for f in /usr/lib/libhailort.so.* /usr/lib/*/libhailort.so.* /usr/local/lib/libhailort.so.*; do
    [ -e "$f" ] || continue
    v=$(basename "$f" | grep -oE '[0-9]+\.[0-9]+\.[0-9]+$' || true)
    [ -z "$v" ] || { echo "$v"; return 0; }
  done
}

offline_help() { # NAME URL DEST
  cat >&2 <<EOF
  To copy it by hand: on a machine with internet access download
      $2
  copy it to this machine, then install it as $3:
      scp $1 pi@<this-pi>:/tmp/   (from that machine)
      sudo install -D -m 0644 /tmp/$1 $3
  and run install.sh --models hailo10h again: it checks the file and carries on.
EOF
}

install_hefs() {
  local version name dest res url rc problem tried cand
  local candidates=()
  res=$(R "$RESOURCES_DIR")
  version=$(detect_hailort_version)
  if [ -z "$version" ]; then
    model_failure "cannot tell the installed HailoRT version (no hailortcli, no h10-hailort/hailort package, no libhailort.so.X.Y.Z). Install HailoRT first (Raspberry Pi OS: sudo apt install dkms hailo-h10-all), or pass --hailort-version X.Y.Z"
    return 0
  fi
  candidates=("v$version")
  [ "v${version%.*}.0" = "v$version" ] || candidates+=("v${version%.*}.0")
  say "HailoRT $version: HEFs for $HEF_ARCH from Model Zoo ${candidates[*]} (the first that has them) at $ZOO_URL"
  for name in "${HEF_NAMES[@]}"; do
    dest=$res/$name.hef
    if [ -f "$dest" ]; then
      problem=$(hef_problem "$dest")
      if [ -z "$problem" ]; then
        unchanged "$dest"
        continue
      fi
      warn "$dest: $problem; downloading it again"
      if [ "$DRY_RUN" = 0 ]; then rm -f "$dest"; fi
    fi
    tried=()
    rc=10
    # An earlier run's partial download is resumed first, whichever candidate it came from.
    local order=() earlier
    earlier=$(cat "$dest.part.url" 2>/dev/null || true)
    for cand in "${candidates[@]}"; do
      if [ "$ZOO_URL/$cand/$HEF_ARCH/$name.hef" = "$earlier" ]; then order=("$cand" "${order[@]}"); else order+=("$cand"); fi
    done
    for cand in "${order[@]}"; do
      url=$ZOO_URL/$cand/$HEF_ARCH/$name.hef
      tried+=("$url")
      rc=0
      download "$url" "$dest" hef_problem || rc=$?
      [ "$rc" = 10 ] || break
    done
    case "$rc" in
      0) RESTART_NEEDED=1 ;;
      10)
        model_failure "$name.hef was not found at: ${tried[*]}"
        printf '%s\n' "  The Model Zoo publishes HEFs per HailoRT release; the hailo10h CLIP text encoder is listed from Model Zoo v5.2.0 on." \
          "  Update HailoRT (sudo apt update && sudo apt full-upgrade), or pass --hailort-version of a Model Zoo release your HailoRT can load." \
          "  For the text encoder alone you can also run it on the CPU: add --models cpu (hailo.text_encoder: auto, the default, then uses it)." >&2
        ;;
      11)
        model_failure "cannot reach ${ZOO_URL%%/ModelZoo*} to download $name.hef (no internet, DNS or proxy?)"
        offline_help "$name.hef" "${tried[0]}" "$RESOURCES_DIR/$name.hef"
        ;;
      12) model_failure "the download of $name.hef broke off 3 times ($LAST_DOWNLOAD_ERROR); $RESOURCES_DIR/$name.hef.part is kept: run install.sh again to resume it" ;;
      13) model_failure "$name.hef from ${tried[-1]} is not a valid HEF; check --zoo-url (or \$HAILO_CLIP_ZOO_URL), or copy the file by hand"
        offline_help "$name.hef" "${tried[-1]}" "$RESOURCES_DIR/$name.hef" ;;
    esac
  done
}

text_asset_problem() { # FILE
  case "$1" in
    *.npy) npy_problem "$1" ;;
    *.json) json_problem "$1" ;;
  esac
}

install_text_assets() {
  local res f problem missing=() out
  res=$(R "$RESOURCES_DIR")
  if [ -z "$HF_DIR" ]; then
    for f in "${TEXT_ASSETS[@]}"; do
      if [ -f "$res/$f" ] && [ -z "$(text_asset_problem "$res/$f")" ]; then
        unchanged "$res/$f"
      else
        missing+=("$f")
      fi
    done
    if [ "${#missing[@]}" -gt 0 ]; then
      model_failure "missing in $RESOURCES_DIR: ${missing[*]} (the Hailo text encoder's tokenizer, token-embedding table and projection)"
      printf '%s\n' "  They come from the same Hugging Face CLIP checkpoint as the HEFs (openai/clip-vit-base-patch32)." \
        "  Save it once where there is internet (see docs/INSTALL.md), copy the directory here, then run:" \
        "      sudo ./install.sh --models hailo10h --hf-dir /path/to/clip-vit-base-patch32" \
        "  (or by hand: hailo-clip export-text-assets --hf-dir DIR --out $RESOURCES_DIR)" >&2
    fi
    return 0
  fi
  if [ "$DRY_RUN" = 1 ]; then
    would "write ${TEXT_ASSETS[*]} into $res with: hailo-clip export-text-assets --hf-dir $HF_DIR"
    return 0
  fi
  if [ "$BIN_RUNS" = 0 ]; then
    model_failure "the binary does not run on this machine, so it cannot write the text assets here: run hailo-clip export-text-assets on the target"
    return 0
  fi
  "$NEW_BIN" export-text-assets --help >/dev/null 2>&1 ||
    { model_failure "$NEW_BIN has no export-text-assets command: install a newer hailo-clip"; return 0; }
  ensure_dir "$res" 0755
  out=$(mktemp -d "$res/.hailo-clip-text.XXXXXX")
  if ! "$NEW_BIN" export-text-assets --hf-dir "$HF_DIR" --out "$out" >"$TMP/export.log" 2>&1; then
    cat "$TMP/export.log" >&2
    rm -rf "$out"
    model_failure "export-text-assets failed for $HF_DIR (see above): it needs model.safetensors and tokenizer.json from CLIPModel.save_pretrained"
    return 0
  fi
  for f in "${TEXT_ASSETS[@]}"; do
    problem=$(text_asset_problem "$out/$f")
    if [ -n "$problem" ]; then
      rm -rf "$out"
      model_failure "export-text-assets wrote a bad $f: $problem"
      return 0
    fi
  done
  for f in "${TEXT_ASSETS[@]}"; do
    if [ -f "$res/$f" ] && cmp -s "$out/$f" "$res/$f"; then
      unchanged "$res/$f"
    else
      chmod 0644 "$out/$f"
      mv -f "$out/$f" "$res/$f"
      changed "$res/$f (from $HF_DIR)"
      RESTART_NEEDED=1
    fi
  done
  rm -rf "$out"
}

# ---------------------------------------------------------------- models: cpu

# Runs the model through the CPU engine once: loading both encoders and embedding a
# prompt proves the directory works before it is put in place.
# ONNX Runtime for the CPU engine (cpu.engine: auto takes it; tract serves without it):
# libonnxruntime.so from the onnxruntime wheel on PyPI, beside the binary in
# PREFIX/lib/hailo-clip/, where the daemon looks. A machine without pip or network keeps tract.
install_onnxruntime() {
  local lib
  if [ "$DRY_RUN" = 1 ]; then
    would "fetch ONNX Runtime (scripts/fetch-onnxruntime.sh, pip) into $(R "$PREFIX/lib/hailo-clip")"
    return 0
  fi
  if ! lib=$("$SCRIPT_DIR/scripts/fetch-onnxruntime.sh" 2>"$TMP/ort.log"); then
    warn "ONNX Runtime could not be fetched with pip ($(tail -n 1 "$TMP/ort.log")): the CPU engine will be tract, about half as fast; rerun install.sh with network, or set cpu.onnxruntime_library"
    return 0
  fi
  ensure_dir "$(R "$PREFIX/lib/hailo-clip")" 0755
  install_file "$lib" "$(R "$PREFIX/lib/hailo-clip/$(basename "$lib")")" 0644
}

smoke_test_model() { # DIR
  local cfg=$TMP/cpu-only.yaml
  if [ "$BIN_RUNS" = 0 ]; then
    warn "not loading the model as a check: the binary does not run on this machine"
    return 0
  fi
  printf 'backend: cpu\n' >"$cfg"
  "$NEW_BIN" --config "$cfg" --model-dir "$1" embed text "a photo of a cat" >"$TMP/smoke.log" 2>&1
}

# Puts the model directory SRC in place under MODELS_ROOT, atomically.
place_cpu_model() { # SRC DESCRIPTION
  local src=$1 what=$2 problem name dest root staged old f same=1 configured
  problem=$(cpu_model_problem "$src")
  if [ -n "$problem" ]; then
    model_failure "$what is not a hailo-clip model directory: $problem"
    return 0
  fi
  name=${MODEL_NAME:-$(manifest_name "$src/manifest.json")}
  if ! [[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]]; then
    model_failure "$what: manifest name '$name' cannot be a directory name; pass --model-name NAME"
    return 0
  fi
  root=$(R "$MODELS_ROOT")
  dest=$root/$name
  configured=$(yaml_get "$(R "$CONFIG_PATH")" model dir)
  [ -n "$configured" ] || configured=$MODELS_ROOT/clip-vit-base-patch32
  if manifest_random "$src/manifest.json"; then
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
  if [ -d "$dest" ]; then
    for f in "${CPU_MODEL_FILES[@]}"; do
      cmp -s "$src/$f" "$dest/$f" || { same=0; break; }
    done
    if [ "$same" = 1 ]; then
      unchanged "$dest"
      return 0
    fi
  fi
  if [ "$DRY_RUN" = 1 ]; then
    would "install the model $what as $dest"
    return 0
  fi
  if ! smoke_test_model "$src"; then
    cat "$TMP/smoke.log" >&2
    model_failure "$what does not load in the CPU engine (see above); not installed"
    return 0
  fi
  ensure_dir "$root" 0755
  staged=$(mktemp -d "$root/.$name.new.XXXXXX")
  for f in "${CPU_MODEL_FILES[@]}"; do
    cp "$src/$f" "$staged/$f"
    chmod 0644 "$staged/$f"
  done
  chmod 0755 "$staged"
  if [ -d "$dest" ]; then
    old="$root/.$name.old.$$"
    mv "$dest" "$old"
    mv "$staged" "$dest"
    rm -rf "$old"
  else
    mv "$staged" "$dest"
  fi
  changed "$dest (model $name from $what)"
  RESTART_NEEDED=1
  if [ "$MODELS_ROOT/$name" != "$configured" ]; then
    say "note: $CONFIG_PATH has model.dir: $configured; to serve this model set model.dir: $MODELS_ROOT/$name"
  fi
}

# Unpacks an archive (or takes a directory) and returns the directory holding manifest.json.
model_source_dir() { # PATH -> prints the directory; empty on failure
  local src=$1 out
  if [ -d "$src" ]; then
    echo "$src"
    return 0
  fi
  [ -f "$src" ] || { model_failure "$src does not exist"; return 0; }
  out=$(mktemp -d "$TMP/archive.XXXXXX")
  if ! tar -xf "$src" -C "$out" --no-same-owner 2>"$TMP/tar.err"; then
    model_failure "$src is not a readable tar archive: $(head -n 3 "$TMP/tar.err")"
    return 0
  fi
  find "$out" -maxdepth 2 -name manifest.json -printf '%h\n' | head -n 1
}

install_cpu_model() {
  local src dir configured problem archive
  if [ -n "$HF_DIR" ]; then
    if [ "$DRY_RUN" = 1 ]; then
      would "export $HF_DIR with $PYTHON scripts/export_onnx.py and install it under $MODELS_ROOT"
      return 0
    fi
    [ -f "$SCRIPT_DIR/scripts/export_onnx.py" ] || { model_failure "scripts/export_onnx.py is not beside install.sh"; return 0; }
    if ! "$PYTHON" -c 'import torch, transformers, onnx, onnxruntime' 2>/dev/null; then
      model_failure "exporting --hf-dir needs python packages torch, transformers, onnx and onnxruntime in $PYTHON: python3 -m venv /tmp/clip-export && /tmp/clip-export/bin/pip install torch transformers onnx onnxruntime, then rerun with PYTHON=/tmp/clip-export/bin/python (or export on another machine and use --model-archive)"
      return 0
    fi
    src=$TMP/export
    local name_args=()
    [ -z "$MODEL_NAME" ] || name_args=(--name "$MODEL_NAME")
    say "exporting $HF_DIR to ONNX (a few minutes for ViT-B/32)"
    if ! "$PYTHON" "$SCRIPT_DIR/scripts/export_onnx.py" --hf-dir "$HF_DIR" --out "$src" "${name_args[@]}"; then
      model_failure "scripts/export_onnx.py failed for $HF_DIR (see above)"
      return 0
    fi
    place_cpu_model "$src" "$HF_DIR (exported)"
    return 0
  fi
  if [ -n "$MODEL_URL" ]; then
    archive=$(R "$CACHE_DIR")/$(basename "${MODEL_URL%%\?*}")
    if [ -f "$archive" ] && tar -tf "$archive" >/dev/null 2>&1; then
      unchanged "$archive (downloaded earlier)"
    else
      local rc=0
      download "$MODEL_URL" "$archive" tar_problem || rc=$?
      case "$rc" in
        0) ;;
        10) model_failure "$MODEL_URL: not found"; return 0 ;;
        11) model_failure "cannot reach the server of $MODEL_URL; download it elsewhere and pass --model-archive FILE"; return 0 ;;
        12) model_failure "the download of $MODEL_URL broke off 3 times ($LAST_DOWNLOAD_ERROR); $CACHE_DIR/$(basename "$archive").part is kept: run install.sh again to resume"; return 0 ;;
        13) model_failure "$MODEL_URL is not a tar archive"; return 0 ;;
      esac
    fi
    [ "$DRY_RUN" = 0 ] || { would "install the model in $archive under $MODELS_ROOT"; return 0; }
    MODEL_ARCHIVE=$archive
  fi
  if [ -n "$MODEL_ARCHIVE" ]; then
    dir=$(model_source_dir "$MODEL_ARCHIVE")
    [ -n "$dir" ] || { [ "$MODEL_FAILURES" -gt 0 ] || model_failure "$MODEL_ARCHIVE holds no manifest.json"; return 0; }
    place_cpu_model "$dir" "$MODEL_ARCHIVE"
    return 0
  fi
  # No source: the configured model must already be there.
  configured=$(yaml_get "$(R "$CONFIG_PATH")" model dir)
  [ -n "$configured" ] || configured=$MODELS_ROOT/clip-vit-base-patch32
  problem=$(cpu_model_problem "$(R "$configured")")
  if [ -z "$problem" ]; then
    unchanged "$(R "$configured") (CPU model)"
    return 0
  fi
  model_failure "no CPU model: $problem"
  printf '%s\n' "  No package registry ships CLIP weights, so the model is exported once from a Hugging Face checkpoint" \
    "  (docs/INSTALL.md, 'CPU model'), then installed with one of:" \
    "      sudo ./install.sh --models cpu --hf-dir /path/to/clip-vit-base-patch32      (exports here; needs torch)" \
    "      sudo ./install.sh --models cpu --model-archive clip-vit-base-patch32.tar.gz  (exported elsewhere)" \
    "      sudo ./install.sh --models cpu --model-url https://your.server/clip-vit-base-patch32.tar.gz" \
    "  or copy the exported directory to $configured by hand." >&2
}

# shellcheck disable=SC2317 # called through download's CHECK_FN
tar_problem() { # FILE
  tar -tf "$1" >/dev/null 2>&1 || echo "not a tar archive"
}

# ---------------------------------------------------------------- service

service_host_port() { # -> "HOST PORT" for reaching the daemon from this machine
  local cfg host port
  cfg=$(R "$CONFIG_PATH")
  host=$(yaml_get "$cfg" server host)
  port=$(yaml_get "$cfg" server port)
  case "$host" in "" | 0.0.0.0) host=127.0.0.1 ;; "::" | "[::]") host='[::1]' ;; *:*) host="[$host]" ;; esac
  echo "$host ${port:-5000}"
}

enable_service() {
  if [ -n "$DESTDIR" ]; then
    say "staged in $DESTDIR: on the target, run: systemctl daemon-reload && systemctl enable --now $SERVICE"
    return 0
  fi
  if ! systemd_running; then
    say "systemd is not running here (a container?): the unit is installed but not enabled; start the daemon by hand with: runuser -u $SERVICE_USER -- $BIN_PATH serve"
    return 0
  fi
  if systemctl is-enabled --quiet "$SERVICE" 2>/dev/null; then
    unchanged "$SERVICE.service enabled"
  elif [ "$DRY_RUN" = 1 ]; then
    would "systemctl enable $SERVICE"
  else
    systemctl enable --quiet "$SERVICE"
    changed "systemctl enable $SERVICE (starts at boot)"
  fi
  if [ "$RESTART_NEEDED" = 1 ] && systemctl is-active --quiet "$SERVICE"; then
    if [ "$DRY_RUN" = 1 ]; then
      would "systemctl restart $SERVICE (running with the old files)"
    else
      say "restarting the running $SERVICE to pick up the new files"
      systemctl restart "$SERVICE" || warn "restart failed: systemctl status $SERVICE; journalctl -u $SERVICE -n 50"
      changed "systemctl restart $SERVICE"
    fi
  fi
}

warmup() {
  local hp host port url deadline image
  if [ "$DRY_RUN" = 1 ]; then
    would "systemctl start $SERVICE, wait for /health 200, classify a sample image"
    return 0
  fi
  systemd_running || die "--warmup needs systemd running (it is not here): start the daemon by hand with: $BIN_PATH serve"
  command -v curl >/dev/null || die "--warmup needs curl: sudo apt install curl"
  if [ "$MODEL_FAILURES" -gt 0 ]; then
    warn "a requested model is missing (above): the service will not become ready; starting it anyway"
  fi
  hp=$(service_host_port)
  host=${hp% *}
  port=${hp#* }
  url=http://$host:$port
  say "starting $SERVICE and waiting for $url/health (loading and warming up both encoders takes up to a couple of minutes)"
  if ! systemctl start "$SERVICE"; then
    systemctl status --no-pager --lines=30 "$SERVICE" >&2 || true
    die "$SERVICE did not start: journalctl -u $SERVICE -n 100 --no-pager shows why"
  fi
  deadline=$((SECONDS + 150))
  until curl -fsS -o "$TMP/health.json" "$url/health" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      systemctl status --no-pager --lines=30 "$SERVICE" >&2 || true
      die "$url/health did not answer 200 in 150 s: journalctl -u $SERVICE -n 100 --no-pager shows why"
    fi
    case "$(systemctl is-active "$SERVICE" 2>/dev/null || true)" in
      active | activating | reloading) ;;
      *)
        systemctl status --no-pager --lines=30 "$SERVICE" >&2 || true
        die "$SERVICE stopped while starting: journalctl -u $SERVICE -n 100 --no-pager shows why"
        ;;
    esac
    sleep 1
  done
  say "ready: $url/health -> $(cat "$TMP/health.json")"
  image=$SCRIPT_DIR/tests/fixtures/images/chelsea.png
  if [ -f "$image" ]; then
    say "sample: curl -F image=@$image -F prompts=cat -F prompts=dog -F prompts=car $url/v1/classify"
    curl -fsS -F "image=@$image" -F prompts=cat -F prompts=dog -F prompts=car "$url/v1/classify" ||
      die "the sample classification failed: journalctl -u $SERVICE -n 50 --no-pager"
    echo
  else
    say "try it: curl -F image=@photo.jpg -F prompts=cat -F prompts=dog $url/v1/classify"
  fi
  # The daemon ran the known-answer self-test before it said ready; run it once more in
  # the open, so the table of photos and labels is in front of whoever installs.
  # Same environment as the service (a drop-in may set HAILO_CLIP_MODEL_DIR and the like).
  local service_env
  service_env=$(systemctl show -p Environment --value "$SERVICE" 2>/dev/null || true)
  say "self-test: ${service_env:+env $service_env }$BIN_PATH --config $CONFIG_PATH selftest"
  # shellcheck disable=SC2086 # the unit's Environment is a list of NAME=VALUE words
  env $service_env "$BIN_PATH" --config "$CONFIG_PATH" selftest ||
    die "the self-test failed: the installed model gives wrong answers (table above; docs/HAILO.md)"
}

# ---------------------------------------------------------------- uninstall

remove_staged_user() { # removes the user and its group from DESTDIR/etc files
  local f
  for f in passwd shadow group gshadow; do
    [ -f "$DESTDIR/etc/$f" ] || continue
    awk -F: -v OFS=: -v u="$SERVICE_USER" '$1 == u { next } { if (NF >= 4) { n = split($4, m, ","); s = ""; for (i = 1; i <= n; i++) if (m[i] != u) s = s (s == "" ? "" : ",") m[i]; $4 = s } print }' \
      "$DESTDIR/etc/$f" >"$TMP/$f" && cat "$TMP/$f" >"$DESTDIR/etc/$f"
  done
}

uninstall() {
  say "uninstalling $SERVICE${DESTDIR:+ from $DESTDIR}"
  if systemd_running && systemctl cat "$SERVICE" >/dev/null 2>&1; then
    if [ "$DRY_RUN" = 1 ]; then
      would "systemctl disable --now $SERVICE"
    else
      systemctl disable --now --quiet "$SERVICE" || true
      changed "systemctl disable --now $SERVICE"
    fi
  fi
  remove_path "$(R "$UNIT_PATH")"
  if systemd_running && [ "$DRY_RUN" = 0 ]; then
    systemctl daemon-reload
    systemctl reset-failed "$SERVICE" 2>/dev/null || true
  fi
  remove_path "$(R "$BIN_PATH")"
  remove_path "$(R "$SYSUSERS_PATH")"
  if [ "$PURGE" = 0 ]; then
    say "kept: $CONFIG_PATH, the models in $MODELS_ROOT and $RESOURCES_DIR, and user $SERVICE_USER (--purge removes them, except $RESOURCES_DIR)"
  else
    remove_path "$(R "$CONFIG_PATH")"
    remove_path "$(R "$CONFIG_PATH").new"
    if [ -d "$(R "$CONFIG_DIR")" ] && [ -z "$(ls -A "$(R "$CONFIG_DIR")")" ]; then remove_path "$(R "$CONFIG_DIR")"; fi
    remove_path "$(R "$SHARE_DIR")"
    remove_path "$(R "$STATE_DIR")"
    remove_path "$(R "$LOG_DIR")"
    remove_path "$(R "$CACHE_DIR")"
    if [ -n "$DESTDIR" ]; then
      if passwd_has "$DESTDIR/etc/passwd" "$SERVICE_USER" || passwd_has "$DESTDIR/etc/group" "$SERVICE_USER"; then
        if [ "$DRY_RUN" = 1 ]; then would "remove user and group $SERVICE_USER from $DESTDIR/etc"; else remove_staged_user; changed "removed user and group $SERVICE_USER from $DESTDIR/etc"; fi
      fi
    elif getent passwd "$SERVICE_USER" >/dev/null; then
      if [ "$DRY_RUN" = 1 ]; then would "userdel $SERVICE_USER"; else
        userdel "$SERVICE_USER"
        getent group "$SERVICE_USER" >/dev/null && groupdel "$SERVICE_USER"
        changed "removed user and group $SERVICE_USER"
      fi
    fi
    say "kept: $RESOURCES_DIR (Hailo files, shared with hailo-apps) and the device group"
  fi
}

# ---------------------------------------------------------------- main

summary() {
  if [ "$DRY_RUN" = 1 ]; then
    say "dry run: $PLANNED actions would run, $UNCHANGED already in place; nothing was changed"
  else
    say "done: $CHANGED changed, $UNCHANGED unchanged"
  fi
}

[ "$DRY_RUN" = 0 ] || say "dry run: printing the actions, doing none of them"

if [ "$UNINSTALL" = 1 ]; then
  uninstall
  summary
  exit 0
fi

[ -f "$UNIT_SRC" ] || die "$UNIT_SRC is missing: run install.sh from a hailo-clip checkout"
[ -f "$CONFIG_SRC" ] || die "$CONFIG_SRC is missing: run install.sh from a hailo-clip checkout"

say "installing $SERVICE${DESTDIR:+ into $DESTDIR} (prefix $PREFIX)"
prepare_binary
choose_device_group

if [ -n "$NEW_BIN" ]; then
  before=$CHANGED
  install_file "$NEW_BIN" "$(R "$BIN_PATH")" 0755
  [ "$CHANGED" = "$before" ] || RESTART_NEEDED=1
else
  would "install $(R "$BIN_PATH") (mode 0755) from the build"
fi

sysusers_conf=$TMP/sysusers.conf
cat >"$sysusers_conf" <<EOF
# hailo-clip's system user, and the group that may use the Hailo device (install.sh).
u $SERVICE_USER - "hailo-clip daemon" $STATE_DIR /usr/sbin/nologin
g $DEVICE_GROUP -
m $SERVICE_USER $DEVICE_GROUP
EOF
install_file "$sysusers_conf" "$(R "$SYSUSERS_PATH")" 0644
create_users
install_config
install_unit

if [ "$WANT_HAILO" = 1 ]; then
  say "models: hailo10h into $RESOURCES_DIR"
  ensure_dir "$(R "$RESOURCES_DIR")" 0755
  install_hefs
  install_text_assets
fi
if [ "$WANT_CPU" = 1 ]; then
  say "models: cpu into $MODELS_ROOT"
  install_cpu_model
  install_onnxruntime
fi

enable_service
summary
if [ "$MODEL_FAILURES" -gt 0 ]; then
  if [ "$DRY_RUN" = 1 ]; then
    warn "$MODEL_FAILURES model problem(s) above would remain after this install"
  else
    warn "$MODEL_FAILURES model problem(s) above: hailo-clip is installed, but will not become ready until the model files are in place"
  fi
fi
if [ "$WARMUP" = 1 ]; then
  warmup
fi
if [ "$MODEL_FAILURES" -gt 0 ]; then exit 2; fi
exit 0

#!/usr/bin/env bash
# Builds hailo-clip for a Raspberry Pi 5 (aarch64-unknown-linux-gnu) on an x86_64 Debian or
# Ubuntu machine, with Debian's packages only (no rustup target, no chroot):
#   rustc-web / cargo-web (Rust 1.96) and libstd-rust-web-dev:arm64, the arm64 standard
#   library of the same compiler (after `dpkg --add-architecture arm64`);
#   gcc-/g++-aarch64-linux-gnu, which link the binary and build libjpeg-turbo (CMake) and the
#   HailoRT test double;
#   libstdc++6:arm64, for what runs under qemu (ONNX Runtime's library and the HailoRT double
#   are C++);
#   qemu-aarch64 from Debian 13 (trixie)'s qemu-user package, statically linked, fetched by
#   apt into ~/.cache/hailo-clip/aarch64 (HAILO_CLIP_AARCH64_CACHE) when this machine has no
#   qemu-aarch64 of version 8 or later: bookworm's qemu-user-static 7.2 runs the daemon but
#   crashes inside ONNX Runtime (SIGSEGV), which trixie's 10.0 runs. The machine's apt sources
#   are not changed; apt checks the download against Debian's archive keyring as usual.
# Missing packages are installed (apt-get; sudo when not root); installed ones are left alone,
# so a second run only builds. The build's cache is target/aarch64-unknown-linux-gnu (and the
# host build scripts under target/), as for any Cargo build.
#
# Usage:
#   scripts/cross-aarch64.sh [--dev | --profile PROFILE] [--tests]
#       builds target/aarch64-unknown-linux-gnu/release/hailo-clip (default features), or
#       .../debug/ with --dev, .../PROFILE/ with --profile (CI: emulated, see Cargo.toml);
#       --tests also builds the test binaries (default features, and
#       --features hailo-fake --test hailo) and lists them.
#   scripts/cross-aarch64.sh [--dev | --profile PROFILE] cargo ARGS...
#       runs that cargo command for aarch64 with the same toolchain; its runner is
#       scripts/run-aarch64.sh, so `cargo test` runs the tests under qemu.
# Then: scripts/run-aarch64.sh target/aarch64-unknown-linux-gnu/release/hailo-clip serve,
# or copy the binary to the Pi and `sudo ./install.sh --binary hailo-clip` there (docs/INSTALL.md).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
target=aarch64-unknown-linux-gnu
profile=release
tests=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dev) profile=dev ;;
    --profile) profile=${2:?--profile needs a name}; shift ;;
    --tests) tests=1 ;;
    cargo) break ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "cross-aarch64: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { echo "cross-aarch64: $*" >&2; }

# ---- the toolchain: Debian packages
case "$(uname -m)" in
  x86_64) ;;
  aarch64 | arm64) say "this machine is aarch64: build natively with cargo build --release (docs/INSTALL.md)"; exit 2 ;;
  *) say "an x86_64 Debian/Ubuntu machine is needed (this is $(uname -m))"; exit 2 ;;
esac
sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)
need=()
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
for pkg in rustc-web cargo-web libstd-rust-web-dev:arm64 libstdc++6:arm64 gcc-aarch64-linux-gnu g++-aarch64-linux-gnu cmake; do
  installed "$pkg" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || { say "needs Debian's packages ${need[*]} (apt-get not found)"; exit 1; }
  say "installing Debian packages: ${need[*]}"
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    "${sudo[@]}" dpkg --add-architecture arm64
  fi
  "${sudo[@]}" apt-get update -q >/dev/null
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
# qemu: this machine's when it is 8 or later, else trixie's (see the top).
qemu_major() { "$1" --version 2>/dev/null | sed -n '1s/.* version \([0-9]*\)\..*/\1/p'; }
cache=${HAILO_CLIP_AARCH64_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hailo-clip/aarch64}
qemu=$(command -v qemu-aarch64-static || command -v qemu-aarch64 || true)
if [ -x "$cache/qemu-aarch64" ]; then
  qemu=$cache/qemu-aarch64
elif [ -z "$qemu" ] || [ "$(qemu_major "$qemu")" -lt 8 ]; then
  say "fetching qemu-aarch64 from Debian trixie's qemu-user into $cache (this machine's: ${qemu:-none}${qemu:+ $(qemu_major "$qemu").x})"
  apt_dir=$cache/apt
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
  echo "deb http://deb.debian.org/debian trixie main" >"$apt_dir/sources.list"
  apt_opts=(-q -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/nonexistent
    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o APT::Architectures::=amd64
    -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
  apt-get "${apt_opts[@]}" update >/dev/null
  (cd "$apt_dir" && rm -f qemu-user_*.deb && apt-get "${apt_opts[@]}" download qemu-user >/dev/null)
  rm -rf "$apt_dir/x"
  dpkg-deb -x "$apt_dir"/qemu-user_*.deb "$apt_dir/x"
  cp "$apt_dir/x/usr/bin/qemu-aarch64" "$cache/qemu-aarch64.part"
  mv "$cache/qemu-aarch64.part" "$cache/qemu-aarch64"
  rm -rf "$apt_dir/x" "$apt_dir"/qemu-user_*.deb "$apt_dir/cache"
  qemu=$cache/qemu-aarch64
fi
# scripts/run-aarch64.sh runs this one.
export HAILO_CLIP_QEMU=$qemu

# rustc-web's arm64 standard library must come from the same build as the compiler.
rustc_version=$(dpkg-query -W -f='${Version}' rustc-web)
std_version=$(dpkg-query -W -f='${Version}' libstd-rust-web-dev:arm64)
if [ "$rustc_version" != "$std_version" ]; then
  say "rustc-web is $rustc_version but libstd-rust-web-dev:arm64 is $std_version: upgrade both (apt-get install rustc-web libstd-rust-web-dev:arm64)"
  exit 1
fi

# Debian's cargo and rustc (/usr/bin), whatever rustup puts first on PATH: rustup's
# toolchain has no aarch64 standard library and cannot fetch one here.
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=$root/scripts/run-aarch64.sh
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
cargo=(/usr/bin/cargo)
profile_args=(--profile "$profile")

if [ "${1:-}" = cargo ]; then
  shift
  [ $# -gt 0 ] || { say "cargo needs a command (build, test, ...)"; exit 2; }
  sub=$1
  shift
  exec "${cargo[@]}" "$sub" --locked --target "$target" "${profile_args[@]}" "$@"
fi

say "$("${cargo[@]}" --version), $($RUSTC --version), $(aarch64-linux-gnu-gcc --version | head -n 1), $("$qemu" --version | head -n 1)"
start=$SECONDS
HAS_FILE=$(command -v file || true)
dir=$profile
[ "$profile" = dev ] && dir=debug
bin=target/$target/$dir/hailo-clip
if [ "$tests" = 0 ]; then
  "${cargo[@]}" build --locked --target "$target" "${profile_args[@]}" --bin hailo-clip
else
  # The test build builds the daemon too (the tests run it), with the dev-dependencies'
  # features unified: building it alone first would compile part of the tree twice.
  list=$(mktemp)
  trap 'rm -f "$list"' EXIT
  # "Executable tests/http_api.rs (target/.../deps/http_api-...)": cargo's list, on stderr.
  "${cargo[@]}" test --no-run --locked --target "$target" "${profile_args[@]}" 2>&1 | tee "$list" >&2
  "${cargo[@]}" test --no-run --locked --target "$target" "${profile_args[@]}" --features hailo-fake --test hailo 2>&1 | tee -a "$list" >&2
  say "test binaries ($(grep -c '^ *Executable' "$list")):"
  grep '^ *Executable' "$list" | sed 's/^ *Executable /  /' >&2
fi
say "built $bin in $((SECONDS - start)) s${HAS_FILE:+: $(file -b "$bin" | cut -d, -f1-2)}"
echo "$bin"

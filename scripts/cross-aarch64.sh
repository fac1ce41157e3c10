#!/usr/bin/env bash
# Builds hailo-clip for a Raspberry Pi 5 (aarch64-unknown-linux-gnu) on an x86_64 Debian or
# Ubuntu machine, with Debian's packages only (no rustup target, no chroot):
#   rustc-web / cargo-web (Rust 1.96) and libstd-rust-web-dev:arm64, the arm64 standard
#   library of the same compiler (after `dpkg --add-architecture arm64`);
#   gcc-/g++-aarch64-linux-gnu, which link the binary and build libjpeg-turbo (CMake) and the
#   HailoRT test double;
#   qemu-user-static and libstdc++6:arm64, so scripts/run-aarch64.sh can run what was built
#   (ONNX Runtime's library and the HailoRT double are C++).
# Missing packages are installed (apt-get; sudo when not root); installed ones are left alone,
# so a second run only builds. The build's cache is target/aarch64-unknown-linux-gnu (and the
# host build scripts under target/), as for any Cargo build.
#
# Usage:
#   scripts/cross-aarch64.sh [--dev] [--tests]
#       builds target/aarch64-unknown-linux-gnu/release/hailo-clip (default features), or
#       .../debug/ with --dev; --tests also builds the test binaries (default features, and
#       --features hailo-fake --test hailo) and lists them.
#   scripts/cross-aarch64.sh [--dev] cargo ARGS...
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
for pkg in rustc-web cargo-web libstd-rust-web-dev:arm64 libstdc++6:arm64 gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user-static cmake; do
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

say "$("${cargo[@]}" --version), $($RUSTC --version), $(aarch64-linux-gnu-gcc --version | head -n 1)"
start=$SECONDS
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
say "built $bin in $((SECONDS - start)) s: $(file -b "$bin" | cut -d, -f1-2)"
echo "$bin"

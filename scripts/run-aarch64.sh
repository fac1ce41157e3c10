#!/usr/bin/env bash
# Runs an aarch64 Linux binary on this machine: under qemu-user (qemu-aarch64 8 or later, from
# Debian's packages: scripts/cross-aarch64.sh says which; no binfmt_misc needed), or directly
# on an aarch64 machine.
# Arguments, environment, stdin/stdout/stderr and the exit status pass through (the script
# execs). Cargo uses it as the target's runner (scripts/cross-aarch64.sh sets
# CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER to it).
#
# The aarch64 libraries: Debian's arm64 multiarch packages (libc6:arm64, libstdc++6:arm64, which
# scripts/cross-aarch64.sh installs beside libstd-rust-web-dev:arm64), found as on a Pi through
# /lib/ld-linux-aarch64.so.1 and /etc/ld.so.cache. Without them, the cross sysroot
# /usr/aarch64-linux-gnu (qemu -L). Never both: with libc6:arm64 installed, the sysroot's loader
# reads the host's ld.so.cache and loads the multiarch libc, a different build of glibc than
# its own (2.36-8cross1 against 2.36-9+deb12u14 here), and the first pthread_create spins forever.
#
# Usage: scripts/run-aarch64.sh BINARY [ARGS...]
# HAILO_CLIP_AARCH64_SYSROOT=DIR runs against DIR (qemu -L) instead.
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 BINARY [ARGS...]" >&2
  exit 2
fi
# A process under qemu-user cannot exec another aarch64 binary (that would need binfmt_misc,
# which containers and CI machines lack), so the tests start the daemon through this script:
# tests/common/mod.rs reads HAILO_CLIP_TEST_RUNNER.
HAILO_CLIP_TEST_RUNNER=$(realpath "$0")
export HAILO_CLIP_TEST_RUNNER
case "$(uname -m)" in
  aarch64 | arm64) exec "$@" ;;
esac
# qemu 8 or later: $HAILO_CLIP_QEMU, the one scripts/cross-aarch64.sh fetched, or the machine's.
qemu=${HAILO_CLIP_QEMU:-}
cached=${HAILO_CLIP_AARCH64_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hailo-clip/aarch64}/qemu-aarch64
[ -n "$qemu" ] || { [ -x "$cached" ] && qemu=$cached; } || qemu=$(command -v qemu-aarch64-static || command -v qemu-aarch64 || true)
version=$("${qemu:-false}" --version 2>/dev/null | sed -n '1s/.* version \([0-9]*\)\..*/\1/p')
if [ -z "$version" ] || [ "$version" -lt 8 ]; then
  echo "run-aarch64: no qemu-aarch64 of version 8 or later (found: ${qemu:-none}${version:+, version $version}; 7.2 crashes inside ONNX Runtime): run scripts/cross-aarch64.sh, which fetches Debian trixie's, or set HAILO_CLIP_QEMU" >&2
  exit 127
fi
sysroot=${HAILO_CLIP_AARCH64_SYSROOT:-}
if [ -z "$sysroot" ]; then
  [ -e /lib/ld-linux-aarch64.so.1 ] && exec "$qemu" "$@"
  sysroot=/usr/aarch64-linux-gnu
fi
if [ ! -e "$sysroot/lib/ld-linux-aarch64.so.1" ]; then
  echo "run-aarch64: no aarch64 loader at $sysroot/lib/ld-linux-aarch64.so.1: apt install libc6:arm64 libstdc++6:arm64 (after dpkg --add-architecture arm64), or run scripts/cross-aarch64.sh, which installs them" >&2
  exit 127
fi
exec "$qemu" -L "$sysroot" "$@"

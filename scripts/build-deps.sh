#!/usr/bin/env bash
# Installs what building hailo-clip needs beyond a Rust toolchain and a C compiler, when it is
# missing: CMake, which builds the libjpeg-turbo that the turbojpeg crate vendors (Debian's
# libturbojpeg is 2.1, older than the 3.0 API the crate binds), and on x86_64 NASM for its
# SIMD code (on arm64 the NEON code needs no assembler). Debian/Raspberry Pi OS packages.
# Called by run-dev.sh, .ci/run and install.sh; prints nothing when all is there.
set -euo pipefail
need=()
command -v cmake >/dev/null || need+=(cmake)
case "$(uname -m)" in
  x86_64 | i?86) command -v nasm >/dev/null || need+=(nasm) ;;
esac
[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "build-deps: install ${need[*]} (the libjpeg-turbo build needs them)" >&2
  exit 1
fi
sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)
echo "build-deps: installing ${need[*]} (Debian packages) for the libjpeg-turbo build" >&2
"${sudo[@]}" apt-get update -q >/dev/null
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null

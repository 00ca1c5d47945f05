#!/usr/bin/env bash
# Installs what multiproc needs on Debian 12 (run as root): compilers, CMake,
# GoogleTest, OpenSSL, APR, clang-format (the style check), Python (interop tests and
# the CPython baseline), dpkg-dev and debhelper (the Debian package test), Doxygen (the reference), and
# mingw-w64 + Wine for the Windows build. Set MP_NO_WINDOWS=1 to skip the last two.
set -euo pipefail
pkgs=(build-essential clang clang-format cmake pkg-config libgtest-dev googletest libssl-dev libapr1-dev python3 procps
  dpkg-dev debhelper doxygen)
if [ "${MP_NO_WINDOWS:-0}" != 1 ]; then
  pkgs+=(gcc-mingw-w64-x86-64-posix g++-mingw-w64-x86-64-posix wine wine64)
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
echo "deps: installed ${#pkgs[@]} packages"

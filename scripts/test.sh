#!/usr/bin/env bash
# Installs what is missing, builds and runs every test: the Linux suite on every start
# method, the same suite under ASan+UBSan, the dummy backend under TSan, and the
# mingw-w64 build under Wine.
# Usage: scripts/test.sh [linux|asan|tsan|windows ...]   (default: all four)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(linux asan tsan windows)
bash scripts/deps.sh || exit 1
jobs=$(nproc)
failed=()

# The include rule (docs/architecture.md): cheap, so it runs first, on every call.
bash scripts/check_layers.sh || failed+=("layers")
# The house style (.clang-format), as cheap.
bash scripts/check_format.sh || failed+=("format")

run_stage() { # name, build dir, ctest label regex ('' = all), cmake args...
  local name=$1 dir=$2 label=$3; shift 3
  echo "=== $name: configure and build ($dir)"
  if ! cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >"$dir.configure.log" 2>&1; then
    cat "$dir.configure.log"; failed+=("$name (configure)"); return
  fi
  if ! cmake --build "$dir" -j"$jobs" >"$dir.build.log" 2>&1; then
    tail -40 "$dir.build.log"; failed+=("$name (build)"); return
  fi
  grep -E "warning:" "$dir.build.log" | sort -u | head -20 || true
  echo "=== $name: test"
  local sel=()
  [ -n "$label" ] && sel=(-L "$label")
  if ! (cd "$dir" && ctest --output-on-failure -j"$jobs" --timeout 900 "${sel[@]}"); then failed+=("$name (tests)"); fi
}

for s in "${stages[@]}"; do
  case $s in
    linux) run_stage linux build-linux "" ;;
    asan) run_stage "asan+ubsan" build-asan "" -DMP_ASAN=ON -DMP_UBSAN=ON -DCMAKE_BUILD_TYPE=Debug ;;
    # ThreadSanitizer sees what the dummy backend's threads share.
    tsan) CC=clang CXX=clang++ run_stage "tsan (dummy)" build-tsan "dummy|common" -DMP_TSAN=ON \
            -DMP_WITH_APR=OFF -DMP_BUILD_EXAMPLES=OFF -DMP_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=Debug ;;
    windows)
      export WINEDEBUG=-all WINEPREFIX="${WINEPREFIX:-$HOME/.wine-multiproc}"
      # The first start of Wine builds its prefix (~10 s); do it once, outside the tests.
      wineboot -i >/dev/null 2>&1 || true
      run_stage "windows (mingw-w64 under Wine)" build-mingw "" \
        -DCMAKE_TOOLCHAIN_FILE="$root/cmake/mingw-w64-x86_64.cmake" -DMP_BUILD_BENCH=OFF ;;
    *) echo "unknown stage $s"; exit 2 ;;
  esac
done

# A test run must leave nothing behind in /dev/shm.
left=$(ls /dev/shm 2>/dev/null | grep -viE '^(sem\.)?(wine|pulse)' || true)
if [ -n "$left" ]; then echo "leftovers in /dev/shm:"; echo "$left"; failed+=("/dev/shm leak"); fi

if [ ${#failed[@]} -ne 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all stages passed: ${stages[*]}"

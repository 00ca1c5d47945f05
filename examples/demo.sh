#!/usr/bin/env bash
# examples/demo.sh: builds the examples (CMake, Release, in build-demo/ at the repo
# root) and runs every example on every start method this platform offers, printing a
# header per run, the example's output, and its wall time. Exits 1 if any run failed
# (non-zero exit, or it did not finish within MP_DEMO_TIMEOUT seconds, default 60).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
build="$root/build-demo"
limit=${MP_DEMO_TIMEOUT:-60}
# The same list as examples/CMakeLists.txt (there with the line each must print).
examples=(hello info start_methods exitcodes pipes wait locks queues shared_state shared_memory
  managers custom_manager newtype remote_manager listener_client workers pool pool_demo progress
  shared_memory_manager logging shared_array)

log="$build/build.log"
mkdir -p "$build"
: >"$log"
echo "== building the examples in $build"
if [[ ! -f "$build/CMakeCache.txt" ]]; then
  generator=()
  command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
  if ! cmake -S "$root" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
      -DMP_BUILD_EXAMPLES=ON -DMP_BUILD_TESTS=OFF -DMP_BUILD_BENCH=OFF >>"$log" 2>&1; then
    cat "$log"
    rm -f "$build/CMakeCache.txt" # configure again next time
    echo "demo: cmake configure failed (log above)"
    exit 1
  fi
fi
targets=()
for ex in "${examples[@]}"; do targets+=("mp_example_$ex"); done
if ! cmake --build "$build" --parallel --target "${targets[@]}" >>"$log" 2>&1; then
  cat "$log"
  echo "demo: build failed (log above)"
  exit 1
fi

bin="$build/examples"
# The library says which start methods exist here (fork, spawn, forkserver, apr?,
# dummy on Linux), so the demo follows what was built instead of guessing.
if ! list=$("$bin/start_methods" --list) || [[ -z "$list" ]]; then
  echo "demo: start_methods --list failed"
  exit 1
fi
mapfile -t methods <<<"$list"
echo "== start methods: ${methods[*]}"

ms_now() { echo $(( $(date +%s%N) / 1000000 )); }
run_limited() {
  if command -v timeout >/dev/null 2>&1; then timeout "$limit" "$@"; else "$@"; fi
}

failures=()
runs=0
for ex in "${examples[@]}"; do
  for m in "${methods[@]}"; do
    runs=$((runs + 1))
    echo
    echo "=== $ex $m"
    t0=$(ms_now)
    run_limited "$bin/$ex" "$m" 2>&1
    rc=$?
    dt=$(( $(ms_now) - t0 ))
    if [[ $rc -eq 0 ]]; then
      echo "--- $ex $m: ok, ${dt} ms"
    else
      [[ $rc -eq 124 ]] && why="timed out after ${limit} s" || why="exit code $rc"
      echo "--- $ex $m: FAILED ($why), ${dt} ms"
      failures+=("$ex $m ($why)")
    fi
  done
done

echo
if [[ ${#failures[@]} -eq 0 ]]; then
  echo "== demo: all $runs runs passed"
  exit 0
fi
echo "== demo: ${#failures[@]} of $runs runs failed:"
printf '   %s\n' "${failures[@]}"
exit 1

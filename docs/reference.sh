#!/usr/bin/env bash
# Builds the API reference (docs/Doxyfile) into <out dir> and fails if Doxygen warned.
# usage: reference.sh <source dir> <out dir>
set -euo pipefail
src=$1
out=$2
if ! command -v doxygen >/dev/null 2>&1; then
    echo "doxygen_reference: skipped: doxygen is not installed (scripts/deps.sh installs it)"
    exit 77
fi
mkdir -p "$out"
log=$out/warnings.log
: >"$log"
(cd "$src" && { cat docs/Doxyfile; echo "OUTPUT_DIRECTORY = $out"; echo "WARN_LOGFILE = $log"; } | doxygen - >"$out/doxygen.out" 2>&1) ||
    { cat "$out/doxygen.out"; echo "doxygen_reference: FAILED: doxygen exited with an error"; exit 1; }
if [ -s "$log" ]; then
    cat "$log"
    echo "doxygen_reference: FAILED: $(wc -l <"$log") warning line(s) above"
    exit 1
fi
test -f "$out/html/index.html" || { echo "doxygen_reference: FAILED: no html/index.html"; exit 1; }
pages=$(find "$out/html" -name '*_8h.html' | wc -l)
[ "$pages" -ge 10 ] || { echo "doxygen_reference: FAILED: only $pages header pages"; exit 1; }
echo "doxygen_reference: OK ($pages header pages, no warning) in $out/html"

#!/usr/bin/env bash
# Installs what is missing, builds, and runs the documentation's examples on every
# start method, printing the time each took.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
MP_NO_WINDOWS=1 bash "$root/scripts/deps.sh"
exec bash "$root/examples/demo.sh"

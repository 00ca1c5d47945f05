#!/usr/bin/env bash
# The house style, checked: every C and C++ file of the repository is as clang-format
# lays it out with .clang-format (Debian 12's clang-format 14; another version may
# disagree on details, so the check runs only with 14 and says so otherwise).
# Usage: scripts/check_format.sh [repo root]. Exit 1 listing the files to reformat
# (`clang-format -i FILE`).
set -uo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root" || exit 2
cf=$(command -v clang-format-14 || command -v clang-format || true)
if [ -z "$cf" ]; then echo "check_format: no clang-format: skipped"; exit 0; fi
ver=$("$cf" --version | grep -oE '[0-9]+\.[0-9]+' | head -1)
case $ver in 14.*) ;; *) echo "check_format: clang-format $ver is not 14: skipped"; exit 0 ;; esac
bad=()
while IFS= read -r f; do
  "$cf" --style=file --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done < <(git ls-files '*.c' '*.h' '*.cc')
if [ ${#bad[@]} -ne 0 ]; then
  printf 'check_format: not as .clang-format lays it out: %s\n' "${bad[@]}"
  exit 1
fi
echo "check_format: $(git ls-files '*.c' '*.h' '*.cc' | wc -l) files follow .clang-format"

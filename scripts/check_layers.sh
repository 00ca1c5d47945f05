#!/usr/bin/env bash
# The one include rule of docs/architecture.md, checked: each folder of the library may
# include only what its layer sees, and no header includes itself in a circle.
#   include/              include/ only
#   core/                 core/, include/
#   backends/ dummy/      core/, include/, and their own folder's headers
#   linux/ win32/         core/os*.h, include/, and their own folder's headers
# Usage: scripts/check_layers.sh [repo root]. Exit 1 with one line per broken include.
set -uo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root" || exit 2

bad=0
edges=$(mktemp)
trap 'rm -f "$edges"' EXIT

# allowed <file> <resolved include>: whether the file's layer may include it.
allowed() {
  local dir=${1%%/*} inc=$2
  case $inc in include/*) return 0 ;; esac
  case $dir in
    include) return 1 ;;
    core) [[ $inc == core/* ]] ;;
    backends|dummy) [[ $inc == core/* || $inc == "$dir"/* ]] ;;
    linux|win32) [[ $inc == core/os*.h || $inc == "$dir"/* ]] ;;
    *) return 0 ;;
  esac
}

while IFS= read -r file; do
  dir=$(dirname "$file")
  while IFS= read -r line; do
    inc=$(sed -E 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"([^"]+)".*/\1/' <<<"$line")
    # Quoted includes resolve against the file's folder, then the include path.
    if [[ -f $dir/$inc ]]; then
      target=$(realpath -m --relative-to="$root" "$dir/$inc")
    elif [[ -f include/$inc ]]; then
      target=include/$inc
    else
      continue # a system or generated header
    fi
    echo "$file $target" >>"$edges"
    if ! allowed "$file" "$target"; then
      echo "layering: $file includes $target"
      bad=1
    fi
  done < <(grep -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$file")
done < <(git ls-files 'include/*' 'core/*' 'backends/*' 'dummy/*' 'linux/*' 'win32/*' | grep -E '\.(c|h)$')

# Include circles among headers: a depth-first walk of the edges from each header.
circles=$(awk '
  { if ($2 ~ /\.h$/) { out[$1] = out[$1] " " $2 } }
  function walk(n, path,    k, m, parts) {
    if (n in onpath) { print "circle: " path; found = 1; return }
    if (n in done) return
    onpath[n] = 1
    m = split(out[n], parts, " ")
    for (k = 1; k <= m; k++) walk(parts[k], path " -> " parts[k])
    delete onpath[n]
    done[n] = 1
  }
  END { for (n in out) if (n ~ /\.h$/) walk(n, n) }
' "$edges")
if [[ -n $circles ]]; then
  echo "$circles"
  bad=1
fi

if [[ $bad -ne 0 ]]; then
  echo "check_layers: the include rule is broken (docs/architecture.md says what each folder may include)"
  exit 1
fi
echo "check_layers: $(wc -l <"$edges") includes follow the layers; no include circle"

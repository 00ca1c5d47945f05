#!/usr/bin/env bash
# Builds the Debian packages (debian/) from a copy of the source tree with
# dpkg-buildpackage -us -uc -b, checks what each one holds, unpacks both into a
# temporary root and builds and runs the consumer against them (pkg-config and
# find_package), as a program on a machine with the packages installed would.
# usage: debian.sh <source dir> <consumer source dir> <cmake> <C compiler>
set -euo pipefail

src=$1
consumer=$2
cmake=$3
cc=$4

for tool in dpkg-buildpackage dh dpkg-deb dpkg-architecture pkg-config; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "debian_package: skipped: $tool is not installed (scripts/deps.sh installs dpkg-dev and debhelper)"
        exit 77
    fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mp_debian.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
step() { echo "== $*"; }
fail() { echo "debian_package: FAILED: $*" >&2; exit 1; }

step "copy the source tree (no build directories, no .git)"
mkdir -p "$tmp/src"
tar -C "$src" --exclude='./build*' --exclude='./.git' --exclude='./obj-*' --exclude='./debian/.debhelper' \
    -cf - . | tar -C "$tmp/src" -xf -

step "dpkg-buildpackage -us -uc -b"
jobs=$(nproc 2>/dev/null || echo 2)
if ! (cd "$tmp/src" && DEB_BUILD_OPTIONS="nocheck parallel=$jobs" dpkg-buildpackage -us -uc -b >"$tmp/build.log" 2>&1); then
    tail -60 "$tmp/build.log"
    fail "dpkg-buildpackage"
fi

arch=$(dpkg-architecture -qDEB_HOST_ARCH)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
version=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version)
lib="$tmp/libmultiproc0_${version}_${arch}.deb"
dev="$tmp/libmultiproc-dev_${version}_${arch}.deb"
test -f "$lib" || fail "no $lib (made: $(ls "$tmp"/*.deb 2>/dev/null | xargs -n1 basename | tr '\n' ' '))"
test -f "$dev" || fail "no $dev"

step "what the packages hold"
has() { # deb, path (a regex over dpkg-deb -c's paths)
    dpkg-deb -c "$1" | awk '{print $6}' | grep -Eq "$2" || fail "$(basename "$1") has no $2"
}
has "$lib" "^\./usr/lib/$multiarch/libmultiproc\.so\.0$"
has "$lib" "^\./usr/lib/$multiarch/libmultiproc\.so\.0\.[0-9.]+$"
has "$dev" "^\./usr/include/multiproc\.h$"
has "$dev" "^\./usr/include/multiproc/version\.h$"
has "$dev" "^\./usr/lib/$multiarch/libmultiproc\.so$"
has "$dev" "^\./usr/lib/$multiarch/libmultiproc_s\.a$"
has "$dev" "^\./usr/lib/$multiarch/pkgconfig/multiproc\.pc$"
has "$dev" "^\./usr/lib/$multiarch/cmake/multiproc/multiprocConfig\.cmake$"
if dpkg-deb -c "$lib" | awk '{print $6}' | grep -q '^\./usr/include/'; then
    fail "the runtime package holds headers"
fi
dpkg-deb -f "$dev" Depends | grep -q "libmultiproc0 (= $version)" ||
    fail "libmultiproc-dev does not depend on libmultiproc0 (= $version): $(dpkg-deb -f "$dev" Depends)"
soname=$(objdump -p "$tmp/src/obj-"*/libmultiproc.so 2>/dev/null | awk '/SONAME/ {print $2}' || true)
[ -z "$soname" ] || [ "$soname" = libmultiproc.so.0 ] || fail "SONAME is $soname, the package is named for libmultiproc.so.0"

step "unpack both and build the consumer against them"
root=$tmp/root
dpkg -x "$lib" "$root"
dpkg -x "$dev" "$root"
libdir=$root/usr/lib/$multiarch
pc_flags=$(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs multiproc) ||
    fail "pkg-config --cflags --libs multiproc"
inc=""
for tok in $pc_flags; do case $tok in -I*) inc=$(realpath -m "${tok#-I}") ;; esac; done
[ "$inc" = "$(realpath -m "$root/usr/include")" ] ||
    fail "pkg-config --cflags does not point into the unpacked root: $pc_flags"
# shellcheck disable=SC2086
"$cc" -o "$tmp/consumer_pc" "$consumer/consumer.c" $pc_flags || fail "build with pkg-config flags"
LD_LIBRARY_PATH="$libdir" "$tmp/consumer_pc" || fail "consumer_pc exited with $?"
"$cmake" -S "$consumer" -B "$tmp/cmake-build" -DCMAKE_PREFIX_PATH="$root/usr" \
    -DCMAKE_C_COMPILER="$cc" >"$tmp/configure.log" 2>&1 || { cat "$tmp/configure.log"; fail "find_package configure"; }
"$cmake" --build "$tmp/cmake-build" >"$tmp/cbuild.log" 2>&1 || { cat "$tmp/cbuild.log"; fail "find_package build"; }
LD_LIBRARY_PATH="$libdir" "$tmp/cmake-build/consumer_shared" || fail "consumer_shared exited with $?"
"$tmp/cmake-build/consumer_static" || fail "consumer_static exited with $?"

echo "debian_package: OK ($(basename "$lib"), $(basename "$dev"))"

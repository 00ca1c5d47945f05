#!/usr/bin/env bash
# Installs a build into a temporary prefix and builds and runs consumers against it:
# one through find_package(multiproc) (shared and static), one through pkg-config, one
# through a plain Makefile.
# usage: check.sh <build dir> <consumer source dir> <cmake> <C compiler> [sanitizer flags]
set -euo pipefail

build=$1
consumer=$2
cmake=$3
cc=$4
san=${5:-}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mp_install_check.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

step() { echo "== $*"; }
fail() { echo "install_consumer: FAILED: $*" >&2; exit 1; }

step "install $build into $prefix"
"$cmake" --install "$build" --prefix "$prefix" >"$tmp/install.log" || { cat "$tmp/install.log"; fail "cmake --install"; }
test -f "$prefix/include/multiproc.h" || fail "multiproc.h not installed"
test -f "$prefix/include/multiproc/version.h" || fail "multiproc/version.h (generated) not installed"

# A consumer of a sanitized build needs the sanitizer runtime too.
flags=()
if [ -n "$san" ]; then
    flags=("-DCMAKE_C_FLAGS=$san" "-DCMAKE_EXE_LINKER_FLAGS=$san")
fi

step "find_package(multiproc): configure and build"
"$cmake" -S "$consumer" -B "$tmp/cmake-build" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_C_COMPILER="$cc" "${flags[@]}" >"$tmp/configure.log" 2>&1 ||
    { cat "$tmp/configure.log"; fail "consumer configure"; }
"$cmake" --build "$tmp/cmake-build" >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; fail "consumer build"; }

libdir=$(dirname "$(find "$prefix" -name 'libmultiproc.so' -print -quit)")
test -d "$libdir" || fail "libmultiproc.so not installed"

step "run the consumers"
LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$tmp/cmake-build/consumer_shared" ||
    fail "consumer_shared (find_package, shared library) exited with $?"
"$tmp/cmake-build/consumer_static" || fail "consumer_static (find_package, static library) exited with $?"

step "pkg-config"
pcdir=$(dirname "$(find "$prefix" -name 'multiproc.pc' -print -quit)")
test -d "$pcdir" || fail "multiproc.pc not installed"
pc_flags=$(PKG_CONFIG_PATH="$pcdir" pkg-config --cflags --libs multiproc) || fail "pkg-config --cflags --libs multiproc"
echo "pkg-config: $pc_flags"
pc_version=$(PKG_CONFIG_PATH="$pcdir" pkg-config --modversion multiproc)
h_version=$(sed -n 's/^#define MP_VERSION_STRING "\(.*\)"$/\1/p' "$prefix/include/multiproc/version.h")
[ "$pc_version" = "$h_version" ] ||
    fail "pkg-config --modversion says '$pc_version', multiproc/version.h says '$h_version'"
# The flags must point into this prefix, not somewhere the library happens to be.
case " $pc_flags " in
*" -I$prefix/"*) ;;
*) fail "pkg-config --cflags does not point into the install prefix $prefix: $pc_flags" ;;
esac
case " $pc_flags " in
*" -L$prefix/"*) ;;
*) fail "pkg-config --libs does not point into the install prefix $prefix: $pc_flags" ;;
esac
# shellcheck disable=SC2086
"$cc" $san -o "$tmp/consumer_pc" "$consumer/consumer.c" $pc_flags || fail "build with pkg-config flags"
LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$tmp/consumer_pc" ||
    fail "consumer_pc (pkg-config) exited with $?"

step "pkg-config --static"
pc_static=$(PKG_CONFIG_PATH="$pcdir" pkg-config --static --cflags --libs multiproc) ||
    fail "pkg-config --static --cflags --libs multiproc"
echo "pkg-config --static: $pc_static"
for tok in $pc_static; do
    case $tok in
    -*) ;;
    *) fail "pkg-config --static gives '$tok', which is not a compiler or linker flag (Libs.private)" ;;
    esac
done
# shellcheck disable=SC2086
"$cc" $san -o "$tmp/consumer_pc_static" "$consumer/consumer.c" $pc_static || fail "build with pkg-config --static flags"
LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$tmp/consumer_pc_static" ||
    fail "consumer_pc_static (pkg-config --static) exited with $?"

step "plain Makefile"
make -s -C "$consumer" -f Makefile PREFIX="$prefix" LIBDIR="$libdir" OUT="$tmp" CC="$cc" CFLAGS="$san" ||
    fail "build with the plain Makefile"
"$tmp/consumer_make" || fail "consumer_make (plain Makefile) exited with $?"

echo "install_consumer: OK"

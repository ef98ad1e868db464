#!/bin/sh
# make installcheck (and so make distcheck): an outside C program, examples/embed/
# list-dtypes.c, built against the INSTALLED libdtaudit with pkg-config, shared and static,
# and run on fixtures; the installed shared library exports only dta_* symbols and has a
# SONAME; the umbrella header compiles on its own, warning-free, as C11 and as C++.
#   tests/install/embed.sh DESTDIR PREFIX LIBDIR CC SRCDIR VERSION
set -eu
destdir=$1 prefix=$2 libdir=$3 cc=$4 srcdir=$5 version=$6
lib=$destdir$libdir
PKG_CONFIG_PATH=$lib/pkgconfig
export PKG_CONFIG_PATH
pc() { pkg-config --define-variable=prefix="$destdir$prefix" "$@" dtaudit; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/dtaudit-embed.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }

[ "$(pc --modversion)" = "$version" ] && ok "dtaudit.pc version $version" || fail "pkg-config --modversion: $(pc --modversion)"
cflags=$(pc --cflags)
src=$srcdir/examples/embed/list-dtypes.c
fx=$srcdir/tests/fixtures
# shellcheck disable=SC2086
$cc -std=c11 -Wall -Wextra -Werror $cflags "$src" -o "$tmp/list" $(pc --libs) &&
    ok "built against the installed shared library" || fail "shared build"

check_run() { # what, command...
    what=$1; shift
    if "$@" >"$tmp/out" 2>"$tmp/err"; then :; else fail "$what: exit $?"; cat "$tmp/err"; return; fi
    grep -q "^libdtaudit $version\$" "$tmp/out" || fail "$what: no 'libdtaudit $version' line"
    grep -q "tensors" "$tmp/out" && grep -q " F32 \[" "$tmp/out" && ok "$what" ||
        { fail "$what: unexpected output"; cat "$tmp/out"; }
}
if [ -x "$tmp/list" ]; then
    LD_LIBRARY_PATH=$lib check_run "shared, from a file" "$tmp/list" "$fx/good/tiny_f32_model.safetensors"
    LD_LIBRARY_PATH=$lib check_run "shared, from memory" sh -c "\"$tmp/list\" - <\"$fx/good/tiny_f32_model.safetensors\""
    LD_LIBRARY_PATH=$lib ldd "$tmp/list" | grep -q "$lib/libdtaudit.so" && ok "runs the installed libdtaudit.so" ||
        fail "the program does not load $lib/libdtaudit.so"
    LD_LIBRARY_PATH=$lib "$tmp/list" "$fx/bad/dtype_unknown.safetensors" >/dev/null 2>"$tmp/err" && fail "a bad file was accepted" ||
        { grep -q "dtype_unknown" "$tmp/err" && ok "a bad file is an error naming it"; } || fail "error message: $(cat "$tmp/err")"
fi

# static: the archive plus pkg-config --static's private requirements
libs=$(pc --static --libs | sed 's/ -ldtaudit\b//; s/^-ldtaudit\b//')
# shellcheck disable=SC2086
$cc -std=c11 $cflags "$src" -o "$tmp/list-static" "$lib/libdtaudit.a" $libs &&
    ok "built against the installed static library" || fail "static build"
if [ -x "$tmp/list-static" ]; then
    readelf -d "$tmp/list-static" | grep -q "libdtaudit" && fail "the static build still needs libdtaudit.so" || true
    check_run "static" "$tmp/list-static" "$fx/good/tiny_f32_model.safetensors"
fi

so=$(ls "$lib"/libdtaudit.so.* 2>/dev/null | head -n 1)
if [ -n "$so" ]; then
    readelf -d "$so" | grep -q "SONAME.*libdtaudit\.so\.[0-9]" && ok "SONAME $(readelf -d "$so" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')" || fail "no SONAME"
    nm -D --defined-only "$so" | awk '{print $NF}' | grep -v '^dta_' | grep -v '^_' >"$tmp/leaks" || true
    [ ! -s "$tmp/leaks" ] && ok "only dta_* exported ($(nm -D --defined-only "$so" | grep -c ' dta_'))" ||
        { fail "exported non-dta_ symbols:"; head "$tmp/leaks"; }
else
    fail "no libdtaudit.so.* in $lib"
fi

printf '#include <dtaudit/dtaudit.h>\nint main(void) { return dta_version() == 0; }\n' >"$tmp/h.c"
# shellcheck disable=SC2086
$cc -std=c11 -Wall -Wextra -Wpedantic -Werror $cflags -c "$tmp/h.c" -o "$tmp/h.o" && ok "umbrella header, C11" || fail "umbrella header as C11"
if command -v c++ >/dev/null 2>&1; then
    cp "$tmp/h.c" "$tmp/h.cc"
    # shellcheck disable=SC2086
    c++ -Wall -Wextra -Werror $cflags -c "$tmp/h.cc" -o "$tmp/hh.o" && ok "umbrella header, C++" || fail "umbrella header as C++"
fi
[ "$fails" -eq 0 ] && echo "embed: all passed" || { echo "embed: $fails failed"; exit 1; }

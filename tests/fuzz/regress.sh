#!/bin/sh
# Replays every fuzz corpus (tests/fuzz/corpus/TARGET, saved crashers included) through its
# target's regression driver (tests/fuzz/regress_TARGET, built by `make check` with the
# compiler and sanitizer flags of the build, no libFuzzer). Exit 77 (skip) when no driver
# was built, 1 when any replay crashes or fails.
set -eu
LC_ALL=C
export LC_ALL
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
bindir="${FUZZ_REGRESS_DIR:-$(pwd)/tests/fuzz}"
targets="safetensors zip pickle torchzip index config audit policy roundtrip values"
fails=0
ran=0
for t in $targets; do
    bin="$bindir/regress_$t"
    corpus="$srcdir/tests/fuzz/corpus/$t"
    if [ ! -x "$bin" ]; then
        echo "SKIP: $bin not built"
        continue
    fi
    if [ ! -d "$corpus" ]; then
        echo "FAIL: $corpus missing"
        fails=$((fails + 1))
        continue
    fi
    ran=$((ran + 1))
    if out=$("$bin" "$corpus" 2>&1); then
        echo "ok: $t: $(echo "$out" | tail -1)"
    else
        echo "$out" | tail -40
        echo "FAIL: regress_$t over $corpus"
        fails=$((fails + 1))
    fi
done
[ "$ran" -gt 0 ] || exit 77
echo "$ran targets replayed, $fails failed"
[ "$fails" -eq 0 ]

#!/bin/sh
# Sub-byte tensors (F4, F6) in a file being converted are copied byte for byte: convert
# used to divide by their element size, bits / 8 == 0, and die of SIGFPE.
. "$(dirname "$0")/lib.sh"

for f in tests/fixtures/good/dtype_F4.safetensors tests/fixtures/good/dtype_F6_E2M3.safetensors \
    tests/fixtures/good/dtype_F6_E3M2.safetensors; do
    dta convert --to bf16 "$f" -o "$TMP/out.safetensors"
    [ "$rc" -eq 0 ] && pass || { fail "convert $f: exit $rc"; cat "$TMP/err"; continue; }
    cmp -s "$f" "$TMP/out.safetensors" && pass || fail "convert $f: the sub-byte tensor was not copied unchanged"
    dta verify "$f" "$TMP/out.safetensors"
    [ "$rc" -eq 0 ] && grep -q "0 mismatches" "$TMP/out" && pass || fail "verify $f: exit $rc"
    rm -f "$TMP/out.safetensors"
done
# every dtype at once: the float ones converted, the others (sub-byte included) copied
dta convert --to bf16 tests/fixtures/good/all_dtypes.safetensors -o "$TMP/all.safetensors"
[ "$rc" -eq 0 ] && pass || { fail "convert all_dtypes: exit $rc"; cat "$TMP/err"; }
dta verify tests/fixtures/good/all_dtypes.safetensors "$TMP/all.safetensors"
[ "$rc" -eq 0 ] && pass || fail "verify all_dtypes: exit $rc"
dta scan --format json "$TMP/all.safetensors"
[ "$rc" -eq 0 ] && grep -q '"F4"' "$TMP/out" && grep -q '"F6_E3M2"' "$TMP/out" && pass ||
    fail "the converted file does not read back with its F4/F6 tensors"
finish

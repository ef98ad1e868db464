#!/bin/sh
# Every file in tests/fixtures/bad/ is rejected: exit 2, nothing on stdout, exactly one
# stderr line "dtaudit: FILE: ..." containing the substring EXPECTED.tsv names.
. "$(dirname "$0")/lib.sh"

for f in tests/fixtures/bad/*; do
    name=$(basename "$f")
    case "$name" in EXPECTED.tsv) continue ;; esac
    want=$(awk -F'\t' -v n="$name" '$1 == n { print $2 }' tests/fixtures/bad/EXPECTED.tsv)
    for cmd in scan audit; do
        dta $cmd "$f"
        lines=$(wc -l <"$TMP/err")
        if [ "$rc" -ne 2 ]; then fail "$cmd $name: exit $rc, want 2"; continue; fi
        if [ "$lines" -ne 1 ]; then fail "$cmd $name: $lines stderr lines, want 1"; cat "$TMP/err"; continue; fi
        if [ -s "$TMP/out" ]; then fail "$cmd $name: output on stdout"; continue; fi
        if ! grep -q "^dtaudit: $f: " "$TMP/err"; then fail "$cmd $name: error does not name the file: $(cat "$TMP/err")"; continue; fi
        if [ -n "$want" ] && ! grep -qiF -- "$want" "$TMP/err"; then fail "$cmd $name: '$want' not in: $(cat "$TMP/err")"; continue; fi
        pass
    done
done

# JSON output still names the failed input and exits 2.
dta scan --format json tests/fixtures/bad/offsets_hole.safetensors tests/fixtures/good/scalar.safetensors
if [ "$rc" -ne 2 ] || ! grep -q '"error"' "$TMP/out" || [ "$(wc -l <"$TMP/err")" -ne 1 ]; then
    fail "json with one bad input: exit $rc"
else pass; fi

# Missing file, directory, unreadable file.
dta scan tests/fixtures/bad/does-not-exist.safetensors
[ "$rc" -eq 2 ] && grep -q "cannot open" "$TMP/err" && pass || fail "missing file: $rc $(cat "$TMP/err")"
finish

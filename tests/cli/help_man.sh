#!/bin/sh
# --help (generated from the option table) and man/dtaudit.1 document the same options,
# commands and exit statuses (like curl's test1139).
. "$(dirname "$0")/lib.sh"

dta --help
[ "$rc" -eq 0 ] && pass || fail "--help exit $rc"
grep -o -- '--[a-z][a-z-]*' "$TMP/out" | sort -u >"$TMP/help-opts"
sed 's/\\-/-/g' man/dtaudit.1 | grep -o -- '--[a-z][a-z-]*' | sort -u >"$TMP/man-opts"
if diff -u "$TMP/help-opts" "$TMP/man-opts" >"$TMP/diff"; then pass; else
    fail "options differ between --help (-) and the man page (+):"; cat "$TMP/diff"; fi

for rule in dtype-outlier mixed-module expect-mismatch unsafe-pickle meta-tensor config-mismatch index-mismatch \
    adapter-mismatch adapter-config dtype-changed shape-changed tensor-added tensor-removed; do
    grep -q -- "$rule" "$TMP/out" || fail "--help does not name rule $rule"
    sed 's/\\-/-/g' man/dtaudit.1 | grep -q -- "$rule" || fail "man page does not name rule $rule"
    pass
done
# Every rule --help lists (from the library's catalogue) is documented in the man page.
sed -n '/^rules (\|^reader notes (\|^changes (/,/^$/p' "$TMP/out" | sed 's/^[^:]*://' | tr ' ' '\n' | grep . >"$TMP/rules"
[ "$(wc -l <"$TMP/rules")" -ge 18 ] && pass || fail "--help lists $(wc -l <"$TMP/rules") rules"
while read -r rule; do
    sed 's/\\-/-/g' man/dtaudit.1 | grep -q -- "^\.BR* $rule\b" || fail "man page does not describe rule $rule"
done <"$TMP/rules"
pass
for cmd in scan audit diff; do
    grep -q "dtaudit $cmd" "$TMP/out" || fail "--help lacks command $cmd"
    grep -q "^\.B dtaudit $cmd" man/dtaudit.1 || fail "man page lacks command $cmd"
    pass
done
for st in 0 1 2; do
    sed -n '/^\.SH EXIT STATUS/,/^\.SH/p' man/dtaudit.1 | grep -q "^\.B $st\$" || fail "man page lacks exit status $st"
    grep -q "$st " "$TMP/out" || fail "--help lacks exit status $st"
    pass
done
# Each command's --help lists only options that apply to it, and exits 0 on stdout.
dta scan --help
[ "$rc" -eq 0 ] && ! grep -q -- '--expect' "$TMP/out" && pass || fail "scan --help"
dta audit --help
[ "$rc" -eq 0 ] && grep -q -- '--expect' "$TMP/out" && pass || fail "audit --help"
# Usage errors: stderr, exit 2.
dta frobnicate x
[ "$rc" -eq 2 ] && [ ! -s "$TMP/out" ] && pass || fail "unknown command: $rc"
dta scan --expect bf16 x
[ "$rc" -eq 2 ] && grep -q "does not apply" "$TMP/err" && pass || fail "--expect on scan: $rc"
dta audit --expect bf17 x
[ "$rc" -eq 2 ] && grep -q "unknown dtype" "$TMP/err" && pass || fail "bad dtype: $rc"
dta audit
[ "$rc" -eq 2 ] && grep -q "no PATH" "$TMP/err" && pass || fail "no path: $rc"
dta diff --help
[ "$rc" -eq 0 ] && grep -q -- '--policy' "$TMP/out" && ! grep -q -- '--base' "$TMP/out" && pass || fail "diff --help"
dta --version
[ "$rc" -eq 0 ] && grep -q "^dtaudit [0-9]" "$TMP/out" && pass || fail "--version"
finish

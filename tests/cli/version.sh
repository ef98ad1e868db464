#!/bin/sh
# One version: configure's AC_INIT version is what --version, every JSON document and SARIF
# print (the library's dta_version()), and no CLI source carries a copy of its own.
. "$(dirname "$0")/lib.sh"

want=$(sed -n 's/^AC_INIT(\[dtaudit\], *\[\([^]]*\)\].*/\1/p' configure.ac)
[ -n "$want" ] && pass || fail "no AC_INIT version in configure.ac"

dta --version
[ "$rc" -eq 0 ] && [ "$(head -n 1 "$TMP/out")" = "dtaudit $want" ] && pass ||
    fail "--version says '$(head -n 1 "$TMP/out")', configure.ac says $want"

f=tests/fixtures/good/dtype_F32.safetensors
has_version() { grep -q "\"version\": \"$want\"" "$TMP/out" && pass || fail "$1: no \"version\": \"$want\""; }
dta scan --format json $f; has_version "scan json"
dta audit --format json $f; has_version "audit json"
dta audit --format sarif $f
grep -q "\"semanticVersion\": \"$want\"" "$TMP/out" && pass || fail "sarif semanticVersion"
has_version "sarif"
dta diff --format json $f $f; has_version "diff json"
dta convert --format json --to f16 $f -o "$TMP/c.safetensors"; has_version "convert json"
dta verify --format json $f "$TMP/c.safetensors"; has_version "verify json"

# Nothing but the library defines the version (src/lib/version.c, from config.h).
if grep -rnF -e PACKAGE_VERSION -e "\"$want\"" src/cli >"$TMP/hits"; then
    fail "a hard-coded version in the CLI:"; cat "$TMP/hits"
else pass; fi
finish

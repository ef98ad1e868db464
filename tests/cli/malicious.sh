#!/bin/sh
# Every hostile pickle in tests/fixtures/malicious must give an unsafe-pickle finding
# (exit 1) -- or, for reject-*, a clean refusal (exit 2) -- never a crash, and nothing
# in it may run (no /tmp/dtaudit-canary-* file appears).
set -eu
LC_ALL=C
export LC_ALL
srcdir=${srcdir:-.}
DTAUDIT=${DTAUDIT:-./src/cli/dtaudit}
dir="$srcdir/tests/fixtures/malicious"
[ -d "$dir" ] || { echo "SKIP: no $dir"; exit 77; }
rm -f /tmp/dtaudit-canary-* 2>/dev/null || true
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
n=0
for f in "$dir"/*.pt; do
    n=$((n + 1))
    base=$(basename "$f")
    rc=0
    ${DTAUDIT_WRAPPER:-} "$DTAUDIT" audit --format json "$f" >"$tmp/out" 2>"$tmp/err" || rc=$?
    if [ "$rc" -ge 128 ]; then
        echo "FAIL $base: crashed (exit $rc)"; fail=1; continue
    fi
    case "$base" in
    reject-*)
        if [ "$rc" -ne 2 ]; then echo "FAIL $base: exit $rc, want 2"; fail=1; continue; fi ;;
    *)
        if [ "$rc" -ne 1 ]; then echo "FAIL $base: exit $rc, want 1: $(cat "$tmp/err")"; fail=1; continue; fi
        if ! grep -q '"unsafe-pickle"' "$tmp/out"; then echo "FAIL $base: no unsafe-pickle finding"; fail=1; continue; fi ;;
    esac
    echo "ok   $base (exit $rc)"
done
if ls /tmp/dtaudit-canary-* >/dev/null 2>&1; then
    echo "FAIL: a payload ran: $(ls /tmp/dtaudit-canary-*)"; fail=1
fi
echo "$n malicious files checked"
exit $fail

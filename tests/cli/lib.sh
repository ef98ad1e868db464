# Shared set-up for the CLI tests (sourced). Exit 77 = skip, as automake expects.
set -eu
LC_ALL=C
export LC_ALL
unset NO_COLOR
: "${srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${DTAUDIT:=$srcdir/src/cli/dtaudit}"
: "${DTAUDIT_WRAPPER:=}"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$srcdir/.venv/bin/python" ]; then PYTHON="$srcdir/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHON
TMP=$(mktemp -d "${TMPDIR:-/tmp}/dtaudit-test.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
cd "$srcdir"

fails=0
passes=0

# dta ARGS...: runs dtaudit (under $DTAUDIT_WRAPPER if set); stdout/stderr to $TMP/out, $TMP/err.
dta() {
    set +e
    $DTAUDIT_WRAPPER "$DTAUDIT" "$@" >"$TMP/out" 2>"$TMP/err"
    rc=$?
    set -e
    return 0
}

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
pass() { passes=$((passes + 1)); }

finish() {
    echo "$passes passed, $fails failed"
    [ "$fails" -eq 0 ]
}

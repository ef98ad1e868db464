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
trap 'py_stop; rm -rf "$TMP"' EXIT
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

# ---- one Python process per script (tests/lib/pyserve.py) -------------------------------
# py_start (once, in the script's own shell, not in $(...)), then `py -c CODE ARGS...`,
# `py - ARGS... <<'PY'`, `py FILE ARGS...` run like "$PYTHON" would, in the one process:
# its start-up and imports (numpy, torch, safetensors) are paid once. tests/lib/ is on its
# path (stwrite.py: safetensors files). Arguments must not contain newlines.
py_start() {
    [ -z "${PY_PID:-}" ] || return 0
    mkfifo "$TMP/py.rq" "$TMP/py.rp"
    # read-write opens never block on a FIFO; when the server ends (or fails to start), the
    # line 127 answers whoever waits, so a dead server fails the call instead of hanging it.
    # Started in a subshell of a subshell: not a job of this shell, so `wait` does not wait
    # for it.
    exec 8<>"$TMP/py.rq" 9<>"$TMP/py.rp"
    ( (exec 8>&- 9>&-; "$PYTHON" "$srcdir/tests/lib/pyserve.py" "$TMP/py.rq" "$TMP/py.rp" </dev/null
       : >"$TMP/py.dead"; { echo 127 1<>"$TMP/py.rp"; } 2>/dev/null) & )
    PY_PID=started
}
py() {
    [ -n "${PY_PID:-}" ] || { echo "py: py_start was not called" >&2; return 2; }
    [ ! -e "$TMP/py.dead" ] || { echo "py: the Python process has ended" >&2; return 127; }
    py_prog=$1
    shift
    case $py_prog in
    -c) printf '%s\n' "$1" >"$TMP/py.prog"; shift; py_prog=$TMP/py.prog ;;
    -) cat >"$TMP/py.prog"; py_prog=$TMP/py.prog ;;
    esac
    env -0 >"$TMP/py.env"
    : >"$TMP/py.out"
    : >"$TMP/py.err"
    printf '%s\n' "$#" "$PWD" "$py_prog" "$TMP/py.out" "$TMP/py.err" "$TMP/py.env" >&8
    [ "$#" -eq 0 ] || printf '%s\n' "$@" >&8
    read -r py_rc <&9 || py_rc=127
    cat "$TMP/py.out"
    cat "$TMP/py.err" >&2
    return "$py_rc"
}
py_stop() {
    [ -n "${PY_PID:-}" ] || return 0
    if [ ! -e "$TMP/py.dead" ]; then
        printf 'quit\n' >&8
        read -r py_rc <&9 || : # the 127 written once the server has ended
    fi
    exec 8>&- 9<&-
    PY_PID=
}
# pyj EXPR: EXPR over the JSON document in $TMP/out (as d), printed
pyj() { py -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$TMP/out" "$1"; }

#!/bin/sh
# Issue 11 ("Security", "Never hang"): inputs that readers could disagree on are refused
# (exit 2, one line naming the file) or read exactly as torch reads them, every pickle
# torch would unpickle is checked, and non-regular files are refused without blocking.
# Inputs are generated (tests/interop/make_ambiguous.py, standard library only).
. "$(dirname "$0")/lib.sh"

command -v python3 >/dev/null 2>&1 || { echo "SKIP: no python3"; exit 77; }
python3 tests/interop/make_ambiguous.py "$TMP/gen" --big || { echo "FAIL: generator"; exit 1; }

for f in "$TMP"/gen/*; do
    base=$(basename "$f")
    dta audit --format json "$f"
    case "$base" in
    refuse-*)
        if [ "$rc" -ne 2 ]; then fail "$base: exit $rc, want 2"; continue; fi
        if [ "$(wc -l <"$TMP/err")" -ne 1 ] || ! grep -q "$base" "$TMP/err"; then
            fail "$base: want one line naming the file: $(cat "$TMP/err")"; continue
        fi
        grep -q "\"error\"" "$TMP/out" || { fail "$base: JSON has no error for the input"; continue; } ;;
    unsafe-*)
        g=${base#unsafe-*-}; g=${g%.pt}
        if [ "$rc" -ne 1 ]; then fail "$base: exit $rc, want 1: $(cat "$TMP/err")"; continue; fi
        grep -q '"unsafe-pickle"' "$TMP/out" || { fail "$base: no unsafe-pickle finding"; continue; }
        grep -q "$g" "$TMP/out" || { fail "$base: finding does not name $g"; continue; } ;;
    warn-*)
        if [ "$rc" -ne 1 ]; then fail "$base: exit $rc, want 1: $(cat "$TMP/err")"; continue; fi
        grep -q '"severity": "error"' "$TMP/out" && { fail "$base: an error finding"; continue; } ;;
    ok-*)
        if [ "$rc" -ne 0 ]; then fail "$base: exit $rc, want 0: $(cat "$TMP/err")"; continue; fi ;;
    esac
    pass
done

# memory: every generated case (bombs, "billion laughs" included) under 256 MiB RSS, when
# GNU time is there and the program is not built with a sanitizer (its shadow memory counts)
if [ -x /usr/bin/time ] && [ -z "$DTAUDIT_WRAPPER" ] && ! grep -q __asan_init "$DTAUDIT" 2>/dev/null; then
    for f in "$TMP"/gen/*; do
        set +e
        /usr/bin/time -f %M -o "$TMP/rss" "$DTAUDIT" audit "$f" >/dev/null 2>&1
        set -e
        kb=$(tail -1 "$TMP/rss")
        [ "$kb" -lt 262144 ] && pass || fail "$(basename "$f"): $kb KiB RSS, over 256 MiB"
    done
else
    echo "note: RSS not measured (no /usr/bin/time, a wrapper, or a sanitizer build)"
fi

# convert streams an extra deflated record and refuses one that expands like a bomb
dta convert --to f32 -o "$TMP/bomb-out.pt" "$TMP/gen/ok-zip-extra-deflated-bomb.pt"
if [ "$rc" -eq 2 ] && grep -q "zip bomb" "$TMP/err" && [ ! -e "$TMP/bomb-out.pt" ]; then pass; else
    fail "convert of an extra deflated bomb: exit $rc $(cat "$TMP/err")"; fi

# the safetensors file whose header length reads "PK\3\4" is read as safetensors
dta scan --format json "$TMP/gen/ok-safetensors-pk-header.safetensors"
if [ "$rc" -eq 0 ] && grep -q '"safetensors"' "$TMP/out"; then pass; else fail "PK header safetensors: exit $rc $(cat "$TMP/err")"; fi
# ... and convert takes the same decision
dta convert --to f32 -o "$TMP/pk-out.safetensors" "$TMP/gen/ok-safetensors-pk-header.safetensors"
[ "$rc" -ne 2 ] && pass || fail "convert of the PK-header safetensors: exit $rc $(cat "$TMP/err")"
rm -f "$TMP/pk-out.safetensors" "$TMP/gen/ok-safetensors-pk-header.safetensors"

# non-regular files: refused at once, never read (a FIFO with no writer would block)
if mkfifo "$TMP/fifo" 2>/dev/null; then
    good=tests/fixtures/good/dtype_F32.safetensors
    mkdir "$TMP/idx"
    mkfifo "$TMP/idx/s1.safetensors"
    printf '{"metadata":{},"weight_map":{"a":"s1.safetensors"}}' >"$TMP/idx/model.safetensors.index.json"
    for args in "audit FIFO" "scan FIFO" "audit --policy FIFO $good" "audit --base FIFO $good" \
        "diff FIFO $good" "diff $good FIFO" "verify $good FIFO" "verify FIFO $good" \
        "convert --to bf16 -o $TMP/fo.safetensors FIFO" "audit $TMP/idx/model.safetensors.index.json" \
        "audit /dev/null/x" "audit /dev/zero"; do
        # shellcheck disable=SC2086
        set -- $(echo "$args" | sed "s|FIFO|$TMP/fifo|g")
        set +e
        timeout -k 5 10 $DTAUDIT_WRAPPER "$DTAUDIT" "$@" >"$TMP/out" 2>"$TMP/err"
        rc=$?
        set -e
        if [ "$rc" -ne 2 ]; then fail "$args: exit $rc, want 2 (124 = hung)"; continue; fi
        case "$args" in */dev/null/x*) pass; continue ;; esac
        grep -q "not a regular file" "$TMP/err" && pass || fail "$args: $(cat "$TMP/err")"
    done
else
    echo "note: mkfifo unavailable, FIFO cases skipped"
fi

finish

#!/bin/sh
# Fault injection: a write, fsync, rename, read or open that fails at any point of a
# conversion gives exit 2, one line naming the file, and nothing lost: no partial output,
# no temporary left behind, the input unchanged. Also: a destination that cannot be
# written, an input that shrinks while read, a symlinked output.
. "$(dirname "$0")/lib.sh"
export DTAUDIT_NO_PROGRESS=1
cc=${CC:-cc}
if ! $cc -shared -fPIC -O1 -o "$TMP/inject.so" tests/fault/inject.c -ldl 2>"$TMP/cc.err"; then
    echo "SKIP: cannot build the injection shim: $(head -n 1 "$TMP/cc.err")"; exit 77
fi
# sanitizer builds insist on their runtime being preloaded first
if ! LD_PRELOAD="$TMP/inject.so" "$DTAUDIT" --version >/dev/null 2>&1; then
    echo "SKIP: LD_PRELOAD is not usable with this build of dtaudit (sanitizers?)"; exit 77
fi

o=$TMP/dest
check_clean() { # check_clean WHAT SRC-SUM: state after a failed or successful run
    what=$1
    [ "$(cksum <"$src")" = "$2" ] || { fail "$what: the input changed"; return; }
    if ls -A "$o" | grep -q 'dtaudit-'; then fail "$what: temporary left: $(ls -A "$o")"; return; fi
    if [ "$rc" -ne 0 ]; then
        [ "$rc" -eq 2 ] || { fail "$what: exit $rc, want 2"; return; }
        [ "$(wc -l <"$TMP/err")" -eq 1 ] || { fail "$what: $(wc -l <"$TMP/err") stderr lines"; cat "$TMP/err"; return; }
        grep -q '^dtaudit: [^ ]*: ' "$TMP/err" || { fail "$what: message names no file: $(cat "$TMP/err")"; return; }
    fi
    # the destination is absent, or complete and valid (a failure after the rename)
    if [ -e "$out" ]; then
        "$DTAUDIT" verify "$src" "$out" >/dev/null 2>&1 || { fail "$what: a partial output was left"; return; }
    fi
    pass
}

for case in safetensors torch dir; do
    case $case in
    safetensors) src=tests/fixtures/seeds/003_higgs_audio.safetensors; out=$o/x.safetensors ;;
    torch) src=tests/fixtures/torch/training.pt; out=$o/x.pt ;;
    dir) src=$TMP/model; out=$o/model
         mkdir -p "$src"; cp tests/fixtures/seeds/002_ttt_mixed.safetensors "$src/model.safetensors"
         printf '{"torch_dtype": "float32"}' >"$src/config.json" ;;
    esac
    sum=$( [ -d "$src" ] && cat "$src"/* | cksum || cksum <"$src")
    for call in write pwrite ftruncate fsync rename renameat2 pread open; do
        n=1
        while [ $n -le 400 ]; do
            rm -rf "$o"; mkdir -p "$o"
            DTA_FAIL=$call:$n LD_PRELOAD="$TMP/inject.so" dta convert --to bf16 "$src" -o "$out"
            if [ -d "$src" ]; then
                [ "$(cat "$src"/* | cksum)" = "$sum" ] || fail "$case $call:$n: input changed"
                s2=$(cksum <"$src/model.safetensors"); src_saved=$src; src=$src/model.safetensors
                [ "$rc" -eq 0 ] || ! [ -e "$out" ] || "$DTAUDIT" verify "$src_saved" "$out" >/dev/null 2>&1 \
                    || fail "$case $call:$n: partial directory"
                src=$src_saved
                if ls -A "$o" | grep -q 'dtaudit-'; then fail "$case $call:$n: temporary left"; fi
                [ "$rc" -eq 0 ] || [ "$rc" -eq 2 ] || fail "$case $call:$n: exit $rc"
                pass
            else
                check_clean "$case $call:$n" "$sum"
            fi
            [ "$rc" -eq 0 ] && break # the n-th call was past the last one: done
            n=$((n + 1))
        done
    done
done

# The input shrinks while it is read (a pread returns end of file early).
src=tests/fixtures/seeds/003_higgs_audio.safetensors; out=$o/x.safetensors
shrank=0
for n in 1 2 3 4 5 6; do
    rm -rf "$o"; mkdir -p "$o"
    DTA_FAIL=pread:$n DTA_FAIL_ERRNO=0 LD_PRELOAD="$TMP/inject.so" dta convert --to bf16 "$src" -o "$out"
    grep -q "shrank\|truncated" "$TMP/err" && shrank=1
    check_clean "input shrinks at read $n" "$(cksum <"$src")"
done
[ $shrank -eq 1 ] && pass || fail "no read saw the input shrink"

# A destination that cannot be written.
dta convert --to bf16 "$src" -o /proc/dtaudit-test.safetensors
[ "$rc" -eq 2 ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] && pass || fail "unwritable destination: $rc"

# A symlinked output: refused without --force; with it the link is replaced, its target kept.
rm -rf "$o"; mkdir -p "$o"
echo keep >"$o/target"
ln -s target "$o/link.safetensors"
dta convert --to bf16 "$src" -o "$o/link.safetensors"
[ "$rc" -eq 2 ] && grep -q "exists" "$TMP/err" && pass || fail "symlink without --force: $rc"
dta convert --to bf16 --force "$src" -o "$o/link.safetensors"
[ "$rc" -eq 0 ] && [ ! -L "$o/link.safetensors" ] && [ "$(cat "$o/target")" = keep ] && pass \
    || fail "symlink with --force: $rc"
finish

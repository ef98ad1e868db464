#!/bin/sh
# Crash consistency: dtaudit convert killed at random moments (SIGKILL 50 times, SIGTERM
# and SIGINT 15 times each). Afterwards the input is byte-identical, the destination is
# either absent or complete and valid, a signal that can be caught leaves no temporary,
# and the next run removes what a SIGKILL left.
. "$(dirname "$0")/lib.sh"
py_start
export DTAUDIT_NO_PROGRESS=1
command -v "$PYTHON" >/dev/null 2>&1 || { echo "SKIP: no python3 to make the input"; exit 77; }
src=$TMP/in.safetensors
# 24 MiB of float32 with a fixed seed: long enough (write + fsync) to be hit mid-way
py - "$src" <<'PY'
import random, struct, sys, stwrite
random.seed(7)
n = 6 * 1024 * 1024
blob = struct.pack("<1024f", *[random.uniform(-4, 4) for _ in range(1024)]) * (n // 1024)
hdr = {"layers.%d.w" % i: {"dtype": "F32", "shape": [n // 8], "data_offsets": [i * n // 2, (i + 1) * n // 2]} for i in range(8)}
with open(sys.argv[1], "wb") as f:
    f.write(stwrite.encode_header(hdr) + blob)
PY
sum=$(cksum <"$src")
o=$TMP/dest
mkdir -p "$o"
out=$o/out.safetensors

# how long one conversion takes here (the fastest of three: one slowed by a load spike
# would stretch every delay past the end), then random delays across that span (reproducible)
span=
for k in 1 2 3; do
    rm -f "$out"
    t0=$(date +%s%N)
    "$DTAUDIT" convert --to bf16 "$src" -o "$out" >/dev/null 2>&1 || fail "a plain conversion failed"
    t1=$(date +%s%N)
    ms=$(( (t1 - t0) / 1000000 ))
    if [ -z "$span" ] || [ "$ms" -lt "$span" ]; then span=$ms; fi
done
echo "one conversion: ${span} ms"
delays=$(awk -v span="$span" 'BEGIN { srand(42); for (i = 0; i < 80; i++) printf "%.3f\n", rand() * span * 1.1 / 1000 }')
# the temporaries in $o not named in $1 (what SIGKILL runs left stays until a later run
# gets far enough to remove it: a TERM before that point is not to blame for it)
left_new() {
    ls -A "$o" | grep 'dtaudit-' | while read -r f; do
        printf '%s\n' "$1" | grep -qxF -- "$f" || echo "$f"
    done
}
i=0 finished=0 interrupted=0
for d in $delays; do
    i=$((i + 1))
    if [ $i -le 50 ]; then sig=KILL; elif [ $i -le 65 ]; then sig=TERM; else sig=INT; fi
    rm -f "$out"
    pre=$(ls -A "$o" | grep 'dtaudit-' || true)
    $DTAUDIT_WRAPPER "$DTAUDIT" convert --to bf16 "$src" -o "$out" >/dev/null 2>&1 &
    pid=$!
    sleep "$d"
    kill -s $sig $pid 2>/dev/null || true
    wait $pid 2>/dev/null && st=0 || st=$?
    [ "$(cksum <"$src")" = "$sum" ] || { fail "$sig after ${d}s: the input changed"; continue; }
    if [ -e "$out" ] && ! "$DTAUDIT" verify "$src" "$out" >/dev/null 2>&1; then
        fail "$sig after ${d}s: an incomplete output was published"; continue
    fi
    if [ -e "$out" ]; then finished=$((finished + 1)); else interrupted=$((interrupted + 1)); fi
    if [ $sig != KILL ] && [ -n "$(left_new "$pre")" ]; then
        fail "$sig after ${d}s: temporary left behind (exit $st)"; continue
    fi
    pass
done
echo "runs interrupted before publishing: $interrupted, finished before the signal: $finished"
[ $interrupted -ge 20 ] && pass || fail "too few runs were interrupted mid-way ($interrupted) to test anything"
# whatever SIGKILL left is removed by the next run
dta convert --to bf16 --force "$src" -o "$out"
[ "$rc" -eq 0 ] && ! ls -A "$o" | grep -q 'dtaudit-' && "$DTAUDIT" verify "$src" "$out" >/dev/null \
    && pass || fail "the run after the kills: $rc, left: $(ls -A "$o")"
finish

#!/bin/sh
# convert / verify: nothing lost, nothing leaked (issue 11). The output never is, contains
# or lies inside the input; publishing is atomic and exclusive; an empty or unmatched
# --only is refused; long output names work; errors name OUT, never the temporary;
# verify does not take a metadata key for a tensor; a lost report is exit 2.
. "$(dirname "$0")/lib.sh"
py_start
seeds=tests/fixtures/seeds
S=$seeds/001_distill_logit_projector.safetensors
o=$TMP/cs
mkdir -p "$o"
export DTAUDIT_NO_PROGRESS=1
sums() { find "$1" -type f -exec cksum {} + | sort; }
no_temps() { [ -z "$(find "$1" -name '.*dtaudit-*' -o -name '*.old' | head -1)" ]; }
one_line() { [ "$(wc -l <"$TMP/err")" -eq 1 ]; }

# ---- the output is, contains or is inside the input (with and without --force) --------
m=$o/model
mkdir -p "$m/sub"
cp $S "$m/model.safetensors"
echo '{"torch_dtype": "float32"}' >"$m/config.json"
echo keep >"$m/sub/notes.txt"
before=$(sums "$m")
ln -s "$m" "$o/mlink"
for force in "" --force; do
    for out in "$o" "$m" "$m/" "$m/bf16" "$m/sub/deeper" "$m/../model" "$o/mlink" "$o/mlink/x" \
        "$m/sub/.."; do
        dta convert --to bf16 $force "$m" -o "$out"
        [ "$rc" -eq 2 ] && one_line && grep -q "is the input\|would contain the input\|inside the input\|not a usable" "$TMP/err" \
            && pass || fail "dir -o $out $force: $rc $(cat "$TMP/err" "$TMP/out")"
        [ "$(sums "$m")" = "$before" ] || fail "input changed by -o $out $force"
    done
    # a file input: OUT an ancestor directory, the file itself through a link
    ln -sf "$m/model.safetensors" "$o/flink"
    for out in "$m" "$o" "$o/flink" "$m/sub/../model.safetensors"; do
        dta convert --to bf16 $force "$m/model.safetensors" -o "$out"
        [ "$rc" -eq 2 ] && one_line && pass || fail "file -o $out $force: $rc $(cat "$TMP/err")"
        [ "$(sums "$m")" = "$before" ] || fail "input changed by file -o $out $force"
    done
done
# an index converted into (or inside) its own directory
py - "$o/idx" <<'PY'
import json, os, sys, stwrite
d = sys.argv[1]
os.makedirs(d + "/shards", exist_ok=True)
stwrite.write_values(d + "/model-00001-of-00002.safetensors", {"a.weight": [1.0, 2.0]})
stwrite.write_values(d + "/shards/model-00002-of-00002.safetensors", {"b.weight": [3.0, 4.5]})
json.dump({"metadata": {"total_size": 16},
           "weight_map": {"a.weight": "model-00001-of-00002.safetensors",
                          "b.weight": "shards/model-00002-of-00002.safetensors"}},
          open(d + "/model.safetensors.index.json", "w"))
PY
ibefore=$(sums "$o/idx")
for force in "" --force; do
    for out in "$o/idx" "$o/idx/out" "$o/idx/shards" "$o"; do
        dta convert --to bf16 $force "$o/idx/model.safetensors.index.json" -o "$out"
        [ "$rc" -eq 2 ] && one_line && pass || fail "index -o $out $force: $rc $(cat "$TMP/err")"
        [ "$(sums "$o/idx")" = "$ibefore" ] || fail "index input changed by -o $out $force"
    done
done
no_temps "$o" && pass || fail "temporaries left: $(find "$o" -name '.*dtaudit-*')"

# ---- --only '' / --keep '' / a glob that matches nothing: refused, nothing written ----
for a in "--only=" "--keep=" "--only=no.such.tensor" "--only=logit_projector.* --only=nomatch"; do
    # shellcheck disable=SC2086
    dta convert --to f16 $a $S -o "$o/only.safetensors"
    [ "$rc" -eq 2 ] && one_line && [ ! -e "$o/only.safetensors" ] && pass \
        || fail "convert $a: $rc $(cat "$TMP/err")"
done
dta convert --to f16 --only '' $S -o "$o/only.safetensors"
[ "$rc" -eq 2 ] && grep -q "empty pattern" "$TMP/err" && pass || fail "--only '': $rc"
dta convert --to f16 --only 'logit_projector' $S -o "$o/only.safetensors"
[ "$rc" -eq 0 ] && grep -q "3 of 42 tensors" "$TMP/out" && pass || fail "--only MODULE: $rc $(cat "$TMP/err")"

# ---- output names of 238..255 bytes (the temporary's name is cut to fit) ---------------
for n in 238 245 255; do
    name=$(printf "%${n}s" "" | tr ' ' 'n')
    dta convert --to bf16 $S -o "$o/$name"
    [ "$rc" -eq 0 ] && [ -f "$o/$name" ] && pass || fail "file name of $n bytes: $rc $(cat "$TMP/err")"
    mkdir -p "$o/long"
    dta convert --to bf16 "$m" -o "$o/long/$name"
    [ "$rc" -eq 0 ] && [ -f "$o/long/$name/model.safetensors" ] && pass \
        || fail "directory name of $n bytes: $rc $(cat "$TMP/err")"
    rm -rf "$o/$name" "$o/long/$name"
done
name=$(printf "%256s" "" | tr ' ' 'n')
dta convert --to bf16 $S -o "$o/$name"
[ "$rc" -eq 2 ] && one_line && grep -q "longer than 255" "$TMP/err" && pass || fail "256-byte name: $rc"

# ---- errors name OUT, not the vanished temporary (a write fails: file size limit) -------
for t in file dir; do
    if [ $t = file ]; then in=$S out="$o/efbig.safetensors"; else in=$m out="$o/efbig.d"; fi
    set +e
    (trap '' XFSZ; ulimit -f 8; exec "$DTAUDIT" convert --to bf16 "$in" -o "$out") >"$TMP/out" 2>"$TMP/err"
    rc=$?
    set -e
    [ "$rc" -eq 2 ] && one_line && grep -q "$out[:/]" "$TMP/err" && ! grep -q '/\.[^/]*\.dtaudit-' "$TMP/err" \
        && [ ! -e "$out" ] && pass || fail "write error ($t) names OUT: $rc $(cat "$TMP/err")"
done
no_temps "$o" && pass || fail "temporaries left after write errors"

# ---- publishing: a file appearing at OUT meanwhile is never replaced --------------------
py - "$o/big.safetensors" <<'PY'
import struct, sys, stwrite
n = 8 << 20  # 32 MiB of F32
with open(sys.argv[1], "wb") as f:
    f.write(stwrite.encode_header({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}))
    f.write(struct.pack("<f", 1.5) * n)
PY
cat >"$TMP/race.py" <<'PY'
# Starts a convert, stops it once its temporary exists, creates OUT, resumes it.
import glob, os, signal, subprocess, sys, time
exe, src, out, kind = sys.argv[1:5]
for attempt in range(5):
    p = subprocess.Popen([exe, "convert", "--to", "bf16", src, "-o", out],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    d, b = os.path.split(out)
    while p.poll() is None and not glob.glob(os.path.join(d, "." + b + ".dtaudit-*")):
        time.sleep(0.0005)
    if p.poll() is not None:  # it ended before we saw its temporary (a loaded machine): again
        subprocess.run(["rm", "-rf", out])
        continue
    os.kill(p.pid, signal.SIGSTOP)
    try:
        if kind == "file":
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            os.write(fd, b"mine\n")
            os.close(fd)
        else:
            os.mkdir(out)
            open(os.path.join(out, "mine"), "w").write("mine\n")
    except FileExistsError:  # it published before we stopped it: try again
        os.kill(p.pid, signal.SIGCONT)
        p.wait()
        subprocess.run(["rm", "-rf", out])
        continue
    os.kill(p.pid, signal.SIGCONT)
    so, se = p.communicate()
    print(p.returncode)
    sys.stderr.write(se.decode())
    sys.exit(0)
sys.exit(3)
PY
rm -rf "$m/sub" # a directory convert of $m below: keep it small
mkdir -p "$o/bigdir"
cp "$o/big.safetensors" "$o/bigdir/model.safetensors"
# Natively (renameat2 flags), then through the fallback for filesystems without them:
# the shim (tests/fault/inject.c) fails every renameat2 with EINVAL.
shim=
if ${CC:-cc} -shared -fPIC -O1 -o "$TMP/inject.so" tests/fault/inject.c -ldl 2>/dev/null \
    && LD_PRELOAD="$TMP/inject.so" "$DTAUDIT" --version >/dev/null 2>&1; then
    shim=$TMP/inject.so
else
    echo "SKIP-part: no injection shim (no cc, or a sanitizer build): fallback publishing untested"
fi
for pub in native fallback; do
    if [ $pub = fallback ]; then
        [ -n "$shim" ] || break
        export LD_PRELOAD="$shim" DTA_FAIL=renameat2:0 DTA_FAIL_ERRNO=22
        dta convert --to bf16 $S -o "$o/fb.safetensors"
        [ "$rc" -eq 0 ] && [ -f "$o/fb.safetensors" ] && pass || fail "fallback publish (file): $rc $(cat "$TMP/err")"
        dta convert --to bf16 "$m" -o "$o/fb.d"
        [ "$rc" -eq 0 ] && [ -f "$o/fb.d/model.safetensors" ] && pass || fail "fallback publish (dir): $rc $(cat "$TMP/err")"
        dta convert --force --to f16 "$m" -o "$o/fb.d"
        [ "$rc" -eq 0 ] && pass || fail "fallback --force (dir): $rc $(cat "$TMP/err")"
        rm -rf "$o/fb.safetensors" "$o/fb.d"
    fi
    for kind in file dir; do
        if [ $kind = file ]; then src=$o/big.safetensors out=$o/appear.safetensors; check=$out
        else src=$o/bigdir out=$o/appear.d; check=$out/mine; fi
        set +e
        r=$(py "$TMP/race.py" "$DTAUDIT" "$src" "$out" $kind 2>"$TMP/err")
        set -e
        [ "$r" = 2 ] && one_line && grep -q "appeared while converting" "$TMP/err" \
            && [ "$(cat "$check")" = mine ] && pass || fail "$pub: OUT appearing ($kind): $r $(cat "$TMP/err")"
        rm -rf "$out"
    done
    no_temps "$o" && pass || fail "$pub: temporaries left after the races"

    # ---- two (or more) concurrent converts to one OUT: exactly one wins ----------------------
    for kind in file dir; do
        if [ $kind = file ]; then src=$o/big.safetensors out=$o/race.safetensors
        else src=$o/bigdir out=$o/race.d; fi
        for round in 1 2 3; do
            for k in 1 2 3 4; do
                (set +e; "$DTAUDIT" convert --to bf16 "$src" -o "$out" >/dev/null 2>"$TMP/err.$k"; echo $? >"$TMP/rc.$k") &
            done
            wait || true
            wins=0
            for k in 1 2 3 4; do
                r=$(cat "$TMP/rc.$k")
                if [ "$r" = 0 ]; then wins=$((wins + 1))
                elif [ "$r" != 2 ] || [ "$(wc -l <"$TMP/err.$k")" -ne 1 ]; then
                    fail "$pub: concurrent $kind loser: rc $r $(cat "$TMP/err.$k")"
                fi
            done
            [ "$wins" -eq 1 ] && pass || fail "$pub: concurrent $kind converts: $wins winners"
            dta verify "$src" "$out"
            [ "$rc" -eq 0 ] && pass || fail "$pub: concurrent $kind result: $rc $(cat "$TMP/out")"
            rm -rf "$out"
        done
        # --force runs at the same time: all succeed, no leftovers, a valid result
        "$DTAUDIT" convert --to f16 "$src" -o "$out" >/dev/null
        for round in 1 2; do
            for k in 1 2 3 4; do
                (set +e; "$DTAUDIT" convert --force --to bf16 "$src" -o "$out" >/dev/null 2>"$TMP/err.$k"; echo $? >"$TMP/rc.$k") &
            done
            wait || true
            for k in 1 2 3 4; do
                [ "$(cat "$TMP/rc.$k")" = 0 ] && pass || fail "$pub: concurrent --force $kind: $(cat "$TMP/rc.$k") $(cat "$TMP/err.$k")"
            done
            dta audit --expect bf16 "$out"
            [ "$rc" -eq 0 ] && pass || fail "$pub: concurrent --force $kind result: $rc"
            no_temps "$o" && pass || fail "$pub: concurrent --force $kind left: $(find "$o" -name '.*dtaudit-*' -o -name '*.old')"
        done
        rm -rf "$out"
    done

done
unset LD_PRELOAD DTA_FAIL DTA_FAIL_ERRNO

# ---- verify: a metadata key is not a tensor ----------------------------------------------
py - "$o" <<'PY'
import sys, stwrite
d = sys.argv[1]
st = stwrite.write_values
st(d + "/src.safetensors", {"a": ("F32", [1.0, 2.0]), "b": ("F32", [1.0, 2.0])})
# bf16 of 1.0 and 2.0: 0x3f80, 0x4000
st(d + "/lost1.safetensors", {"a": ("BF16", [0x3f80, 0x4000])}, {"b": "a"})        # b dropped, claims alias
st(d + "/lost2.safetensors", {"a": ("BF16", [0x3f80, 0x4000])}, {"b": "nothing"})  # names no tensor
st(d + "/lost3.safetensors", {"a": ("BF16", [0x3f80, 0x4000])}, {"b": "x"})
PY
for f in lost1 lost2 lost3; do
    dta verify "$o/src.safetensors" "$o/$f.safetensors"
    [ "$rc" -eq 1 ] && grep -q MISMATCH "$TMP/out" && grep -q "1 source tensors are missing.*first: b" "$TMP/out" \
        && pass || fail "verify $f: $rc $(cat "$TMP/out")"
    dta verify -f json "$o/src.safetensors" "$o/$f.safetensors"
    [ "$rc" -eq 1 ] && grep -q '"missing": 1' "$TMP/out" && grep -q '"first_missing": "b"' "$TMP/out" \
        && pass || fail "verify -f json $f: $rc"
done
# real aliases (tied weights, dropped as safetensors' save_model does) still verify
if py -c "import torch, safetensors" 2>/dev/null; then
    py - "$o" <<'PY'
import sys, torch
from safetensors.torch import save_model
d = sys.argv[1]
class M(torch.nn.Module):
    def __init__(s):
        super().__init__()
        s.emb = torch.nn.Embedding(4, 3)
        s.head = torch.nn.Linear(3, 4, bias=False)
        s.head.weight = s.emb.weight
torch.manual_seed(0)
m = M()
torch.save(m.state_dict(), d + "/tied.pt")
save_model(m.to(torch.bfloat16), d + "/tied_bf16.safetensors")
PY
    dta verify "$o/tied.pt" "$o/tied_bf16.safetensors"
    [ "$rc" -eq 0 ] && grep -q "^ok:" "$TMP/out" && pass || fail "verify tied aliases: $rc $(cat "$TMP/out" "$TMP/err")"
else
    echo "SKIP-part: no torch/safetensors for the alias check"
fi

# ---- names safetensors cannot hold: refused (one line), never an invalid file ----------
if py -c "import torch, safetensors" 2>/dev/null; then
    mkdir -p "$o/names"
    py - "$o/names" <<'PY'
import sys, torch, stwrite
d = sys.argv[1]
x, y = torch.ones(2), torch.full((2,), 2.0)
cases = {
    "intkey": {1: x, "1": y},                    # int and str key flatten alike
    "dotted": {"a.b": x, "a": {"b": y}},          # a dotted key and a nested dict
    "listidx": {"l.0": x, "l": [y]},              # a list index and a dotted key
    "nul": {"a\x00b": x, "a": y},                 # NUL: the C name stops at it
    "nul1": {"w\x00": x},
    "surrogate": {"caf\udce9": x},                # pickle's surrogatepass: not UTF-8
    "reserved": {"__metadata__": x, "w": y},      # the header's reserved key
    "fine": {"caf\u00e9": x, "a": {"b": y}, "l": [x]},
}
for k, v in cases.items():
    torch.save(v, "%s/%s.pt" % (d, k))
def st(path, names):
    stwrite.write(path, [(n, "F32", [2], stwrite.pack("F32", [1.0, 2.0])) for n in names])
st(d + "/stnul.safetensors", ["a\x00b", "a"])
st(d + "/stnul1.safetensors", ["a\x00b"])
PY
    check_st() { py -c "
import sys
from safetensors import safe_open
with safe_open(sys.argv[1], 'pt') as f:
    for k in f.keys(): f.get_tensor(k)
" "$1" 2>/dev/null; }
    for c in intkey dotted listidx nul nul1 surrogate reserved stnul stnul1; do
        in=$o/names/$c.pt
        [ -e "$in" ] || in=$o/names/$c.safetensors
        dta convert --to bf16 --out-format safetensors "$in" -o "$o/names/$c.out.safetensors"
        if [ "$rc" -eq 0 ]; then
            check_st "$o/names/$c.out.safetensors" && pass || fail "$c: exit 0 but safetensors rejects the output"
        else
            [ "$rc" -eq 2 ] && one_line && [ ! -e "$o/names/$c.out.safetensors" ] && pass \
                || fail "$c: $rc $(cat "$TMP/err")"
        fi
    done
    for c in intkey dotted nul surrogate; do
        dta convert --to bf16 "$o/names/$c.pt" -o "$o/names/$c.out.pt" # torch keeps any key
        [ "$rc" -eq 0 ] && py -c "
import sys, torch
a = torch.load(sys.argv[1], weights_only=True); b = torch.load(sys.argv[2], weights_only=True)
def keys(o, p=()):
    if isinstance(o, dict):
        return [k for kk, v in o.items() for k in keys(v, p + (kk,))]
    if isinstance(o, list):
        return [k for i, v in enumerate(o) for k in keys(v, p + (i,))]
    return [p]
assert keys(a) == keys(b), (keys(a), keys(b))
" "$o/names/$c.pt" "$o/names/$c.out.pt" && pass || fail "$c to torch: $rc $(cat "$TMP/err")"
    done
    dta convert --to bf16 --out-format safetensors "$o/names/fine.pt" -o "$o/names/fine.safetensors"
    [ "$rc" -eq 0 ] && check_st "$o/names/fine.safetensors" && pass || fail "fine names: $rc $(cat "$TMP/err")"
else
    echo "SKIP-part: no torch/safetensors for the name checks"
fi

# ---- a report that cannot be written is exit 2 with one line (every command, format) ----
dta_full() { set +e; "$DTAUDIT" "$@" >/dev/full 2>"$TMP/err"; rc=$?; set -e; }
for f in text json sarif github; do
    for cmd in audit scan; do
        case $cmd.$f in scan.sarif | scan.github) continue ;; esac
        dta_full $cmd -f $f $S
        [ "$rc" -eq 2 ] && one_line && grep -q "cannot write the report" "$TMP/err" && pass \
            || fail "$cmd -f $f to a full disk: $rc $(cat "$TMP/err")"
    done
done
dta_full diff $S $seeds/002_ttt_mixed.safetensors
[ "$rc" -eq 2 ] && one_line && pass || fail "diff to a full disk: $rc"
dta_full verify $S $S
[ "$rc" -eq 2 ] && one_line && pass || fail "verify to a full disk: $rc"
dta_full convert -f json --to bf16 $S -o "$o/full.safetensors"
[ "$rc" -eq 2 ] && one_line && pass || fail "convert -f json to a full disk: $rc"
# a closed pipe (SIGPIPE is not a silent death: EPIPE, exit 2)
for f in text sarif; do
    r=$(py - "$DTAUDIT" "$S" $f <<'PY'
import os, subprocess, sys
r, w = os.pipe()
os.close(r)
p = subprocess.run([sys.argv[1], "audit", "-f", sys.argv[3], sys.argv[2]], stdout=w,
                   stderr=subprocess.PIPE)
print(p.returncode, len(p.stderr.decode().splitlines()))
PY
)
    [ "$r" = "2 1" ] && pass || fail "audit -f $f into a closed pipe: $r"
done

finish

#!/bin/sh
# Issue 10 item 5 / issue 11 "Smaller": names and paths holding OSC, CSI, NUL, newline, C1
# (U+009B, U+0085), bidi controls and invalid UTF-8, in safetensors, a torch zip and a
# sharded index, through every command and output format. Text output (stdout and stderr,
# error lines included) must hold no byte sequence a terminal acts on; JSON must parse as
# strict JSON. Inputs from tests/cli/hostile_names.py (standard library only); one Python
# start (py) generates and checks.
. "$(dirname "$0")/lib.sh"
py_start

G="$TMP/gen"
O="$TMP/outs"
mkdir -p "$O"
py tests/cli/hostile_names.py gen "$G" || { echo "FAIL: generator"; exit 1; }

n=0
# run NAME KIND ARGS...: runs dtaudit, keeps stdout as NAME.KIND (txt or json) and stderr as
# NAME.err.txt; exit 0/1 are results, 2 a refusal (its error line is checked too)
run() {
    name=$1 kind=$2
    shift 2
    dta "$@"
    n=$((n + 1))
    cp "$TMP/out" "$O/$n-$name.$kind"
    cp "$TMP/err" "$O/$n-$name.err.txt"
    if [ "$rc" -gt 2 ]; then fail "$name: exit $rc: $(head -c 300 "$TMP/err")"; else pass; fi
    if [ "$kind" = json ] && [ "$rc" -le 1 ] && [ ! -s "$TMP/out" ]; then fail "$name: no JSON"; fi
}

st=$(ls "$G"/st*31m*.safetensors)
tz=$(ls "$G"/tz*2J.pt)
inputs="$st $tz $G/idx $G/idx/model.safetensors.index.json $G/idx-missing $G/refuse-zip.pt $G/tz-prefix.pt"
i=0
for f in $st $tz "$G/idx" "$G/idx/model.safetensors.index.json" "$G/idx-missing" "$G/refuse-zip.pt" "$G/tz-prefix.pt"; do
    i=$((i + 1))
    run "scan$i" txt scan "$f"
    run "scan$i-v" txt scan -v "$f"
    run "scan$i" json scan --format json "$f"
    run "audit$i" txt audit "$f"
    run "audit$i-v" txt audit -v "$f"
    run "audit$i-q" txt audit -q "$f"
    run "audit$i" json audit --format json "$f"
    run "audit$i-sarif" json audit --format sarif "$f"
    run "audit$i-github" txt audit --format github "$f"
    run "diff$i" txt diff "$f" "$G/st2.safetensors"
    run "diff$i" json diff --format json "$f" "$G/st2.safetensors"
    # OUT with controls too; the input and OUT names reach every line convert prints
    out="$TMP/conv$i"
    mkdir -p "$out"
    case "$f" in
    *.pt) o="$out/o$(printf '\033]0;x\007')ut.pt" ;;
    *.safetensors) o="$out/o$(printf '\033[31m')ut.safetensors" ;;
    *) o="$out/o$(printf '\033[31m')ut" ;;
    esac
    run "convert$i" txt convert --to f16 "$f" -o "$o"
    if [ "$rc" -eq 0 ]; then
        run "verify$i" txt verify "$f" "$o"
        run "verify$i" json verify --format json "$f" "$o"
    fi
    rm -rf "$out"
    mkdir -p "$out"
    run "convert$i" json convert --format json --to f16 "$f" -o "$o"
    rm -rf "$out"
done
# usage errors echo arguments
run usage txt audit --allow "$(printf 'x\033[31m=NOPE')" "$st"
run usage2 txt "$(printf 'sc\033]0;x\007an')"

# a tensor named '*' must not be suggested as --allow '*=F32' (it would allow everything)
dta audit "$st"
if grep -q -- "--allow '\\\\\\*=F32'" "$TMP/out" && ! grep -q -- "--allow '\\*=F32'" "$TMP/out"; then pass; else fail "glob suggestion for '*': $(grep -- '--allow' "$TMP/out" | head -3)"; fi
# ... and the suggested allow for a hostile name, pasted into a shell, clears exactly it
dta audit "$st" --allow '\*=F32' --allow "$(printf 'osc\033]0;pwned\007.*=F32')"
if [ "$rc" -eq 1 ] && ! grep -q "warning dtype-outlier   \*  F32" "$TMP/out" && ! grep -q 'dtype-outlier   osc' "$TMP/out" && grep -q 'dtype-outlier   csi' "$TMP/out"; then pass; else fail "suggested allows: $rc $(grep warning "$TMP/out" | head -3)"; fi

if py tests/cli/hostile_names.py check "$O"; then pass; else fail "hostile bytes in output (above)"; fi
[ "$n" -gt 80 ] || fail "only $n runs"
finish

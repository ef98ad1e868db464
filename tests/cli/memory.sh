#!/bin/sh
# Memory proportional to content (issue 10 item 6, issue 11 "bounded memory"), measured with
# GNU time's max RSS:
# - a safetensors header of 250k tensors (23.6 MB): scan (text: the module tree), audit
#   --format json, convert and verify (two models) each within 4x the header over the RSS
#   of scanning a one-tensor file (the program's own). Before the memory round text
#   output took 5.3x and verify 4.25x of the header.
# - every generated hostile input (tests/interop/make_ambiguous.py --big: the pickle
#   "billion laughs", a deflated data.pkl bomb, an extra deflated record, ...) under 256 MiB
#   on scan, convert (torch and safetensors out), verify and diff; tests/cli/hardening.sh
#   measures audit.
# Skipped without /usr/bin/time, under a wrapper or a sanitizer build (its shadow memory).
. "$(dirname "$0")/lib.sh"

command -v python3 >/dev/null 2>&1 || { echo "SKIP: no python3"; exit 77; }
if [ ! -x /usr/bin/time ] || [ -n "$DTAUDIT_WRAPPER" ] || grep -q __asan_init "$DTAUDIT" 2>/dev/null; then
    echo "SKIP: RSS not measured (no /usr/bin/time, a wrapper, or a sanitizer build)"
    exit 77
fi
export DTAUDIT_NO_PROGRESS=1

# rss ARGS...: runs dtaudit, sets rc and kb (max RSS in KiB)
rss() {
    set +e
    /usr/bin/time -f %M -o "$TMP/rss" "$DTAUDIT" "$@" >"$TMP/out" 2>"$TMP/err"
    rc=$?
    set -e
    kb=$(tail -n 1 "$TMP/rss")
}

python3 - "$TMP" <<'PY'
import json, struct, sys
def st(path, names):
    hdr, off = {}, 0
    for n in names:
        hdr[n] = {"dtype": "F32", "shape": [1], "data_offsets": [off, off + 4]}
        off += 4
    text = json.dumps(hdr, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        f.truncate(8 + len(text) + off)
st(sys.argv[1] + "/h.safetensors",
   ["model.layers.%d.block.%d.weight" % (i // 16, i % 16) for i in range(250000)])
st(sys.argv[1] + "/one.safetensors", ["w"])
PY
hkb=$(python3 -c 'import struct,sys; print(struct.unpack("<Q", open(sys.argv[1],"rb").read(8))[0] // 1024)' "$TMP/h.safetensors")
rss scan "$TMP/one.safetensors"
[ "$rc" -eq 0 ] || fail "scan of a one-tensor file: exit $rc"
limit=$((kb + 4 * hkb))
check() { # LABEL: rc 0 and kb within limit
    if [ "$rc" -ne 0 ]; then fail "$1: exit $rc $(head -c 300 "$TMP/err")"
    elif [ "$kb" -gt "$limit" ]; then fail "$1: $kb KiB max RSS, over $limit (4x the $hkb KiB header + the program's own)"
    else pass; fi
}
rss scan "$TMP/h.safetensors"
check "scan (text) of 250k tensors"
rss audit --format json "$TMP/h.safetensors"
check "audit --format json of 250k tensors"
rss convert -q --to bf16 "$TMP/h.safetensors" -o "$TMP/c.safetensors"
check "convert of 250k tensors"
rss verify "$TMP/h.safetensors" "$TMP/c.safetensors"
check "verify of 250k tensors"
rm -f "$TMP/h.safetensors" "$TMP/c.safetensors"

# hostile inputs: whatever the exit, never 256 MiB
python3 tests/interop/make_ambiguous.py "$TMP/gen" --big || { echo "FAIL: generator"; exit 1; }
mkdir "$TMP/o"
for f in "$TMP"/gen/*; do
    b=$(basename "$f")
    for cmd in scan "scan --format json" "convert -q --to bf16 -o $TMP/o/t.pt" \
        "convert -q --to bf16 --out-format safetensors -o $TMP/o/t.safetensors" verify diff; do
        case $cmd in
        verify | diff) rss $cmd "$f" "$f" ;;
        *) rss $cmd "$f" ;;
        esac
        if [ "$rc" -gt 2 ]; then fail "$b: $cmd: exit $rc"
        elif [ "$kb" -ge 262144 ]; then fail "$b: $cmd: $kb KiB max RSS, over 256 MiB"
        else pass; fi
        rm -f "$TMP/o/t.pt" "$TMP/o/t.safetensors"
    done
done
finish

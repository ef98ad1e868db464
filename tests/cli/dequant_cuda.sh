#!/bin/sh
# convert --dequantize and the CUDA back end.
#  - Build (when CUDA is built in): every kernel object (src/lib/cuda/*.o) holds device
#    code for sm_80 and sm_90 and PTX for compute_90 (so newer GPUs JIT it), read from
#    the objects' .nv_fatbin sections; `dtaudit --version` lists cuda. The registers per
#    thread of the dequantization kernels (the cubins' EIATTR_REGCOUNT, what ptxas -v
#    says) are printed, and with nvcc 13.0 held to its figures: k_dequant (FP8 grid) 34,
#    k_dequant_packed 40 (sm_80; 38 on sm_90).
#  - Without a usable device: `--device cuda --dequantize` exits 3 naming the reason and
#    writes nothing (as plain conversion does); `--device auto` dequantizes on the CPU.
#  - With a device: `--device cuda` equals `--device cpu` byte for byte on a committed
#    fixture and on every committed ComfyUI fixture (tests/dequant/comfy: scaled FP8,
#    comfy_quant float8, nvfp4, mxfp8, int8_tensorwise) to the three targets, then
#    tests/interop/dequant_cuda_check.py compares the two devices on every case of the
#    four reference tests (FP8, FP4, integer, ComfyUI schemes; numpy/torch).
#  - Always (no GPU, no CUDA needed; numpy/torch and tests/unit/dq_emulate_tool): every
#    source model of those four reference tests through dq_emulate_tool, which runs the
#    device's jobs (packed schemes' stored bytes, as dequant_packed.c gathers them for the
#    GPU) and the kernel's per-element function on the host against the CPU path
#    (dequant_cuda_check.py with DTAUDIT_GPU_CHECK_DEVICE=emulate); and the committed
#    ComfyUI fixtures through dq_emulate_tool directly, each dequantized and compared with
#    its comfy_quant block layers as packed device jobs (no operand decoded on the host).
. "$(dirname "$0")/lib.sh"
builddir=$(cd "$(dirname "$DTAUDIT")/../.." && pwd)
fix=tests/fixtures/quant/ct-fp8-block

dta --version
if grep -q cuda "$TMP/out"; then
    cuda_built=1
else
    cuda_built=0
fi

# ---- the build: architectures of the kernel objects ------------------------------------
# entries(path): (kind, sm, bytes) of each entry of a .nv_fatbin section (kind 1 PTX, 2 ELF)
fatbin_py='import struct, sys
def entries(path):
    b = open(path, "rb").read()
    off = 0
    while off + 16 <= len(b):
        magic, _v, hs, size = struct.unpack_from("<IHHQ", b, off)
        if magic != 0xBA55ED50:
            break
        p, end = off + hs, off + hs + size
        while p < end:
            kind, _v2, ehs, n = struct.unpack_from("<HHII", b, p)
            yield kind, struct.unpack_from("<I", b, p + 28)[0], b[p + ehs:p + ehs + n]
            p += ehs + n
        off = end
'
if [ "$cuda_built" = 1 ] && command -v objcopy >/dev/null 2>&1 &&
    [ -f "$builddir/src/lib/cuda/dequant.o" ]; then
    for o in convert values dequant; do
        obj=$builddir/src/lib/cuda/$o.o
        if ! objcopy -O binary --only-section=.nv_fatbin "$obj" "$TMP/$o.fatbin"; then
            fail "objcopy could not read .nv_fatbin from $obj"
            continue
        fi
        got=$("$PYTHON" -c "$fatbin_py
seen = {('elf' if k == 2 else 'ptx' if k == 1 else 'kind%d' % k) + str(sm)
        for k, sm, _ in entries(sys.argv[1])}
print(' '.join(sorted(seen)))" "$TMP/$o.fatbin")
        for want in elf80 elf90 ptx90; do
            case " $got " in
            *" $want "*) pass ;;
            *) fail "$o.o: device code for '$got', no $want" ;;
            esac
        done
    done
    # registers per thread of the dequantization kernels, from the cubins' .nv.info
    # (EIATTR_REGCOUNT), what ptxas -v reports; the caps are nvcc 13.0's figures
    { printf '%s\n' "$fatbin_py"; cat <<'PY'
out = []
for kind, sm, e in entries(sys.argv[1]):
    if kind != 2 or e[:4] != b"\x7fELF" or e[4] != 2:
        continue  # PTX, or not a 64-bit cubin
    shoff = struct.unpack_from("<Q", e, 0x28)[0]
    shes, shn, shstr = struct.unpack_from("<HHH", e, 0x3A)
    sh = [struct.unpack_from("<IIQQQQIIQQ", e, shoff + i * shes) for i in range(shn)]
    def cstr(tab, o):
        s = sh[tab][4] + o
        return e[s:e.index(b"\0", s)].decode()
    syms = {}
    for h in sh:
        if h[1] == 2:  # SHT_SYMTAB: names in the section sh_link names
            for k in range(h[5] // 24):
                syms[k] = cstr(h[6], struct.unpack_from("<I", e, h[4] + 24 * k)[0])
    for h in sh:
        if cstr(shstr, h[0]) != ".nv.info":
            continue
        d, q = e[h[4]:h[4] + h[5]], 0
        while q + 2 <= len(d):
            fmt, attr = d[q], d[q + 1]
            ln = struct.unpack_from("<H", d, q + 2)[0] if fmt == 4 else 2 if fmt == 3 else 0
            if attr == 0x2F and fmt == 4:  # EIATTR_REGCOUNT: symbol, registers
                fn, r = struct.unpack_from("<II", d, q + 4)
                name = syms.get(fn, "?")
                out.append("sm_%d:%s=%d" % (sm, "k_dequant_packed" if "k_dequant_packed" in
                                               name else "k_dequant" if "k_dequant" in name
                                               else name, r))
            q += 4 + ln if fmt == 4 else 4 if fmt == 3 else 2
print(" ".join(sorted(set(out))))
PY
    } >"$TMP/regs.py"
    regs=$("$PYTHON" "$TMP/regs.py" "$TMP/dequant.fatbin")
    echo "note: dequantization kernel registers: $regs"
    nvcc=$(sed -n 's/^NVCC = //p' "$builddir/Makefile" 2>/dev/null)
    if [ -n "$nvcc" ] && "$nvcc" --version 2>/dev/null | grep -q 'release 13\.0,'; then
        over="" nk=0
        for kr in $regs; do
            r=${kr##*=}
            nk=$((nk + 1))
            case $kr in
            sm_[89]0:k_dequant_packed=*) [ "$r" -le 40 ] || over="$over $kr" ;;
            sm_[89]0:k_dequant=*) [ "$r" -le 34 ] || over="$over $kr" ;;
            *) over="$over $kr(unexpected)" ;;
            esac
        done
        [ "$nk" = 4 ] || over="$over ($nk kernel figures, not 4)"
        [ -z "$over" ] && pass ||
            fail "registers over the caps (k_dequant 34, k_dequant_packed 40):$over"
    fi
else
    echo "note: CUDA not built in (or objcopy missing): kernel architectures not checked"
fi

# ---- --device cuda / auto --------------------------------------------------------------
dta convert --device cpu --to bf16 --dequantize "$fix" -o "$TMP/cpu"
[ "$rc" = 0 ] && pass || fail "--device cpu --dequantize: exit $rc: $(cat "$TMP/err")"
dta convert --device auto --to bf16 --dequantize "$fix" -o "$TMP/auto"
[ "$rc" = 0 ] && diff -r "$TMP/cpu" "$TMP/auto" >/dev/null && pass ||
    fail "--device auto --dequantize: exit $rc, or output differs from --device cpu"
dta convert --device cuda --to bf16 --dequantize "$fix" -o "$TMP/cuda"
device=0
if [ "$rc" = 3 ]; then
    if [ ! -e "$TMP/cuda" ] && grep -q -- '--device cuda' "$TMP/err" &&
        { [ "$cuda_built" = 0 ] || grep -q 'CUDA' "$TMP/err"; }; then
        pass
    else
        fail "--device cuda without a device: $(cat "$TMP/err"); output exists: $(ls "$TMP")"
    fi
    echo "note: no usable CUDA device ($(cat "$TMP/err")): the GPU comparisons did not run"
elif [ "$rc" = 0 ]; then
    device=1
    diff -r "$TMP/cpu" "$TMP/cuda" >/dev/null && pass ||
        fail "--device cuda --dequantize differs from --device cpu"
else
    fail "--device cuda --dequantize: exit $rc: $(cat "$TMP/err")"
fi

# ---- everywhere: the kernel's code emulated on every reference case ----------------------
if [ -n "${DTAUDIT_DQ_EMULATE:-}" ] && [ -x "$DTAUDIT_DQ_EMULATE" ]; then
    set +e
    DTAUDIT_GPU_CHECK_DEVICE=emulate "$PYTHON" tests/interop/dequant_cuda_check.py "$DTAUDIT" \
        >"$TMP/emulate.log" 2>&1
    r=$?
    set -e
    case $r in
    0) pass; grep '^GPU check' "$TMP/emulate.log" || true ;;
    77) echo "note: emulated GPU check skipped: $(tail -1 "$TMP/emulate.log")" ;;
    *) fail "emulated GPU check (dequant_cuda_check.py, emulate): exit $r: $(grep -E 'FAIL|differ' "$TMP/emulate.log" | head -5)" ;;
    esac
else
    echo "note: DTAUDIT_DQ_EMULATE not set: the emulated GPU check did not run"
fi

# ---- everywhere: the committed ComfyUI fixtures through the emulated device jobs ---------
comfy=0
if [ -n "${DTAUDIT_DQ_EMULATE:-}" ] && [ -x "$DTAUDIT_DQ_EMULATE" ]; then
    for f in tests/dequant/comfy/*.safetensors; do
        case $f in *.expected.* | *.kitchen.* | *_padded.*) continue ;; esac
        set +e
        "$DTAUDIT_DQ_EMULATE" "$f" >"$TMP/emu" 2>&1
        r=$?
        set -e
        case $f in
        */nvfp4.* | */mxfp8.* | */int8.*)
            want='elements equal ([1-9][0-9]* packed device jobs)' ;;
        *) want='elements equal (' ;;
        esac
        if [ "$r" = 0 ] && grep -q "$want" "$TMP/emu"; then
            pass
            comfy=$((comfy + 1))
        else
            fail "dq_emulate_tool $f: exit $r: $(tail -1 "$TMP/emu")"
        fi
    done
    [ "$comfy" -ge 5 ] || fail "only $comfy ComfyUI fixtures emulated"
fi

# ---- with a device: the ComfyUI fixtures, then every reference case on both devices ------
if [ "$device" = 1 ]; then
    comfy=0
    for f in tests/dequant/comfy/*.safetensors; do
        case $f in *.expected.* | *.kitchen.*) continue ;; esac
        for t in f32 f16 bf16; do
            b=$(basename "$f" .safetensors).$t
            dta convert --device cpu --to "$t" --dequantize "$f" -o "$TMP/c.$b"
            rcpu=$rc
            dta convert --device cuda --to "$t" --dequantize "$f" -o "$TMP/g.$b"
            if [ "$rc" = "$rcpu" ] &&
                { [ "$rc" != 0 ] || cmp -s "$TMP/c.$b" "$TMP/g.$b"; }; then
                pass
                [ "$rc" = 0 ] && comfy=$((comfy + 1))
            else
                fail "$f -> $t: --device cuda exit $rc, cpu exit $rcpu, or output differs"
            fi
        done
    done
    echo "ComfyUI fixtures: $comfy conversions equal on --device cuda and --device cpu"
fi
if [ "$device" = 1 ]; then
    set +e
    "$PYTHON" tests/interop/dequant_cuda_check.py "$DTAUDIT"
    r=$?
    set -e
    case $r in
    0) pass ;;
    77) echo "note: tests/interop/dequant_cuda_check.py skipped (numpy/torch missing)" ;;
    *) fail "tests/interop/dequant_cuda_check.py: exit $r" ;;
    esac
fi
finish

#!/bin/sh
# Scale-out (issue 14.5): convert --jobs N and --part K/N give the bytes of a one-thread,
# one-process convert. N parts run as concurrent local processes, in reverse order, with a
# part rerun and with a part killed and rerun; every file of the output is compared with
# cmp, and the file list, modes and links with a listing. Also: a mismatched part is
# refused, a failing shard stops the other jobs and leaves nothing behind. Skips (77)
# without numpy.
. "$(dirname "$0")/lib.sh"
export DTAUDIT_NO_PROGRESS=1
"$PYTHON" -c 'import numpy' 2>/dev/null || { echo "skip: no numpy"; exit 77; }
o=$TMP/parts
mkdir -p "$o"

# Inputs (one Python start): a plain sharded model directory (7 shards of unequal sizes, one
# in a subfolder, F32/BF16/F16/I64 tensors, config.json, tokenizer files, a folder, a
# relative link) and a block-FP8 checkpoint whose scales sit in other shards than their
# codes (dequantize: every part reads scales from shards it does not convert).
"$PYTHON" - "$o" <<'PY'
import json, os, struct, sys
import numpy as np
root = sys.argv[1]
rng = np.random.default_rng(14)
ESZ = {"F32": 4, "BF16": 2, "F16": 2, "I64": 8, "F8_E4M3": 1}

def write_st(path, tensors):
    hdr, off, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name, dt, shape, raw in tensors:
        assert len(raw) == int(np.prod(shape)) * ESZ[dt]
        hdr[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        blobs.append(raw)
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))

def f32(*shape): return rng.standard_normal(shape).astype(np.float32).tobytes()
def bf16(*shape): return (rng.standard_normal(shape).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()
def f16(*shape): return rng.standard_normal(shape).astype(np.float16).tobytes()

def model_dir(d, shards, config):
    os.makedirs(d)
    wm = {}
    for fn, ts in shards:
        os.makedirs(os.path.dirname(os.path.join(d, fn)), exist_ok=True)
        write_st(os.path.join(d, fn), ts)
        for t in ts:
            wm[t[0]] = fn
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 1}, "weight_map": wm}, f, indent=2)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f, indent=2)

# plain: 7 shards, sizes 4 KiB .. 1.5 MiB, so the size balance matters
sizes = [96, 8, 200, 40, 64, 16, 128]
shards = []
for i, rows in enumerate(sizes):
    fn = "model-%05d-of-00007.safetensors" % (i + 1)
    if i == 5:
        fn = "sub/" + fn
    ts = [("layers.%d.mlp.weight" % i, "F32", (rows, 384), f32(rows, 384)),
          ("layers.%d.attn.weight" % i, "BF16", (rows, 64), bf16(rows, 64)),
          ("layers.%d.norm.weight" % i, "F16", (64,), f16(64)),
          ("layers.%d.pos" % i, "I64", (4,), np.arange(4, dtype=np.int64).tobytes())]
    shards.append((fn, ts))
d = os.path.join(root, "plain")
model_dir(d, shards, {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                      "torch_dtype": "float32", "text_config": {"torch_dtype": "float32"}})
for name, text in (("tokenizer.json", '{"version": "1.0"}\n'), ("README.md", "# model\n"),
                   ("extra/notes.txt", "notes\n")):
    os.makedirs(os.path.dirname(os.path.join(d, name)) or d, exist_ok=True)
    with open(os.path.join(d, name), "w") as f:
        f.write(text)
os.chmod(os.path.join(d, "README.md"), 0o600)
os.symlink("extra/notes.txt", os.path.join(d, "notes-link"))

# block FP8, 3 shards; each shard's scales are in the next shard
P = "model.layers.0."
names = ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
shapes = [(200, 300), (256, 130), (129, 257)]
codes, scales = [], []
for nm, (a, b) in zip(names, shapes):
    c = rng.integers(0, 254, a * b, dtype=np.uint8)
    c[c == 0x7F] = 0x7E
    codes.append((P + nm + ".weight", "F8_E4M3", (a, b), c.tobytes()))
    g = (-(-a // 128), -(-b // 128))
    scales.append((P + nm + ".weight_scale_inv", "F32", g,
                   (rng.random(g, dtype=np.float32) * 1e-2 + 1e-4).astype(np.float32).tobytes()))
fshards = []
for i in range(3):
    ts = [codes[i], scales[(i + 2) % 3]]
    if i == 0:
        ts.append(("model.embed_tokens.weight", "BF16", (64, 32), bf16(64, 32)))
    fshards.append(("model-%05d-of-00003.safetensors" % (i + 1), ts))
model_dir(os.path.join(root, "fp8"), fshards,
          {"architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
           "torch_dtype": "bfloat16",
           "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3",
                                   "quant_method": "fp8", "weight_block_size": [128, 128]}})
PY

# same A B: the same file list, modes and links, and every file identical (cmp)
same() {
    (cd "$1" && find . -printf '%p %y %m %l\n' | sort) >"$TMP/la"
    (cd "$2" && find . -printf '%p %y %m %l\n' | sort) >"$TMP/lb"
    if ! cmp -s "$TMP/la" "$TMP/lb"; then
        diff "$TMP/la" "$TMP/lb" | head -5
        return 1
    fi
    (cd "$1" && find . -type f) | while read -r f; do
        cmp -s "$1/$f" "$2/$f" || { echo "differs: $f"; return 1; }
    done
}
# no staging or temporary of OUT left beside it (".OUT.dtaudit-XXXXXX", ".OUT.dtaudit.parts");
# says what is left, so a failure names its cause
clean() {
    left=$(find "$(dirname "$1")" -maxdepth 1 -name ".$(basename "$1").dtaudit*" | head -3)
    [ -z "$left" ] || { echo "left beside $1:" $left; return 1; }
}

# ---- references: one thread, one process ----------------------------------------------
dta convert --to bf16 -j 1 "$o/plain" -o "$o/ref"
[ "$rc" -eq 0 ] && pass || fail "reference: $rc $(cat "$TMP/err")"
dta convert --to bf16 -j 1 --dequantize "$o/fp8" -o "$o/ref8"
[ "$rc" -eq 0 ] && pass || fail "fp8 reference: $rc $(cat "$TMP/err")"

# ---- --jobs --------------------------------------------------------------------------------
for n in 2 3 8; do
    dta convert --to bf16 -j $n "$o/plain" -o "$o/j$n"
    [ "$rc" -eq 0 ] && same "$o/ref" "$o/j$n" && pass || fail "--jobs $n differs: $rc $(cat "$TMP/err")"
    dta convert --to bf16 --jobs $n --dequantize "$o/fp8" -o "$o/j8-$n"
    [ "$rc" -eq 0 ] && same "$o/ref8" "$o/j8-$n" && pass || fail "--jobs $n --dequantize differs: $rc $(cat "$TMP/err")"
done
dta convert --to bf16 "$o/plain" -o "$o/jdef" # default: the number of CPUs
[ "$rc" -eq 0 ] && same "$o/ref" "$o/jdef" && pass || fail "default --jobs differs"
dta convert --to bf16 -j 3 --verify -f json "$o/plain" -o "$o/jv"
[ "$rc" -eq 0 ] && same "$o/ref" "$o/jv" && pass || fail "--jobs 3 --verify: $rc $(cat "$TMP/err")"
"$PYTHON" -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["shards"] == 7 and d["shards_converted"] == 7 and d["jobs"] == 3 and d["verify"]["mismatches"] == 0, d' "$TMP/out" \
    && pass || fail "--jobs JSON fields: $(cat "$TMP/out")"

# a failing shard (truncated) stops the others; nothing is published, nothing left behind
cp -r "$o/plain" "$o/broken"
truncate -s 5000 "$o/broken/model-00003-of-00007.safetensors"
dta convert --to bf16 -j 4 "$o/broken" -o "$o/jbad"
[ "$rc" -eq 2 ] && [ ! -e "$o/jbad" ] && clean "$o/jbad" && [ "$(wc -l <"$TMP/err")" -eq 1 ] \
    && grep -q 'model-00003-of-00007' "$TMP/err" && pass || fail "--jobs failure: $rc $(cat "$TMP/err")"

# ---- --part: concurrent processes ----------------------------------------------------------
# runs K/N for each K given, all at once, and waits; rc of every part in $TMP/rc.K
parts() {
    out=$1 n=$2
    shift 2
    for k in "$@"; do
        ( set +e; "$DTAUDIT" convert --to bf16 $extra --part "$k/$n" "$src" -o "$out" \
              >"$TMP/pout.$k" 2>"$TMP/perr.$k"; echo $? >"$TMP/rc.$k" ) &
    done
    wait
}
all_ok() {
    for k in "$@"; do
        [ "$(cat "$TMP/rc.$k")" -eq 0 ] || { echo "part $k: $(cat "$TMP/rc.$k") $(cat "$TMP/perr.$k")"; return 1; }
    done
}
src=$o/plain extra=
for n in 1 2 3 7 9; do
    ks=$(seq 1 $n)
    parts "$o/p$n" $n $ks
    all_ok $ks && same "$o/ref" "$o/p$n" && clean "$o/p$n" && pass || fail "$n concurrent parts differ"
done
# more parts than shards, in an order that does not depend on timing: parts 8 and 9 of 9 have
# no shard (7 shards) and succeed without writing, before and after the others published;
# a part with shards run after publishing is refused and leaves nothing beside OUT
for k in 8 1 2 3 4 5 6 7 9; do
    dta convert --to bf16 --part $k/9 -f json "$o/plain" -o "$o/late"
    [ "$rc" -eq 0 ] || fail "part $k/9 in sequence: $rc $(cat "$TMP/err")"
done
grep -q '"published": false' "$TMP/out" && grep -q '"shards_converted": 0' "$TMP/out" && pass \
    || fail "the empty part 9/9 after publishing: $(cat "$TMP/out")"
dta convert --to bf16 --part 8/9 "$o/plain" -o "$o/late"
[ "$rc" -eq 0 ] && grep -q 'no shard is assigned' "$TMP/out" && pass || fail "empty part 8/9 text: $rc $(cat "$TMP/out")"
dta convert --to bf16 --part 3/9 "$o/plain" -o "$o/late"
[ "$rc" -eq 2 ] && grep -q 'exists' "$TMP/err" && same "$o/ref" "$o/late" && clean "$o/late" && pass \
    || fail "a part with shards after publishing: $rc $(cat "$TMP/err")"
src=$o/fp8 extra=--dequantize
parts "$o/p8" 3 1 2 3
all_ok 1 2 3 && same "$o/ref8" "$o/p8" && clean "$o/p8" && pass || fail "3 concurrent --dequantize parts differ"
parts "$o/p8j" 2 1 2
all_ok 1 2 && same "$o/ref8" "$o/p8j" && pass || fail "2 concurrent --dequantize parts differ"

# ---- --part: reverse order, one after the other; only the last publishes -----------------
src=$o/plain extra=
for k in 4 3 2 1; do
    dta convert --to bf16 --part $k/4 -f json "$o/plain" -o "$o/rev"
    [ "$rc" -eq 0 ] || fail "reverse part $k: $rc $(cat "$TMP/err")"
    if [ $k -gt 1 ]; then
        [ ! -e "$o/rev" ] && grep -q '"published": false' "$TMP/out" && pass || fail "part $k published early"
    fi
done
grep -q '"published": true' "$TMP/out" && pass || fail "the last part did not say it published"
same "$o/ref" "$o/rev" && clean "$o/rev" && pass || fail "reverse order differs"

# ---- --part: a part rerun (completed, then again), a part killed and rerun ----------------
dta convert --to bf16 --part 2/3 "$o/plain" -o "$o/rerun"
dta convert --to bf16 --part 2/3 "$o/plain" -o "$o/rerun"
[ "$rc" -eq 0 ] && [ ! -e "$o/rerun" ] && pass || fail "rerun of a part: $rc $(cat "$TMP/err")"
dta convert --to bf16 --part 3/3 "$o/plain" -o "$o/rerun"
dta convert --to bf16 --part 1/3 "$o/plain" -o "$o/rerun"
[ "$rc" -eq 0 ] && same "$o/ref" "$o/rerun" && clean "$o/rerun" && pass || fail "after a rerun: $rc $(cat "$TMP/err")"
# a part killed (SIGKILL) at its N-th write, or at its first link (the publishing part,
# after staging), leaves temporaries and a partial staging; running it again completes the
# same output. An LD_PRELOAD shim built here (skipped without a compiler) does the kill.
cat >"$TMP/killer.c" <<'EOF2'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
static long nw, nl;
ssize_t write(int fd, const void *b, size_t c)
{
    static ssize_t (*real)(int, const void *, size_t);
    const char *k = getenv("KILL_AT_WRITE");
    if (!real)
        real = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    if (fd >= 3 && k && ++nw == atol(k))
        raise(SIGKILL);
    return real(fd, b, c);
}
int link(const char *a, const char *b)
{
    static int (*real)(const char *, const char *);
    const char *k = getenv("KILL_AT_LINK");
    if (!real)
        real = (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "link");
    if (k && ++nl == atol(k))
        raise(SIGKILL);
    return real(a, b);
}
EOF2
if ${CC:-cc} -shared -fPIC -O1 -o "$TMP/killer.so" "$TMP/killer.c" -ldl 2>/dev/null &&
    LD_PRELOAD="$TMP/killer.so" "$DTAUDIT" --version >/dev/null 2>&1; then
    for how in KILL_AT_WRITE=1 KILL_AT_WRITE=3 KILL_AT_WRITE=9 KILL_AT_LINK=1 KILL_AT_LINK=4; do
        out=$o/kill-${how#KILL_AT_}
        dta convert --to bf16 --part 2/3 "$o/plain" -o "$out"
        dta convert --to bf16 --part 3/3 "$o/plain" -o "$out"
        [ "$rc" -eq 0 ] && [ ! -e "$out" ] || fail "$how: parts 2, 3: $rc $(cat "$TMP/err")"
        (env "$how" LD_PRELOAD="$TMP/killer.so" "$DTAUDIT" convert --to bf16 --part 1/3 \
            "$o/plain" -o "$out" >/dev/null 2>&1) 2>/dev/null && fail "$how: not killed"
        [ ! -e "$out" ] && [ -n "$(find "$o" -maxdepth 2 -name '*dtaudit*' | head -1)" ] \
            && pass || fail "$how: a killed part published, or left nothing"
        dta convert --to bf16 --part 1/3 "$o/plain" -o "$out"
        [ "$rc" -eq 0 ] && same "$o/ref" "$out" && clean "$out" && pass \
            || fail "$how: the rerun differs: $rc $(cat "$TMP/err")"
    done
else
    echo "note: no compiler or LD_PRELOAD: the SIGKILL cases are skipped"
fi
# SIGTERM: the part removes its temporaries; its rerun completes the output
src=$o/fp8 extra=--dequantize
dta convert --to bf16 --dequantize --part 1/2 "$o/fp8" -o "$o/term"
"$DTAUDIT" convert --to bf16 --dequantize --part 2/2 "$o/fp8" -o "$o/term" >/dev/null 2>&1 &
pid=$!
kill -TERM $pid 2>/dev/null || true
wait $pid 2>/dev/null || true
dta convert --to bf16 --dequantize --part 2/2 "$o/fp8" -o "$o/term"
[ "$rc" -eq 0 ] && same "$o/ref8" "$o/term" && clean "$o/term" && pass || fail "SIGTERM part rerun: $rc $(cat "$TMP/err")"

# ---- examples/cluster: the Slurm array script and the Indexed Job's command, as written -----
if command -v bash >/dev/null 2>&1; then
    for k in 1 2 3; do
        ( IN=$o/fp8 OUT=$o/slurm TO=bf16 NPARTS=3 DTAUDIT=$DTAUDIT SLURM_ARRAY_TASK_ID=$k \
              SLURM_CPUS_PER_TASK=2 bash examples/cluster/slurm-array.sh >/dev/null 2>"$TMP/perr.$k"
          echo $? >"$TMP/rc.$k" ) &
    done
    wait
    all_ok 1 2 3 && same "$o/ref8" "$o/slurm" && clean "$o/slurm" && pass || fail "examples/cluster/slurm-array.sh"
fi
cmd=$(sed -n 's/^ *- \(exec dtaudit convert .*\)$/\1/p' examples/cluster/k8s-indexed-job.yaml)
[ -n "$cmd" ] && pass || fail "no command in examples/cluster/k8s-indexed-job.yaml"
mkdir -p "$TMP/bin"
ln -sf "$DTAUDIT" "$TMP/bin/dtaudit"
for k in 2 0 1; do # JOB_COMPLETION_INDEX is 0-based
    ( PATH=$TMP/bin:$PATH IN=$o/fp8 OUT=$o/k8s TO=bf16 NPARTS=3 JOBS=2 JOB_COMPLETION_INDEX=$k \
          sh -c "$cmd" >/dev/null 2>"$TMP/perr.$k"; echo $? >"$TMP/rc.$k" ) &
done
wait
all_ok 0 1 2 && same "$o/ref8" "$o/k8s" && clean "$o/k8s" && pass || fail "examples/cluster/k8s-indexed-job.yaml"

# ---- --part: refusals ------------------------------------------------------------------------
dta convert --to bf16 --part 1/2 "$o/plain" -o "$o/mix"
dta convert --to f16 --part 2/2 "$o/plain" -o "$o/mix"
[ "$rc" -eq 2 ] && [ ! -e "$o/mix" ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q 'another conversion' "$TMP/err" \
    && pass || fail "mismatched parts not refused: $rc $(cat "$TMP/err")"
dta convert --to bf16 --part 2/3 "$o/plain" -o "$o/mix"
[ "$rc" -eq 2 ] && grep -q 'another conversion' "$TMP/err" && pass || fail "a different N not refused: $rc"
dta convert --to bf16 --part 1/2 "$o/plain/model-00001-of-00007.safetensors" -o "$o/one.safetensors"
[ "$rc" -eq 2 ] && grep -q 'part' "$TMP/err" && [ ! -e "$o/one.safetensors" ] && pass || fail "--part of one file: $rc $(cat "$TMP/err")"
dta convert --to bf16 --part 1/2 "$o/plain" -o "$o/ref"
[ "$rc" -eq 2 ] && grep -q 'exists' "$TMP/err" && same "$o/ref" "$o/j2" && pass || fail "--part over an existing OUT: $rc $(cat "$TMP/err")"
for bad in 0/2 3/2 1/0 x/2 1/2/3 -1/2 ''; do
    dta convert --to bf16 --part "$bad" "$o/plain" -o "$o/u"
    [ "$rc" -eq 2 ] && pass || fail "--part '$bad' accepted"
done
dta convert --to bf16 --part 1/2 --force "$o/plain" -o "$o/u"
[ "$rc" -eq 2 ] && pass || fail "--part with --force accepted"
for bad in 0 -1 x 2000; do
    dta convert --to bf16 -j "$bad" "$o/plain" -o "$o/u"
    [ "$rc" -eq 2 ] && pass || fail "--jobs '$bad' accepted"
done
# nothing of any conversion above is left beside its output (but the staging of the
# mismatched parts' conversion, which was never finished)
left=$(find "$o" -maxdepth 1 -name '.*dtaudit*' ! -name .mix.dtaudit.parts | head -3)
[ -z "$left" ] && pass || fail "left beside the outputs:" $left
finish

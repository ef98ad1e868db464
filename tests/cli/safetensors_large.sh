#!/bin/sh
# A header of more than 65536 tensors (the reader hands them to the model last first, in
# steps, and puts them back in header order): every tensor keeps its name, dtype, shape and
# data, alone and as the second shard of an index (tensors already in the model).
. "$(dirname "$0")/lib.sh"
py_start # one Python process for the generator and every check below

py -c 'import numpy' 2>/dev/null || { echo "SKIP: numpy is not importable"; exit 77; }
py - "$TMP" <<'PY'
import json, os, random, struct, sys
import numpy as np
out = sys.argv[1]
rng = random.Random(7)
kinds = [("F32", np.float32), ("F16", np.float16), ("I32", np.int32), ("U8", np.uint8)]

def write(path, n, prefix):
    ents = []
    for i in range(n):
        code, dt = kinds[rng.randrange(4)]
        shape = [rng.randrange(1, 4) for _ in range(rng.randrange(0, 3))]
        a = np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.float64) + i
        ents.append(("%s.%d.w" % (prefix, i), code, shape, (a % 251).astype(dt).tobytes()))
    order = list(range(n))
    rng.shuffle(order)  # data in another order than the header
    hdr, off, data = {}, {}, bytearray()
    for k in order:
        off[k] = (len(data), len(data) + len(ents[k][3]))
        data += ents[k][3]
    for k in range(n):
        name, code, shape, _ = ents[k]
        hdr[name] = {"dtype": code, "shape": shape, "data_offsets": list(off[k])}
    text = json.dumps(hdr).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + bytes(data))

write(os.path.join(out, "big.safetensors"), 70000, "a")
os.makedirs(os.path.join(out, "idx"))
write(os.path.join(out, "idx", "model-00001-of-00002.safetensors"), 3, "s")
write(os.path.join(out, "idx", "model-00002-of-00002.safetensors"), 66000, "b")
wm = {}
for s in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
    p = os.path.join(out, "idx", s)
    raw = open(p, "rb").read()
    for name in json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]]):
        wm[name] = s
with open(os.path.join(out, "idx", "model.safetensors.index.json"), "w") as f:
    json.dump({"metadata": {}, "weight_map": wm}, f)
PY

# compare.py SRC... OUT...: every tensor of the sources is in the outputs with its shape,
# in header order per file, and with its values (as float32 for the floating ones)
cat >"$TMP/compare.py" <<'PY'
import json, struct, sys
import numpy as np
np_of = {"F32": np.float32, "F16": np.float16, "I32": np.int32, "U8": np.uint8}
def load(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    hdr.pop("__metadata__", None)
    base = 8 + n
    return {k: (v["dtype"], v["shape"],
                np.frombuffer(raw[base + v["data_offsets"][0]:base + v["data_offsets"][1]],
                              dtype=np_of[v["dtype"]])) for k, v in hdr.items()}
half = len(sys.argv[1:]) // 2
src, dst = {}, {}
for p in sys.argv[1:1 + half]:
    src.update(load(p))
for p in sys.argv[1 + half:]:
    dst.update(load(p))
assert src.keys() == dst.keys(), "tensor names differ"
for k, (dt, shape, a) in src.items():
    odt, oshape, b = dst[k]
    assert shape == oshape, k
    if dt in ("F32", "F16"):
        assert odt == "F32" and np.array_equal(a.astype(np.float32), b), k
    else:
        assert odt == dt and np.array_equal(a, b), k
print("ok", len(src))
PY

# scan: header order, dtypes and shapes
for f in "$TMP/big.safetensors" "$TMP/idx"; do
    dta scan -v --format json "$f"
    [ "$rc" -eq 0 ] && pass || { fail "scan $f: exit $rc"; cat "$TMP/err"; }
    py - "$TMP/out" "$f" <<'PY' && pass || fail "scan $f: tensors differ from the header"
import json, os, struct, sys
d = json.load(open(sys.argv[1]))
path = sys.argv[2]
files = [path] if os.path.isfile(path) else [os.path.join(path, s) for s in sorted(os.listdir(path)) if s.endswith(".safetensors")]
want = []
for p in files:
    raw = open(p, "rb").read()
    hdr = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
    want += [(k, v["dtype"], v["shape"]) for k, v in hdr.items()]
got = [(t["name"], t["dtype"], t["shape"]) for t in d["tensors"]]
assert got == want, (len(got), len(want), next(((a, b) for a, b in zip(got, want) if a != b), None))
PY
done
# convert to f32: the data of every tensor went to the right place
dta convert --to f32 "$TMP/big.safetensors" -o "$TMP/big32.safetensors"
[ "$rc" -eq 0 ] && pass || { fail "convert: exit $rc"; cat "$TMP/err"; }
py "$TMP/compare.py" "$TMP/big.safetensors" "$TMP/big32.safetensors" >/dev/null && pass ||
    fail "convert: tensors differ from the source"
dta verify "$TMP/big.safetensors" "$TMP/big32.safetensors"
[ "$rc" -eq 0 ] && pass || fail "verify: exit $rc"
dta convert --to f32 "$TMP/idx" -o "$TMP/idx32"
[ "$rc" -eq 0 ] && pass || { fail "convert index: exit $rc"; cat "$TMP/err"; }
py "$TMP/compare.py" "$TMP"/idx/model-0000*.safetensors "$TMP"/idx32/model-0000*.safetensors >/dev/null &&
    pass || fail "convert index: tensors differ from the source"
finish

#!/bin/sh
# Quantized checkpoints written by the real libraries (issue 12): tests/fixtures/quant/, made
# once by tests/quant/gen_real_fixtures.py (compressed-tensors, bitsandbytes' CPU backend,
# optimum-quanto, torchao, hqq; versions in tests/fixtures/quant/VERSIONS.txt) from the same
# tiny Llama. Each is recognised (scheme, source, label, logical shape, the dtype it
# dequantizes to, the roles of its tensors), its compute dtype is BF16, and it audits clean
# (exit 0, no warning or error). Nothing here needs the libraries themselves.
. "$(dirname "$0")/lib.sh"
F=tests/fixtures/quant
# name|scheme|source|label of model.layers.0.mlp.down_proj.weight|logical shape|roles
cat >"$TMP/expect" <<'EOF'
ct-fp8-dynamic|compressed-tensors-float|config.json|F8_E4M3 -> BF16|[64, 128]|scale weight
ct-fp8-block|compressed-tensors-float|config.json|F8_E4M3 block 128x128 -> BF16|[64, 128]|scale weight
ct-int8-w8a8|compressed-tensors-int|config.json|INT8 -> BF16|[64, 128]|scale weight
ct-w4a16|compressed-tensors-pack|config.json|INT4 group 32 -> BF16|[64, 128]|scale shape weight
ct-w4a16-asym|compressed-tensors-pack|config.json|INT4 group 32 -> BF16|[64, 128]|scale shape weight zero_point
ct-nvfp4a16|compressed-tensors-nvfp4|config.json|NVFP4 group 16 -> BF16|[64, 128]|global_scale scale weight
ct-mxfp4a16|compressed-tensors-mxfp4|config.json|MXFP4 group 32 -> BF16|[64, 128]|scale weight
bnb-nf4-dq|bnb-4bit|config.json|NF4 -> BF16|None|absmax nested_absmax nested_quant_map quant_map quant_state weight
bnb-fp4|bnb-4bit|config.json|FP4 -> BF16|None|absmax quant_map quant_state weight
bnb-int8|bnb-8bit|config.json|INT8 -> BF16|[64, 128]|format scale weight
quanto-int8|quanto|quanto_qmap.json|INT8 -> BF16|[64, 128]|input_scale scale weight
quanto-int4|quanto|quanto_qmap.json|INT4 -> BF16|None|input_scale scale weight zero_point
quanto-float8|quanto|quanto_qmap.json|F8_E4M3 -> BF16|[64, 128]|input_scale scale weight
torchao-float8|torchao|config.json|F8_E4M3 -> BF16|[64, 128]|scale weight
torchao-int8|torchao|config.json|INT8 -> BF16|[64, 128]|scale weight zero_point
hqq-4bit|hqq|config.json|INT4 group 64 -> BF16|None|meta scale weight zero_point
EOF
n=0
while IFS='|' read -r name rest; do
    dta audit --format json "$F/$name"
    cp "$TMP/out" "$TMP/$name.json"
    echo "$rc" >"$TMP/$name.rc"
    n=$((n + 1))
done <"$TMP/expect"
[ "$n" -eq "$(ls -d "$F"/*/ | wc -l)" ] && pass || fail "expectations for $n fixtures, $(ls -d "$F"/*/ | wc -l) in $F"
# one Python start checks every fixture; prints one line per failure, "ok NAME" per success
"$PYTHON" - "$TMP" <<'PY' >"$TMP/res"
import json, sys
tmp = sys.argv[1]
for line in open(tmp + "/expect"):
    name, scheme, source, label, shape, roles = line.rstrip("\n").split("|")
    d = json.load(open("%s/%s.json" % (tmp, name)))
    rc = int(open("%s/%s.rc" % (tmp, name)).read())
    q = d["inputs"][0].get("quantization") or {}
    p = [x for x in q.get("parameters", []) if x["name"] == "model.layers.0.mlp.down_proj.weight"]
    got_roles = " ".join(sorted({t["quant"]["role"] for t in d["tensors"] if t.get("quant")}))
    bad = [f["rule"] + " " + f["module"] for f in d["findings"] if f["severity"] != "info"]
    unq = sorted(q.get("unquantized", []))
    want_unq = sorted(["lm_head.weight", "model.embed_tokens.weight", "model.norm.weight",
                       "model.layers.0.input_layernorm.weight",
                       "model.layers.0.post_attention_layernorm.weight"])
    checks = [
        ("exit", rc, 0),
        ("findings", bad, []),
        ("scheme", q.get("scheme"), scheme),
        ("source", q.get("source"), source),
        ("parameters", len(q.get("parameters", [])), 7),
        ("label", p and p[0]["label"], label),
        ("shape", str(p and p[0].get("shape")), shape),
        ("dequantizes to", p and p[0]["dtype"], "BF16"),
        ("compute dtype", [r["dominant"] for r in d["roots"]], ["BF16"]),
        ("roles", got_roles, roles),
        ("unquantized", unq, want_unq),
    ]
    errs = ["%s: got %r, expected %r" % (k, g, w) for k, g, w in checks if g != w]
    print("ok " + name if not errs else "FAIL %s: %s" % (name, "; ".join(errs)))
PY
while read -r status name; do
    [ "$status" = ok ] && pass || fail "$name"
done <"$TMP/res"
[ "$(grep -c '^ok ' "$TMP/res")" -eq "$n" ] && pass || fail "checked $(grep -c '^ok ' "$TMP/res") of $n"

# each fixture under 64 KiB, and the versions used recorded beside them
for d in "$F"/*/; do
    s=$(cat "$d"* | wc -c)
    [ "$s" -lt 65536 ] && pass || fail "$d: $s bytes"
done
grep -q '^compressed-tensors==' "$F/VERSIONS.txt" && grep -q '^bitsandbytes==' "$F/VERSIONS.txt" \
    && grep -q '^optimum-quanto==' "$F/VERSIONS.txt" && grep -q '^torchao==' "$F/VERSIONS.txt" \
    && grep -q '^hqq==' "$F/VERSIONS.txt" && pass || fail "VERSIONS.txt"

# convert refuses them (quantized input) and --keep-quantized keeps every quantized tensor
dta convert --to f16 "$F/ct-w4a16" -o "$TMP/o1"
[ "$rc" -eq 1 ] && [ ! -e "$TMP/o1" ] && pass || fail "convert ct-w4a16: $rc"
dta convert --to f16 --keep-quantized "$F/bnb-nf4-dq" -o "$TMP/o2"
[ "$rc" -eq 0 ] && pass || fail "keep-quantized bnb: $rc $(cat "$TMP/err")"
dta verify "$F/bnb-nf4-dq" "$TMP/o2"
[ "$rc" -eq 0 ] && pass || fail "verify keep-quantized bnb: $rc $(cat "$TMP/err")"
finish

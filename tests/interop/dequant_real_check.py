"""convert --dequantize of the real-library bitsandbytes fixtures (tests/fixtures/quant:
NF4 with double quantization, FP4, LLM.int8, written by bitsandbytes 0.50.2) against the
libraries' own dequantization: tests/fixtures/quant/dequant_expected.json holds the SHA-256
of bitsandbytes' dequantize_4bit / int8_vectorwise_dequant output cast to each target
(written by tests/quant/gen_dequant_expected.py, versions inside). Standard library only.

Usage: dequant_real_check.py DTAUDIT FIXTURES_DIR. Exit 0 pass, 1 fail."""
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

D, FIX = sys.argv[1], sys.argv[2]
exp = json.load(open(os.path.join(FIX, "dequant_expected.json")))
tmp = tempfile.mkdtemp(prefix="dtaudit-dequant-real.")
fails, passes = [], 0
try:
    for name, ent in sorted(exp["fixtures"].items()):
        for tgt, tens in sorted(ent["tensors"].items()):
            out = os.path.join(tmp, name + "-" + tgt)
            p = subprocess.run([D, "convert", "--to", tgt, "--dequantize", "--verify",
                                os.path.join(FIX, name), "-o", out],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if p.returncode:
                fails.append("%s -> %s: exit %d %s" % (name, tgt, p.returncode,
                                                       p.stderr.decode(errors="replace")))
                continue
            with open(os.path.join(out, "model.safetensors"), "rb") as f:
                data = f.read()
            n = struct.unpack("<Q", data[:8])[0]
            hdr = json.loads(data[8:8 + n])
            for k, v in sorted(tens.items()):
                if k not in hdr:
                    fails.append("%s -> %s: %s missing" % (name, tgt, k))
                    continue
                a, b = hdr[k]["data_offsets"]
                h = hashlib.sha256(data[8 + n + a:8 + n + b]).hexdigest()
                if h != v["sha256"] or hdr[k]["shape"] != v["shape"]:
                    fails.append("%s -> %s: %s differs from %s" % (name, tgt, k,
                                                                  ent["reference"]))
                else:
                    passes += 1
            cfg = json.load(open(os.path.join(out, "config.json")))
            if "quantization_config" in cfg:
                fails.append("%s -> %s: config.json keeps quantization_config" % (name, tgt))
finally:
    shutil.rmtree(tmp, ignore_errors=True)
for f in fails:
    print("FAIL: " + f)
print("%d tensors equal to the library's, %d failures" % (passes, len(fails)))
sys.exit(1 if fails else 0)

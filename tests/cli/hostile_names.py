#!/usr/bin/env python3
"""Hostile names for tests/cli/hostile_names.sh (issue 10 item 5, issue 11 "Smaller").

  hostile_names.py gen DIR     writes checkpoints whose tensor names, record names, shard
                               names and file names hold OSC, CSI, NUL, newline, C1 (U+009B,
                               U+0085), bidi overrides (U+202E, U+2066) and invalid UTF-8:
                               safetensors, a torch zip, a sharded index
  hostile_names.py check DIR   checks every *.txt under DIR holds no byte sequence a terminal
                               would act on, and every *.json parses as strict JSON (no bare
                               NaN or Infinity); prints one line per defect, exit 1 if any

Standard library only (safetensors files through tests/lib/stwrite.py; the torch zip is built byte by byte by tests/interop/make_ambiguous.py's
helpers, nothing here runs a pickle).
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import make_ambiguous as ma  # noqa: E402
import stwrite  # noqa: E402

EVIL = [
    "osc\x1b]0;pwned\x07.w",        # OSC: sets the window title
    "csi\x1b[2J\x1b[31m.w",         # CSI: clears the screen, red
    "nul\x00hidden.w",              # NUL inside a name
    "new\nline.w",                  # a newline that would forge an output line
    "c1\u009b31m.w",                # C1 CSI (8-bit terminals)
    "nel\u0085x.w",                 # C1 NEL (a newline for some terminals)
    "bidi\u202egnp.exe.w",          # right-to-left override
    "iso\u2066x\u2069.w",           # bidi isolate
    "*",                            # glob metacharacter: must not allow everything
    "q'uote\\back.w",
]


def st_bytes(entries, meta=None):
    """entries: [(name str, dtype, numel)], data all zero"""
    size = {"F32": 4, "F16": 2, "BF16": 2}
    return stwrite.build([(name, dt, [n], bytes(size[dt] * n)) for name, dt, n in entries],
                         meta or None, separators=(",", ":"))


def entries():
    # a big F16 tensor makes F16 dominant: every hostile F32 name is a finding
    return [("base.big", "F16", 64)] + [(n, "F32", 1) for n in EVIL]


def gen(d):
    os.makedirs(d, exist_ok=True)
    bd = os.fsencode(d)
    # safetensors, with hostile metadata too, under a hostile file name (invalid UTF-8 0x9b)
    meta = {"k\x1b[31m": "v\u202e\x1b]0;x\x07"}
    with open(os.path.join(bd, b"st\x1b[31m\x9b\xc2\x85.safetensors"), "wb") as f:
        f.write(st_bytes(entries(), meta))
    # a second one for diff: the dtypes of the hostile names changed
    with open(os.path.join(bd, b"st2.safetensors"), "wb") as f:
        f.write(st_bytes([("base.big", "F16", 64)] + [(n, "F16", 1) for n in EVIL]))
    # a torch zip (archive prefix with an OSC sequence), one storage per tensor
    items, recs = [], []
    for k, name in enumerate(EVIL):
        items.append((name, ma.tensor("FloatStorage", str(k), 1, [1])))
        recs.append(("data/%d" % k, b"\0" * 4))
    items.append(("base.big", ma.tensor("HalfStorage", "big", 64, [64])))
    recs.append(("data/big", b"\0" * 128))
    pkl = ma.sdict(items)
    z = ma.tzip([("data.pkl", pkl)] + recs + [("version", b"3\n")], prefix="archive")
    with open(os.path.join(bd, b"tz\x1b[2J.pt"), "wb") as f:
        f.write(z)
    # the same under an archive prefix holding an OSC sequence (refused or read, never raw)
    z = ma.tzip([("data.pkl", pkl)] + recs + [("version", b"3\n")], prefix="ar\x1b]0;t\x07ch")
    with open(os.path.join(bd, b"tz-prefix.pt"), "wb") as f:
        f.write(z)
    # a torch zip refused for case-colliding record names that hold controls: the error
    # line pastes names from the directory listing
    z = ma.tzip([("data.pkl", pkl), ("E\x1b[31m", b"x"), ("e\x1b[31m", b"y"),
                 ("version", b"3\n")], prefix="archive")
    with open(os.path.join(bd, b"refuse-zip.pt"), "wb") as f:
        f.write(z)
    # a sharded index: hostile names in the weight map, one of them in no shard, and a
    # weight-map entry naming a missing shard with controls in its name
    idx = os.path.join(bd, b"idx")
    os.makedirs(idx, exist_ok=True)
    half = len(EVIL) // 2
    groups = [entries()[: half + 1], entries()[half + 1:]]
    wm = {}
    for k, ents in enumerate(groups):
        fn = "model-%05d-of-00002.safetensors" % (k + 1)
        with open(os.path.join(idx, fn.encode()), "wb") as f:
            f.write(st_bytes(ents))
        for n, _, _ in ents:
            wm[n] = fn
    wm["ghost\x1b[31m\u009b.w"] = "model-00001-of-00002.safetensors"
    with open(os.path.join(idx, b"model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": wm}, f)
    bad = os.path.join(bd, b"idx-missing")
    os.makedirs(bad, exist_ok=True)
    with open(os.path.join(bad, b"model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": {"a\x1b[31m": "sh\x1b]0;x\x07\u202e.safetensors"}}, f)


# Sequences a terminal acts on: C0 other than newline and tab, DEL, C1 (raw or UTF-8
# encoded), bidi and zero-width formatting characters, and any invalid UTF-8.
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e"
                    "\u2060-\u2069\ufeff\ufff9-\ufffb]")


def check(d):
    bad = 0
    for name in sorted(os.listdir(d)):
        path = os.path.join(d, name)
        raw = open(path, "rb").read()
        if name.endswith(".txt"):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                print("%s: invalid UTF-8 at byte %d: %r" % (name, e.start, raw[max(0, e.start - 20):e.start + 20]))
                bad += 1
                continue
            m = UNSAFE.search(text)
            if m:
                print("%s: raw %r at %d: %r" % (name, m.group(), m.start(), text[max(0, m.start() - 30):m.start() + 30]))
                bad += 1
        elif name.endswith(".json") and raw:  # empty: a refusal (exit 2), checked by the script
            def no_const(c):
                raise ValueError("bare " + c)
            try:
                json.loads(raw.decode("utf-8"), parse_constant=no_const)
            except Exception as e:  # noqa: BLE001
                print("%s: not strict JSON: %s" % (name, e))
                bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("gen", "check"):
        sys.exit(__doc__)
    if sys.argv[1] == "gen":
        gen(sys.argv[2])
    else:
        sys.exit(check(sys.argv[2]))

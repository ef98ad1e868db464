#!/usr/bin/env python3
"""Writes checkpoints that readers could disagree on (issue 11, "Security"), one per
class, into DIR. Standard library only: the files are built byte by byte, never by
torch, so nothing here runs a pickle. Each file name says what dtaudit must do:
  refuse-*   exit 2 (one line naming the file and the defect)
  unsafe-*   exit 1 with an unsafe-pickle finding naming the global in the name
  ok-*       read, exit 0 (reported exactly as torch loads it)
Used by tests/cli/hardening.sh and tests/interop/differential.py.

usage: make_ambiguous.py DIR [--big]   (--big adds the 67 MB safetensors case)
"""
import io
import os
import struct
import sys
import zipfile
import zlib

MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19\x2e"
PROTO = b"\x80\x02M\xe9\x03."


def g(mod, name):
    return b"c" + mod.encode() + b"\n" + name.encode() + b"\n"


def s(text):
    b = text.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def i(v):
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if 0 <= v < 65536:
        return b"M" + struct.pack("<H", v)
    return b"J" + struct.pack("<i", v)


def tup(items):
    return b"(" + b"".join(items) + b"t"


def tensor(cls, key, numel, size, legacy=False, view=None, v3dtype=None):
    """REDUCE(_rebuild_tensor_v2/v3, (pid, 0, size, stride, False, OrderedDict()[, dtype]))"""
    stride, acc = [], 1
    for d in reversed(size):
        stride.insert(0, acc)
        acc *= d
    pid = [s("storage"), g("torch.storage", "UntypedStorage") if v3dtype else g("torch", cls),
           s(key), s("cpu"), i(numel)]
    if legacy:
        pid.append(b"N" if view is None else tup([s(view[0]), i(view[1]), i(view[2])]))
    args = [tup(pid) + b"Q", i(0), tup([i(d) for d in size]), tup([i(d) for d in stride]),
            b"\x89", g("collections", "OrderedDict") + b")R"]
    if v3dtype:
        args.append(g("torch", v3dtype))
    fn = "_rebuild_tensor_v3" if v3dtype else "_rebuild_tensor_v2"
    return g("torch._utils", fn) + tup(args) + b"R"


def sdict(items):
    return b"\x80\x02}(" + b"".join(s(k) + v for k, v in items) + b"u."


SYS_INFO = (b"\x80\x02}(" + s("protocol_version") + i(1001) + s("little_endian") + b"\x88" +
            s("type_sizes") + b"}(" + s("short") + i(2) + s("int") + i(4) + s("long") + i(8) +
            b"uu.")


def legacy(main, storages, magic=MAGIC, proto=PROTO, sys_info=SYS_INFO, keys=None, tail=b""):
    """storages: [(key, count, raw bytes)] in key-list order"""
    if keys is None:
        keys = b"\x80\x02](" + b"".join(s(k) for k, _, _ in storages) + b"e."
    out = magic + proto + sys_info + main + keys
    for _, count, raw in storages:
        out += struct.pack("<q", count) + raw
    return out + tail


def tzip(records, prefix="archive", method=zipfile.ZIP_STORED):
    """records: [(name under prefix, bytes)]; data.pkl first, version last as torch does"""
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", method) as z:
        for name, data in records:
            z.writestr(zipfile.ZipInfo(prefix + "/" + name), data, compress_type=method)
    return b.getvalue()


def half_pair():
    return struct.pack("<2e", 1.0, 2.0)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    files = {}

    # -- a plain good zip and a good legacy file (controls)
    good_pkl = sdict([("w", tensor("HalfStorage", "0", 2, [2]))])
    good = tzip([("data.pkl", good_pkl), ("data/0", half_pair()), ("version", b"3\n")])
    files["ok-zip.pt"] = good
    files["ok-legacy.pt"] = legacy(sdict([("w", tensor("HalfStorage", "k1", 2, [2], legacy=True))]),
                                   [("k1", 2, half_pair())])

    # -- a legacy stream followed by a zip: torch reads the legacy stream (first bytes),
    #    a zip reader the archive
    evil_pkl = sdict([("w", tensor("FloatStorage", "0", 1, [1]))])
    files["refuse-legacy-then-zip.pt"] = files["ok-legacy.pt"] + tzip(
        [("data.pkl", evil_pkl), ("data/0", b"\0" * 4), ("version", b"3\n")])
    # -- a pickle (not torch's magic) in front of a zip: torch unpickles the preamble
    files["refuse-preamble-pickle-then-zip.pt"] = (
        b"\x80\x02" + g("builtins", "len") + s("x") + b"\x85R." + good)

    # -- unsafe globals in each of the legacy stream's side pickles (torch unpickles all)
    call = g("builtins", "len") + s("xyz") + b"\x85R0"  # call, then POP the result
    lm = sdict([("w", tensor("HalfStorage", "k1", 2, [2], legacy=True))])
    st = [("k1", 2, half_pair())]
    files["unsafe-magic-builtins.len.pt"] = legacy(lm, st, magic=MAGIC[:-1] + call + b".")
    files["unsafe-protocol-builtins.len.pt"] = legacy(lm, st, proto=PROTO[:-1] + call + b".")
    files["unsafe-sysinfo-builtins.len.pt"] = legacy(lm, st, sys_info=SYS_INFO[:-1] + call + b".")
    files["unsafe-keys-builtins.len.pt"] = legacy(
        lm, st, keys=b"\x80\x02](" + s("k1") + b"e" + call + b".")

    # -- one storage key under two storage classes of the same width
    conflict = sdict([("a", tensor("HalfStorage", "0", 2, [2])),
                      ("b", tensor("BFloat16Storage", "0", 2, [2]))])
    files["refuse-zip-key-two-dtypes.pt"] = tzip(
        [("data.pkl", conflict), ("data/0", half_pair()), ("version", b"3\n")])
    lconf = sdict([("a", tensor("HalfStorage", "k1", 2, [2], legacy=True)),
                   ("b", tensor("BFloat16Storage", "k1", 2, [2], legacy=True))])
    files["refuse-legacy-key-two-dtypes.pt"] = legacy(lconf, st)
    # same key, typed and untyped (v3) storage
    mixed = sdict([("a", tensor("HalfStorage", "0", 2, [2])),
                   ("b", tensor(None, "0", 4, [2], v3dtype="bfloat16"))])
    files["refuse-zip-key-typed-and-untyped.pt"] = tzip(
        [("data.pkl", mixed), ("data/0", half_pair()), ("version", b"3\n")])
    # same key, same class, two sizes
    twosize = sdict([("a", tensor("HalfStorage", "0", 2, [2])),
                     ("b", tensor("HalfStorage", "0", 1, [1]))])
    files["refuse-zip-key-two-sizes.pt"] = tzip(
        [("data.pkl", twosize), ("data/0", half_pair()), ("version", b"3\n")])

    for name, data in files.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)

    if "--big" in sys.argv:
        # a valid safetensors file whose header length (0x04034B50) reads "PK\3\4"
        n = 0x04034B50
        h = b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}'
        with open(os.path.join(d, "ok-safetensors-pk-header.safetensors"), "wb") as f:
            f.write(struct.pack("<Q", n) + h + b" " * (n - len(h)) + b"\x07")


if __name__ == "__main__":
    main()

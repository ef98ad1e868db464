#!/usr/bin/env python3
"""Writes checkpoints that readers could disagree on (issue 11, "Security"), one per
class, into DIR. Standard library only: the files are built byte by byte, never by
torch, so nothing here runs a pickle. Each file name says what dtaudit must do:
  refuse-*   exit 2 (one line naming the file and the defect)
  unsafe-*   exit 1 with an unsafe-pickle finding naming the global in the name
  ok-*       read, exit 0 (reported exactly as torch loads it)
  warn-*     read, exit 1 with a warning finding only
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
        for rec in records:
            name, data = rec[0], rec[1]
            z.writestr(zipfile.ZipInfo(prefix + "/" + name), data,
                       compress_type=rec[2] if len(rec) > 2 else method)
    return b.getvalue()


def zparts(records, base=0, local_names=None):
    """Stored records laid out from file offset base: (local bytes, central entries, count).
    local_names: names written in the local headers instead (index -> name)."""
    loc, cen = b"", b""
    for k, (name, data) in enumerate(records):
        nb = name.encode()
        lnb = (local_names or {}).get(k, name).encode()
        crc = zlib.crc32(data)
        off = base + len(loc)
        loc += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0, crc, len(data), len(data),
                           len(lnb), 0) + lnb + data
        cen += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0, crc, len(data),
                           len(data), len(nb), 0, 0, 0, 0, 0, off) + nb
    return loc, cen, len(records)


def eocd(count, cd_size, cd_off, comment=b""):
    return struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, cd_size, cd_off,
                       len(comment)) + comment


def rawzip(records, local_names=None, tail=b""):
    loc, cen, n = zparts(records, 0, local_names)
    return loc + cen + eocd(n, len(cen), len(loc)) + tail


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

    # -- zip directory differentials
    gpkl, epkl = good_pkl, sdict([("w", tensor("FloatStorage", "0", 1, [1]))])
    grec = [("archive/data.pkl", gpkl), ("archive/data/0", half_pair()), ("archive/version", b"3\n")]
    erec = [("archive/data.pkl", epkl), ("archive/data/0", b"\0" * 4), ("archive/version", b"3\n")]
    files["ok-rawzip.pt"] = rawzip(grec)
    # two end records, the second (pointing at another directory) in the first's comment
    gl, gc, gn = zparts(grec, 0)
    el, ec, en = zparts(erec, len(gl))
    cd2 = len(gl) + len(el) + len(gc)
    inner = ec + eocd(en, len(ec), cd2 + 22)
    files["refuse-zip-two-eocd.pt"] = gl + el + gc + eocd(gn, len(gc), len(gl) + len(el), inner)
    # names equal but for case: torch's lookup ignores case, libzip's does not
    files["refuse-zip-case-collision.pt"] = rawzip(
        [("archive/DATA.PKL", epkl)] + grec)
    files["refuse-zip-duplicate-name.pt"] = rawzip(
        [("archive/data.pkl", epkl)] + grec)
    # bytes after the end record
    files["refuse-zip-trailing-bytes.pt"] = rawzip(grec, tail=b"\0" * 16)
    # an entry outside the archive directory
    files["refuse-zip-outside-prefix.pt"] = rawzip(grec + [("other/data.pkl", epkl)])
    # first entry not in a directory
    files["refuse-zip-no-directory.pt"] = rawzip([("data.pkl", gpkl), ("version", b"3\n")])
    # the local header of data.pkl names another file
    files["refuse-zip-local-name-differs.pt"] = rawzip(grec, local_names={0: "archive/data.pkz"})
    # two central entries sharing one record's bytes (overlap)
    ol, oc, on = zparts(grec, 0)
    extra = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0, 0, 4, 4, 16, 0, 0, 0,
                        0, 0, 0) + b"archive/extra000"
    files["refuse-zip-overlapping-records.pt"] = ol + oc + extra + eocd(on + 1, len(oc) + len(extra), len(ol))
    # a deflated data.pkl that inflates far past its compressed size (a zip bomb): the
    # pickle is padded with NOPs it never reaches (after STOP)
    bomb = gpkl + b"\0" * (64 << 20)
    files["refuse-zip-bomb-pickle.pt"] = tzip(
        [("data.pkl", bomb), ("data/0", half_pair()), ("version", b"3\n")],
        method=zipfile.ZIP_DEFLATED)
    # deflated records are read (a warning: torch.load(mmap=True) cannot)
    files["warn-zip-deflated.pt"] = tzip(
        [("data.pkl", gpkl), ("data/0", half_pair()), ("version", b"3\n")],
        method=zipfile.ZIP_DEFLATED)

    # an extra deflated record of 256 MiB of zeros (about 256 KB compressed): audit never
    # reads it; convert copies it and must stream it, and refuse it as a bomb
    files["ok-zip-extra-deflated-bomb.pt"] = tzip(
        [("data.pkl", gpkl), ("data/0", half_pair()), ("extra.bin", b"\0" * (256 << 20), zipfile.ZIP_DEFLATED),
         ("version", b"3\n")])

    # -- "billion laughs": 40 nested lists, each holding the previous one twice, under one
    #    tensor: 2^40 paths to walk from a few hundred bytes
    laughs = b"\x80\x02}" + s("w") + tensor("HalfStorage", "0", 2, [2]) + b"q\x00"
    for k in range(40):
        laughs += b"](h" + bytes([k]) + b"h" + bytes([k]) + b"eq" + bytes([k + 1]) + b"0"
    laughs += b"h\x28\x86s."  # {'w': (tensor, list40)}
    # -- a dict key whose repr (the tensor's name) is 100^5 times a 100-byte string
    kr = b"\x80\x02}" + s("A" * 100) + b"q\x00" + b"0"
    for k in range(5):
        kr += b"(" + (b"h" + bytes([k])) * 100 + b"tq" + bytes([k + 1]) + b"0"
    kr += b"h\x05" + tensor("HalfStorage", "0", 2, [2]) + b"s."
    files["refuse-pickle-key-repr.pt"] = tzip(
        [("data.pkl", kr), ("data/0", half_pair()), ("version", b"3\n")])
    files["refuse-pickle-laughs.pt"] = tzip(
        [("data.pkl", laughs), ("data/0", half_pair()), ("version", b"3\n")])

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

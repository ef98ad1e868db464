"""Safetensors files for tests, written and read without the safetensors package: the one
helper the CLI test scripts and generators share (tests/cli/*.sh through tests/lib/pyserve.py,
tests/cli/hostile_names.py).

The layout (docs/formats.md): an 8-byte little-endian header length, the JSON header
padded with spaces to a multiple of 8, then the tensor data; each tensor's data_offsets are
relative to the start of the data."""

import json
import struct

# struct codes of the dtypes tests write from Python numbers (BF16 and the F8 types are
# given as raw integers of their bit patterns)
CODES = {"F64": "d", "F32": "f", "F16": "e", "BF16": "H", "I64": "q", "I32": "i", "I16": "h",
         "I8": "b", "U8": "B", "BOOL": "?", "F8_E4M3": "B", "F8_E5M2": "B"}


def pack(dtype, values):
    """values (numbers, or raw bit patterns for BF16 / F8) as little-endian dtype bytes."""
    return struct.pack("<%d%s" % (len(values), CODES[dtype]), *values)


def encode_header(header, separators=None):
    """The length prefix and the padded JSON text of header (a dict, kept in its order)."""
    text = json.dumps(header, separators=separators).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def build(tensors, metadata=None, separators=None):
    """File bytes for tensors: (name, dtype, shape, data) tuples, data laid out in order."""
    header, data, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        data.append(raw)
        off += len(raw)
    return encode_header(header, separators) + b"".join(data)


def write(path, tensors, metadata=None, separators=None):
    with open(path, "wb") as f:
        f.write(build(tensors, metadata, separators))


def write_values(path, tensors, metadata=None):
    """tensors: {name: [floats]} (F32, 1-D) or {name: (dtype, [values])} (1-D)."""
    items = []
    for name, v in tensors.items():
        dtype, values = v if isinstance(v, tuple) else ("F32", v)
        items.append((name, dtype, [len(values)], pack(dtype, values)))
    write(path, items, metadata)


def read_header(path):
    """(header dict, data offset) of a safetensors file."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)), 8 + n


def load(path):
    """{name: (dtype, shape, raw bytes)} of a safetensors file (without __metadata__)."""
    header, start = read_header(path)
    with open(path, "rb") as f:
        raw = f.read()
    header.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], raw[start + v["data_offsets"][0]:start + v["data_offsets"][1]])
            for k, v in header.items()}

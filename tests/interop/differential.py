#!/usr/bin/env python3
"""Differential test (issue 11): for every file tests/interop/make_ambiguous.py writes,
dtaudit must either refuse it (exit 2) or report exactly the tensors torch.load builds
(names and dtypes), and flag (unsafe-pickle) every global outside torch that torch.load
would import and call.

torch runs with a recording pickle module: its Unpickler resolves torch.* and
collections.* normally and replaces every other global by an inert stub that is never the
real callable, so nothing a file names is ever run; the recorder lists every global torch
asked for. Skips (exit 77, with a message) when torch cannot be imported.

usage: differential.py DTAUDIT [PYTHON-FOR-GENERATOR]
"""
import json
import os
import pickle as _pickle
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REAL = ("torch", "collections")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    dtaudit = sys.argv[1]
    try:
        import torch
    except Exception as e:  # noqa: BLE001 - any import failure means "no torch"
        print(f"SKIP: torch is not importable ({e.__class__.__name__}: {e}); differential test not run")
        return 77

    class Recorder:
        """A pickle module for torch.load(pickle_module=...)."""
        seen = []

        class Unpickler(_pickle.Unpickler):
            def find_class(self, mod, name):
                Recorder.seen.append(f"{mod}.{name}")
                if mod.split(".")[0] in REAL:
                    return super().find_class(mod, name)

                def stub(*args, **kwargs):  # never the real global
                    return None
                return stub

        @staticmethod
        def load(f, **kw):
            return Recorder.Unpickler(f, **kw).load()

    class PickleProxy:
        """The real pickle module but for Unpickler and load (torch 1.13's torch.load
        replaces any pickle_module by torch.serialization.pickle when weights_only is
        False, so the recorder goes there too)."""
        Unpickler = Recorder.Unpickler
        load = staticmethod(Recorder.load)

        def __getattr__(self, name):
            return getattr(_pickle, name)

    import torch.serialization as ser

    def torch_view(path):
        Recorder.seen = []
        saved = ser.pickle
        ser.pickle = PickleProxy()
        try:
            obj = torch.load(path, map_location="cpu", pickle_module=ser.pickle, weights_only=False)
            err = None
        except Exception as e:  # noqa: BLE001 - torch refusing is an outcome, not a failure
            obj, err = None, f"{e.__class__.__name__}: {str(e)[:120]}"
        finally:
            ser.pickle = saved
        ran = sorted({g for g in Recorder.seen if g.split(".")[0] not in REAL})
        return obj, err, ran

    def flat(obj, prefix=""):
        out = {}
        if isinstance(obj, torch.Tensor):
            out[prefix] = obj.dtype
        elif isinstance(obj, dict):
            for k, v in obj.items():
                out.update(flat(v, f"{prefix}.{k}" if prefix else str(k)))
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                out.update(flat(v, f"{prefix}.{i}" if prefix else str(i)))
        return out

    names = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32",
             torch.float64: "F64", torch.uint8: "U8", torch.int64: "I64"}
    fails = checked = refused = 0
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, os.path.join(HERE, "make_ambiguous.py"), d], check=True)
        for base in sorted(os.listdir(d)):
            path = os.path.join(d, base)
            r = subprocess.run([dtaudit, "audit", "--format", "json", path], capture_output=True,
                               text=True)
            obj, terr, ran = torch_view(path)
            checked += 1
            loaded = "" if terr else " " + ",".join(
                f"{k}:{names.get(v, str(v))}" for k, v in sorted(flat(obj).items())[:4]) \
                if not base.startswith("refuse-pickle") else " (graph not walked)"
            what = f"torch: {'error ' + terr if terr else 'loaded' + loaded}; ran {ran or 'nothing'}"
            if r.returncode == 2:
                refused += 1
                print(f"ok   {base}: dtaudit refused ({r.stderr.strip()[:100]}...); {what}")
                continue
            if r.returncode not in (0, 1):
                print(f"FAIL {base}: dtaudit exit {r.returncode}: {r.stderr.strip()}")
                fails += 1
                continue
            rep = json.loads(r.stdout)
            flagged = {f.get("module") for f in rep["findings"] if f["rule"] == "unsafe-pickle"}
            missing = [g for g in ran if g not in flagged]
            if missing:
                print(f"FAIL {base}: torch would call {missing}, dtaudit did not flag them")
                fails += 1
                continue
            if terr is None:
                want = {k: names.get(v, str(v)) for k, v in flat(obj).items()}
                got = {t["name"]: t["dtype"] for t in rep["tensors"]}
                if want != got:
                    print(f"FAIL {base}: torch loads {want}, dtaudit reports {got}")
                    fails += 1
                    continue
            print(f"ok   {base}: dtaudit exit {r.returncode}, flagged {sorted(flagged) or 'nothing'}; {what}")
    print(f"{checked} files, {refused} refused by dtaudit, {fails} disagreements (torch {torch.__version__})")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())

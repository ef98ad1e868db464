#!/usr/bin/env python3
"""Regenerates the transformers part of data/intended.json from a transformers source tree.

Offline: it reads files, it imports nothing from transformers. Usage:

    scripts/gen-intended-transformers.py TRANSFORMERS_SRC [data/intended.json]

TRANSFORMERS_SRC is the directory that holds the `transformers` package (a git checkout's
`src/`, or an unpacked wheel: `unzip transformers-X.whl 'transformers/*' -d tf`), or the
package directory itself. Every `models/*/modeling_*.py` is parsed with `ast`; each class
that assigns `_keep_in_fp32_modules` or `_keep_in_fp32_modules_strict` a list of strings
gives one rule per (model_type, list):

  * `_keep_in_fp32_modules_strict` -> "when": "half" (transformers keeps the modules in
    float32 for float16 and bfloat16 loads, since v4.53.0);
  * `_keep_in_fp32_modules`        -> "when": "fp16" (float16 loads only; quantizers also
    leave these modules unquantized).

A class's model_type is the `model_type` of its config class (the `config: XConfig`
annotation or `config_class = XConfig` in the class or a base class of the same file),
found in the configuration_*.py files. `None` / `[]` overrides (which only cut inheritance)
give no rule. The rules written keep "origin": "transformers"; every other rule of the data
file (hand-curated, diffusers, universal) is kept as it is, and sources.transformers records
the version read (transformers/__init__.py __version__).
"""
import ast
import json
import os
import re
import sys


def find_pkg(root):
    for cand in (root, os.path.join(root, "transformers"), os.path.join(root, "src", "transformers")):
        if os.path.isfile(os.path.join(cand, "__init__.py")) and os.path.isdir(os.path.join(cand, "models")):
            return cand
    sys.exit("gen-intended-transformers: %s holds no transformers package" % root)


def version_of(pkg):
    with open(os.path.join(pkg, "__init__.py"), encoding="utf-8") as f:
        m = re.search(r'^__version__\s*=\s*"([^"]+)"', f.read(), re.M)
    return m.group(1) if m else "unknown"


def str_list(node):
    """['a', 'b'] -> list of str; None / [] / anything else -> None."""
    if isinstance(node, (ast.List, ast.Tuple)) and node.elts and all(
            isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
        return [e.value for e in node.elts]
    return None


def config_model_types(pkg):
    """ConfigClassName -> model_type, over every configuration_*.py."""
    out = {}
    models = os.path.join(pkg, "models")
    for d in sorted(os.listdir(models)):
        p = os.path.join(models, d)
        if not os.path.isdir(p):
            continue
        for fn in sorted(os.listdir(p)):
            if not (fn.startswith("configuration_") and fn.endswith(".py")):
                continue
            try:
                tree = ast.parse(open(os.path.join(p, fn), encoding="utf-8").read())
            except SyntaxError:
                continue
            for cls in tree.body:
                if not isinstance(cls, ast.ClassDef):
                    continue
                for st in cls.body:
                    tgt = st.targets[0] if isinstance(st, ast.Assign) and len(st.targets) == 1 else \
                        st.target if isinstance(st, ast.AnnAssign) else None
                    if isinstance(tgt, ast.Name) and tgt.id == "model_type" and \
                            isinstance(st.value, ast.Constant) and isinstance(st.value.value, str):
                        out[cls.name] = st.value.value
    return out


def class_config(cls):
    for st in cls.body:
        if isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name) and st.target.id == "config" \
                and isinstance(st.annotation, ast.Name):
            return st.annotation.id
        if isinstance(st, ast.Assign) and len(st.targets) == 1 and isinstance(st.targets[0], ast.Name) \
                and st.targets[0].id == "config_class" and isinstance(st.value, ast.Name):
            return st.value.id
    return None


def scan(pkg):
    cfg = config_model_types(pkg)
    rules = {}  # (model_type, strict) -> {"patterns": [...], "classes": [...], "files": [...]}
    models = os.path.join(pkg, "models")
    for d in sorted(os.listdir(models)):
        p = os.path.join(models, d)
        if not os.path.isdir(p):
            continue
        for fn in sorted(os.listdir(p)):
            if not (fn.startswith("modeling_") and fn.endswith(".py")):
                continue
            src = open(os.path.join(p, fn), encoding="utf-8").read()
            if "_keep_in_fp32_modules" not in src:
                continue
            tree = ast.parse(src)
            classes = {c.name: c for c in tree.body if isinstance(c, ast.ClassDef)}

            def model_type(c, seen=()):
                name = class_config(c)
                if name:
                    return cfg.get(name)
                for b in c.bases:
                    if isinstance(b, ast.Name) and b.id in classes and b.id not in seen:
                        mt = model_type(classes[b.id], seen + (c.name,))
                        if mt:
                            return mt
                return None

            for c in classes.values():
                for st in c.body:
                    if not (isinstance(st, ast.Assign) and len(st.targets) == 1 and
                            isinstance(st.targets[0], ast.Name) and
                            st.targets[0].id in ("_keep_in_fp32_modules", "_keep_in_fp32_modules_strict")):
                        continue
                    pats = str_list(st.value)
                    if not pats:
                        continue  # None / [] overrides only cut inheritance
                    strict = st.targets[0].id.endswith("_strict")
                    mt = model_type(c) or d
                    r = rules.setdefault((mt, strict), {"patterns": [], "classes": [], "where": []})
                    for x in pats:
                        if x not in r["patterns"]:
                            r["patterns"].append(x)
                    r["classes"].append(c.name)
                    r["where"].append("src/transformers/models/%s/%s L%d" % (d, fn, st.lineno))
    return rules


def make_rules(rules, version):
    out = []
    for (mt, strict) in sorted(rules):
        r = rules[(mt, strict)]
        attr = "_keep_in_fp32_modules_strict" if strict else "_keep_in_fp32_modules"
        out.append({
            "id": "transformers.%s.%s" % (mt, "strict" if strict else "fp16"),
            "origin": "transformers",
            "match": {"model_type": [mt]},
            "patterns": r["patterns"],
            "dtypes": ["F32"],
            "when": "half" if strict else "fp16",
            "kind": "declared-upcast",
            "why": "transformers %s of %s: from_pretrained keeps these modules in float32 for %s loads"
                   % (attr, ", ".join(sorted(set(r["classes"]))),
                      "float16 and bfloat16" if strict else "float16"),
            "evidence": sorted(set(r["where"])),
            "since": "transformers 4.53.0" if strict else "transformers 4.26.0",
            "read": "transformers %s" % version,
        })
    return out


def dump_rule(r):
    return json.dumps(r, ensure_ascii=False, separators=(", ", ": "))


def write_data(path, doc):
    """One rule per line: diffs of a regenerated table stay readable."""
    head = {k: v for k, v in doc.items() if k != "rules"}
    text = json.dumps(head, indent=2, ensure_ascii=False)
    assert text.endswith("\n}")
    lines = [text[:-2] + ',\n  "rules": [']
    for i, r in enumerate(doc["rules"]):
        lines.append("    " + dump_rule(r) + ("," if i + 1 < len(doc["rules"]) else ""))
    lines.append("  ]\n}\n")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    os.replace(path + ".tmp", path)


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    pkg = find_pkg(sys.argv[1])
    data = sys.argv[2] if len(sys.argv) == 3 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "data", "intended.json")
    version = version_of(pkg)
    gen = make_rules(scan(pkg), version)
    with open(data, encoding="utf-8") as f:
        doc = json.load(f)
    kept = [r for r in doc.get("rules", []) if r.get("origin") != "transformers"]
    doc.setdefault("sources", {})["transformers"] = {
        "version": version,
        "generated_by": "scripts/gen-intended-transformers.py",
        "rules": len(gen),
    }
    doc["rules"] = kept + gen
    write_data(data, doc)
    print("gen-intended-transformers: transformers %s: %d rules written to %s (%d other rules kept)"
          % (version, len(gen), data, len(kept)))


if __name__ == "__main__":
    main()

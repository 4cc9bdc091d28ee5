"""ONNX import, last step: the statements collected by the walk -> `.dl` text (dead values
dropped, single-use chains joined into `->` pipelines) and the parameters under the spec's
state_dict keys."""

from __future__ import annotations

import re

import numpy as np

from dslc.onnx_import_core import Importer, Stmt

_IDENT = re.compile(r"(?<![\w.\"])([A-Za-z_]\w*)")
_WRAP = 96


def _refs(text: str, defined: set[str]) -> list[str]:
    """Variables a piece of spec text reads (`x`, and `x` of `x.shape[1]`)."""
    return [m for m in _IDENT.findall(_strip_strings(text)) if m in defined]


def _strip_strings(text: str) -> str:
    return re.sub(r'"[^"]*"', '""', text)


def _live(stmts: list[Stmt], outputs: list[str], defined: set[str]) -> list[Stmt]:
    need = set(outputs)
    keep = []
    for st in reversed(stmts):
        if not need & set(st.targets):
            continue
        keep.append(st)
        need |= set(_refs(st.expr, defined))
        if st.first:
            need.add(st.first)
    return keep[::-1]


def _stage(st: Stmt) -> str:
    return st.expr + (f" as {st.label}" if st.label else "")


def _chains(stmts: list[Stmt], outputs: list[str], defined: set[str]) -> list[tuple[str, list]]:
    """Join a statement into the next when its only use is as the next one's piped input."""
    uses: dict[str, int] = {}
    for st in stmts:
        for r in _refs(st.expr, defined) + ([st.first] if st.first else []):
            uses[r] = uses.get(r, 0) + 1
    for o in outputs:
        uses[o] = uses.get(o, 0) + 1
    lines: list[tuple[str, list]] = []  # (targets text, [head, stage, stage, ...])
    for i, st in enumerate(stmts):
        if st.meta.get("raw"):
            lines.append(("", st.meta["raw"]))
            continue
        head_is_prev = (
            lines and st.first is not None and len(stmts[i - 1].targets) == 1
            and not stmts[i - 1].meta.get("raw")
            and stmts[i - 1].targets[0] == st.first and uses.get(st.first, 0) == 1)
        if head_is_prev:
            lines[-1] = (", ".join(st.targets), lines[-1][1] + [_stage(st)])
        elif st.first is not None:
            lines.append((", ".join(st.targets), [st.first, _stage(st)]))
        else:
            lines.append((", ".join(st.targets), [_stage(st)]))
    return lines


def _format(targets: str, parts: list[str]) -> list[str]:
    if not targets:  # written already (a repeat)
        return parts
    one = f"  {targets} = " + " -> ".join(parts)
    if len(one) <= _WRAP and len(parts) <= 4:
        return [one]
    out = [f"  {targets} = {parts[0]}"]
    out += [f"      -> {p}" for p in parts[1:]]
    return out


def write_spec(imp: Importer, outputs: list[tuple[str, str]]) -> tuple[str, dict]:
    out_vars = [v for _, v in outputs]
    defined = {v for v, _ in imp.inputs} | {t for st in imp.stmts for t in st.targets}
    defined |= {c.split(":")[0].split()[1] for c in imp.consts}
    stmts = _live(imp.stmts, out_vars, defined)
    stmts, outputs = _name_outputs(imp, stmts, outputs, defined)
    out_vars = [v for _, v in outputs]
    defined = {v for v, _ in imp.inputs} | {t for st in stmts for t in st.targets} | {
        c.split(":")[0].split()[1] for c in imp.consts}
    from dslc.onnx_import_blocks import find_repeats

    blocks, body = find_repeats(imp, stmts, out_vars, defined)
    from dslc.onnx_import_nested import find_nested

    nested, body = find_nested(imp, body, out_vars, defined)
    blocks += nested
    params: dict[str, np.ndarray] = {}
    lines = [f"# Imported from {_file_name(imp.path)} by `dslc import` ({_producer(imp)}).",
             "# Its parameters are the .npz written with it: dslc run --params FILE.npz", ""]
    lines += imp.extra_blocks  # the cells of imported loops (onnx_import_loop)
    for blk in blocks:
        head = f"({', '.join(blk.hparams)})" if blk.hparams else ""
        lines.append(f"block {blk.name}{head} {{")
        lines.append(f"  input {blk.input}{blk.input_type}")
        lines += [f"  input {name}{typed}" for name, typed in blk.extras]
        for targets, parts in _chains(blk.stmts, [blk.output], defined):
            lines += _format(targets, parts)
        lines.append(f"  output {blk.output}")
        lines += ["}", ""]
    lines.append(f"model {imp.model_name} {{")
    for _, decl in imp.inputs:
        lines.append(f"  {decl}")
    used = set()
    for st in body:
        used |= set(_refs(st.expr, defined)) | ({st.first} if st.first else set())
    for c in imp.consts:
        if c.split(":")[0].split()[1] in used | set(out_vars):
            lines.append(f"  {c}")
    for targets, parts in _chains(body, out_vars, defined):
        lines += _format(targets, parts)
    for st in body:
        if st.label and st.params:
            prefix = st.extra_prefix if hasattr(st, "extra_prefix") else st.label
            for k, v in st.params.items():
                params[f"{prefix}.{k}"] = v
        for key, v in st.meta.get("block_params", {}).items():
            params[key] = v
    seen: set[str] = set()
    for (onnx_name, var) in outputs:
        if var in seen or var in {v for v, _ in imp.inputs}:
            name = imp.fresh(onnx_name)
            lines.append(f"  output {name} = {var}")
        else:
            lines.append(f"  output {var}")
        seen.add(var)
    lines.append("}")
    return "\n".join(lines) + "\n", params


def _name_outputs(imp: Importer, stmts: list[Stmt], outputs: list[tuple[str, str]],
                  defined: set[str]):
    """A statement that makes a graph output takes the output's own name (`ys`, `h`), when
    that name is free."""
    made = {t for st in stmts for t in st.targets}
    rename: dict[str, str] = {}
    for onnx_name, var in outputs:
        want = re.sub(r"\W", "_", onnx_name)
        if (var in made and var not in rename and re.match(r"^[A-Za-z_]\w*$", want)
                and want not in imp.taken or want == var):
            if want != var and want not in rename.values():
                rename[var] = want
                imp.taken.add(want)
    if not rename:
        return stmts, outputs

    def sub(text: str) -> str:
        return _IDENT.sub(lambda m: rename.get(m.group(1), m.group(1)), text)
    from dataclasses import replace

    new = [replace(st, expr=sub(st.expr), first=rename.get(st.first, st.first) if st.first
                   else None, targets=[rename.get(t, t) for t in st.targets]) for st in stmts]
    return new, [(o, rename.get(v, v)) for o, v in outputs]


def _file_name(path: str) -> str:
    from pathlib import Path

    return Path(path).name


def _producer(imp: Importer) -> str:
    m = imp.model
    who = f"{m.producer_name} {m.producer_version}".strip() or "unknown producer"
    opset = {o.domain or "": o.version for o in m.opset_import}.get("", "?")
    return f"{who}, opset {opset}"

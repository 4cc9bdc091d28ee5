"""ONNX import: a named sub-module that is not repeated -> one `block` called `as NAME`, so
its keys keep their nesting (`features.0.weight`, not `features_0.weight`); run by
onnx_import_text after the repeats are found (onnx_import_blocks).

The statements of a module `P` are those whose layer's initializers are named `P.<layer>.*`
(one more component: the layer's own name, a word or an index), and, in dslc's own export,
those whose ONNX node is in the frame `P/` (the relu and pool after a block's last layer). A
contiguous run of them with one input and one output becomes `block P_block` and
`y = x -> P_block as P`; its layers are named by the rest of the path (`as 0`, `as conv1`).
"""

from __future__ import annotations

import keyword
import re
from dataclasses import replace

from dslc.onnx_import_blocks import Block, _input_type, _region_io, _rename_io
from dslc.onnx_import_core import RESERVED, Importer, Stmt

_LAYER = re.compile(r"^([A-Za-z_]\w*)\.([A-Za-z_]\w*|\d+)$")


def _module(imp: Importer, st: Stmt) -> tuple[str, str] | None:
    """(module, layer) of a statement's layer path `module.layer`."""
    path = imp.paths.get(st.label or "") if st.label else None
    m = _LAYER.match(path) if path else None
    if m is None or m.group(2) in RESERVED or keyword.iskeyword(m.group(2)):
        return None
    return m.group(1), m.group(2)


def _member(imp: Importer, st: Stmt, prefix: str) -> bool | None:
    """True: the statement belongs to module `prefix`; False: to another layer; None: no
    layer of its own and no frame (can sit inside a run)."""
    if st.meta.get("raw"):
        return False
    if st.label and st.params:
        mod = _module(imp, st)
        return mod is not None and mod[0] == prefix
    return True if st.node.startswith(prefix + "/") else None


def find_nested(imp: Importer, stmts: list[Stmt], out_vars: list[str],
                defined: set[str]) -> tuple[list[Block], list[Stmt]]:
    blocks: list[Block] = []
    out: list[Stmt] = []
    i = 0
    while i < len(stmts):
        mod = _module(imp, stmts[i]) if stmts[i].params else None
        found = _run(imp, stmts, i, mod[0], out_vars, defined) if mod else None
        if found is None:
            out.append(stmts[i])
            i += 1
            continue
        j, stmt, block = found
        blocks.append(block)
        out.append(stmt)
        i = j
    return blocks, out


def _run(imp: Importer, stmts: list[Stmt], lo: int, prefix: str, out_vars: list[str],
         defined: set[str]):
    """The module's run from statement lo: the block and the call replacing it, or None."""
    label = re.sub(r"\W", "_", prefix)
    if label in imp.labels or label in imp.taken and label not in defined:
        return None
    hi = lo
    for k in range(lo, len(stmts)):
        m = _member(imp, stmts[k], prefix)
        if m is False:
            break
        if m:
            hi = k + 1
    if hi - lo < 1:
        return None
    inner = [_module(imp, st)[1] if st.label and st.params else None
             for st in stmts[lo:hi]]
    if len({n for n in inner if n}) != len([n for n in inner if n]):
        return None  # two statements of one layer: not a plain module
    ins, outs = _region_io(stmts, lo, hi, defined, out_vars)
    if len(ins) != 1 or len(outs) != 1:
        return None
    typed = _input_type(imp, stmts, lo, hi, ins[0])
    if typed is None:
        return None
    body = [replace(st, label=name if name else (None if st.params else st.label))
            for st, name in zip(stmts[lo:hi], inner)]
    if any(st.label and not st.params for st in body):
        return None  # a parameter-free `as` name would move scope
    name = imp.fresh(f"{label}_block")
    in_var, out_var, body = _rename_io(body, ins[0], outs[0])
    block = Block(name, in_var, out_var, body, typed)
    params = {f"{n}.{k}": v for st, n in zip(stmts[lo:hi], inner) if n
              for k, v in st.params.items()}
    imp.labels.add(label)
    call = Stmt([outs[0]], name, ins[0], label, params, stmts[lo].node)
    return hi, call, block

"""ONNX import (`dslc import`): an ONNX file -> a readable `.dl` spec and its parameter `.npz`.

The walk: read and validate the file (readable, a supported opset, acyclic, every value
defined), name the graph's dims, then visit the nodes in order. Constant and shape subgraphs
fold (onnx_import_values); every other node becomes a spec statement through its handler
(onnx_import_ops, onnx_import_rnn), patterns folded back to dslc's layers. Everything that
cannot be imported is collected and reported at once. Repeated chains become a block and a
`repeat` (onnx_import_blocks). The spec is then checked by dslc itself and its parameter keys
compared with the file's: nothing is written unless the result loads.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path

import numpy as np
import sympy

from dslc import dims as D
from dslc.diagnostics import Diagnostic, DslcError
from dslc.onnx_import_core import (
    MAX_OPSET,
    MIN_OPSET,
    RESERVED,
    Importer,
    ImportProblem,
    ImportResult,
    _dim,
    _span,
    require_onnx,
)
from dslc.onnx_import_values import (
    DTYPES,
    Const,
    Tensor,
    dim_text,
)

# ---- reading and validating ---------------------------------------------------------------


def read_model(path: str):
    onnx = require_onnx(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DslcError(Diagnostic("E0821", f"cannot read '{path}': {exc.strerror}",
                                   _span(path))) from None
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as exc:  # noqa: BLE001 - protobuf raises its own DecodeError types
        raise DslcError(Diagnostic(
            "E0821", "not an ONNX model: the file does not parse as an ONNX protobuf "
            "(truncated, or another format)", _span(path), found=str(exc)[:200])) from None
    if not model.HasField("graph") or not model.graph.node and not model.graph.output:
        raise DslcError(Diagnostic("E0821", "not an ONNX model: the file holds no graph",
                                   _span(path)))
    _check_opset(model, path)
    _check_graph(model, path)
    try:  # weights kept beside the file (`model.onnx.data`), as large exports do
        from onnx.external_data_helper import load_external_data_for_model

        load_external_data_for_model(model, str(Path(path).resolve().parent))
    except Exception as exc:  # noqa: BLE001 - a missing or short external weight file
        raise DslcError(Diagnostic(
            "E0821", "cannot read the model's external weight data", _span(path),
            found=str(exc)[:200], hint="keep the .data file beside the .onnx file")) from None
    return onnx, model


def _check_opset(model, path: str) -> None:
    versions = {o.domain: o.version for o in model.opset_import}
    version = versions.get("", versions.get("ai.onnx"))
    if version is None:
        raise DslcError(Diagnostic("E0822", "the model declares no opset of the default ONNX "
                                   "domain", _span(path)))
    if not MIN_OPSET <= version <= MAX_OPSET:
        raise DslcError(Diagnostic(
            "E0822", f"unsupported opset {version}", _span(path),
            expected=f"an opset from {MIN_OPSET} to {MAX_OPSET}", found=str(version),
            hint="convert it with onnx.version_converter.convert_version(model, 17)"))


def _check_graph(model, path: str) -> None:
    """Every value a node reads is defined (a graph input, an initializer, or an earlier
    node's output) and the nodes form no cycle."""
    g = model.graph
    defined = {i.name for i in g.input} | {i.name for i in g.initializer}
    producer: dict[str, int] = {}
    for k, node in enumerate(g.node):
        for out in node.output:
            if out:
                producer[out] = k
    undefined = []
    for node in g.node:
        for name in node.input:
            if name and name not in defined and name not in producer:
                undefined.append((name, node.name or node.op_type))
    for out in g.output:
        if out.name not in defined and out.name not in producer:
            undefined.append((out.name, "graph output"))
    if undefined:
        name, user = undefined[0]
        raise DslcError(Diagnostic(
            "E0824", f"value '{name}' is used but never defined", _span(path),
            found=f"read by {user}", notes=[(f"also undefined: '{n}' (read by {u})", None)
                                            for n, u in undefined[1:6]]))
    # Kahn's algorithm over the node list: what is left over lies on a cycle.
    indeg = []
    users: dict[int, list[int]] = {}
    for k, node in enumerate(g.node):
        deps = {producer[n] for n in node.input if n in producer and n not in defined}
        indeg.append(len(deps))
        for d in deps:
            users.setdefault(d, []).append(k)
    ready = [k for k, n in enumerate(indeg) if n == 0]
    seen = 0
    while ready:
        k = ready.pop()
        seen += 1
        for u in users.get(k, []):
            indeg[u] -= 1
            if indeg[u] == 0:
                ready.append(u)
    if seen != len(g.node):
        cyc = [g.node[k].name or g.node[k].op_type for k, n in enumerate(indeg) if n > 0]
        raise DslcError(Diagnostic(
            "E0823", "the graph has a cycle", _span(path),
            found="nodes on or after the cycle: " + ", ".join(cyc[:8]),
            hint="an ONNX graph must be acyclic; loops are `Loop`/`Scan` nodes"))


def _topo_nodes(model) -> list:
    """The nodes in a topological order, ties in file order (files need not be sorted)."""
    g = model.graph
    defined = {i.name for i in g.input} | {i.name for i in g.initializer}
    out, done, pending = [], set(defined), list(g.node)
    while pending:
        rest = []
        for node in pending:
            if all(n == "" or n in done for n in node.input):
                out.append(node)
                done.update(node.output)
            else:
                rest.append(node)
        pending = rest
    return out


# ---- the walk ------------------------------------------------------------------------------


def import_model(path: str, model_name: str | None = None) -> ImportResult:
    """Read an ONNX file and give the spec text and its parameters; DslcError if it cannot be
    imported. Writes nothing."""
    onnx, model = read_model(path)
    name = model_name or _model_name(model, path)
    if not re.match(r"^[A-Za-z_]\w*$", name) or name in RESERVED:
        raise DslcError(Diagnostic("E0828", f"'{name}' is not a valid model name",
                                   _span(path), hint="pass --model NAME"))
    imp = Importer(onnx, model, path, name)
    _declare_inputs(imp)
    # The recurrent layers, loops, pools and the larger patterns register their handlers on
    # import (they import onnx_import_ops, so it cannot import them).
    from dslc import (  # noqa: F401
        onnx_import_graph,
        onnx_import_loop,
        onnx_import_patterns,
        onnx_import_pool,
        onnx_import_rnn,
    )
    from dslc.onnx_import_ops import visit

    for node in _topo_nodes(model):
        visit(imp, node)
    _report(imp)
    outputs = _outputs(imp)
    _report(imp)
    from dslc.onnx_import_text import write_spec

    spec, params = write_spec(imp, outputs)
    _verify(imp, spec, params)
    return ImportResult(spec, params, name)


def _model_name(model, path: str) -> str:
    from dslc.ops.registry import OPS

    stem = re.sub(r"\W", "_", Path(path).stem).strip("_") or "imported"
    if stem[0].isdigit():
        stem = "m_" + stem
    if stem in OPS or stem in RESERVED or keyword.iskeyword(stem):
        stem += "_model"  # a model may not take an op's name (E0205)
    return stem


def _infer(imp: Importer) -> None:
    """Shapes and dtypes of every value: the file's own value_info, completed by ONNX shape
    inference (with data propagation, so reshapes of computed shapes get known sizes)."""
    onnx = imp.onnx
    try:
        inferred = onnx.shape_inference.infer_shapes(imp.model, data_prop=True)
    except Exception:  # noqa: BLE001 - inference is help, not a requirement
        inferred = imp.model
    g = inferred.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        tt = vi.type.tensor_type
        if tt.elem_type:
            imp.dtypes[vi.name] = DTYPES.get(tt.elem_type, f"onnx{tt.elem_type}")
        if tt.HasField("shape"):
            imp.shapes[vi.name] = [_dim(d, imp) for d in tt.shape.dim]


def _declare_inputs(imp: Importer) -> None:
    g = imp.graph
    inits = {i.name for i in g.initializer}
    for t in g.initializer:
        arr = imp.onnx.numpy_helper.to_array(t)
        imp.values[t.name] = Const(np.array(arr), (t.name,))
    fresh = 0
    for inp in g.input:
        if inp.name in inits:
            continue  # an initializer also listed as an input (older exporters): a weight
        tt = inp.type.tensor_type
        dtype = DTYPES.get(tt.elem_type)
        if dtype is None or not tt.HasField("shape"):
            imp.problems.append(("input", inp.name, "an input that is not a tensor of a dtype "
                                 "dslc knows, or has no shape"))
            continue
        dims = []
        for d in tt.shape.dim:
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(sympy.Integer(d.dim_value))
                continue
            if d.HasField("dim_param") and d.dim_param:
                if d.dim_param not in imp.dim_names:
                    imp.dim_names[d.dim_param] = _dim_name(d.dim_param, imp)
                dims.append(D.symbol(imp.dim_names[d.dim_param]))
            else:
                fresh += 1
                name = _dim_name(f"D{fresh}", imp)
                dims.append(D.symbol(name))
        var = imp.fresh(inp.name if inp.name else "x")
        decl = f"input {var}: {dtype}[{', '.join(dim_text(d) for d in dims)}]"
        imp.inputs.append((var, decl))
        imp.values[inp.name] = Tensor(dims, dtype, var=var)
        imp.var_types[var] = (dtype, list(dims))
        imp.shapes[inp.name] = dims
    # Shape inference ran before the dims had spec names; read the names again.
    _infer(imp)
    for inp in g.input:
        if inp.name in imp.values and isinstance(imp.values[inp.name], Tensor):
            imp.shapes[inp.name] = imp.values[inp.name].shape


def _dim_name(text: str, imp: Importer) -> str:
    base = re.sub(r"\W", "_", text).strip("_") or "D"
    if base[0].isdigit():
        base = "D" + base
    name, n = base, 1
    while name in imp.taken:
        n += 1
        name = f"{base}{n}"
    imp.taken.add(name)
    return name


def _outputs(imp: Importer) -> list[tuple[str, str]]:
    out = []
    for o in imp.graph.output:
        v = imp.values.get(o.name)
        try:
            if isinstance(v, Tensor) and v.var == "<unsupported>":
                continue
            if not isinstance(v, Tensor):
                raise ImportProblem("a graph output that is a constant, not computed from the "
                                    "inputs", o.name)
            out.append((o.name, imp.var(v, o.name)))
        except ImportProblem as exc:
            imp.problems.append(("output", exc.node or o.name, exc.detail))
    return out


def _report(imp: Importer) -> None:
    diags = []
    if imp.unsupported:
        lines = [f"{op}: {', '.join(names[:6])}" + (f" (+{len(names) - 6} more)"
                                                   if len(names) > 6 else "")
                 for op, names in sorted(imp.unsupported.items())]
        diags.append(Diagnostic(
            "E0825", f"{len(imp.unsupported)} ONNX op type(s) have no dslc counterpart",
            _span(imp.path), found="; ".join(lines),
            notes=[(f"{op} at node(s) {', '.join(n)}", None)
                   for op, n in sorted(imp.unsupported.items())],
            hint="see docs/onnx.md for the ops dslc imports"))
    for kind, node, detail in imp.problems:
        diags.append(Diagnostic("E0826", f"cannot import {kind} '{node}': {detail}",
                                _span(imp.path)))
    if diags:
        raise DslcError(diags)


def _verify(imp: Importer, spec: str, params: dict[str, np.ndarray]) -> None:
    """Load the written spec with dslc and hold its parameter keys and shapes to the file's:
    an import that would not check, or whose weights would not load, writes nothing."""
    import dslc

    try:
        prog = dslc.load(f"{imp.model_name}.dl", text=spec, opt_level=0)
    except DslcError as exc:
        first = exc.diagnostics[0]
        raise DslcError(Diagnostic(
            "E0827", "the imported spec does not check (a bug in the importer)",
            _span(imp.path), found=f"{first.code}: {first.message}",
            notes=[(line, None) for line in spec.splitlines()[max(0, first.span.line - 2):
                                                              first.span.line + 1]])) from None
    keys = {k: tuple(int(d) for d in s.shape)
            for k, (_n, _l, s) in prog.source.param_keys().items()}
    got = {k: tuple(v.shape) for k, v in params.items()}
    if keys != got:
        missing = sorted(set(keys) - set(got))
        extra = sorted(set(got) - set(keys))
        wrong = sorted(k for k in set(keys) & set(got) if keys[k] != got[k])
        raise DslcError(Diagnostic(
            "E0827", "the imported parameters do not match the spec's (a bug in the importer)",
            _span(imp.path), found=f"missing {missing[:4]}, extra {extra[:4]}, "
            f"wrong shape {wrong[:4]}"))


def write_outputs(result: ImportResult, spec_path: str | None, params_path: str | None) -> None:
    """Both files are made in memory first; each appears whole (atomic rename)."""
    import io
    import sys

    from dslc.atomic import write_atomic

    buf = io.BytesIO()
    np.savez(buf, **result.params)
    if spec_path:
        write_atomic(spec_path, result.spec.encode("utf-8"))
    else:
        sys.stdout.write(result.spec)
    if params_path:
        write_atomic(params_path, buf.getvalue())


def default_params_path(spec_path: str | None) -> str | None:
    return str(Path(spec_path).with_suffix(".npz")) if spec_path else None


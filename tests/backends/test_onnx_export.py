"""ONNX export (dslc/backends/onnx_export.py): every zoo model, run by onnxruntime with its
runtime dims left symbolic, equals `dslc run` at two sizes; the model passes the full checker;
ONNX shape inference agrees with dslc's checker; bad input gives located diagnostics."""

from __future__ import annotations

import glob
import re
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import dslc  # noqa: E402
from dslc import dims as D  # noqa: E402
from dslc.backends.onnx_export import build_model, export_bytes  # noqa: E402
from dslc.cli import main  # noqa: E402
from dslc.diagnostics import DslcError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"

# Two sizes per runtime dim: small (the test runs on 2 cores) and different from each other.
SIZES = ({"B": 2, "T": 3, "N": 5, "E": 9, "S": 3, "H": 8, "W": 8},
         {"B": 3, "T": 5, "N": 7, "E": 13, "S": 4, "H": 10, "W": 10})
# gan.dl holds two models.
CASES = [(Path(p).stem, None) for p in sorted(glob.glob(str(SPECS / "*.dl")))
         if Path(p).stem != "gan"] + [("gan", "generator"), ("gan", "discriminator")]


def _load(stem: str, model: str | None, opt: int = 1):
    return dslc.load(SPECS / f"{stem}.dl", model=model, opt_level=opt)


def _symbols(prog) -> list[str]:
    names: set[str] = set()
    for _, nid in prog.graph.inputs:
        for d in prog.graph.nodes[nid].types[0].shape:
            names |= {s.name for s in d.free_symbols}
    return sorted(names)


def _session(model) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def _compare(prog, sess, params, bind, seed=0):
    inputs = prog.random_inputs(seed, bind)
    want = prog.run(inputs, {k: v.copy() for k, v in params.items()}, bind=bind)
    got = sess.run(None, inputs)
    names = [o.name for o in sess.get_outputs()]
    assert names == list(want), "outputs in the spec's order, with its names"
    for name, g in zip(names, got):
        w = want[name]
        assert g.shape == w.shape, f"{name}: shape {g.shape} != {w.shape}"
        assert g.dtype == w.dtype, f"{name}: dtype {g.dtype} != {w.dtype}"
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("stem,model", CASES, ids=[f"{s}-{m}" if m else s for s, m in CASES])
def test_zoo_model_equals_dslc_run(stem, model):
    prog = _load(stem, model)
    params = prog.init_params(0)
    onnx_model = build_model(prog.graph, prog.fold_params(params))
    onnx.checker.check_model(onnx_model, full_check=True)
    syms = _symbols(prog)
    for name in syms:  # runtime dims stay symbolic, with their names
        assert any(d.dim_param == name for i in onnx_model.graph.input
                   for d in i.type.tensor_type.shape.dim), name
    sess = _session(onnx_model)
    for sizes in SIZES:
        _compare(prog, sess, params, {s: sizes[s] for s in syms})


def _dims(vi) -> list:
    out = []
    for d in vi.type.tensor_type.shape.dim:
        out.append(d.dim_value if d.HasField("dim_value") else
                   d.dim_param if d.HasField("dim_param") else None)
    return out


@pytest.mark.parametrize("stem,model", [c for c in CASES if c[0] not in ("vgg16", "alexnet")],
                         ids=[f"{s}-{m}" if m else s for s, m in CASES
                              if s not in ("vgg16", "alexnet")])
def test_onnx_shape_inference_agrees_with_dslc(stem, model):
    """The exported value_info and outputs are dslc's types (fixed dims as numbers, runtime
    dims named, derived ones unnamed); ONNX's own inference, run on the model stripped of them,
    must find the same: every dim it infers equals dslc's, and every value gets a shape except
    a Loop's final states (ONNX infers only their dtype) and its step axis."""
    prog = _load(stem, model)
    m = build_model(prog.graph, prog.fold_params(prog.init_params(0)))
    want = {}
    for vi in list(m.graph.value_info) + list(m.graph.output):
        want[vi.name] = onnx.ValueInfoProto()
        want[vi.name].CopyFrom(vi)
    loop_states = {o for n in m.graph.node if n.op_type == "Loop"
                   for o in n.output[:len(n.input) - 2]}
    del m.graph.value_info[:]
    for out in m.graph.output:
        out.type.tensor_type.ClearField("shape")
    inferred = onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True,
                                                 data_prop=True)
    got = {vi.name: vi for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    assert want, "value_info for the IR values"
    known = unknown = 0
    for name, vi in want.items():
        assert name in got, f"{name}: no type inferred"
        g = got[name]
        assert g.type.tensor_type.elem_type == vi.type.tensor_type.elem_type, name
        if not g.type.tensor_type.HasField("shape"):
            assert name in loop_states, f"{name}: no shape inferred"
            continue
        w, i = _dims(vi), _dims(g)
        assert len(w) == len(i), f"{name}: rank {len(i)} inferred, dslc says {len(w)}"
        for a, b in zip(w, i):
            if a is None:  # a derived dim (B*T): unnamed in the export
                continue
            if b is None or (isinstance(b, str) and b.startswith("unk__")):
                unknown += 1  # ONNX could not tell (a Loop's step count): no disagreement
                continue
            assert a == b, f"{name}: ONNX infers {i}, dslc {w}"
            known += 1
    assert known > 0
    # Inference finds almost every dim: only the step axis after a Loop stays open.
    assert unknown <= max(2, known // 10), (unknown, known)

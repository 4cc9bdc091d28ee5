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

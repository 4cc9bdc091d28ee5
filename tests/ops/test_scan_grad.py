"""The scan vjp (ops/scan.py: backpropagation through time through the cell's taped runs) on
the spec zoo's recurrences: Elman, a reverse scan, Jordan (output feedback), an LSTM with
peepholes (two states) and a stacked char model; Program.grad against torch.autograd through
the generated module, every output given a random cotangent, inputs included (float32)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dslc
from tests.test_autodiff import assert_same_grads, torch_grads

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("spec,model,hparams", [
    ("elman_rnn.dl", None, {"features": 3, "hidden": 4}),
    ("birnn.dl", "birnn_scan", {"features": 3, "hidden": 4}),
    ("jordan_rnn.dl", None, {"features": 3, "hidden": 4, "out": 2}),
    ("lstm_peephole.dl", None, {"features": 3, "hidden": 4}),
])
def test_scan_grads_match_torch(spec, model, hparams):
    prog = dslc.load(ROOT / "specs" / spec, model=model, hparams=hparams)
    inputs = prog.random_inputs(0, {"B": 2, "T": 5})
    params = prog.init_params(0)
    outs = prog.run(inputs, {k: v.copy() for k, v in params.items()})
    rng = np.random.default_rng(1)
    cot = {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in outs.items()
           if np.issubdtype(v.dtype, np.floating)}
    ours = prog.grad(inputs, {k: v.copy() for k, v in params.items()}, loss=cot,
                     wrt_inputs=True)
    theirs, _ = torch_grads(prog, inputs, params, cotangents=cot, wrt_inputs=True)
    assert_same_grads(ours, theirs)

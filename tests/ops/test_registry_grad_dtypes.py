"""Every op's vjp keeps float32 float32: on each Example (float32 inputs and parameters, as
the interpreter runs them), the cotangents of inputs and the parameter gradients have the
dtype of what they differentiate, so that a float32 backward walk never widens to float64
(tests/ops/test_registry_grad.py checks the values in float64)."""

from __future__ import annotations

import numpy as np
import pytest

from dslc.interp import node_params
from dslc.ops.base import RunCtx
from dslc.ops.docs import CONSTRUCTS
from dslc.ops.registry import ALL_OPS
from tests.ops.test_registry import case, op_node


def _float_output(op, ex) -> bool:
    """Whether any output of the Example is a float (else no gradient ever reaches the op:
    such an Example is not a case, rather than a skipped one)."""
    try:
        return any(t.is_float for t in op.shape(op.attrs(**ex.attrs), list(ex.inputs)))
    except Exception:  # noqa: BLE001 - a shape rule that needs bound dims: keep the case
        return True


CASES = [pytest.param(op.name, i, id=f"{op.name}-{i}") for op in ALL_OPS
         if op.vjp is not None and op.name not in CONSTRUCTS
         for i, ex in enumerate(op.examples) if _float_output(op, ex)]


@pytest.mark.parametrize("name,index", CASES)
def test_vjp_keeps_the_dtypes(name, index):
    c = case(name, index)
    node = op_node(c.graph)
    ins = [c.inputs[n] for n, _ in c.graph.inputs]
    ctx = RunCtx(train=c.ex.train, rng=np.random.default_rng(0),
                 params=node_params(node, c.params0), bindings=c.bind)
    outs = c.op.numpy(node.attrs, ins, ctx)
    rng = np.random.default_rng(1)
    gouts = [rng.standard_normal(o.shape).astype(o.dtype)
             if np.issubdtype(o.dtype, np.floating) else None for o in outs]
    assert any(g is not None for g in gouts), "a case has a float output (see CASES)"
    gins, gparams = c.op.vjp(node.attrs, ins, outs, gouts, ctx)
    for i, (x, g) in enumerate(zip(ins, gins)):
        if g is not None:
            assert np.asarray(g).dtype == x.dtype, f"input {i}: {np.asarray(g).dtype}"
    for local, g in gparams.items():
        assert np.asarray(g).dtype == ctx.params[local].dtype, f"{local}: {np.asarray(g).dtype}"

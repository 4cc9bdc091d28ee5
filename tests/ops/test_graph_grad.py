"""Vjps of the graph layers (ops/graph_grad.py) on graphs with isolated nodes, self-loops and
repeated edges, and in the cases the Examples leave out (GCN edge weights, the SAGE LSTM
aggregator): float64 against torch.autograd through the generated module. (Every Example is
checked by tests/ops/test_registry_grad.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from dslc.interp import node_params
from dslc.ops.base import RunCtx
from dslc.ops.registry import OPS
from tests.ops.test_graph import graph, layer_prog

torch = pytest.importorskip("torch")

N = 9


def _check(prog, inputs, seed=0):
    """The layer's vjp (float64) equals the generated module's autograd gradients."""
    params = {k: v.astype(np.float64) for k, v in prog.init_params(seed).items()}
    node = next(n for n in prog.graph.nodes.values() if n.op not in ("input",))
    names = [name for name, _ in prog.graph.inputs]
    ins = [inputs[k] for k in names]
    op = OPS[node.op]
    ctx = RunCtx(train=False, rng=np.random.default_rng(0), params=node_params(node, params))
    outs = op.numpy(node.attrs, ins, ctx)
    g = np.random.default_rng(seed + 1).standard_normal(outs[0].shape)
    gins, gparams = op.vjp(node.attrs, ins, outs, [g], ctx)

    m = prog.to_torch()()
    m.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in params.items()})
    m = m.double()
    args = prog.torch_arg_names()
    tins = {k: torch.from_numpy(v.copy()) for k, v in inputs.items()}
    for v in tins.values():
        if v.is_floating_point():
            v.requires_grad_(True)
    y = m(**{args[k]: v for k, v in tins.items()})
    y.backward(torch.from_numpy(g))
    for name, got in zip(names, gins):
        if tins[name].is_floating_point():
            np.testing.assert_allclose(got, tins[name].grad.numpy(), rtol=1e-8, atol=1e-10,
                                       err_msg=name)
        else:
            assert got is None
    for key, p in m.named_parameters():
        local = key.split(".", 1)[1]
        np.testing.assert_allclose(gparams[local], p.grad.numpy(), rtol=1e-8, atol=1e-10,
                                   err_msg=key)


def _inputs(f=3, seed=0, **extra):
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((N, f)), "edge_index": graph(seed), **extra}


def test_gcn_conv_with_edge_weights():
    ins = _inputs(w=np.random.default_rng(5).random(29) + 0.1)
    _check(layer_prog("gcn_conv(edge_index, w, 4)", "  input w: f32[E]\n", features=3), ins)


@pytest.mark.parametrize("call", [
    "gcn_conv(edge_index, 4)",
    "gat_conv(edge_index, 2, heads=2)",
    "gat_conv(edge_index, 2, heads=3, concat=false)",
    'sage_conv(edge_index, 4, aggr="mean")',
    'sage_conv(edge_index, 4, aggr="max", project=true)',
    'sage_conv(edge_index, 3, aggr="lstm")',
    "cheb_conv(edge_index, 4, K=3)",
    "gin_aggregate(edge_index, eps=0.5, train_eps=true)",
])
def test_layer_on_a_graph_with_loops_repeats_and_an_isolated_node(call):
    _check(layer_prog(call, features=3), _inputs())

"""Shared check of an op's vector-Jacobian product on one of its Examples, for the op grad
tests (tests/ops/test_*_grad.py): float64 NumPy kernel + `Op.vjp` against torch.autograd
through the generated module, and a central finite-difference spot check."""

from __future__ import annotations

import numpy as np

from dslc.ops.base import RunCtx
from dslc.ops.registry import OPS
from tests.ops.test_registry import SEED, case, op_node

torch = __import__("pytest").importorskip("torch")

RTOL = 1e-8


def _f64(v: np.ndarray) -> np.ndarray:
    return v.astype(np.float64) if np.issubdtype(v.dtype, np.floating) else v


def numpy_vjp(name: str, index: int, seed: int = 1):
    """(inputs, local params, outputs, cotangents, input cotangents, param grads, ctx) of the
    float64 kernel and vjp of OPS[name] on its Example `index`."""
    c = case(name, index)
    node = op_node(c.graph)
    op = OPS[name]
    ins = [_f64(c.inputs[k]) for k, _ in c.graph.inputs]
    keys = {local: key for key, (_n, local, _s) in c.graph.param_keys().items()}
    params = {local: _f64(c.params0[key]) for local, key in keys.items()}
    ctx = RunCtx(train=c.ex.train, rng=np.random.default_rng(SEED), params=dict(params),
                 bindings=dict(c.bind))
    outs = op.numpy(node.attrs, ins, ctx)
    rng = np.random.default_rng(seed)
    gouts = [rng.standard_normal(o.shape) if np.issubdtype(o.dtype, np.floating) else None
             for o in outs]
    gins, gparams = op.vjp(node.attrs, ins, outs, gouts, ctx)
    return c, node, ins, params, keys, outs, gouts, gins, gparams


def torch_grads(c, gouts):
    """Input and parameter gradients of sum(out * gout) through the generated module."""
    from tests.ops.test_registry import torch_module
    m = torch_module(c).double()
    args = c.prog.torch_arg_names()
    ins = {}
    for k, _ in c.graph.inputs:
        x = torch.from_numpy(_f64(c.inputs[k]))
        if x.is_floating_point():
            x.requires_grad_(True)
        ins[k] = x
    torch.manual_seed(SEED)
    out = m(**{args[k]: v for k, v in ins.items()})
    if not isinstance(out, tuple):
        out = (out,)
    total = sum((o * torch.from_numpy(g)).sum() for o, g in zip(out, gouts) if g is not None)
    total.backward()
    gin = [None if v.grad is None else v.grad.numpy() for v in ins.values()]
    gparam = {k: (None if p.grad is None else p.grad.numpy()) for k, p in m.named_parameters()}
    return gin, gparam


def _close(got, want, what):
    assert got is not None, f"{what}: no gradient from the vjp"
    got = np.asarray(got, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} vs {want.shape}"
    scale = max(float(np.abs(want).max()) if want.size else 0.0, 1.0)
    err = float(np.abs(got - want).max()) if want.size else 0.0
    assert err <= RTOL * scale, f"{what}: max abs error {err:g} (scale {scale:g})"


def check_vjp_vs_torch(name: str, index: int) -> None:
    c, _node, ins, _params, keys, _outs, gouts, gins, gparams = numpy_vjp(name, index)
    t_in, t_param = torch_grads(c, gouts)
    assert len(gins) == len(ins)
    for i, (got, want) in enumerate(zip(gins, t_in)):
        if want is None:
            assert got is None or not np.issubdtype(ins[i].dtype, np.floating)
            continue
        _close(got, want, f"input {i}")
    local_of = {key: local for local, key in keys.items()}
    assert set(t_param) <= set(local_of), f"module parameters {sorted(t_param)}"
    for key, want in t_param.items():
        if want is None:  # no gradient reaches it in torch either
            assert gparams.get(local_of[key]) is None or not gparams[local_of[key]].any()
            continue
        _close(gparams.get(local_of[key]), want, f"param {key}")


def check_finite_differences(name: str, index: int, n: int = 6, eps: float = 1e-6) -> None:
    """Central differences of sum(out * gout) on a few coordinates of each float input and
    parameter equal the vjp's entries there."""
    c, node, ins, params, _keys, _outs, gouts, gins, gparams = numpy_vjp(name, index)
    op = OPS[name]
    rng = np.random.default_rng(2)

    def loss(xs, ps):
        ctx = RunCtx(train=c.ex.train, rng=np.random.default_rng(SEED), params=ps,
                     bindings=dict(c.bind))
        outs = op.numpy(node.attrs, xs, ctx)
        return sum(float((o * g).sum()) for o, g in zip(outs, gouts) if g is not None)

    targets = [("in", i, x) for i, x in enumerate(ins) if np.issubdtype(x.dtype, np.floating)]
    targets += [("param", k, v) for k, v in params.items() if k in gparams]
    for kind, key, arr in targets:
        grad = gins[key] if kind == "in" else gparams[key]
        for flat in rng.choice(arr.size, size=min(n, arr.size), replace=False):
            idx = np.unravel_index(flat, arr.shape)
            vals = []
            for sign in (1, -1):
                xs = [x.copy() for x in ins]
                ps = {k: v.copy() for k, v in params.items()}
                (xs[key] if kind == "in" else ps[key])[idx] += sign * eps
                vals.append(loss(xs, ps))
            fd = (vals[0] - vals[1]) / (2 * eps)
            got = float(np.asarray(grad)[idx])
            assert abs(fd - got) <= 1e-5 * max(1.0, abs(fd)), \
                f"{kind} {key}{idx}: finite difference {fd:g}, vjp {got:g}"

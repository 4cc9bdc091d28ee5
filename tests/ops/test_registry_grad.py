"""Gradient tests generated from the registry: every op's vector-Jacobian product, on every
Example, against torch.autograd through the generated module of the one-op program (float64)
and against central finite differences; plus the completeness of the gradient fact.

Like tests/ops/test_registry.py this reads `ALL_OPS` at collection, so a VJP added to an op is
tested without touching this file (except to take the op off `PENDING`).
"""

from __future__ import annotations

import numpy as np
import pytest

from dslc.interp import node_params
from dslc.ops.base import RunCtx
from dslc.ops.docs import CONSTRUCTS
from dslc.ops.registry import ALL_OPS, OPS
from tests.ops.test_registry import Case, case, op_node

torch = pytest.importorskip("torch")

SEED = 0
RTOL = 1e-8  # float64 NumPy VJP vs float64 torch.autograd
FD_EPS = 1e-6
FD_TOL = 1e-6  # central differences in float64, relative to the gradient's scale
FD_POINTS = 3  # coordinates checked per differentiable array

# Ops with neither a `vjp` nor a `no_grad` reason yet. The completeness test asserts this is
# EXACTLY the set still missing: giving an op its VJP means taking it off this list.
PENDING: set[str] = set()


def _embedding_padding_row(attrs, what: str, idx: tuple) -> bool:
    from dslc.ops.embedding import padding_row

    return what.endswith(".weight") and idx[0] == padding_row(attrs)


# Coordinates where torch's gradient is by definition not the derivative, so finite
# differences cannot judge them (torch.autograd still does): op -> (attrs, array, index) ->
# skip? An embedding's padding row is read by the forward but gets no gradient.
FD_EXEMPT = {"embedding": _embedding_padding_row}


def test_every_op_has_a_vjp_or_says_why_not():
    missing = {op.name for op in ALL_OPS if op.vjp is None and not op.no_grad.strip()}
    gained = sorted(PENDING - missing)
    lost = sorted(missing - PENDING)
    assert not lost, f"ops with neither vjp nor no_grad (give them one): {lost}"
    assert not gained, f"ops now with a vjp or no_grad: take them off PENDING: {gained}"


def test_no_op_has_both_a_vjp_and_a_no_grad_reason():
    both = sorted(op.name for op in ALL_OPS if op.vjp is not None and op.no_grad)
    assert not both, both


def grad_cases(torch_comparable: bool = False):
    """Every Example of every op with a vjp. With `torch_comparable`, not those of a random op
    in a mode where it draws (dropout in training, sampling): torch draws other numbers, so
    only the finite-difference check (the same random stream on every run) can judge them."""
    return [pytest.param(op.name, i, id=f"{op.name}-{i}")
            for op in ALL_OPS if op.vjp is not None and op.name not in CONSTRUCTS
            for i, ex in enumerate(op.examples)
            if not (torch_comparable and op.random and (ex.train or not op.train_only))]


# ---- the NumPy side: forward + vjp of the one op, in float64 -------------------------------


def as64(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    return arr.astype(np.float64) if np.issubdtype(arr.dtype, np.floating) else arr.copy()


def is_float(arr: np.ndarray) -> bool:
    return np.issubdtype(np.asarray(arr).dtype, np.floating)


def forward(c: Case, ins: list[np.ndarray], params: dict[str, np.ndarray]):
    """The op's kernel with a fresh context (the same random stream every call)."""
    node = op_node(c.graph)
    local = {k: as64(v) for k, v in node_params(node, params).items()}
    ctx = RunCtx(train=c.ex.train, rng=np.random.default_rng(SEED), params=local,
                 bindings=c.bind)
    outs = [np.asarray(o) for o in c.op.numpy(node.attrs, ins, ctx)]
    return outs, ctx


def cotangents(outs: list[np.ndarray]) -> list[np.ndarray | None]:
    rng = np.random.default_rng(SEED + 7)
    return [rng.standard_normal(o.shape) if is_float(o) else None for o in outs]


def objective(c: Case, ins, params, couts) -> list[np.ndarray]:
    """The float outputs whose weighted sum is differentiated (kept apart, so that the two
    sides of a difference cancel element by element: a masked_fill's -1e4 entries, say)."""
    outs, _ = forward(c, ins, params)
    return [o for o, g in zip(outs, couts) if g is not None]


def numpy_grads(c: Case):
    """Float64 inputs, params, cotangents, and the VJP's input and parameter gradients."""
    node = op_node(c.graph)
    ins = [as64(c.inputs[name]) for name, _ in c.graph.inputs]
    params = {k: as64(v) for k, v in c.params0.items()}
    outs, ctx = forward(c, ins, params)
    couts = cotangents(outs)
    if all(g is None for g in couts):
        # No float output, so no gradient reaches the op: the walk does not call its vjp.
        gins, gparams = [None] * len(ins), {}
    else:
        gins, gparams = c.op.vjp(node.attrs, ins, outs, couts, ctx)
    assert len(gins) == len(ins), f"vjp gave {len(gins)} input cotangents for {len(ins)}"
    for x, g in zip(ins, gins):
        if g is not None:
            assert is_float(x), "a cotangent for an integer input"
            assert np.shape(g) == x.shape, f"input cotangent {np.shape(g)} for {x.shape}"
    keys = {}
    for local, g in gparams.items():
        key = f"{node.module}.{local}" if local else node.module
        assert np.shape(g) == params[key].shape, f"{key}: {np.shape(g)}"
        keys[key] = np.asarray(g)
    return ins, params, couts, gins, keys


# ---- the torch side ------------------------------------------------------------------------


def torch_grads(c: Case, ins, params, couts):
    m = c.prog.to_torch()()
    m.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in params.items()}, strict=True)
    m = m.double()
    m.train(c.ex.train)
    args = c.prog.torch_arg_names()
    tins = []
    for x in ins:
        t = torch.from_numpy(x.copy())
        tins.append(t.requires_grad_(True) if t.is_floating_point() else t)
    torch.manual_seed(SEED)
    out = m(**{args[name]: t for (name, _), t in zip(c.graph.inputs, tins)})
    out = out if isinstance(out, tuple) else (out,)
    pairs = [(o, torch.from_numpy(g)) for o, g in zip(out, couts)
             if g is not None and o.requires_grad]
    named = dict(m.named_parameters())
    wrt = [t for t in tins if t.requires_grad] + list(named.values())
    grads = torch.autograd.grad([o for o, _ in pairs], wrt, [g for _, g in pairs],
                                allow_unused=True) if pairs else [None] * len(wrt)
    grads = list(grads)
    gins = [grads.pop(0) if t.requires_grad else None for t in tins]
    return gins, dict(zip(named, grads))


def close(got, want, rtol, what):
    got = np.zeros_like(want) if got is None else np.asarray(got, dtype=np.float64)
    scale = max(float(np.abs(want).max()) if want.size else 0.0, 1.0)
    err = float(np.abs(got - want).max()) if want.size else 0.0
    assert err <= rtol * scale, f"{what}: max abs error {err:g} (scale {scale:g})"


def check_vjp_vs_torch(c: Case) -> None:
    ins, params, couts, gins, gparams = numpy_grads(c)
    t_ins, t_params = torch_grads(c, ins, params, couts)
    for (name, _), x, g, tg in zip(c.graph.inputs, ins, gins, t_ins):
        if is_float(x):
            want = np.zeros_like(x) if tg is None else tg.detach().numpy()
            close(g, want, RTOL, f"d/d{name}")
    assert sorted(gparams) == sorted(t_params), "parameter gradients: keys differ"
    for key, tg in t_params.items():
        want = np.zeros(tuple(tg.shape)) if tg is None else tg.detach().numpy()
        close(gparams[key], want, RTOL, f"d/d{key}")


def check_vjp_vs_finite_differences(c: Case) -> None:
    ins, params, couts, gins, gparams = numpy_grads(c)
    rng = np.random.default_rng(SEED + 3)
    arrays = [(f"input {i}", x, g, ("in", i)) for i, (x, g) in enumerate(zip(ins, gins))
              if is_float(x)]
    arrays += [(key, params[key], g, ("param", key)) for key, g in gparams.items()]
    for what, x, g, where in arrays:
        if x.size == 0:
            continue
        g = np.zeros_like(x) if g is None else np.asarray(g)
        scale = max(float(np.abs(g).max()), 1.0)
        exempt = FD_EXEMPT.get(c.op.name, lambda *args: False)
        for flat in rng.choice(x.size, size=min(FD_POINTS, x.size), replace=False):
            idx = np.unravel_index(flat, x.shape)
            if exempt(op_node(c.graph).attrs, what, idx):
                continue
            vals = []
            for step in (FD_EPS, -FD_EPS):
                xs = [a.copy() for a in ins]
                ps = {k: v.copy() for k, v in params.items()}
                target = xs[where[1]] if where[0] == "in" else ps[where[1]]
                target[idx] += step
                vals.append(objective(c, xs, ps, couts))
            weights = [w for w in couts if w is not None]
            fd = float(sum(np.sum((a - b) * w) for a, b, w in zip(vals[0], vals[1], weights)))
            fd /= 2 * FD_EPS
            assert abs(fd - g[idx]) <= FD_TOL * scale, \
                f"{what}{list(idx)}: vjp {g[idx]:.10g}, finite differences {fd:.10g}"


@pytest.mark.parametrize("name,index", grad_cases(torch_comparable=True))
def test_vjp_matches_torch_autograd(name, index):
    c = case(name, index)
    assert c.deterministic, "a random op that draws in this mode reached the torch check"
    check_vjp_vs_torch(c)


@pytest.mark.parametrize("name,index", grad_cases())
def test_vjp_matches_finite_differences(name, index):
    check_vjp_vs_finite_differences(case(name, index))


def test_check_catches_a_wrong_vjp(monkeypatch):
    """The torch and finite-difference checks both fail on a VJP off by a factor."""
    import dataclasses

    from tests.ops.test_registry import make_case

    def twice(attrs, ins, outs, gouts, ctx):
        return [2.0 * gouts[0]], {}

    op = dataclasses.replace(OPS["exp"], vjp=twice, no_grad="")
    monkeypatch.setitem(OPS, "exp", op)
    c = make_case(op, op.examples[0])
    with pytest.raises(AssertionError, match="max abs error"):
        check_vjp_vs_torch(c)
    with pytest.raises(AssertionError, match="finite differences"):
        check_vjp_vs_finite_differences(c)

"""Vjps of the attention family (ops/attention_grad.py) in the cases the Examples leave out:
multi-head attention with an attention mask and a key padding mask, and einsum with a
diagonal or a summed-out letter; float64 against torch.autograd. (Every Example is checked by
tests/ops/test_registry_grad.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from dslc.ops.base import RunCtx
from dslc.ops.registry import OPS

torch = pytest.importorskip("torch")


def _close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("cross", [False, True])
def test_mha_with_both_masks_matches_torch(cross):
    rng = np.random.default_rng(0)
    b, tq, tk, d = 2, 4, 5 if cross else 4, 6
    q = rng.standard_normal((b, tq, d))
    kv = rng.standard_normal((b, tk, d)) if cross else q
    attn = rng.random((tq, tk)) < 0.3
    attn[:, 0] = False  # every query keeps a key
    pad = np.zeros((b, tk), bool)
    pad[1, -2:] = True
    m = torch.nn.MultiheadAttention(d, 2, batch_first=True).double()
    params = {k: v.detach().numpy().copy() for k, v in m.state_dict().items()}
    op = OPS["multihead_attention"]
    a = op.attrs(num_heads=2, causal=not cross)
    ins = ([q, kv] if cross else [q]) + [attn, pad]
    ctx = RunCtx(train=False, rng=rng, params=params)
    outs = op.numpy(a, ins, ctx)
    g = rng.standard_normal(outs[0].shape)
    gins, gparams = op.vjp(a, ins, outs, [g], ctx)
    qt = torch.from_numpy(q).requires_grad_(True)
    kt = torch.from_numpy(kv).requires_grad_(True) if cross else qt
    mask = torch.from_numpy(attn)
    if not cross:
        mask = mask | torch.ones(tq, tk, dtype=torch.bool).triu(1)
    y = m(qt, kt, kt, attn_mask=mask, key_padding_mask=torch.from_numpy(pad),
          need_weights=False)[0]
    y.backward(torch.from_numpy(g))
    _close(outs[0], y.detach().numpy())
    _close(gins[0], qt.grad.numpy())
    if cross:
        _close(gins[1], kt.grad.numpy())
    assert gins[-1] is None and gins[-2] is None
    for k, p in m.named_parameters():
        _close(gparams[k], p.grad.numpy())


@pytest.mark.parametrize("eq,shapes", [
    ("ii->i", [(4, 4)]),
    ("ij->", [(3, 4)]),
    ("ij,jk->i", [(2, 3), (3, 4)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("iij,j->ij", [(3, 3, 2), (2,)]),
])
def test_einsum_vjp_matches_torch(eq, shapes):
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal(s) for s in shapes]
    op = OPS["einsum"]
    a = op.attrs(equation=eq)
    outs = op.numpy(a, xs, RunCtx(train=False, rng=rng))
    g = rng.standard_normal(outs[0].shape)
    gins, _ = op.vjp(a, xs, outs, [g], RunCtx(train=False, rng=rng))
    ts = [torch.from_numpy(x).requires_grad_(True) for x in xs]
    torch.einsum(eq, *ts).backward(torch.from_numpy(g))
    for got, t in zip(gins, ts):
        _close(got, t.grad.numpy())


@pytest.mark.parametrize("roles", ["self", "kv", "cross", "same_array_thrice"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tuned_mha_vjp_equals_the_plain_form(roles, dtype):
    """The tuned vjp (the forward's projections reused, self-attention's input projection as
    one GEMM) against the plain one (projections computed again, one product per role), with
    attention dropout in training."""
    from dslc.ops.attention_grad import mha_vjp

    rng = np.random.default_rng(3)
    b, t, d = 2, 5, 8
    x = rng.standard_normal((b, t, d)).astype(dtype)
    y = rng.standard_normal((b, t + 1, d)).astype(dtype)
    z = rng.standard_normal((b, t + 1, d)).astype(dtype)
    ins = {"self": [x], "kv": [x, y], "cross": [x, y, z], "same_array_thrice": [x, x, x]}[roles]
    m = torch.nn.MultiheadAttention(d, 2, batch_first=True)
    params = {k: v.detach().numpy().astype(dtype) for k, v in m.state_dict().items()}
    op = OPS["multihead_attention"]
    a = op.attrs(num_heads=2, dropout=0.3)
    ctx = RunCtx(train=True, rng=rng, params=params)
    outs = op.numpy(a, ins, ctx)
    assert "qkv" in ctx.saved and "dropout" in ctx.saved
    g = rng.standard_normal(outs[0].shape).astype(dtype)
    tuned = mha_vjp(a, ins, outs, [g], ctx)
    plain = mha_vjp(a, ins, outs, [g], ctx, tuned=False)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    for got, want in zip(tuned[0], plain[0]):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    assert sorted(tuned[1]) == sorted(plain[1])
    for key in plain[1]:
        np.testing.assert_allclose(tuned[1][key], plain[1][key], rtol=tol, atol=tol,
                                   err_msg=key)

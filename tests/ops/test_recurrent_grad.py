"""The vjps of rnn, lstm and gru (ops/recurrent_grad.py, backpropagation through time) with
sequence lengths (against torch.autograd through packed sequences) and training dropout
(finite differences). Every Example is checked by tests/ops/test_registry_grad.py."""

from __future__ import annotations

import numpy as np
import pytest

from dslc.ops.base import RunCtx
from dslc.ops.registry import OPS

torch = pytest.importorskip("torch")



def _torch_module(kind, a, f):
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
    return cls(f, a.hidden_size, num_layers=a.num_layers, bidirectional=a.bidirectional,
               batch_first=True, dropout=a.dropout).double()


@pytest.mark.parametrize("kind", ("rnn", "lstm", "gru"))
@pytest.mark.parametrize("bidirectional", [False, True])
def test_vjp_with_lengths_matches_packed_sequences(kind, bidirectional):
    """Rows shorter than T: no cotangent flows through the steps past their length."""
    op = OPS[kind]
    a = op.attrs(hidden_size=3, num_layers=2, bidirectional=bidirectional)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 2))
    lengths = np.array([5, 2, 4])
    m = _torch_module(kind, a, 2)
    params = {k: v.detach().numpy().copy() for k, v in m.state_dict().items()}
    ctx = RunCtx(train=False, rng=rng, params=params)
    outs = op.numpy(a, [x, lengths], ctx)
    gouts = [rng.standard_normal(o.shape) for o in outs]
    gins, gparams = op.vjp(a, [x, lengths], outs, gouts, ctx)
    xt = torch.from_numpy(x).requires_grad_(True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.from_numpy(lengths),
                                                     batch_first=True, enforce_sorted=False)
    y, state = m(packed)
    y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=5)
    states = state if kind == "lstm" else (state,)
    total = (y * torch.from_numpy(gouts[0])).sum() + sum(
        (s * torch.from_numpy(g)).sum() for s, g in zip(states, gouts[1:]))
    total.backward()
    assert gins[-1] is None
    np.testing.assert_allclose(gins[0], xt.grad.numpy(), rtol=1e-8, atol=1e-10)
    for k, p in m.named_parameters():
        np.testing.assert_allclose(gparams[k], p.grad.numpy(), rtol=1e-8, atol=1e-10,
                                   err_msg=k)


@pytest.mark.parametrize("kind", ("rnn", "lstm", "gru"))
def test_vjp_reuses_the_forward_dropout_masks(kind):
    """Training dropout between layers: the vjp of y equals the finite difference of the
    same forward (same masks), by recomputing with the saved masks' random stream."""
    op = OPS[kind]
    a = op.attrs(hidden_size=3, num_layers=3, dropout=0.5)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 2))
    m = _torch_module(kind, a, 2)
    params = {k: v.detach().numpy().copy() for k, v in m.state_dict().items()}

    def run(xv):
        ctx = RunCtx(train=True, rng=np.random.default_rng(7), params=params)
        return op.numpy(a, [xv], ctx), ctx

    outs, ctx = run(x)
    assert "dropout_l0" in ctx.saved and "dropout_l1" in ctx.saved
    g = rng.standard_normal(outs[0].shape)
    gins, _ = op.vjp(a, [x], outs, [g] + [None] * (len(outs) - 1), ctx)
    eps = 1e-6
    for idx in [(0, 0, 0), (1, 2, 1), (0, 3, 1)]:
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        fd = ((run(xp)[0][0] * g).sum() - (run(xm)[0][0] * g).sum()) / (2 * eps)
        assert abs(fd - gins[0][idx]) <= 1e-6 * max(1.0, abs(fd))


@pytest.mark.parametrize("kind", ("rnn", "lstm", "gru"))
def test_the_kernel_leaves_an_initial_state_it_is_given_alone(kind):
    """An initial state laid out [H, B]-contiguous (another layer's final state, say) is
    not updated in place: seq2seq's encoder state once ended up holding the decoder's, and
    the decoder's vjp then recomputed from the wrong h0."""
    op = OPS[kind]
    a = op.attrs(hidden_size=4)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 3))
    states = [np.asfortranarray(rng.standard_normal((1, 2, 4)))
              for _ in range(2 if kind == "lstm" else 1)]
    m = _torch_module(kind, a, 3)
    params = {k: v.detach().numpy().copy() for k, v in m.state_dict().items()}
    before = [s.copy() for s in states]
    op.numpy(a, [x] + states, RunCtx(train=False, rng=rng, params=params))
    for s, b in zip(states, before):
        np.testing.assert_array_equal(s, b)


@pytest.mark.parametrize("recorded", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layers,bidirectional,states,dropout", [
    (1, False, False, 0.0), (2, False, True, 0.0), (2, True, True, 0.0), (3, True, False, 0.4),
])
def test_tuned_lstm_vjp_equals_the_plain_form_and_torch(layers, bidirectional, states,
                                                        dropout, dtype, recorded):
    """The tuned LSTM vjp against the plain one, and against torch.autograd when there is no
    dropout (torch's masks differ): `recorded`, walking back from the steps the forward kernel
    recorded (ctx.grad, as the backward walk runs it), else from its own in-place replay."""
    from dslc.ops.recurrent_grad import recurrent_vjp

    op = OPS["lstm"]
    a = op.attrs(hidden_size=4, num_layers=layers, bidirectional=bidirectional,
                 dropout=dropout)
    rng = np.random.default_rng(5)
    nd = 2 if bidirectional else 1
    x = rng.standard_normal((3, 6, 5)).astype(dtype)
    ins = [x]
    if states:
        ins += [rng.standard_normal((layers * nd, 3, 4)).astype(dtype) for _ in range(2)]
    m = _torch_module("lstm", a, 5)
    params = {k: v.detach().numpy().astype(dtype) for k, v in m.state_dict().items()}
    ctx = RunCtx(train=dropout > 0, rng=rng, params=params, grad=recorded)
    outs = op.numpy(a, ins, ctx)
    assert ("lstm_l0" in ctx.saved) == recorded
    gouts = [rng.standard_normal(o.shape).astype(dtype) for o in outs]
    tuned = recurrent_vjp("lstm")(a, ins, outs, gouts, ctx)
    plain = recurrent_vjp("lstm", tuned=False)(a, ins, outs, gouts, ctx)
    tol = 1e-4 if dtype == np.float32 else 1e-11
    for got, want in zip(tuned[0], plain[0]):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    assert sorted(tuned[1]) == sorted(plain[1])
    for key, want in plain[1].items():
        assert tuned[1][key].dtype == want.dtype, key
        np.testing.assert_allclose(tuned[1][key], want, rtol=tol, atol=tol, err_msg=key)
    if dropout or dtype == np.float32:
        return
    tins = [torch.from_numpy(v.copy()).requires_grad_(True) for v in ins]
    y, (hn, cn) = m(tins[0], (tins[1], tins[2]) if states else None)
    sum((t * torch.from_numpy(g)).sum() for t, g in zip((y, hn, cn), gouts)).backward()
    for got, t in zip(tuned[0], tins):
        np.testing.assert_allclose(got, t.grad.numpy(), rtol=1e-8, atol=1e-10)
    for key, p in m.named_parameters():
        np.testing.assert_allclose(tuned[1][key], p.grad.numpy(), rtol=1e-8, atol=1e-10,
                                   err_msg=key)

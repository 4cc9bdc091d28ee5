"""Tests of dslc/ops/activation.py beyond the registry's examples: every activation against
torch.nn.functional at the edges (inf, NaN, signed zeros, bends, thresholds) in f16/f32/f64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dslc
from tests.helpers import assert_close
from tests.ops.pointwise import assert_matches, edge_values, load_error, one_op


@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_elu_at_the_extremes_equals_torch(dtype, alpha):
    prog = dslc.load("t.dl", text=f"model t {{\n  input x: {dtype}[N]\n"
                     f"  output y = x -> elu({alpha})\n}}\n")
    np_dtype = {"f32": np.float32, "f64": np.float64}[dtype]
    x = np.array([-3e38, -1e4, -100.0, -1.0, -1e-8, -0.0, 0.0, 1e-8, 1.0, 100.0, 3e38],
                 np_dtype)
    got = prog.run({"x": x})["y"]
    want = F.elu(torch.from_numpy(x), alpha=alpha).numpy()
    assert got.dtype == x.dtype
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got[x > 0], x[x > 0])  # exact on the positive side
    np.testing.assert_allclose(got[:3], -alpha, rtol=1e-7)  # saturates at -alpha
    assert_close(got, want, rtol=1e-6, atol=1e-7)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(1000) * 4).astype(np_dtype)
    assert_close(prog.run({"x": x})["y"], F.elu(torch.from_numpy(x), alpha=alpha).numpy(),
                 rtol=1e-6, atol=1e-7)


# ---- the activations of issue 13 against torch.nn.functional at the edges ------------------

# (DSL call, the torch function it must equal, exact in float32/float64?). The piecewise-linear
# ones are exact; the transcendental ones agree to a few ulps (NumPy's exp/log/tanh are not
# torch's vectorised ones).
ACTIVATION_CASES = [
    ("relu6", F.relu6, True),
    ("hardtanh", F.hardtanh, True),
    ("hardtanh(-0.5, 2.0)", lambda t: F.hardtanh(t, -0.5, 2.0), True),
    ("hardtanh(min_val=0, max_val=0)", lambda t: F.hardtanh(t, 0.0, 0.0), True),
    ("hardswish", F.hardswish, True),
    ("hardsigmoid", F.hardsigmoid, True),
    ("hard_sigmoid", F.hardsigmoid, True),
    ("clamp(min=-1.5, max=2.0)", lambda t: torch.clamp(t, -1.5, 2.0), True),
    ("clamp(min=0)", lambda t: torch.clamp(t, min=0), True),
    ("clamp(max=-2.5)", lambda t: torch.clamp(t, max=-2.5), True),
    ("clamp(3.0, 1.0)", lambda t: torch.clamp(t, 3.0, 1.0), True),  # min > max: all max
    ("softsign", F.softsign, True),
    ("selu", F.selu, False),
    ("celu", F.celu, False),
    ("celu(0.5)", lambda t: F.celu(t, 0.5), False),
    ("celu(-2.0)", lambda t: F.celu(t, -2.0), False),
    ("softplus", F.softplus, False),
    ("softplus(2.0, 3.0)", lambda t: F.softplus(t, 2.0, 3.0), False),
    ("softplus(beta=0.5, threshold=100.0)", lambda t: F.softplus(t, 0.5, 100.0), False),
    ("silu", F.silu, False),
    ("mish", F.mish, False),
    ("logsigmoid", F.logsigmoid, False),
    ('gelu(approximate="tanh")', lambda t: F.gelu(t, approximate="tanh"), False),
    ("gelu", F.gelu, False),
    ("elu", F.elu, False),
    ("elu(0.5)", lambda t: F.elu(t, 0.5), False),
]

# Relative tolerance (to the larger magnitude of the two) and absolute floor per dtype for the
# transcendental ones: about 3 ulps, and an absolute floor where 1 + tanh or 1 + erf cancels.
TOL = {"f16": (1e-3, 1e-7), "f32": (5e-7, 1e-7), "f64": (1e-14, 1e-15)}


@pytest.mark.parametrize("dtype", ["f16", "f32", "f64"])
@pytest.mark.parametrize("call,fn,exact", ACTIVATION_CASES, ids=[c[0] for c in ACTIVATION_CASES])
def test_activation_equals_torch_at_the_edges(call, fn, exact, dtype):
    x = edge_values(dtype)
    if call == "gelu" and dtype != "f64":
        # torch's vectorised float erf gives NaN at +-inf and overflows at 3e38; the
        # interpreter gives torch's float64 answers there (inf, NaN from -inf · 0, 3e38).
        x = x[np.abs(x.astype(np.float64)) < 1e38]
    got, generated = one_op(f"x -> {call}", x)
    want = fn(torch.from_numpy(x)).numpy()
    assert_matches(generated, want)  # the generated call is the same torch function
    if exact:
        assert_matches(got, want)
        return
    rtol, atol = TOL[dtype]
    if call.startswith("gelu") and dtype != "f64":
        # 1 + erf(x) and 1 + tanh(x) cancel for x < 0: an ulp of torch's float erf or tanh
        # near -1 is 6e-8 · |x| off in the result (5e-7 at gelu(-3) = -0.00405).
        atol = 1e-6
    if call.startswith("elu") and dtype != "f16":
        # exp(x) - 1, not expm1 (dslc/ops/activation.py says why): an ulp of 1 absolutely.
        atol = {"f32": 1.2e-7, "f64": 2.3e-16}[dtype]
    assert_matches(got, want, rtol=rtol, atol=atol)


def test_relu6_hardswish_hardsigmoid_at_their_bends():
    x = np.array([-np.inf, -3.0001, -3.0, -2.9999, 0.0, 2.9999, 3.0, 3.0001, 5.9999, 6.0, 6.0001,
                  np.inf, np.nan], np.float32)
    got = one_op("x -> relu6", x)[0]
    np.testing.assert_array_equal(got[:-1], np.clip(x[:-1], 0, 6))
    assert np.isnan(got[-1])
    swish = one_op("x -> hardswish", x)[0]
    assert swish[2] == 0.0 and swish[6] == 3.0 and swish[9] == 6.0  # exact at -3, 3 and 6
    assert np.isnan(swish[0]) and swish[-2] == np.inf  # -inf · 0 and inf · 1, as torch
    sig = one_op("x -> hardsigmoid", x)[0]
    assert sig[2] == 0.0 and sig[6] == 1.0 and sig[4] == 0.5


def test_softplus_switches_to_x_where_torch_does():
    x = np.array([19.999998, 20.0, 20.000002, 40.0, 100.0, 1e4, 3e38], np.float32)
    got = one_op("x -> softplus", x)[0]
    want = F.softplus(torch.from_numpy(x)).numpy()
    # Above the threshold it is x itself, bit for bit; at it, the log1p branch (not x).
    np.testing.assert_array_equal(got[2:], x[2:])
    np.testing.assert_array_equal(got[2:], want[2:])
    assert_matches(got, want, rtol=5e-7)
    # A threshold so large that exp overflows first gives inf, as torch.
    got = one_op("x -> softplus(threshold=1000.0)", x)[0]
    assert_matches(got, F.softplus(torch.from_numpy(x), threshold=1000.0).numpy(), rtol=5e-7)
    assert got[4] == np.inf and got[5] == 1e4  # exp(100) overflows float32; 1e4 > 1000


def test_selu_constants_to_full_precision():
    x = np.array([1.0, -np.inf, -1e300, 1e-300], np.float64)
    got = one_op("x -> selu", x)[0]
    want = F.selu(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(got, want)
    assert got[0] == 1.0507009873554804934193349852946
    assert got[1] == -1.0507009873554804934193349852946 * 1.6732632423543772848170429916717


def test_mish_and_silu_do_not_overflow_to_nan():
    x = np.array([88.0, 89.0, 100.0, 1e4, 3e38, -88.0, -100.0, -1e4, -3e38], np.float32)
    for call, fn in (("mish", F.mish), ("silu", F.silu)):
        got = one_op(f"x -> {call}", x)[0]
        want = fn(torch.from_numpy(x)).numpy()
        assert np.isfinite(got).all(), call
        np.testing.assert_array_equal(got[:5], x[:5])  # x · 1 for large x
        assert_matches(got, want, rtol=5e-7, atol=1e-30)


def test_logsigmoid_is_stable_far_from_zero():
    x = np.array([-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4], np.float64)
    got = one_op("x -> logsigmoid", x)[0]
    np.testing.assert_allclose(got[:2], x[:2])  # log(sigmoid(x)) = x for very negative x
    assert got[-1] == -0.0 and np.isfinite(got).all()
    assert_matches(got, F.logsigmoid(torch.from_numpy(x)).numpy(), rtol=1e-15)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_glu_and_softmin_along_each_axis(dim):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((4, 6, 2)) * 5).astype(np.float32)
    got, generated = one_op(f"x -> glu({dim})", x)
    want = F.glu(torch.from_numpy(x), dim=dim).numpy()
    assert got.shape == want.shape and got.shape[dim] == x.shape[dim] // 2
    assert_matches(got, want, rtol=5e-7, atol=1e-7)
    assert_matches(generated, want)
    got, generated = one_op(f"x -> softmin(dim={dim})", x)
    want = F.softmin(torch.from_numpy(x), dim=dim).numpy()
    assert_matches(got, want, rtol=5e-6, atol=1e-7)
    assert_matches(generated, want)
    np.testing.assert_allclose(got.sum(axis=dim), 1.0, rtol=1e-6)


@pytest.mark.parametrize("call,dtype,fn", [
    ("clamp(min=2, max=5)", np.int64, lambda t: torch.clamp(t, 2, 5)),
    ("clamp(max=0)", np.int32, lambda t: torch.clamp(t, max=0)),
    ("clamp(min=2.5)", np.int64, lambda t: torch.clamp(t, min=2.5)),  # promotes to f32
    ("clamp(min=-1, max=0.5)", np.int32, lambda t: torch.clamp(t, min=-1, max=0.5)),
])
def test_clamp_on_integers_keeps_or_promotes_their_dtype_as_torch(call, dtype, fn):
    x = np.arange(-6, 7, dtype=dtype)
    got, generated = one_op(f"x -> {call}", x)
    want = fn(torch.from_numpy(x)).numpy()
    assert_matches(got, want)
    assert_matches(generated, want)


def test_clamp_rounds_its_bound_to_the_tensor_dtype():
    # 0.1 is 0.0999755859375 in float16; torch compares (and returns) the rounded bound.
    x = np.array([0.0, 0.09997, 0.1, 0.2], np.float16)
    got = one_op("x -> clamp(min=0.1)", x)[0]
    assert_matches(got, torch.clamp(torch.from_numpy(x), min=0.1).numpy())


@pytest.mark.parametrize("text,code,where", [
    ("x -> clamp", "E0340", "clamp"),
    ("x -> hardtanh(2.0, 1.0)", "E0340", "hardtanh"),
    ("x -> celu(0.0)", "E0341", "celu"),
    ("x -> glu(1)", "E0344", "glu"),
    ("x -> glu(0)", "E0304", "glu"),
    ("i -> relu6", "E0302", "relu6"),
    ("i -> softplus", "E0302", "softplus"),
    ("b -> clamp(min=0)", "E0302", "clamp"),
])
def test_bad_activation_arguments_are_located_diagnostics(text, code, where):
    d = load_error("model t {\n  input x: f32[B, 5]\n  input i: i64[4]\n  input b: bool[4]\n"
                   f"  output y = {text}\n}}\n")
    assert d.code == code, d
    assert d.span.line == 5, d.span


def test_hard_bounds_equal_the_plain_two_pass_form():
    """_hard (np.clip where lo <= hi, for speed) equals min(max(x, lo), hi), torch's clamp
    order, on NaN, infinities, the bends and both bound orders."""
    from dslc.ops.activation import _hard

    x = np.array([np.nan, -np.inf, np.inf, -6.0, -0.0, 0.0, 3.0, 6.0, 6.5, -1e30, 1e30],
                 np.float32)
    for lo, hi in ((0, 6), (-1.0, 1.0), (2.0, 2.0), (3.0, -1.0)):
        want = np.minimum(np.maximum(x, lo), hi)
        got = _hard(x, lo, hi)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(_hard(x.astype(np.float64), lo, hi),
                                      want.astype(np.float64))

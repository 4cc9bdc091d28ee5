"""Tests of dslc/ops/math.py beyond the registry's examples: each element-wise op against torch
at the edges (inf, NaN, signed zeros, integer extremes) in every dtype, torch's dtype
promotion, and the diagnostics for what torch refuses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dslc.types import dtype_of_array
from tests.ops.pointwise import DTYPES, assert_matches, edge_values, load_error, one_op

# About one ulp: NumPy's exp/log/sqrt are correctly rounded or nearly; torch's vectorised ones
# are within an ulp (torch's float32 sqrt here is not correctly rounded: sqrt(1e-8)).
ULP = {"f16": 1e-3, "f32": 2.5e-7, "f64": 4.5e-16}
FLOAT_UNARY = ["exp", "log", "log1p", "sqrt", "rsqrt", "reciprocal"]
EXACT_UNARY = ["abs", "sign", "square"]


@pytest.mark.parametrize("dtype", ["f16", "f32", "f64"])
@pytest.mark.parametrize("name", EXACT_UNARY + FLOAT_UNARY)
def test_unary_equals_torch_at_the_edges(name, dtype):
    x = edge_values(dtype)
    got, generated = one_op(f"x -> {name}", x)
    want = getattr(torch, name)(torch.from_numpy(x)).numpy()
    assert_matches(generated, want)
    assert_matches(got, want, rtol=0.0 if name in EXACT_UNARY else ULP[dtype])


def test_unary_edge_answers():
    x = np.array([0.0, -0.0, -1.0, -np.inf, np.inf, np.nan], np.float32)
    out = {name: one_op(f"x -> {name}", x)[0] for name in EXACT_UNARY + FLOAT_UNARY}
    np.testing.assert_array_equal(out["log"][:4], [-np.inf, -np.inf, np.nan, np.nan])
    np.testing.assert_array_equal(out["log1p"][2], -np.inf)
    np.testing.assert_array_equal(out["rsqrt"][:2], [np.inf, -np.inf])  # 1 / sqrt(-0.0)
    np.testing.assert_array_equal(out["reciprocal"][:2], [np.inf, -np.inf])
    np.testing.assert_array_equal(out["exp"][3:5], [0.0, np.inf])
    # torch's sign is (0 < x) - (x < 0): 0 at NaN and +0 at -0.0 (np.sign gives NaN, -0.0).
    np.testing.assert_array_equal(out["sign"], [0, 0, -1, -1, 1, 0])
    assert not np.signbit(out["sign"][1])
    for name, y in out.items():
        assert y.dtype == np.float32, name


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("name", EXACT_UNARY)
def test_integer_unary_keeps_the_dtype_and_wraps_as_torch(name, dtype):
    info = np.iinfo(dtype)
    x = np.array([info.min, info.min + 1, -70000, -7, -1, 0, 1, 7, 70000, info.max], dtype)
    got, generated = one_op(f"x -> {name}", x)
    want = getattr(torch, name)(torch.from_numpy(x)).numpy()
    assert got.dtype == dtype
    assert_matches(got, want)  # abs(min) and square overflow wrap the same way
    assert_matches(generated, want)


@pytest.mark.parametrize("name", FLOAT_UNARY)
def test_float_only_ops_refuse_integers_at_the_call(name):
    d = load_error(f"model t {{\n  input i: i64[4]\n  output y = i -> {name}\n}}\n")
    assert d.code == "E0302" and d.span.line == 3, d
    assert "f32" in d.expected and "i64" in d.found


@pytest.mark.parametrize("name", EXACT_UNARY)
def test_numeric_ops_refuse_bool(name):
    d = load_error(f"model t {{\n  input b: bool[4]\n  output y = b -> {name}\n}}\n")
    assert d.code == "E0302" and d.span.line == 3, d


# ---- pow -----------------------------------------------------------------------------------

EXPONENTS = [0, 1, 2, 3, 4, -1, -2, 0.0, 0.5, -0.5, 1.5, -1.5, 2.0, 3.0, -1.0, 1e-3]


@pytest.mark.parametrize("dtype", ["f16", "f32", "f64"])
@pytest.mark.parametrize("e", EXPONENTS, ids=repr)
def test_pow_scalar_equals_torch_at_the_edges(e, dtype):
    x = edge_values(dtype)
    got, generated = one_op(f"x -> pow({e!r})", x)
    want = (torch.from_numpy(x) ** e).numpy()
    assert_matches(generated, want)
    # sqrt(-inf) = NaN for float32 (torch's shortcut) but pow(-inf, 0.5) = inf for float16,
    # -0.0 ** 0.5 likewise: the NaN, inf and zero-sign pattern must be torch's exactly.
    assert_matches(got, want, rtol=ULP[dtype])


def test_pow_language_forms_and_emitted_code():
    x = np.array([1.5, -2.0, 0.25], np.float32)
    got, generated = one_op("pow(x, 2)", x)
    np.testing.assert_array_equal(got, x * x)
    np.testing.assert_array_equal(generated, x * x)
    got, _ = one_op("x -> pow(exponent=-1)", x)
    np.testing.assert_array_equal(got, 1 / x)
    import dslc

    prog = dslc.load("t.dl", text="model t {\n  input x: f32[3]\n  input y: f32[3]\n"
                     "  a = x -> pow(2.0)\n  b = pow(x, y)\n  output a, b\n}\n")
    src = prog.to_torch_source()
    assert "a = x ** 2.0" in src and "b = x ** y" in src


@pytest.mark.parametrize("e,dtype", [(0, np.int64), (3, np.int64), (5, np.int32),
                                     (0.5, np.int64), (2.0, np.int32), (-1.5, np.int32)])
def test_integer_pow_dtype_and_values_as_torch(e, dtype):
    x = np.array([-3, -1, 0, 1, 2, 7, 100000], dtype)
    got, generated = one_op(f"x -> pow({e!r})", x)
    want = (torch.from_numpy(x) ** e).numpy()
    assert dtype_of_array(got) == ("f32" if isinstance(e, float) else dtype_of_array(x))
    assert_matches(got, want, rtol=ULP["f32"])  # 100000 ** 5 wraps in int32 as in torch
    assert_matches(generated, want)


@pytest.mark.parametrize("a,b", [("f32", "f32"), ("f32", "i64"), ("i32", "f64"),
                                 ("f16", "f32"), ("f16", "f16")])
def test_pow_of_two_tensors_broadcasts_and_promotes(a, b):
    rng = np.random.default_rng(3)
    base = rng.uniform(0.0, 3.0, (4, 1, 5)).astype(DTYPES.get(a, np.int32))
    exp = (rng.uniform(-2.0, 3.0, (3, 5)) if b in DTYPES else
           rng.integers(-2, 4, (3, 5))).astype(DTYPES.get(b, np.int64))
    base[0, 0, :3] = [0.0, -0.0, np.inf] if a in DTYPES else 0
    got, generated = one_op("pow(x0, x1)", base, exp)
    want = torch.pow(torch.from_numpy(base), torch.from_numpy(exp)).numpy()
    assert got.shape == (4, 3, 5)
    assert_matches(generated, want)
    assert_matches(got, want, rtol=ULP[dtype_of_array(want)])


@pytest.mark.parametrize("text", ["i -> pow(-1)", "pow(i, j)"])
def test_integer_pow_that_torch_refuses_is_e0342(text):
    d = load_error("model t {\n  input i: i64[4]\n  input j: i32[4]\n"
                   f"  output y = {text}\n}}\n")
    assert d.code == "E0342" and d.span.line == 4, d


def test_pow_needs_an_exponent():
    d = load_error("model t {\n  input x: f32[4]\n  output y = x -> pow\n}\n")
    assert d.span.line == 3 and "exponent" in d.message


# ---- comparisons -----------------------------------------------------------------------------

COMPARISONS = {"eq": torch.eq, "ne": torch.ne, "lt": torch.lt, "le": torch.le, "gt": torch.gt,
               "ge": torch.ge}
SPECIAL = np.array([-np.inf, -1.0, -0.0, 0.0, 1.0, 2.5, np.inf, np.nan], np.float64)


@pytest.mark.parametrize("dtype", ["f16", "f32", "f64"])
@pytest.mark.parametrize("name", list(COMPARISONS))
def test_comparison_of_tensors_broadcasts_and_equals_torch(name, dtype):
    a = SPECIAL.astype(DTYPES[dtype])[:, None]  # [8, 1] against [8]: every pair
    b = SPECIAL.astype(DTYPES[dtype])
    got, generated = one_op(f"{name}(x0, x1)", a, b)
    want = COMPARISONS[name](torch.from_numpy(a), torch.from_numpy(b)).numpy()
    assert got.dtype == np.bool_ and got.shape == (8, 8)
    assert_matches(got, want)
    assert_matches(generated, want)
    # NaN is unequal to everything, itself included; -0.0 equals 0.0.
    assert got[7, 7] == (name == "ne") and got[2, 3] == (name in ("eq", "le", "ge"))


@pytest.mark.parametrize("other", ["0.0", "-0.0", "2.5", "1", "-1", "1e30", "1e999", "-1e999"])
@pytest.mark.parametrize("name", list(COMPARISONS))
def test_comparison_with_a_number_equals_torch(name, other):
    # `1e999` is how a spec writes infinity; the generated code must spell it float('inf').
    x = SPECIAL.astype(np.float32)
    got, generated = one_op(f"x -> {name}({other})", x)
    value = float(other) if "." in other or "e" in other else int(other)
    want = COMPARISONS[name](torch.from_numpy(x), value).numpy()
    assert_matches(got, want)
    assert_matches(generated, want)


@pytest.mark.parametrize("dtypes,values,other", [
    # An i64 against a float number is compared in float32, as in torch: 2^24 + 1 == 2^24.
    (("i64",), [16777217, 16777216, -3], 16777216.0),
    (("i32",), [2, 3, -2147483648], 2),
    (("i64",), [2**40 + 1, 2**40, -(2**40)], 2**40),  # ints compared exactly
    (("i32",), [2147483647, -2147483648, 0], -2147483648),
])
def test_comparison_of_integers_with_numbers_promotes_as_torch(dtypes, values, other):
    x = np.array(values, DTYPES.get(dtypes[0], {"i64": np.int64, "i32": np.int32}[dtypes[0]]))
    for name, fn in COMPARISONS.items():
        got, generated = one_op(f"x -> {name}({other!r})", x)
        want = fn(torch.from_numpy(x), other).numpy()
        assert_matches(got, want)
        assert_matches(generated, want)


@pytest.mark.parametrize("a,b", [(np.int64, np.float32), (np.int32, np.int64),
                                 (np.float16, np.float32), (np.float16, np.int64)])
def test_comparison_of_mixed_dtypes_promotes_as_torch(a, b):
    x0 = np.array([16777217, 3, 0, -2, 65519], a) if a != np.float16 else \
        np.array([2049, 3, 0, -2, 65504], a)
    x1 = np.array([16777216, 3, -0.0, -1, 65520], b) if b != np.int64 or a != np.float16 else \
        np.array([2049, 3, 0, -1, 65520], b)
    for name, fn in COMPARISONS.items():
        got, generated = one_op(f"{name}(x0, x1)", x0, x1)
        want = fn(torch.from_numpy(x0), torch.from_numpy(x1)).numpy()
        assert_matches(got, want)
        assert_matches(generated, want)


def test_comparison_emits_python_operators():
    import dslc

    prog = dslc.load("t.dl", text="model t {\n  input x: f32[3]\n  input y: f32[3]\n"
                     "  a = x -> gt(0.5)\n  b = le(x, y)\n  output a, b\n}\n")
    src = prog.to_torch_source()
    assert "a = x > 0.5" in src and "b = x <= y" in src


def test_comparison_needs_a_right_hand_side():
    d = load_error("model t {\n  input x: f32[4]\n  output y = x -> lt\n}\n")
    assert d.span.line == 3


def test_comparison_of_shapes_that_do_not_broadcast_is_e0303():
    d = load_error("model t {\n  input x: f32[4]\n  input y: f32[3]\n"
                   "  output z = eq(x, y)\n}\n")
    assert d.code == "E0303" and d.span.line == 4


# ---- where, minimum, maximum -----------------------------------------------------------------


@pytest.mark.parametrize("a,b", [(np.float32, np.float32), (np.float16, np.float32),
                                 (np.int32, np.int64), (np.int64, np.float64),
                                 (np.float16, np.float16)])
def test_where_broadcasts_and_promotes_as_torch(a, b):
    rng = np.random.default_rng(5)
    cond = rng.random((3, 1, 4)) < 0.5
    x = (rng.standard_normal((2, 4)) * 100).astype(a)
    y = (rng.standard_normal((5, 1, 1, 1)) * 100).astype(b)
    got, generated = one_op("where(x0, x1, x2)", cond, x, y)
    want = torch.where(torch.from_numpy(cond), torch.from_numpy(x), torch.from_numpy(y)).numpy()
    assert got.shape == (5, 3, 2, 4)
    assert_matches(got, want)
    assert_matches(generated, want)


@pytest.mark.parametrize("dtype,other", [(np.float32, 0.0), (np.float16, -1e30),
                                         (np.int32, 2), (np.int32, 0.5), (np.int64, -7),
                                         (np.float64, 1e-300)], ids=str)
def test_where_with_a_number_keeps_or_promotes_as_torch(dtype, other):
    rng = np.random.default_rng(6)
    cond = rng.random((3, 4)) < 0.5
    x = (rng.standard_normal((3, 4)) * 10).astype(dtype)
    got, generated = one_op(f"where(x0, x1, {other!r})", cond, x)
    want = torch.where(torch.from_numpy(cond), torch.from_numpy(x), other).numpy()
    assert_matches(got, want)
    assert_matches(generated, want)


def test_where_keeps_nan_and_signed_zero_of_the_chosen_branch():
    cond = np.array([True, False, True, False])
    x = np.array([np.nan, 1.0, -0.0, 2.0], np.float32)
    y = np.array([0.0, np.nan, 5.0, -0.0], np.float32)
    got = one_op("where(x0, x1, x2)", cond, x, y)[0]
    assert np.isnan(got[0]) and np.isnan(got[1])
    assert np.signbit(got[2]) and np.signbit(got[3])


WHERE_SPEC = ("model t {{\n  input c: bool[4]\n  input x: f32[4]\n  input i: i64[4]\n"
              "  input z: f32[3]\n  output y = {}\n}}\n")


@pytest.mark.parametrize("text,code", [("where(x, x, x)", "E0302"),  # a float condition
                                       ("where(c, x, z)", "E0303"),  # [4] and [3]
                                       ("where(c, x)", "E0301")])  # no value for false
def test_where_diagnostics(text, code):
    d = load_error(WHERE_SPEC.format(text))
    assert d.code == code and d.span.line == 6, d


def test_where_of_float_and_integer_branches_is_float():
    import dslc

    prog = dslc.load("t.dl", text=WHERE_SPEC.format("where(c, x, i)"))
    node = prog.graph.nodes[prog.graph.outputs[0][1][0]]
    assert str(node.types[0]) == "f32[4]"


@pytest.mark.parametrize("name", ["minimum", "maximum"])
def test_minimum_maximum_propagate_nan_and_promote_as_torch(name):
    a = np.array([[1.0, np.nan, -0.0, np.inf, -np.inf, 3.0]], np.float32)
    b = np.array([[np.nan], [0.0], [2.0]], np.float32)
    got, generated = one_op(f"{name}(x0, x1)", a, b)
    want = getattr(torch, name)(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    assert got.shape == (3, 6)
    assert np.isnan(got[0]).all() and np.isnan(got[:, 1]).all()
    assert_matches(got, want)
    assert_matches(generated, want)
    i32 = np.array([5, -7, 2147483647], np.int32)
    i64 = np.array([2**40, -8, 0], np.int64)
    got = one_op(f"{name}(x0, x1)", i32, i64)[0]
    assert_matches(got, getattr(torch, name)(torch.from_numpy(i32), torch.from_numpy(i64)).numpy())
    f16 = np.array([1.0, 2049.0, -3.0], np.float16)
    got = one_op(f"{name}(x0, x1)", f16, i64)[0]
    assert got.dtype == np.float16
    assert_matches(got, getattr(torch, name)(torch.from_numpy(f16), torch.from_numpy(i64)).numpy())


@pytest.mark.parametrize("text,attr", [("i -> gt(3000000000)", "other"),
                                       ("where(c, i, -3000000000)", "other"),
                                       ("i -> clamp(max=2147483648)", "max"),
                                       ("i -> pow(4294967296)", "exponent")])
def test_an_integer_that_does_not_fit_the_tensor_is_e0345(text, attr):
    # torch raises at run time (clamp, where) or wraps the number to 0 (gt): an error here.
    d = load_error("model t {\n  input i: i32[4]\n  input c: bool[4]\n"
                   f"  output y = {text}\n}}\n")
    assert d.code == "E0345" and d.span.line == 4, d
    assert "i32" in d.message


# ---- the new ops together in one model, as the generated module must run them ----------------

GATED = """
model gated {
  input x: f32[B, 16]
  input bias: f32[16]
  h = x -> linear(16) -> hardswish
  mask = h -> gt(0.0)
  kept = where(mask, h, -1.0)
  g = maximum(kept, bias) -> softplus(beta=2.0) -> log1p
  s = minimum(pow(h, 3), x) -> abs -> sqrt -> rsqrt -> clamp(max=10.0)
  p = pow(g, 0.5) + s * 0.5 -> mish -> relu6
  top = p -> topk(4, dim=1)
  run = cumsum(top, 1) -> selu -> glu(1)
  output run, mask
}
"""


@pytest.fixture(scope="module")
def gated():
    import dslc

    return dslc.load("gated.dl", text=GATED)


def test_new_ops_in_one_model_equal_the_generated_module(gated):
    from tests.helpers import compare_numpy_torch

    np_out, t_out, _ = compare_numpy_torch(gated, {"B": 5}, rtol=1e-5)
    assert np_out["run"].shape == (5, 2) and np_out["mask"].dtype == np.bool_
    np.testing.assert_array_equal(np_out["mask"], t_out["mask"])


def test_generated_module_compiles_and_exports(gated):
    m = gated.to_torch()().eval()
    x, bias = torch.randn(5, 16), torch.randn(16)
    with torch.no_grad():
        want = m(x=x, bias=bias)
        compiled = torch.compile(m, fullgraph=True, backend="eager")(x=x, bias=bias)
    exported = torch.export.export(m, (), {"x": x, "bias": bias}).module()(x=x, bias=bias)
    for got in (compiled, exported):
        for u, v in zip(got, want):
            assert torch.equal(u, v)

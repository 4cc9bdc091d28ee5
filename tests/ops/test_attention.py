"""Attention ops (dslc/ops/attention.py) beyond the registry's generated tests: equality with
torch.nn.MultiheadAttention, masks, softmax stability, the heads diagnostic, sinusoids."""

from __future__ import annotations

import math

import numpy as np
import pytest

import dslc
from dslc.diagnostics import DslcError
from dslc.ops.attention import sinusoid_table
from tests.helpers import assert_close, compare_numpy_torch

torch = pytest.importorskip("torch")


def load(text: str, model: str | None = None) -> dslc.Program:
    return dslc.load("t.dl", model=model, text=text)


def run(prog, inputs, params=None):
    params = params if params is not None else prog.init_params(0)
    return prog.run(inputs, {k: v.copy() for k, v in params.items()}), params


def torch_mha(params, prefix, d, heads, bias=True):
    m = torch.nn.MultiheadAttention(d, heads, batch_first=True, bias=bias)
    m.load_state_dict({k[len(prefix) + 1:]: torch.from_numpy(v) for k, v in params.items()
                       if k.startswith(prefix + ".")}, strict=True)
    return m.eval()


MHA_SELF = """
model m {
  input x: f32[B, T, 16]
  output y = x -> multihead_attention(4) as attn
}
"""


def test_mha_params_are_torch_layout():
    prog = load(MHA_SELF)
    params = prog.init_params(0)
    assert {k: v.shape for k, v in params.items()} == {
        "attn.in_proj_weight": (48, 16), "attn.in_proj_bias": (48,),
        "attn.out_proj.weight": (16, 16), "attn.out_proj.bias": (16,)}
    m = torch.nn.MultiheadAttention(16, 4, batch_first=True)
    assert sorted(f"attn.{k}" for k in m.state_dict()) == sorted(params)
    assert prog.summary({"B": 2, "T": 3})["params"] == 4 * (16 * 16 + 16)


def test_mha_self_equals_nn_multihead_attention():
    prog = load(MHA_SELF)
    x = np.random.default_rng(1).standard_normal((3, 7, 16)).astype(np.float32)
    out, params = run(prog, {"x": x})
    m = torch_mha(params, "attn", 16, 4)
    with torch.no_grad():
        want = m(*(torch.from_numpy(x),) * 3, need_weights=False)[0].numpy()
    assert_close(out["y"], want, what="self-attention")
    assert "nn.MultiheadAttention(16, 4, batch_first=True)" in prog.to_torch_source()


@pytest.mark.parametrize("mask_kind", ["none", "attn", "padding", "both", "causal"])
def test_mha_cross_with_masks_equals_torch(mask_kind):
    inputs = "input q: f32[B, T, 8]\n  input kv: f32[B, S, 8]\n  input lengths: i64[B]\n"
    call = {
        "none": "multihead_attention(q, kv, 2)",
        "attn": "multihead_attention(q, kv, band_mask(q, kv, 1), 2)",
        "padding": "multihead_attention(q, kv, padding_mask(lengths, kv), 2, padding=true)",
        "both": "multihead_attention(q, kv, band_mask(q, kv, 2), padding_mask(lengths, kv), 2)",
        "causal": "multihead_attention(q, kv, 2, causal=true)",
    }[mask_kind]
    prog = load(f"model m {{\n  {inputs}  output y = {call}\n}}\n")
    rng = np.random.default_rng(2)
    x = {"q": rng.standard_normal((3, 4, 8)).astype(np.float32),
         "kv": rng.standard_normal((3, 6, 8)).astype(np.float32),
         "lengths": np.array([6, 3, 2], np.int64)}
    out, params = run(prog, x)
    m = torch_mha(params, "attn1", 8, 2)
    q, kv = torch.from_numpy(x["q"]), torch.from_numpy(x["kv"])
    i, j = torch.arange(4)[:, None], torch.arange(6)[None, :]
    attn = {"attn": (i - j).abs() > 1, "both": (i - j).abs() > 2, "causal": j > i}
    pad = torch.arange(6)[None, :] >= torch.from_numpy(x["lengths"])[:, None]
    kw = {"attn_mask": attn.get(mask_kind)}
    if mask_kind in ("padding", "both"):
        kw["key_padding_mask"] = pad
    with torch.no_grad():
        want = m(q, kv, kv, need_weights=False, **kw)[0].numpy()
    assert np.isfinite(out["y"]).all()
    assert_close(out["y"], want, what=mask_kind)
    if mask_kind in ("none", "attn", "causal"):  # random lengths may mask a whole row
        compare_numpy_torch(prog, {"B": 3, "T": 4, "S": 6})


def test_mha_q_k_v_distinct_and_no_bias():
    prog = load("""
model m {
  input q: f32[B, T, 8]
  input k: f32[B, S, 8]
  input v: f32[B, S, 8]
  output y = multihead_attention(q, k, v, 4, bias=false)
}
""")
    rng = np.random.default_rng(3)
    x = {n: rng.standard_normal((2, t, 8)).astype(np.float32)
         for n, t in (("q", 3), ("k", 5), ("v", 5))}
    out, params = run(prog, x)
    assert sorted(params) == ["attn1.in_proj_weight", "attn1.out_proj.weight"]
    m = torch_mha(params, "attn1", 8, 4, bias=False)
    with torch.no_grad():
        want = m(*(torch.from_numpy(x[n]) for n in "qkv"), need_weights=False)[0].numpy()
    assert_close(out["y"], want)


def test_heads_not_dividing_d_is_located():
    text = """model m(heads: int = 6) {
  input x: f32[B, T, 512]
  output y = x -> multihead_attention(num_heads=heads) as attn
}
"""
    with pytest.raises(DslcError) as e:
        load(text)
    d = e.value.diagnostics[0]
    assert d.code == "E0301"
    assert (d.span.line, d.span.column) == (3, 39)  # the num_heads argument
    assert "num_heads 6 does not divide embed_dim 512" in d.message
    assert "512 % 6 = 2" in d.found and "last axis of the query" in d.found
    assert "8" in d.expected  # the divisors are suggested
    # The note shows where the query (and so d) came from.
    assert any("f32[B, T, 512]" in msg and sp.line == 2 for msg, sp in d.notes)
    ok = load(text.replace("heads: int = 6", "heads: int = 8"))
    assert ok.summary({"B": 1, "T": 2})["params"] == 1_050_624


def test_embed_dim_mismatch_and_bad_masks_are_errors():
    with pytest.raises(DslcError, match="embed_dim=32"):
        load("model m {\n input x: f32[B, T, 16]\n output y = x -> multihead_attention(2, "
             "embed_dim=32)\n}\n")
    with pytest.raises(DslcError, match="attn_mask"):
        load("model m {\n input x: f32[B, T, 16]\n input k: f32[B, S, 16]\n"
             " output y = multihead_attention(x, k, causal_mask(x), 2)\n}\n")
    with pytest.raises(DslcError, match="different feature sizes"):
        load("model m {\n input q: f32[B, T, 4]\n input k: f32[B, T, 5]\n"
             " output y = attention(q, k, k)\n}\n")


def test_mask_values():
    prog = load("""
model m {
  input x: f32[B, T, 2]
  input lengths: i64[B]
  output c = causal_mask(x)
  output b = band_mask(x, 1)
  output p = padding_mask(lengths, x)
}
""")
    x = np.zeros((2, 4, 2), np.float32)
    out = prog.run({"x": x, "lengths": np.array([4, 2])})
    np.testing.assert_array_equal(out["c"], np.triu(np.ones((4, 4), bool), 1))
    np.testing.assert_array_equal(out["b"][0], [False, False, True, True])
    np.testing.assert_array_equal(out["b"][3], [True, True, False, False])
    np.testing.assert_array_equal(out["p"], [[False] * 4, [False, False, True, True]])
    compare_numpy_torch(prog, {"B": 2, "T": 4})


def test_softmax_stays_finite_for_huge_scores():
    prog = load("""
model m {
  input s: f32[B, T, T]
  output a = masked_softmax(s, causal_mask(s), scale=2.0)
  output o = attention(s, s, s)
}
""")
    s = np.array([[[1e4, -1e4, 1e4], [-1e4, 1e4, -1e4], [1e4, 1e4, -1e4]]], np.float32)
    out = prog.run({"s": s})
    assert np.isfinite(out["a"]).all() and np.isfinite(out["o"]).all()
    np.testing.assert_allclose(out["a"].sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(out["a"][0], [[1, 0, 0], [0, 1, 0], [0.5, 0.5, 0]], atol=1e-6)
    compare_numpy_torch(prog, {"B": 1, "T": 3})


def test_softmax_leaves_its_input_alone():
    # masked_softmax without scale or mask hands the input itself to the softmax, which works
    # in place only on the attention ops' own score arrays.
    prog = load("""
model m {
  input s: f32[B, T]
  output a = masked_softmax(s)
  output b = s + 0.0
}
""")
    s = np.random.default_rng(3).standard_normal((2, 5)).astype(np.float32)
    before = s.copy()
    out = prog.run({"s": s})
    np.testing.assert_array_equal(s, before)
    np.testing.assert_array_equal(out["b"], before)
    e = np.exp(before - before.max(-1, keepdims=True))
    np.testing.assert_allclose(out["a"], e / e.sum(-1, keepdims=True), rtol=1e-6)


def test_attention_hand_computed():
    """Two keys, one query: weights softmax([q.k1, q.k2] / sqrt(2)) on the values."""
    prog = load("""
model m {
  input q: f32[B, 1, 2]
  input k: f32[B, 2, 2]
  input v: f32[B, 2, 1]
  output o = attention(q, k, v)
}
""")
    q = np.array([[[1.0, 0.0]]], np.float32)
    k = np.array([[[1.0, 0.0], [0.0, 1.0]]], np.float32)
    v = np.array([[[10.0], [20.0]]], np.float32)
    out = prog.run({"q": q, "k": k, "v": v})
    w1 = 1 / (1 + math.exp(-1 / math.sqrt(2)))
    np.testing.assert_allclose(out["o"][0, 0, 0], 10 * w1 + 20 * (1 - w1), rtol=1e-6)
    assert "F.scaled_dot_product_attention(q, k, v)" in prog.to_torch_source()


def test_truncated_attention_op_equals_band_masked_attention():
    prog = load("""
model m {
  input q: f32[B, T, 4]
  input k: f32[B, T, 4]
  input v: f32[B, T, 4]
  output w = attention(q, k, v, window=2)
  output b = attention(q, k, v, band_mask(q, 2))
  output full = attention(q, k, v)
}
""")
    x = prog.random_inputs(0, {"B": 2, "T": 9})
    out = prog.run(x)
    np.testing.assert_array_equal(out["w"], out["b"])
    assert not np.allclose(out["w"], out["full"])
    compare_numpy_torch(prog, {"B": 2, "T": 9})


def test_sinusoidal_known_values():
    t = sinusoid_table(50, 8)
    np.testing.assert_allclose(t[0], [0, 1] * 4, atol=1e-12)
    np.testing.assert_allclose(t[1, 0], math.sin(1.0))
    np.testing.assert_allclose(t[1, 1], math.cos(1.0))
    np.testing.assert_allclose(t[7, 2], math.sin(7 / 10000 ** (2 / 8)))
    np.testing.assert_allclose(t[7, 5], math.cos(7 / 10000 ** (4 / 8)))
    prog = load("model m {\n input x: f32[B, T, 8]\n output y = x + sinusoidal_encoding(x)\n}\n")
    x = np.zeros((2, 50, 8), np.float32)
    out = prog.run({"x": x})["y"]
    np.testing.assert_allclose(out[1], t, atol=1e-6)
    compare_numpy_torch(prog, {"B": 2, "T": 50})


def test_sinusoidal_needs_even_size():
    with pytest.raises(DslcError, match="even"):
        load("model m {\n input x: f32[B, T, 7]\n output y = sinusoidal_encoding(x)\n}\n")


def test_position_embedding_longer_than_max_len():
    text = "model m {\n input x: f32[B, T, 4]\n output y = x -> position_embedding(6)\n}\n"
    prog = load(text)
    with pytest.raises(DslcError, match="max_len is 6"):
        prog.run(prog.random_inputs(0, {"B": 1, "T": 7}))
    with pytest.raises(DslcError, match="max_len"):
        load(text.replace("B, T, 4", "B, 9, 4"))


def test_einsum_scores_and_errors():
    prog = load("""
model m {
  input q: f32[B, T, 4]
  input k: f32[B, S, 4]
  output s = einsum(q, k, "btd,bsd->bts")
}
""")
    x = prog.random_inputs(0, {"B": 2, "T": 3, "S": 5})
    out = prog.run(x)
    np.testing.assert_allclose(out["s"], x["q"] @ x["k"].transpose(0, 2, 1), rtol=1e-5)
    assert prog.summary({"B": 2, "T": 3, "S": 5})["macs"] == 2 * 3 * 5 * 4
    compare_numpy_torch(prog, {"B": 2, "T": 3, "S": 5})
    with pytest.raises(DslcError, match="letter 'd'"):
        load('model m {\n input q: f32[2, 4]\n input k: f32[3, 5]\n'
             ' output s = einsum(q, k, "td,sd->ts")\n}\n')
    with pytest.raises(DslcError, match="equation"):
        load('model m {\n input q: f32[2, 4]\n output s = einsum(q, "t...->t")\n}\n')


def test_mha_macs_include_the_quadratic_products():
    prog = load(MHA_SELF)
    b, t, d = 2, 10, 16
    want = b * 4 * t * d * d + 2 * b * t * t * d
    assert prog.summary({"B": b, "T": t})["macs"] == want


def test_mha_dropout_only_in_training():
    prog = load("model m {\n input x: f32[B, T, 8]\n"
                " output y = x -> multihead_attention(2, dropout=0.5)\n}\n")
    x = prog.random_inputs(0, {"B": 2, "T": 6})
    params = prog.init_params(0)
    a = prog.run(x, dict(params), train=True, seed=1)["y"]
    b = prog.run(x, dict(params), train=True, seed=2)["y"]
    e1 = prog.run(x, dict(params), train=False, seed=1)["y"]
    e2 = prog.run(x, dict(params), train=False, seed=2)["y"]
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(e1, e2)


def test_generated_code_runs_on_the_inputs_device_and_dtype():
    prog = load("""
model m {
  input x: f32[B, T, 8]
  h = x + sinusoidal_encoding(x)
  output y = h -> multihead_attention(2, causal=true, window=1)
}
""")
    m = prog.to_torch()().to("meta")
    with torch.no_grad():
        y = m(x=torch.empty(2, 5, 8, device="meta"))
    assert y.device.type == "meta" and tuple(y.shape) == (2, 5, 8)
    m64 = prog.to_torch()().double()
    with torch.no_grad():
        assert m64(x=torch.zeros(1, 3, 8, dtype=torch.float64)).dtype == torch.float64

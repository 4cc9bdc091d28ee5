"""The attention zoo (specs/*attention*.dl, transformer*, bert_tiny, gpt_tiny, vit_tiny): the
published counts, and equality with torch's own Transformer modules with copied weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dslc
from tests.helpers import assert_close, compare_numpy_torch, torch_outputs

torch = pytest.importorskip("torch")

SPECS = Path(__file__).resolve().parents[2] / "specs"
ZOO = ["self_attention", "additive_attention", "multi_head_attention", "positional_encoding",
       "truncated_attention", "masked_attention", "transformer_encoder", "transformer_decoder",
       "transformer", "bert_tiny", "gpt_tiny", "vit_tiny"]


def load(name: str, model: str | None = None, **hp) -> dslc.Program:
    return dslc.load(SPECS / f"{name}.dl", model=model, hparams=hp or None)


def load_text(text: str) -> dslc.Program:
    # A path inside specs/ so `import "blocks/transformer.dl"` resolves.
    return dslc.load(SPECS / "_test.dl", text=text)


def copy_into(module, params: dict, prefix: str = "") -> None:
    state = {k[len(prefix):]: torch.from_numpy(v.copy()) for k, v in params.items()
             if k.startswith(prefix)}
    module.load_state_dict(state, strict=True)
    module.eval()


@pytest.mark.parametrize("name", ZOO)
def test_zoo_spec_loads_by_its_name(name):
    prog = load(name)
    assert prog.name == name


@pytest.mark.parametrize("name,params", [
    ("multi_head_attention", 1_050_624),
    ("transformer_encoder", 18_914_304),
    ("transformer_decoder", 6 * (2 * 1_050_624 + 1_050_624 + 1_049_088 + 3 * 1024)),
])
def test_published_parameter_counts(name, params):
    assert load(name).summary({"B": 1, "T": 4, "S": 4})["params"] == params


def test_mha_macs_are_quadratic_in_t():
    prog = load("multi_head_attention")
    b, t, d = 8, 128, 512
    assert prog.summary({"B": b, "T": t})["macs"] == b * 4 * t * d * d + 2 * b * t * t * d


ENC = """import "blocks/transformer.dl"
model m {{
  input x: f32[B, T, 16]
  input pad: bool[B, T]
  output y = x -> encoder_layer(4, 32, 0.1, {nf}, "{act}", causal={causal}) as layer
  output z = x -> encoder_layer_masked(pad, 4, 32, 0.1, {nf}, "{act}", padding=true) as masked
}}
"""


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("act", ["relu", "gelu"])
@pytest.mark.parametrize("causal", [False, True])
def test_encoder_layer_equals_torch(norm_first, act, causal):
    prog = load_text(ENC.format(nf=str(norm_first).lower(), act=act, causal=str(causal).lower()))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 6, 16)).astype(np.float32)
    pad = np.arange(6)[None, :] >= np.array([6, 4, 1])[:, None]
    params = prog.init_params(1)
    out = prog.run({"x": x, "pad": pad}, dict(params))
    for prefix, key in (("layer.", "y"), ("masked.", "z")):
        layer = torch.nn.TransformerEncoderLayer(16, 4, 32, 0.1, activation=act,
                                                 batch_first=True, norm_first=norm_first)
        copy_into(layer, params, prefix)
        kw = {}
        if key == "y" and causal:
            kw["src_mask"] = torch.ones(6, 6, dtype=torch.bool).triu(1)
        if key == "z":
            kw["src_key_padding_mask"] = torch.from_numpy(pad)
        with torch.no_grad():
            want = layer(torch.from_numpy(x), **kw).numpy()
        assert_close(out[key], want, what=key)
    t_out, _ = torch_outputs(prog, {"x": x, "pad": pad}, params)
    for key in ("y", "z"):
        assert_close(out[key], t_out[key], what=f"generated {key}")


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_decoder_layer_equals_torch(norm_first, causal):
    prog = load_text(f"""import "blocks/transformer.dl"
model m {{
  input x: f32[B, T, 16]
  input memory: f32[B, S, 16]
  output y = x -> decoder_layer(memory, 4, 32, 0.1, {str(norm_first).lower()},
                                causal={str(causal).lower()}) as layer
}}
""")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, 16)).astype(np.float32)
    mem = rng.standard_normal((2, 7, 16)).astype(np.float32)
    params = prog.init_params(2)
    out = prog.run({"x": x, "memory": mem}, dict(params))["y"]
    layer = torch.nn.TransformerDecoderLayer(16, 4, 32, 0.1, batch_first=True,
                                             norm_first=norm_first)
    copy_into(layer, params, "layer.")
    kw = {"tgt_mask": torch.ones(5, 5, dtype=torch.bool).triu(1)} if causal else {}
    with torch.no_grad():
        want = layer(torch.from_numpy(x), torch.from_numpy(mem), **kw).numpy()
    assert_close(out, want)
    compare_numpy_torch(prog, {"B": 2, "T": 5, "S": 7})


def test_transformer_encoder_stack_equals_nn_transformer_encoder():
    prog = load("transformer_encoder", d=32, heads=4, ff=64, n=3)
    x = prog.random_inputs(0, {"B": 2, "T": 6})
    params = prog.init_params(0)
    out = prog.run(x, dict(params))["y"]
    layer = torch.nn.TransformerEncoderLayer(32, 4, 64, batch_first=True)
    enc = torch.nn.TransformerEncoder(layer, 3, enable_nested_tensor=False)
    copy_into(enc, params)
    with torch.no_grad():
        want = enc(torch.from_numpy(x["x"])).numpy()
    assert_close(out, want)


def test_transformer_core_equals_nn_transformer():
    prog = load("transformer", model="transformer_core")
    x = prog.random_inputs(0, {"B": 2, "S": 6, "T": 4})
    params = prog.init_params(0)
    out = prog.run(x, dict(params))["y"]
    m = torch.nn.Transformer(64, 4, 2, 2, 128, batch_first=True)
    copy_into(m, params)
    with torch.no_grad():
        want = m(torch.from_numpy(x["src"]), torch.from_numpy(x["tgt"]),
                 tgt_mask=torch.ones(4, 4, dtype=torch.bool).triu(1)).numpy()
    assert_close(out, want)


def test_self_attention_primitives_equal_sdpa():
    a, b = load("self_attention"), load("self_attention", model="self_attention_sdpa")
    x = a.random_inputs(0, {"B": 2, "T": 7})
    pa = a.init_params(0)
    pb = {k.replace("attn.", ""): v for k, v in pa.items()}
    assert sorted(pb) == sorted(b.init_params(0))
    assert_close(a.run(x, pa)["o"], b.run(x, pb)["o"])
    assert "F.scaled_dot_product_attention" in b.to_torch_source()


def test_truncated_attention_equals_band_masked_full_attention():
    t, b = load("truncated_attention"), load("truncated_attention",
                                             model="band_masked_attention")
    x = t.random_inputs(0, {"B": 2, "T": 11})
    params = t.init_params(0)
    yt = t.run(x, dict(params))["y"]
    np.testing.assert_array_equal(yt, b.run(x, dict(params))["y"])
    m = torch.nn.MultiheadAttention(64, 4, batch_first=True)
    copy_into(m, params, "attn.")
    i = torch.arange(11)
    band = (i[:, None] - i[None, :]).abs() > 2
    xt = torch.from_numpy(x["x"])
    with torch.no_grad():
        want = m(xt, xt, xt, need_weights=False, attn_mask=band)[0].numpy()
        full = m(xt, xt, xt, need_weights=False)[0].numpy()
    assert_close(yt, want)
    assert not np.allclose(yt, full, atol=1e-3)


def test_causal_attention_puts_zero_weight_on_the_future():
    prog = load("masked_attention")
    x = prog.random_inputs(0, {"B": 2, "T": 6})
    params = prog.init_params(0)
    out = prog.run(x, dict(params))
    w = out["weights"]
    assert (w[:, np.triu_indices(6, 1)[0], np.triu_indices(6, 1)[1]] == 0).all()
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)
    # Changing the future does not change the past.
    x2 = {"x": x["x"].copy()}
    x2["x"][:, 4:] += 5.0
    out2 = prog.run(x2, dict(params))
    np.testing.assert_allclose(out2["y"][:, :4], out["y"][:, :4], rtol=1e-5, atol=1e-6)
    assert not np.allclose(out2["y"][:, 4:], out["y"][:, 4:])


def test_gpt_ties_input_and_output_embeddings():
    prog = load("gpt_tiny")
    params = prog.init_params(0)
    assert "wte.weight" in params and not any("lm_head" in k for k in params)
    n = prog.summary({"B": 1, "T": 4})["params"]
    assert n == sum(v.size for v in params.values())
    np_out, t_out, module = compare_numpy_torch(prog, {"B": 2, "T": 5})
    assert sum(p.numel() for p in module.parameters()) == n
    # The output scores are the final states times the token table: one tensor, two uses.
    logits = module(tokens=torch.zeros(1, 3, dtype=torch.int64))
    logits.sum().backward()
    assert module.wte.weight.grad is not None


def test_gpt_is_causal():
    prog = load("gpt_tiny")
    params = prog.init_params(0)
    a = np.array([[1, 2, 3, 4, 5]])
    b = np.array([[1, 2, 3, 9, 9]])
    ya = prog.run({"tokens": a}, dict(params))["logits"]
    yb = prog.run({"tokens": b}, dict(params))["logits"]
    assert_close(ya[:, :3], yb[:, :3])
    assert not np.allclose(ya[:, 3:], yb[:, 3:])


def test_bert_and_vit_shapes():
    s = load("bert_tiny").summary({"B": 2, "T": 8})
    assert [o["shape"] for o in s["outputs"]] == [[2, 8, 128], [2, 128]]
    v = load("vit_tiny").summary({"B": 2})
    assert v["outputs"][0]["shape"] == [2, 10]
    keys = load("vit_tiny").init_params(0)
    assert keys["cls_token.weight"].shape == (1, 64)
    assert keys["pos_embed.weight"].shape == (65, 64)

"""Every zoo model with parameters, differentiated on NumPy (Program.grad: the backward walk
through each op's vjp) equals torch.autograd through its generated module, in float64, every
float output given a random cotangent. The specs are listed (not globbed) so that a new,
larger spec is added here on purpose, at a size that keeps the test fast."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dslc
from tests.specs.test_zoo import HPARAMS, bind_for

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]
RTOL = 1e-8  # float64 on both sides, relative to the gradient's largest entry (or 1)

# spec file -> its models (sizes from tests/specs/test_zoo.py's bind_for)
MODELS = {
    "additive_attention.dl": ["additive_attention"],
    "autoencoder.dl": ["autoencoder", "denoising_autoencoder"],
    "bert_tiny.dl": ["bert_tiny"],
    "birnn.dl": ["birnn", "birnn_scan"],
    "char_lm.dl": ["char_lm", "char_lstm"],
    "chebnet.dl": ["chebnet"],
    "dcnn.dl": ["dcnn"],
    "deep_rnn.dl": ["deep_rnn"],
    "dgc.dl": ["dgc"],
    "dropedge_gcn.dl": ["dropedge_gcn"],
    "elman_rnn.dl": ["elman_rnn"],
    "gan.dl": ["generator", "discriminator"],
    "gat.dl": ["gat"],
    "gcn.dl": ["gcn"],
    "gin.dl": ["gin"],
    "gpt_tiny.dl": ["gpt_tiny"],
    "graph_classifier.dl": ["graph_classifier"],
    "graphsage_lstm.dl": ["graphsage_lstm"],
    "graphsage_mean.dl": ["graphsage_mean"],
    "graphsage_pool.dl": ["graphsage_pool"],
    "gru.dl": ["gru_net"],
    "inception_block.dl": ["naive_5x5", "bottleneck_5x5", "inception_block"],
    "jordan_rnn.dl": ["jordan_rnn"],
    "lenet5.dl": ["lenet5"],
    "lstm.dl": ["lstm_net"],
    "lstm_peephole.dl": ["lstm_peephole"],
    "masked_attention.dl": ["masked_attention"],
    "mlp.dl": ["mlp"],
    "monet.dl": ["monet"],
    "multi_head_attention.dl": ["multi_head_attention", "cross_attention"],
    "nn4g.dl": ["nn4g"],
    "positional_encoding.dl": ["learned_positional_encoding"],
    "resnet18.dl": ["resnet18"],
    "self_attention.dl": ["self_attention", "self_attention_sdpa"],
    "sentiment.dl": ["sentiment", "tagger"],
    "seq2seq.dl": ["seq2seq"],
    "spatial_transformer.dl": ["spatial_transformer"],
    "transformer.dl": ["transformer", "transformer_core"],
    "transformer_decoder.dl": ["transformer_decoder"],
    "transformer_encoder.dl": ["transformer_encoder"],
    "truncated_attention.dl": ["truncated_attention", "band_masked_attention"],
    "vae.dl": ["vae"],
    "vit_tiny.dl": ["vit_tiny"],
    "word_embedding.dl": ["word_embedding", "skip_gram"],
    # beyond the notes, at tests/specs/zoo_sizes.py's small sizes
    "convnext_tiny.dl": ["convnext_tiny"],
    "dcgan.dl": ["dcgan_generator", "dcgan_discriminator"],
    "efficientnet_b0.dl": ["efficientnet_b0"],
    "mobilenet_v2.dl": ["mobilenet_v2"],
    "mobilenet_v3_small.dl": ["mobilenet_v3_small"],
    "r3d_18.dl": ["r3d_18"],
    "super_resolution.dl": ["super_resolution"],
    "unet.dl": ["unet"],
    "vit_b_16.dl": ["vit_b_16"],
    "wavenet_tcn.dl": ["wavenet_tcn"],
    # Not here: alexnet/vgg16 (224x224 inputs: minutes of NumPy convolutions).
}
# Smaller than the zoo's own run, where the spec allows it (its weights do not change).
SMALL = {"resnet18": {"classes": 10, "size": 32}}


def cases():
    return [pytest.param(f, m, id=f"{f[:-3]}-{m}") for f, ms in MODELS.items() for m in ms]


@pytest.mark.parametrize("spec,model", cases())
def test_numpy_grads_equal_torch_autograd(spec, model):
    hparams = dict(HPARAMS.get(model, {}), **SMALL.get(model, {}))
    prog = dslc.load(ROOT / "specs" / spec, model=model, hparams=hparams or None)
    bind = bind_for(prog)
    inputs = prog.random_inputs(0, bind)
    params = prog.init_params(0)
    outs = prog.run(inputs, {k: v.copy() for k, v in params.items()}, bind=bind)
    rng = np.random.default_rng(1)
    cot = {k: rng.standard_normal(v.shape) for k, v in outs.items() if v.dtype.kind == "f"}
    ours = prog.grad(inputs, {k: v.copy() for k, v in params.items()}, loss=cot, bind=bind,
                     float64=True)

    m = prog.to_torch()()
    m.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in params.items()})
    m = m.double().eval()
    args = prog.torch_arg_names()
    tins = {k: torch.from_numpy(v).double() if v.dtype.kind == "f" else torch.from_numpy(v)
            for k, v in inputs.items()}
    out = m(**{args[k]: v for k, v in tins.items()})
    out = out if isinstance(out, tuple) else (out,)
    names = [n for n, _ in prog.graph.outputs]
    total = sum((o * torch.from_numpy(cot[n])).sum() for n, o in zip(names, out) if n in cot)
    total.backward()
    theirs = dict(m.named_parameters())
    assert theirs, "a model with parameters"
    assert sorted(ours) == sorted(theirs)
    for key, p in theirs.items():
        want = np.zeros(tuple(p.shape)) if p.grad is None else p.grad.numpy()
        scale = max(float(np.abs(want).max()), 1.0)
        err = float(np.abs(ours[key] - want).max())
        assert err <= RTOL * scale, f"{key}: max abs error {err:g} (scale {scale:g})"

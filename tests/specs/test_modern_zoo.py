"""The zoo beyond the notes (ZOO.md's last table): published parameter counts through `dslc
summary --json`, and equality with torch.nn rebuilds of torchvision's layouts (or the paper's /
tutorial's network) given the same weights. The generic check / NumPy-vs-generated-PyTorch /
render tests of every spec are in test_zoo.py (with small sizes from its HPARAMS)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import dslc
from dslc import cli
from tests.helpers import assert_close, compare_numpy_torch, torch_outputs

torch = pytest.importorskip("torch")

from tests.specs import modern_refs as refs  # noqa: E402 (needs torch)

SPECS = Path(__file__).resolve().parents[2] / "specs"


def load(file: str, model: str | None = None, **hp) -> dslc.Program:
    return dslc.load(SPECS / file, model=model, hparams=hp or None)


def load_text(text: str) -> dslc.Program:
    # A path inside specs/ so `import "blocks/..."` resolves.
    return dslc.load(SPECS / "_test.dl", text=text)


def summary(capsys, file: str, *args: str) -> dict:
    """`dslc summary FILE --json ARGS...` through the CLI entry point."""
    capsys.readouterr()
    rc = cli.main(["summary", str(SPECS / file), "--json", *args])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out)


def randomise(params: dict, seed: int = 1) -> dict:
    """Non-trivial values where the default init would hide a mistake: batch-norm statistics
    (0 and 1 at init), norm scales and shifts (1 and 0) and layer scales (1e-6, which would
    make every ConvNeXt block the identity)."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, v in params.items():
        v = np.array(v)
        if k.endswith("running_var"):
            v = rng.uniform(0.5, 1.5, v.shape).astype(v.dtype)
        elif k.endswith("running_mean"):
            v = (0.1 * rng.standard_normal(v.shape)).astype(v.dtype)
        elif k.endswith(".gamma") or (v.ndim == 1 and k.endswith((".weight", ".bias"))
                                      and v.dtype.kind == "f"):
            base = 1.0 if k.endswith((".weight", ".gamma")) else 0.0
            v = (base + 0.2 * rng.standard_normal(v.shape)).astype(v.dtype)
        out[k] = v
    return out


def load_into(ref, params: dict, order: list[str] | None = None) -> None:
    """The NumPy side's parameters into the reference module: by key (strictly) where the spec
    has the reference's exact state_dict keys, otherwise matched by declaration order (`order`
    lists the reference's keys in the spec's order where torch's differs), each pair agreeing
    in shape up to size-1 axes (the class token is [1, d] here, [1, 1, d] there)."""
    state = ref.state_dict()
    if set(params) == set(state):
        ref.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in params.items()},
                            strict=True)
        ref.eval()
        return
    keys = order or list(state)
    assert len(keys) == len(params), (len(keys), len(params))
    new = {}
    for ref_key, key in zip(keys, params):
        want = tuple(state[ref_key].shape)
        got = params[key].shape
        assert tuple(d for d in got if d != 1) == tuple(d for d in want if d != 1), \
            f"{key} {got} vs {ref_key} {want}"
        new[ref_key] = torch.from_numpy(np.array(params[key])).reshape(want)
    ref.load_state_dict(new, strict=True)
    ref.eval()


def check_against(prog: dslc.Program, ref, inputs: dict, order=None, rtol=1e-4):
    """NumPy run of the spec == the reference module with the same (randomised) weights."""
    params = randomise(prog.init_params(0))
    load_into(ref, params, order)
    out = prog.run(inputs, dict(params))
    with torch.no_grad():
        want = ref(*[torch.from_numpy(v) for v in inputs.values()])
    (name, got), = out.items()
    assert_close(got, want.numpy(), rtol=rtol, what=name)
    return got


def image(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


MODERN = [("mobilenet_v2.dl", "mobilenet_v2"), ("mobilenet_v3_small.dl", "mobilenet_v3_small"),
          ("efficientnet_b0.dl", "efficientnet_b0"), ("convnext_tiny.dl", "convnext_tiny"),
          ("vit_b_16.dl", "vit_b_16"), ("r3d_18.dl", "r3d_18"), ("unet.dl", "unet"),
          ("dcgan.dl", "dcgan_generator"), ("dcgan.dl", "dcgan_discriminator"),
          ("wavenet_tcn.dl", "wavenet_tcn"), ("super_resolution.dl", "super_resolution")]


@pytest.mark.parametrize("file,model", MODERN, ids=[m for _, m in MODERN])
def test_checks_without_warnings(capsys, file, model):
    """The specs are examples to copy: no likely-mistake warning (--Werror passes)."""
    capsys.readouterr()
    rc = cli.main(["check", str(SPECS / file), "--model", model, "--Werror"])
    err = capsys.readouterr().err
    assert rc == 0 and "warning" not in err, err


# ---- published counts ----------------------------------------------------------------------


PUBLISHED = [
    ("r3d_18.dl", "r3d_18", ["--bind=T=16"], 33_371_472, refs.R3D18),
    ("vit_b_16.dl", "vit_b_16", [], 86_567_656, refs.VisionTransformer),
    ("convnext_tiny.dl", "convnext_tiny", [], 28_589_128, refs.ConvNeXt),
    ("mobilenet_v2.dl", "mobilenet_v2", [], 3_504_872, refs.MobileNetV2),
    ("mobilenet_v3_small.dl", "mobilenet_v3_small", [], 2_542_856, refs.MobileNetV3Small),
    ("efficientnet_b0.dl", "efficientnet_b0", [], 5_288_548, refs.EfficientNetB0),
]


@pytest.mark.parametrize("file,model,args,params,ref", PUBLISHED, ids=[p[1] for p in PUBLISHED])
def test_published_parameter_counts(capsys, file, model, args, params, ref):
    s = summary(capsys, file, "--bind=B=1", *args)
    assert s["model"] == model
    assert s["params"] == params
    # The reference rebuilt here is torchvision's model: it has the published count too.
    with torch.device("meta"):
        assert refs.count(ref()) == params


def test_r3d_18_shapes_and_macs(capsys):
    s = summary(capsys, "r3d_18.dl", "--bind=B=1", "--bind=T=16")
    convs = [r["shape"] for r in s["layers"] if r["op"] == "conv3d"]
    assert convs[0] == [1, 64, 16, 56, 56]  # the stem keeps time, halves space
    assert convs[-1] == [1, 512, 2, 7, 7]
    assert s["outputs"][0]["shape"] == [1, 400]
    assert s["macs"] == 40_717_878_272  # torchvision's "GFLOPS 40.70" (multiply-adds)


def test_vit_b_16_has_197_tokens(capsys):
    s = summary(capsys, "vit_b_16.dl", "--bind=B=1")
    rows = {r["name"]: r for r in s["layers"]}
    assert rows["class_token"]["shape"] == [1, 197, 768]
    assert sum(r["op"] == "multihead_attention" for r in s["layers"]) == 12


# ---- equality with torchvision's layout (small sizes; the same code at the published ones) --


def test_r3d_18_equals_torchvision_layout():
    """torchvision's keys exactly (`stem.0`, `layer2.0.conv1.0`, `downsample.1`, ...)."""
    prog = load("r3d_18.dl", size=16)
    ref = refs.R3D18()
    assert list(prog.init_params()) == list(ref.state_dict())
    check_against(prog, ref, {"x": image((1, 3, 4, 16, 16))})


VIT_SMALL = {"size": 32, "dim": 48, "heads": 4, "mlp_dim": 96, "layers": 2, "classes": 10}


def test_vit_b_16_equals_torchvision_layout():
    prog = load("vit_b_16.dl", **VIT_SMALL)
    ref = refs.VisionTransformer(size=32, patch=16, layers=2, heads=4, dim=48, mlp_dim=96,
                                 classes=10)
    check_against(prog, ref, {"image": image((2, 3, 32, 32))}, order=ref.dsl_order())


CONVNEXT_SMALL = {"dims": (8, 16, 24, 32), "depths": (1, 1, 2, 1), "size": 32, "classes": 10}


def test_convnext_tiny_equals_torchvision_layout():
    prog = load("convnext_tiny.dl", **CONVNEXT_SMALL)
    ref = refs.ConvNeXt(dims=(8, 16, 24, 32), depths=(1, 1, 2, 1), classes=10)
    check_against(prog, ref, {"x": image((2, 3, 32, 32))}, order=ref.dsl_order())


@pytest.mark.parametrize("file,ref", [
    ("mobilenet_v2.dl", refs.MobileNetV2),
    ("mobilenet_v3_small.dl", refs.MobileNetV3Small),
    ("efficientnet_b0.dl", refs.EfficientNetB0),
])
def test_mobile_nets_have_torchvision_keys_and_outputs(file, ref):
    """The spec's state_dict is torchvision's, key for key, and the outputs agree (32x32
    images keep it cheap; no weight depends on the image size)."""
    prog = load(file, size=32)
    module = ref()
    assert list(prog.init_params()) == list(module.state_dict())
    check_against(prog, module, {"x": image((2, 3, 32, 32))})


@pytest.mark.parametrize("file", ["mobilenet_v2.dl", "efficientnet_b0.dl"])
def test_mobile_nets_at_o2_take_the_o0_weights(file):
    """-O2 folds every batch norm into its convolution and keeps the depthwise / SE
    convolutions channels-last: its generated module, given the unoptimised weights, equals
    the unoptimised NumPy run."""
    p0 = dslc.load(SPECS / file, hparams={"size": 32}, opt_level=0)
    p2 = dslc.load(SPECS / file, hparams={"size": 32}, opt_level=2)
    assert not any(n.op == "batch_norm" for n in p2.graph.nodes.values())
    params = randomise(p0.init_params(0))
    inputs = {"x": image((2, 3, 32, 32))}
    want = p0.run(inputs, dict(params))["logits"]
    got, _ = torch_outputs(p2, inputs, params)
    assert_close(got["logits"], want, what=file)


def test_mobilenet_v3_training_matches_torchvision_layout():
    """Batch statistics in training, with MobileNetV3's batch norm eps 1e-3 and momentum 0.01:
    the outputs and the updated running statistics equal the reference module's."""
    prog = load("mobilenet_v3_small.dl", size=32, p=0.0)
    ref = refs.MobileNetV3Small()
    ref.classifier[2].p = 0.0  # the dropout, off on both sides to compare one step
    params = randomise(prog.init_params(0))
    load_into(ref, params)
    ref.train()
    x = image((4, 3, 32, 32))
    out = prog.run({"x": x}, params, train=True)["logits"]  # updates params' running stats
    with torch.no_grad():
        want = ref(torch.from_numpy(x))
    assert_close(out, want.numpy(), what="logits")
    state = ref.state_dict()
    for key in ("features.0.1.running_mean", "features.4.block.1.1.running_var",
                "features.12.1.running_mean", "features.12.1.num_batches_tracked"):
        assert_close(params[key], state[key].numpy(), what=key)
    assert params["features.12.1.num_batches_tracked"] == 1


@pytest.mark.parametrize("file,gflops", [
    ("mobilenet_v2.dl", 0.30), ("mobilenet_v3_small.dl", 0.06), ("efficientnet_b0.dl", 0.39),
    ("convnext_tiny.dl", 4.46), ("vit_b_16.dl", 17.56), ("r3d_18.dl", 40.70),
])
def test_macs_are_torchvisions_gflops(capsys, file, gflops):
    """torchvision's model cards give the multiply-adds of the convolutions, linear layers and
    attention as "GFLOPS" to two decimals (norms, the summary's per-element extras, excluded)."""
    s = summary(capsys, file, "--bind=B=1", "--bind=T=16")
    layers = ("conv2d", "conv3d", "linear", "multihead_attention")
    macs = sum(r["macs"] for r in s["layers"] if r["op"] in layers)
    assert round(macs / 1e9, 2) == gflops
    assert s["macs"] > macs  # the summary's total also counts the norms


def test_efficientnet_stochastic_depth_on_residual_blocks():
    """sd 0.2 * k / 16 for block k of 16, on the blocks that add their input back."""
    prog = load("efficientnet_b0.dl")
    ps = [n.attrs.p for n in prog.source.nodes.values() if n.op == "drop_path"]
    np.testing.assert_allclose(ps, [0.2 * k / 16 for k in (2, 4, 6, 7, 9, 10, 12, 13, 14)])


FUSED = """import "blocks/mobile.dl"
model t {{
  input x: f32[B, {cin}, 9, 9]
  output y = x -> fused_mbconv({cout}, expand={e}, kernel={k}, stride={s}, p=0.3)
}}
"""


@pytest.mark.parametrize("cin,cout,e,k,s", [(8, 8, 4, 3, 1), (8, 16, 4, 3, 2), (8, 8, 1, 3, 1),
                                             (4, 8, 1, 5, 2)])
def test_fused_mbconv_equals_torchvision_layout(cin, cout, e, k, s):
    prog = load_text(FUSED.format(cin=cin, cout=cout, e=e, k=k, s=s))
    params = prog.init_params()
    ref = refs.FusedMBConv(e, k, s, cin, cout, 0.3)
    assert [k.split(".", 1)[1] for k in params] == list(ref.state_dict())
    check_against(prog, _Prefixed(ref, "fused_mbconv1"), {"x": image((2, cin, 9, 9))})
    compare_numpy_torch(prog, {"B": 2})


class _Prefixed(torch.nn.Module):
    """A reference module under a block call's name, so the keys line up."""

    def __init__(self, module, name: str):
        super().__init__()
        self.add_module(name, module)
        self.name = name

    def forward(self, x):
        return getattr(self, self.name)(x)


def test_convnext_stochastic_depth_rises_linearly():
    """drop_path p = 0.1 * k / 17 for block k of 18, as torchvision's sd_prob."""
    prog = load("convnext_tiny.dl")
    ps = [n.attrs.p for n in prog.source.nodes.values() if n.op == "drop_path"]
    assert len(ps) == 18
    np.testing.assert_allclose(ps, [0.1 * k / 17 for k in range(18)])


# ---- U-Net -----------------------------------------------------------------------------------


def test_unet_maps_572_to_388_as_the_paper(capsys):
    s = summary(capsys, "unet.dl", "--bind=B=1")
    assert s["outputs"][0]["shape"] == [1, 2, 388, 388]
    convs = [r["shape"][-1] for r in s["layers"] if r["op"] == "conv2d"]
    # the paper's figure: 570, 568 | 282, 280 | 138, 136 | 66, 64 | 30, 28 | 54, 52 | 102, 100
    # | 198, 196 | 390, 388, then the 1x1 head
    assert convs == [570, 568, 282, 280, 138, 136, 66, 64, 30, 28, 54, 52, 102, 100, 198, 196,
                     390, 388, 388]
    with torch.device("meta"):
        assert s["params"] == refs.count(refs.UNet()) == 31_030_658


def test_unet_equals_a_torch_reference():
    prog = load("unet.dl", base=4, size=188)
    ref = refs.UNet(base=4)
    out = check_against(prog, ref, {"x": image((1, 1, 188, 188))}, order=ref.dsl_order())
    assert out.shape == (1, 2, 4, 4)  # 188 is the smallest tile: 4x4 out


def test_unet_odd_pool_input_is_refused():
    with pytest.raises(dslc.DslcError) as exc:
        load("unet.dl", size=190)
    assert exc.value.diagnostics[0].code == "E0223"


# ---- DCGAN -----------------------------------------------------------------------------------


def test_dcgan_counts_equal_the_tutorial(capsys):
    g = summary(capsys, "dcgan.dl", "--model", "dcgan_generator", "--bind=B=1")
    d = summary(capsys, "dcgan.dl", "--model", "dcgan_discriminator", "--bind=B=1")
    assert g["outputs"][0]["shape"] == [1, 3, 64, 64]
    assert d["outputs"][0]["shape"] == [1, 1, 1, 1]
    with torch.device("meta"):
        assert g["params"] == refs.count(refs.DCGANGenerator()) == 3_576_704
        assert d["params"] == refs.count(refs.DCGANDiscriminator()) == 2_765_568


def test_dcgan_equals_the_tutorial_modules():
    """The tutorial's keys exactly (`main.0.weight`, `main.1.running_mean`, ...)."""
    gen = load("dcgan.dl", "dcgan_generator", ngf=8)
    ref_g = refs.DCGANGenerator(ngf=8)
    assert list(gen.init_params()) == list(ref_g.state_dict())
    fake = check_against(gen, ref_g, {"z": image((2, 100, 1, 1))})
    assert np.abs(fake).max() <= 1.0
    disc = load("dcgan.dl", "dcgan_discriminator", ndf=8)
    ref_d = refs.DCGANDiscriminator(ndf=8)
    assert list(disc.init_params()) == list(ref_d.state_dict())
    p = check_against(disc, ref_d, {"image": fake})
    assert ((p > 0) & (p < 1)).all()


# ---- WaveNet and the temporal blocks ----------------------------------------------------------


def test_wavenet_is_causal():
    """The output at step t is unchanged when inputs after t change, and does change when
    input t does (the receptive field is not empty)."""
    prog = load("wavenet_tcn.dl", layers=4, stacks=2, residual=8, skip=8, classes=16)
    params = prog.init_params(0)
    x = image((2, 1, 40))
    base = prog.run({"x": x}, dict(params))["logits"]
    for t in (0, 7, 23, 38):
        later = x.copy()
        later[..., t + 1:] = image((2, 1, 40 - t - 1), seed=t + 1)
        out = prog.run({"x": later}, dict(params))["logits"]
        np.testing.assert_array_equal(out[..., :t + 1], base[..., :t + 1])
        assert not np.allclose(out[..., t + 1:], base[..., t + 1:])
        now = x.copy()
        now[..., t] += 1.0
        assert not np.allclose(prog.run({"x": now}, dict(params))["logits"][..., t],
                               base[..., t])


def test_wavenet_receptive_field_is_the_dilation_sum():
    """Kernel 2, dilations 1, 2, 4, 8 twice after the input conv: the output at t reads inputs
    t - 31 .. t (1 step for the input conv, `dilation` more per layer) and nothing earlier."""
    prog = load("wavenet_tcn.dl", layers=4, stacks=2, residual=8, skip=8, classes=16)
    params = prog.init_params(0)
    x = image((1, 1, 48))
    base = prog.run({"x": x}, dict(params))["logits"]
    reach = 1 + 2 * (1 + 2 + 4 + 8)
    for lag in (reach, reach + 1):
        moved = x.copy()
        moved[..., 47 - lag] += 100.0  # large: the longest path multiplies 9 small weights
        out = prog.run({"x": moved}, dict(params))["logits"]
        assert np.array_equal(out[..., 47], base[..., 47]) == (lag > reach), lag


def test_wavenet_parameter_count(capsys):
    """Input conv, per layer two k=2 gate convs and a 1x1 skip conv, the 1x1 residual conv on
    all layers but the last (whose residual output would feed nothing), two 1x1 output convs;
    the NumPy side's parameters are the generated module's."""
    s = summary(capsys, "wavenet_tcn.dl", "--bind=B=1", "--bind=T=64")
    res, skip, classes, n = 32, 64, 256, 20
    gate = 2 * (res * res * 2 + res)
    want = (1 * res * 2 + res) + n * (gate + res * skip + skip) + (n - 1) * (res * res + res)
    want += (skip * skip + skip) + (skip * classes + classes)
    assert s["params"] == want == 166_400
    assert s["outputs"][0]["shape"] == [1, 256, 64]
    prog = load("wavenet_tcn.dl")
    keys = list(prog.init_params())
    assert "blocks.18.res.weight" in keys and not any(k.startswith("blocks.19.res") for k in keys)
    assert sum(v.size for v in prog.init_params().values()) == want


TEMPORAL = """import "blocks/temporal.dl"
model t {{
  input x: f32[B, {cin}, T]
  output y = x -> temporal_block({cout}, kernel={k}, dilation={d}, p=0.2) as block
}}
"""


@pytest.mark.parametrize("cin,cout,k,d", [(3, 6, 3, 1), (6, 6, 2, 4), (4, 2, 5, 2)])
def test_temporal_block_equals_the_tcn_reference(cin, cout, k, d):
    prog = load_text(TEMPORAL.format(cin=cin, cout=cout, k=k, d=d))
    check_against(prog, refs.TemporalBlock(cin, cout, k, d), {"x": image((2, cin, 19))})
    compare_numpy_torch(prog, {"B": 2, "T": 7})


# ---- ESPCN super-resolution ---------------------------------------------------------------------


def test_super_resolution_equals_the_pytorch_example(capsys):
    """The PyTorch examples' ESPCN (keys conv1..conv4): r-times larger images, its count."""
    s = summary(capsys, "super_resolution.dl", "--bind=B=1", "--bind=H=32", "--bind=W=24")
    assert s["outputs"][0]["shape"] == [1, 1, 96, 72]
    assert s["params"] == refs.count(refs.ESPCN()) == 59_657
    assert [r["op"] for r in s["layers"]][-1] == "pixel_shuffle"
    for r in (3, 2):
        prog = load("super_resolution.dl", upscale_factor=r)
        ref = refs.ESPCN(r)
        assert list(prog.init_params()) == list(ref.state_dict())
        out = check_against(prog, ref, {"x": image((2, 1, 7, 5))})
        assert out.shape == (2, 1, 7 * r, 5 * r)

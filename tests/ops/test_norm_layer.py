"""Tests of dslc/ops/norm_layer.py: layer_norm (also over the channel axis), rms_norm,
group_norm and layer_scale against torch.nn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dslc
from dslc import dims as D
from dslc.ops.norm_layer import NORM_LAYER_OPS
from tests.helpers import assert_close, compare_numpy_torch
from tests.ops.test_norm import _lit, diag, example_program, load

EXAMPLES = [(op, ex) for op in NORM_LAYER_OPS for ex in op.examples]


@pytest.mark.parametrize("op,ex", EXAMPLES,
                         ids=[f"{op.name}-{i}" for i, (op, _) in enumerate(EXAMPLES)])
def test_examples_numpy_equals_torch(op, ex):
    prog = example_program(op, ex)
    bind = {s: 3 for t in ex.inputs for d in t.shape for s in D.free_names(d)}
    np_out, _, _ = compare_numpy_torch(prog, bind=bind, train=ex.train)
    assert np_out["y"].shape == tuple(D.evaluate(d, bind) for d in ex.inputs[0].shape)


def _spec(shape, call: str, dtype: str = "f32") -> str:
    return f"input x: {dtype}[{', '.join(str(s) for s in shape)}]\noutput y = x -> {call}"


def _randomise(params: dict, ref: torch.nn.Module, rng, dtype=np.float32) -> dict:
    """Random values for every parameter, loaded into the torch reference too."""
    params = {k: rng.uniform(-1.5, 1.5, v.shape).astype(dtype) for k, v in params.items()}
    ref.load_state_dict({k.split(".", 1)[1]: torch.from_numpy(v.copy())
                         for k, v in params.items()})
    return params


def _check_against(prog, ref, shape, dtype, rng, params=None, scale=2.0, offset=0.5):
    """NumPy with the given parameters == the torch reference, on random inputs."""
    npdt = np.float32 if dtype == "f32" else np.float64
    x = (rng.standard_normal(shape) * scale + offset).astype(npdt)
    y = prog.run({"x": x}, params if params is not None else {})["y"]
    assert y.dtype == npdt
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).numpy()
    tol = {} if dtype == "f32" else {"rtol": 1e-10, "atol": 1e-12}
    assert_close(y, want, **tol)


# ---- layer_norm --------------------------------------------------------------------------


@pytest.mark.parametrize("shape,ns,kw", [
    ((2, 5, 8), None, {}),
    ((2, 5, 8), 8, {"eps": 1e-3}),
    ((3, 4, 5, 6), (5, 6), {}),
    ((3, 7), 7, {"bias": False}),
])
def test_layer_norm_matches_torch(shape, ns, kw):
    dims = ", ".join(str(s) for s in shape)
    args = ([_lit(ns)] if ns is not None else []) + [f"{k}={_lit(v)}" for k, v in kw.items()]
    prog = load(f"input x: f32[{dims}]\noutput y = x -> layer_norm({', '.join(args)})")
    norm_shape = (shape[-1],) if ns is None else ((ns,) if isinstance(ns, int) else ns)
    ref = torch.nn.LayerNorm(norm_shape, **kw)
    rng = np.random.default_rng(3)
    params = prog.init_params()
    assert sorted(params) == sorted("ln1." + k for k in ref.state_dict())
    for k in params:
        params[k] = rng.standard_normal(params[k].shape).astype(np.float32)
    ref.load_state_dict({k.split(".", 1)[1]: torch.from_numpy(v) for k, v in params.items()})
    x = (rng.standard_normal(shape) * 2 + 0.5).astype(np.float32)
    y = prog.run({"x": x}, params)["y"]
    with torch.no_grad():
        assert_close(y, ref(torch.from_numpy(x)).numpy())
    compare_numpy_torch(prog)


def test_layer_norm_without_affine_is_functional():
    prog = load("input x: f32[B, 4, 6]\noutput y = x -> layer_norm((4, 6), "
                "elementwise_affine=false)")
    assert prog.init_params() == {}
    assert "F.layer_norm(x, (4, 6), eps=1e-05)" in prog.to_torch_source()
    compare_numpy_torch(prog, bind={"B": 3})


def test_layer_norm_is_stable_on_a_large_offset():
    prog = load("input x: f32[4, 64]\noutput y = x -> layer_norm")
    rng = np.random.default_rng(0)
    x = (1e4 + rng.standard_normal((4, 64))).astype(np.float32)
    y = prog.run({"x": x})["y"]
    ref = torch.nn.functional.layer_norm(torch.from_numpy(x).double(), (64,)).numpy()
    assert_close(y, ref, rtol=2e-3, atol=2e-3)
    assert np.abs(y.std(axis=-1) - 1).max() < 1e-2


def test_layer_norm_errors():
    d = diag("input x: f32[2, 5, 8]\noutput y = x -> layer_norm(7)")
    assert d.code == "E0301"
    assert d.expected == "[..., 7]" and d.found == "f32[2, 5, 8]"
    d = diag("input x: f32[2, 5, 8]\noutput y = x -> layer_norm((8, 5))")
    assert d.code == "E0301" and d.expected == "[..., 8, 5]"
    d = diag("input x: f32[2, 8]\noutput y = x -> layer_norm((2, 2, 8))")
    assert d.code == "E0301" and "rank" in d.message
    d = diag("input x: f32[B, T]\noutput y = x -> layer_norm")
    assert d.code == "E0304"
    d = diag("input x: f32[B, T]\noutput y = x -> layer_norm(16)")
    assert d.code == "E0304"
    d = diag("input x: i32[2, 8]\noutput y = x -> layer_norm")
    assert d.code == "E0302"


# ---- layer_norm over the channel axis (ConvNeXt) -----------------------------------------


class LayerNorm2d(torch.nn.LayerNorm):
    """torchvision.models.convnext.LayerNorm2d, as torchvision writes it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = torch.nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias,
                                           self.eps)
        return x.permute(0, 3, 1, 2)


@pytest.mark.parametrize("shape", [(2, 6, 5, 4), (3, 4, 1, 1), (1, 8, 1, 7)])
@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_layer_norm_channels_first_matches_torchvision_layer_norm_2d(shape, dtype):
    c = shape[1]
    prog = load(_spec(shape, "layer_norm(channels_first=true, eps=1e-6)", dtype))
    ref = LayerNorm2d(c, eps=1e-6)
    if dtype == "f64":
        ref = ref.double()
    params = prog.init_params()
    assert {k: v.shape for k, v in params.items()} == {"ln1.weight": (c,), "ln1.bias": (c,)}
    np.testing.assert_array_equal(params["ln1.weight"], np.ones(c, np.float32))
    np.testing.assert_array_equal(params["ln1.bias"], np.zeros(c, np.float32))
    rng = np.random.default_rng(11)
    params = _randomise(params, ref, rng, np.float32 if dtype == "f32" else np.float64)
    _check_against(prog, ref, shape, dtype, rng, params)
    if dtype == "f32":
        compare_numpy_torch(prog)


@pytest.mark.parametrize("shape,kw", [
    ((2, 5, 7), {}),
    ((2, 3, 2, 3, 4), {"bias": False}),
    ((4, 6), {"normalized_shape": 6}),
    ((2, 3, 4, 4), {"elementwise_affine": False}),
])
def test_layer_norm_channels_first_is_layer_norm_of_the_moved_axis(shape, kw):
    args = ", ".join(["channels_first=true"] + [f"{k}={_lit(v)}" for k, v in kw.items()])
    prog = load(_spec(shape, f"layer_norm({args})"))
    src = prog.to_torch_source()
    # Readable: the channels are moved last around an ordinary layer norm.
    assert ".movedim(1, -1)" in src and ".movedim(-1, 1)" in src
    c = shape[1]
    ln = torch.nn.LayerNorm(c, elementwise_affine=kw.get("elementwise_affine", True),
                            bias=kw.get("bias", True))
    rng = np.random.default_rng(2)
    params = _randomise(prog.init_params(), ln, rng)

    def ref(x):
        return ln(x.movedim(1, -1)).movedim(-1, 1)

    _check_against(prog, ref, shape, "f32", rng, params)
    compare_numpy_torch(prog)


def test_layer_norm_channels_first_source_and_errors():
    prog = load(_spec(("B", 8, 4, 4), "layer_norm(channels_first=true)"))
    src = prog.to_torch_source()
    assert "self.ln1 = nn.LayerNorm(8)" in src
    assert "y = self.ln1(x.movedim(1, -1)).movedim(-1, 1)" in src
    compare_numpy_torch(prog, bind={"B": 2})
    d = diag(_spec((2, 8, 4, 4), "layer_norm(4, channels_first=true)"))
    assert d.code == "E0301" and d.expected == "8" and d.found == "4"
    d = diag(_spec((2, 8, 4, 4), "layer_norm((8, 4), channels_first=true)"))
    assert d.code == "E0301" and "channel count" in d.message
    d = diag(_spec(("B", "C", 4), "layer_norm(channels_first=true)"))
    assert d.code == "E0304" and "channel" in d.message
    d = diag(_spec((8,), "layer_norm(channels_first=true)"))
    assert d.code == "E0301" and d.expected == "rank >= 2"


# ---- rms_norm ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape,ns,kw", [
    ((2, 5, 8), None, {}),
    ((2, 5, 8), 8, {"eps": 1e-3}),
    ((3, 4, 5, 6), (5, 6), {"eps": 1e-6}),
    ((3, 7), 7, {"elementwise_affine": False}),
    ((4, 1), 1, {}),
])
@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_rms_norm_matches_torch(shape, ns, kw, dtype):
    args = ([_lit(ns)] if ns is not None else []) + [f"{k}={_lit(v)}" for k, v in kw.items()]
    prog = load(_spec(shape, f"rms_norm({', '.join(args)})", dtype))
    norm_shape = (shape[-1],) if ns is None else ((ns,) if isinstance(ns, int) else ns)
    ref = torch.nn.RMSNorm(norm_shape, **kw)
    if dtype == "f64":
        ref = ref.double()
    params = prog.init_params()
    assert sorted(params) == sorted("rms1." + k for k in ref.state_dict())
    for k, v in ref.state_dict().items():
        np.testing.assert_array_equal(params[f"rms1.{k}"], v.float().numpy())  # ones
    rng = np.random.default_rng(4)
    params = _randomise(params, ref, rng, np.float32 if dtype == "f32" else np.float64)
    _check_against(prog, ref, shape, dtype, rng, params)
    if dtype == "f32":
        compare_numpy_torch(prog)


def test_rms_norm_default_eps_is_that_of_the_computation_dtype():
    # Tiny inputs: the result depends on eps. torch takes finfo(f32).eps for f16 inputs (it
    # computes in f32) and finfo(f64).eps for f64.
    for dtype, npdt, eps in (("f16", np.float16, np.finfo(np.float32).eps),
                             ("f32", np.float32, np.finfo(np.float32).eps),
                             ("f64", np.float64, np.finfo(np.float64).eps)):
        prog = load(_spec((2, 2), "rms_norm(elementwise_affine=false)", dtype))
        x = np.array([[1e-4, 1e-4], [3e-5, -2e-5]], npdt)
        y = prog.run({"x": x})["y"]
        assert y.dtype == npdt
        want = torch.nn.functional.rms_norm(torch.from_numpy(x), (2,)).numpy()
        assert_close(y, want, rtol=2e-3 if dtype == "f16" else 1e-6, what=dtype)
        x64 = x.astype(np.float64)
        by_hand = x64 / np.sqrt((x64 ** 2).mean(axis=-1, keepdims=True) + eps)
        assert_close(y, by_hand, rtol=2e-3 if dtype == "f16" else 1e-6, what=dtype)
    # f32's eps is not negligible here (0.28 instead of 1), f64's is.
    assert abs(float(y[0, 0]) - 1.0) < 1e-6 and abs(by_hand[0, 0] - 1.0) < 1e-6


def test_rms_norm_source():
    src = load(_spec((2, 8), "rms_norm")).to_torch_source()
    assert "self.rms1 = nn.RMSNorm(8)" in src and "y = self.rms1(x)" in src
    src = load(_spec((2, 3, 8), "rms_norm((3, 8), eps=1e-6)")).to_torch_source()
    assert "nn.RMSNorm((3, 8), eps=1e-06)" in src
    src = load(_spec((2, 8), "rms_norm(elementwise_affine=false)")).to_torch_source()
    assert "y = F.rms_norm(x, (8,))" in src


def test_rms_norm_errors():
    d = diag(_spec((2, 5, 8), "rms_norm(7)"))
    assert d.code == "E0301" and d.expected == "[..., 7]"
    d = diag(_spec((2, "T"), "rms_norm"))
    assert d.code == "E0304" and "rms_norm" in d.message
    d = diag(_spec((2, 8), "rms_norm(eps=-1.0)"))
    assert d.code == "E0301" and d.expected == "> 0"
    d = diag(_spec((2, 8), "rms_norm", "i64"))
    assert d.code == "E0302"


# ---- group_norm --------------------------------------------------------------------------


@pytest.mark.parametrize("shape,groups,kw", [
    ((3, 6, 4, 5), 2, {}),
    ((3, 6, 4, 5), 1, {}),  # one group: each sample over C, H and W
    ((3, 6, 4, 5), 6, {}),  # a group per channel: instance norm with affine
    ((2, 4, 1, 1), 4, {}),  # one value per group: only the bias remains
    ((2, 4, 1, 3), 2, {"eps": 1e-3}),
    ((4, 6), 3, {}),
    ((2, 8, 9), 4, {"affine": False}),
    ((2, 4, 2, 3, 2), 2, {"bias": False}),
])
@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_group_norm_matches_torch(shape, groups, kw, dtype):
    args = ", ".join([str(groups)] + [f"{k}={_lit(v)}" for k, v in kw.items()])
    prog = load(_spec(shape, f"group_norm({args})", dtype))
    ref = torch.nn.GroupNorm(groups, shape[1], **kw)
    if dtype == "f64":
        ref = ref.double()
    params = prog.init_params()
    assert list(params) == ["gn1." + k for k in ref.state_dict()]
    for k, v in ref.state_dict().items():
        np.testing.assert_array_equal(params[f"gn1.{k}"], v.float().numpy(), err_msg=k)
    rng = np.random.default_rng(6)
    params = _randomise(params, ref, rng, np.float32 if dtype == "f32" else np.float64)
    _check_against(prog, ref, shape, dtype, rng, params)
    # The same in training: the statistics are each sample's own.
    x = rng.standard_normal(shape).astype(np.float32 if dtype == "f32" else np.float64)
    assert np.array_equal(prog.run({"x": x}, params, train=True)["y"],
                          prog.run({"x": x}, params, train=False)["y"])
    if dtype == "f32":
        compare_numpy_torch(prog, train=True)


def test_group_norm_source():
    src = load(_spec((2, 8, 3, 3), "group_norm(4)")).to_torch_source()
    assert "self.gn1 = nn.GroupNorm(4, 8)" in src and "y = self.gn1(x)" in src
    src = load(_spec((2, 8, 3), "group_norm(2, eps=1e-6, bias=false)")).to_torch_source()
    assert "nn.GroupNorm(2, 8, eps=1e-06, bias=False)" in src
    src = load(_spec((2, 8, 3), "group_norm(2, affine=false)")).to_torch_source()
    assert "y = F.group_norm(x, 2)" in src


def test_group_norm_errors():
    d = diag(_spec((2, 6, 4), "group_norm(4)"))
    assert d.code == "E0301" and d.expected == "a divisor of C = 6"
    assert d.found == "num_groups=4"
    d = diag(_spec((2, 6, 4), "group_norm(0)"))
    assert d.code == "E0301" and d.expected == ">= 1"
    d = diag(_spec((6,), "group_norm(2)"))
    assert d.code == "E0301" and d.expected == "rank >= 2"
    d = diag(_spec(("B", "C", 4), "group_norm(2)"))
    assert d.code == "E0304"
    d = diag(_spec((2, 6, 4), "group_norm"))
    assert d.code == "E0208"


# ---- layer_scale -------------------------------------------------------------------------


class CNBlockScale(torch.nn.Module):
    """torchvision's CNBlock layer scale: a [C, 1, 1] parameter times the NCHW branch."""

    def __init__(self, c: int, layer_scale: float):
        super().__init__()
        self.gamma = torch.nn.Parameter(torch.ones(c, 1, 1) * layer_scale)

    def forward(self, x):
        return self.gamma * x


class LayerScale(torch.nn.Module):
    """timm's LayerScale (CaiT, ViT): a [C] parameter times the last axis."""

    def __init__(self, dim: int, init_values: float = 1e-5):
        super().__init__()
        self.gamma = torch.nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


@pytest.mark.parametrize("shape,call,ref", [
    ((2, 6, 3, 4), "layer_scale(channels_first=true)", lambda: CNBlockScale(6, 1e-6)),
    ((2, 5, 1, 1), "layer_scale(0.5, channels_first=true)", lambda: CNBlockScale(5, 0.5)),
    ((2, 4, 7), "layer_scale(init=1e-5)", lambda: LayerScale(7, 1e-5)),
    ((3, 8), "layer_scale(0.1)", lambda: LayerScale(8, 0.1)),
])
@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_layer_scale_matches_torchvision_and_timm(shape, call, ref, dtype):
    prog = load(_spec(shape, call, dtype))
    ref = ref()
    if dtype == "f64":
        ref = ref.double()
    params = prog.init_params()
    # The parameter's shape and initial value are the reference module's.
    assert list(params) == ["ls1.gamma"]
    np.testing.assert_array_equal(params["ls1.gamma"], ref.gamma.detach().float().numpy())
    rng = np.random.default_rng(8)
    params = _randomise(params, ref, rng, np.float32 if dtype == "f32" else np.float64)
    _check_against(prog, ref, shape, dtype, rng, params)
    if dtype == "f32":
        compare_numpy_torch(prog)


def test_layer_scale_source_params_and_repeat():
    prog = load(_spec(("B", 6, 4, 4), "layer_scale(channels_first=true)"))
    src = prog.to_torch_source()
    assert ("self.ls1 = nn.ParameterDict({'gamma': nn.Parameter(torch.full((6, 1, 1), "
            "1e-06))})") in src
    assert "y = x * self.ls1['gamma']" in src
    spec = prog.graph.param_keys()["ls1.gamma"][2]
    assert not spec.buffer and spec.init == "constant:1e-06"
    compare_numpy_torch(prog, bind={"B": 2})
    # Inside a repeated block the parameter holder sits in an nn.ModuleList.
    text = """
model t {
  input x: f32[B, 4, 3, 3]
  h = x
  blocks: repeat 3 {
    h = h + (h -> conv2d(4, kernel=3, padding=1) -> layer_scale(0.2, channels_first=true))
  }
  output y = h
}
"""
    prog = dslc.load("t.dl", text=text)
    keys = list(prog.init_params())
    assert [k for k in keys if k.endswith(".gamma")] == [f"blocks.{i}.ls1.gamma" for i in range(3)]
    assert "nn.ModuleList" in prog.to_torch_source()
    compare_numpy_torch(prog, bind={"B": 2})


def test_layer_scale_errors():
    d = diag(_spec((2, "C"), "layer_scale"))
    assert d.code == "E0304" and "last axis" in d.message
    d = diag(_spec((2, "C", 4), "layer_scale(channels_first=true)"))
    assert d.code == "E0304" and "axis 1" in d.message
    d = diag(_spec((4,), "layer_scale(channels_first=true)"))
    assert d.code == "E0301" and d.expected == "rank >= 2"
    d = diag(_spec((2, 4), "layer_scale", "i64"))
    assert d.code == "E0302"


def test_norm_layer_macs_one_per_element():
    ops = {o.name: o for o in NORM_LAYER_OPS}
    x = dslc.types.tensor("f32", D.symbol("B"), 4, 3, 3)
    for name, attrs in (("layer_norm", {"channels_first": True}), ("rms_norm", {}),
                        ("group_norm", {"num_groups": 2}), ("layer_scale", {})):
        op = ops[name]
        assert D.equal(op.macs(op.attrs(**attrs), [x], [x]), D.symbol("B") * 36) is True, name


# ---- in context: a ConvNeXt stage as torchvision builds it -------------------------------


class CNBlock(torch.nn.Module):
    """torchvision.models.convnext.CNBlock (eval: stochastic depth is the identity)."""

    def __init__(self, dim: int, layer_scale: float):
        super().__init__()
        self.block = torch.nn.Sequential(
            torch.nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim, bias=True),
            Permute([0, 2, 3, 1]),
            torch.nn.LayerNorm(dim, eps=1e-6),
            torch.nn.Linear(dim, 4 * dim, bias=True),
            torch.nn.GELU(),
            torch.nn.Linear(4 * dim, dim, bias=True),
            Permute([0, 3, 1, 2]),
        )
        self.layer_scale = torch.nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)

    def forward(self, x):
        return self.layer_scale * self.block(x) + x


class Permute(torch.nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.dims = dims

    def forward(self, x):
        return torch.permute(x, self.dims)


def test_convnext_downsample_and_block_match_torchvision_layout():
    """torchvision's ConvNeXt downsampling (LayerNorm2d, 2x2 stride-2 conv) and a CNBlock,
    written with layer_norm(channels_first=true), layer_scale and drop_path."""
    text = """
model t {
  input x: f32[B, 8, 8, 8]
  d = x -> layer_norm(channels_first=true, eps=1e-6) -> conv2d(16, kernel=2, stride=2)
  h = d -> conv2d(16, kernel=7, padding=3, groups=16) -> permute((0, 2, 3, 1))
  h = h -> layer_norm(eps=1e-6) -> linear(64) -> gelu -> linear(16) -> permute((0, 3, 1, 2))
  output y = d + (h -> layer_scale(0.1, channels_first=true) -> drop_path(0.2))
}
"""
    prog = dslc.load("t.dl", text=text)
    ref_down = torch.nn.Sequential(LayerNorm2d(8, eps=1e-6), torch.nn.Conv2d(8, 16, 2, 2))
    ref_block = CNBlock(16, 0.1)
    params = prog.init_params()
    # The same parameters, in the same shapes, as torchvision's modules.
    ref_of = {"ln1.weight": ref_down[0].weight, "ln1.bias": ref_down[0].bias,
              "conv1.weight": ref_down[1].weight, "conv1.bias": ref_down[1].bias,
              "conv2.weight": ref_block.block[0].weight, "conv2.bias": ref_block.block[0].bias,
              "ln2.weight": ref_block.block[2].weight, "ln2.bias": ref_block.block[2].bias,
              "fc1.weight": ref_block.block[3].weight, "fc1.bias": ref_block.block[3].bias,
              "fc2.weight": ref_block.block[5].weight, "fc2.bias": ref_block.block[5].bias,
              "ls1.gamma": ref_block.layer_scale}
    assert list(params) == list(ref_of)
    assert {k: v.shape for k, v in params.items()} == {k: tuple(v.shape)
                                                       for k, v in ref_of.items()}
    np.testing.assert_array_equal(params["ls1.gamma"], ref_block.layer_scale.detach().numpy())
    rng = np.random.default_rng(12)
    with torch.no_grad():
        for key, v in ref_of.items():
            params[key] = rng.uniform(-0.5, 0.5, params[key].shape).astype(np.float32)
            v.copy_(torch.from_numpy(params[key]))
    x = rng.standard_normal((2, 8, 8, 8)).astype(np.float32)
    with torch.no_grad():
        want = ref_block.eval()(ref_down(torch.from_numpy(x))).numpy()
    assert_close(prog.run({"x": x}, params)["y"], want)
    compare_numpy_torch(prog, bind={"B": 2})
    # -O2 drops the drop path (inactive at inference) and keeps the result.
    o2 = dslc.load("t.dl", text=text, opt_level=2)
    assert "drop_path" not in {n.op for n in o2.graph.nodes.values()}
    assert_close(o2.run({"x": x}, params)["y"], want)
    assert o2.graph.memory_format == "channels_last"  # the generated module runs NHWC
    compare_numpy_torch(o2, bind={"B": 2})

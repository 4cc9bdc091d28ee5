"""Tests of dslc/ops/conv_transpose.py: conv_transpose1d/2d/3d through the language against
torch.nn.ConvTranspose*d with copied weights, torch's output-size rule and refusals over a grid
of geometries, per-side padding, MACs, parameters, labels and the generated code."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dslc
from dslc.diagnostics import DslcError
from dslc.ops.base import ShapeError
from dslc.ops.conv_transpose import conv_transpose_nd
from dslc.ops.registry import OPS
from tests.helpers import assert_close, compare_numpy_torch

MODULES = {1: torch.nn.ConvTranspose1d, 2: torch.nn.ConvTranspose2d,
           3: torch.nn.ConvTranspose3d}


def _lit(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, tuple):
        return "(" + ", ".join(_lit(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return repr(v)


def spec(shape, nd: int, out: int, kernel, **kw) -> str:
    args = ", ".join([str(out), f"kernel={_lit(kernel)}"]
                     + [f"{k}={_lit(v)}" for k, v in kw.items()])
    return (f"model t {{\n  input x: f32[{', '.join(map(str, shape))}]\n"
            f"  output y = x -> conv_transpose{nd}d({args}) as up\n}}\n")


def run_vs_module(shape, nd, out, kernel, module, crop=None, seed=0, **kw):
    """NumPy result against `module` (same weights, loaded from dslc's parameters); `crop`
    slices torch's output (per-side padding torch cannot crop itself)."""
    prog = dslc.load("t.dl", text=spec(shape, nd, out, kernel, **kw))
    params = prog.init_params(seed)
    x = np.random.default_rng(seed + 1).standard_normal(shape).astype(np.float32)
    got = prog.run({"x": x}, params)["y"]
    module.load_state_dict({k.split(".", 1)[1]: torch.from_numpy(v)
                            for k, v in params.items()}, strict=True)
    with torch.no_grad():
        want = module(torch.from_numpy(x))
    if crop is not None:
        want = want[crop]
    want = want.numpy()
    node = next(n for n in prog.graph.nodes.values() if n.op == f"conv_transpose{nd}d")
    assert got.shape == want.shape == tuple(int(d) for d in node.types[0].shape)
    assert_close(got, want, what=f"conv_transpose{nd}d {kw}")
    return prog


CASES = [
    # (nd, input shape, out, kernel, attrs given to both dslc and torch)
    (1, (2, 3, 7), 4, 3, {}),
    (1, (2, 3, 5), 4, 4, {"stride": 2, "padding": 1, "output_padding": 1}),
    (1, (1, 6, 4), 6, 3, {"stride": 3, "dilation": 2, "groups": 3, "padding": 4,
                          "output_padding": 2, "bias": False}),
    (1, (2, 2, 1), 3, 5, {"stride": 4}),  # size-1 input
    (2, (2, 8, 4, 4), 4, 4, {"stride": 2, "padding": 1, "bias": False}),  # DCGAN
    (2, (2, 10, 1, 1), 6, 4, {}),  # DCGAN's first layer: from the noise vector
    (2, (1, 6, 5, 3), 3, 2, {"stride": 2}),  # U-Net's up-convolution
    (2, (2, 2, 4, 5), 4, (3, 2), {"stride": (2, 3), "padding": (1, 0),
                                  "output_padding": (1, 2), "dilation": (1, 2)}),
    (2, (1, 4, 5, 5), 4, 3, {"groups": 4, "stride": 2, "padding": 1}),  # depthwise
    (2, (1, 4, 3, 4), 8, 3, {"groups": 4, "dilation": 3, "output_padding": 2}),
    (2, (1, 2, 4, 5), 2, 2, {"stride": 3, "padding": 3}),  # padding past the kernel
    (2, (1, 2, 3, 3), 3, 3, {"padding": 2}),  # crops to 1x1
    (2, (2, 3, 6, 6), 4, 1, {"stride": 2, "output_padding": 1}),  # 1x1: the bias in between
    (3, (2, 2, 2, 3, 3), 3, 2, {"stride": 2}),
    (3, (1, 4, 3, 3, 2), 4, (3, 2, 3), {"stride": (1, 2, 2), "padding": (1, 0, 1),
                                        "output_padding": (0, 1, 1), "groups": 2}),
    (3, (1, 3, 2, 3, 2), 2, 3, {"stride": 2, "dilation": (1, 2, 1), "padding": 1,
                                "bias": False}),
]


@pytest.mark.parametrize("nd,shape,out,kernel,kw", CASES, ids=[f"t-{i}" for i in range(len(CASES))])
def test_equals_nn_conv_transpose(nd, shape, out, kernel, kw):
    module = MODULES[nd](shape[1], out, kernel, **kw)
    prog = run_vs_module(shape, nd, out, kernel, module, **kw)
    compare_numpy_torch(prog)


PER_SIDE = [
    # (nd, input shape, out, kernel, per-side padding (F.pad order), attrs, torch's crop)
    (1, (2, 3, 5), 2, 3, (0, 2), {"stride": 2}, (..., slice(0, -2))),
    (2, (1, 2, 4, 3), 3, 3, (0, 1, 1, 0), {"stride": 2},
     (..., slice(1, None), slice(0, -1))),
    (2, (1, 2, 3, 3), 3, 4, (2, 1, 3, 3), {"stride": 2, "output_padding": 1},
     (..., slice(3, -3), slice(2, -1))),
    (3, (1, 2, 2, 2, 3), 2, 2, (1, 0, 0, 0, 0, 1), {"stride": 2},
     (..., slice(0, -1), slice(None), slice(1, None))),
]


@pytest.mark.parametrize("nd,shape,out,kernel,pad,kw,crop", PER_SIDE,
                         ids=[f"ps-{i}" for i in range(len(PER_SIDE))])
def test_per_side_padding_crops_like_a_slice(nd, shape, out, kernel, pad, kw, crop):
    module = MODULES[nd](shape[1], out, kernel, **kw)
    prog = run_vs_module(shape, nd, out, kernel, module, crop=crop, padding=pad, **kw)
    assert "self.up(x)[..., " in prog.to_torch_source()
    compare_numpy_torch(prog)


def test_geometry_grid_agrees_with_torch_output_size_and_refusals():
    """Over every small 1-D geometry: the shape rule gives torch's output size, refuses
    exactly what torch refuses (output_padding, cropped-away output), and the values agree."""
    x = torch.randn(1, 2, 3, dtype=torch.float64)
    checked = refused = 0
    for size, k, s, d, p, op in itertools.product((1, 3), (1, 2, 3), (1, 2, 3), (1, 2),
                                                    (0, 1, 3), (0, 1, 2)):
        xs = x[..., :size]
        w = torch.randn(2, 3, k, dtype=torch.float64)
        try:
            want = F.conv_transpose1d(xs, w, stride=s, padding=p, output_padding=op,
                                      dilation=d)
        except RuntimeError:
            want = None
        text = spec((1, 2, size), 1, 3, k, stride=s, padding=p, output_padding=op,
                    dilation=d, bias=False)
        if want is None:
            with pytest.raises(DslcError) as exc:
                dslc.load("t.dl", text=text)
            assert exc.value.diagnostics[0].code in ("E0324", "E0326")
            refused += 1
            continue
        got = conv_transpose_nd(xs.numpy(), w.numpy(), None, (s,), ((p, p),), (d,), (op,), 1)
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-12, atol=1e-12)
        prog = dslc.load("t.dl", text=text)
        assert int(prog.graph.type_of(prog.graph.outputs[0][1]).shape[2]) == want.shape[2]
        checked += 1
    assert checked > 100 and refused > 50


def test_f64_and_f16():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 3, 5))
    w = rng.standard_normal((4, 3, 3, 2))
    want = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), stride=2,
                              padding=1).numpy()
    got = conv_transpose_nd(x, w, None, (2, 2), ((1, 1), (1, 1)), (1, 1), (0, 0), 1)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    half = conv_transpose_nd(x.astype(np.float16), w.astype(np.float16), None, (2, 2),
                             ((1, 1), (1, 1)), (1, 1), (0, 0), 1)
    assert half.dtype == np.float16
    assert_close(half, want, rtol=1e-2, atol=1e-2, what="f16")


def test_weight_tensor_input_is_functional():
    prog = dslc.load("t.dl", text="""model t {
  input x: f32[B, 4, 3, 3]
  input w: f32[4, 2, 3, 3]
  input b: f32[4]
  output y = conv_transpose2d(x, w, b, stride=2, groups=2, padding=(1, 0, 1, 0))
}
""")
    src = prog.to_torch_source()
    assert "F.conv_transpose2d(x, w, b, stride=2, groups=2)[..., 1:, 1:]" in src
    np_out, _, _ = compare_numpy_torch(prog, bind={"B": 2})
    assert np_out["y"].shape == (2, 4, 6, 6)


def test_params_init_and_state_dict_match_torch():
    prog = dslc.load("t.dl", text=spec((1, 6, 4, 4), 2, 8, (3, 2), groups=2))
    params = prog.init_params(0)
    module = torch.nn.ConvTranspose2d(6, 8, (3, 2), groups=2)
    assert {k: v.shape for k, v in params.items()} == \
        {f"up.{k}": tuple(v.shape) for k, v in module.state_dict().items()}
    # torch's bound: 1/sqrt(weight.size(1) * kernel) = 1/sqrt(out/groups * kh * kw)
    bound = 1 / np.sqrt(4 * 3 * 2)
    assert 0.5 * bound < np.abs(params["up.weight"]).max() <= bound
    assert np.abs(params["up.bias"]).max() <= bound
    assert float(module.weight.detach().abs().max()) <= bound


def test_macs_count_input_elements_times_out_per_group_times_kernel():
    prog = dslc.load("t.dl", text=spec((2, 8, 4, 4), 2, 6, 4, stride=2, padding=1, groups=2))
    assert prog.summary()["macs"] == (2 * 8 * 4 * 4) * (6 // 2) * 16
    prog = dslc.load("t.dl", text=spec((1, 3, 2, 3, 4), 3, 5, (1, 2, 3)))
    assert prog.summary()["macs"] == (3 * 2 * 3 * 4) * 5 * 6


def test_generated_module_and_label():
    prog = dslc.load("t.dl", text=spec((1, 8, 4, 4), 2, 4, 4, stride=2, padding=1,
                                       bias=False))
    assert "nn.ConvTranspose2d(8, 4, kernel_size=4, stride=2, padding=1, bias=False)" \
        in prog.to_torch_source()
    label = OPS["conv_transpose2d"].label
    attrs = OPS["conv_transpose2d"].attrs
    assert label(attrs(out_channels=4, kernel=4, stride=2, padding=1)) == "4x4, s2, p1"
    assert label(attrs(out_channels=4, kernel=3, stride=2, padding=1, output_padding=1,
                       dilation=2, groups=2, bias=False)) == "3x3, s2, p1, op1, d2, g2, no bias"


def diag(text: str):
    with pytest.raises(DslcError) as exc:
        dslc.load("t.dl", text=text)
    return exc.value.diagnostics[0]


@pytest.mark.parametrize("call,code,attr_col", [
    ("conv_transpose2d(4, kernel=3, stride=2, output_padding=2)", "E0324", "output_padding"),
    ("conv_transpose2d(4, kernel=3, padding=\"same\")", "E0325", "padding"),
    ("conv_transpose2d(4, kernel=2, padding=5)", "E0326", "padding"),
    ("conv_transpose2d(4, kernel=3, padding=(1, 2, 3))", "E0320", "padding"),
    ("conv_transpose2d(5, kernel=3, groups=2)", "E0301", "groups"),
    ("conv_transpose2d(4)", "E0301", None),
])
def test_bad_calls_are_located(call, code, attr_col):
    line = "  output y = x -> " + call
    d = diag("model t {\n  input x: f32[1, 4, 3, 3]\n" + line + "\n}\n")
    assert d.code == code and d.span.line == 3
    if attr_col:
        assert d.span.column == line.index(attr_col + "=") + 1


def test_large_batch_is_run_in_blocks_of_images(monkeypatch):
    """A batch whose patches pass one block is run a few images at a time, same result."""
    import dslc.ops.conv_transpose as ct
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 4, 3, 4)).astype(np.float32)
    w = rng.standard_normal((4, 6, 3, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    want = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b),
                              stride=2, padding=1, output_padding=1).numpy()
    monkeypatch.setattr(ct, "_BLOCK", 3 * 4 * 9 * 6 * 2)  # two images a block
    got = conv_transpose_nd(x, w, b, (2, 2), ((1, 1), (1, 1)), (1, 1), (1, 1), 1)
    assert_close(got, want)


def test_patches_over_the_run_limit_are_refused_before_allocating():
    x = np.zeros((1, 1, 64, 64), np.float32)
    w = np.zeros((1, 32, 64, 64), np.float32)  # 64*64 inputs x 64*64 taps x 32 > 2**28
    with pytest.raises(ShapeError) as exc:
        conv_transpose_nd(x, w, None, (1, 1), ((0, 0), (0, 0)), (1, 1), (0, 0), 1)
    assert exc.value.code == "E0505"


def test_random_geometries_equal_torch():
    """Seeded random 1/2/3-D transposed convs (groups, strides, dilations, padding,
    output_padding, tiny sizes) through the kernel against F.conv_transposeNd."""
    import random
    rnd = random.Random(2)
    checked = 0
    for _ in range(300):
        nd = rnd.randint(1, 3)
        g = rnd.choice([1, 1, 2])
        cin, cout = g * rnd.randint(1, 2), g * rnd.randint(1, 2)
        size = tuple(rnd.randint(1, 5) for _ in range(nd))
        k = tuple(rnd.randint(1, 4) for _ in range(nd))
        s = tuple(rnd.randint(1, 3) for _ in range(nd))
        d = tuple(rnd.randint(1, 3) for _ in range(nd))
        p = tuple(rnd.randint(0, 3) for _ in range(nd))
        op = tuple(rnd.randint(0, 2) for _ in range(nd))
        x = torch.randn((2, cin) + size, dtype=torch.float64)
        w = torch.randn((cin, cout // g) + k, dtype=torch.float64)
        try:
            want = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[nd - 1](
                x, w, stride=s, padding=p, output_padding=op, dilation=d, groups=g).numpy()
        except RuntimeError:
            continue
        got = conv_transpose_nd(x.numpy(), w.numpy(), None, s, tuple((q, q) for q in p), d,
                                op, g)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
        checked += 1
    assert checked > 100

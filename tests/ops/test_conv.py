"""Tests of dslc/ops/conv.py: conv1d/2d/3d through the language against torch.nn.functional
and torch.nn modules with the same weights (padding per side, "same", padding_mode), the
output-size formula, MACs, parameters, the generated code and located diagnostics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dslc
from dslc import dims as D
from dslc.diagnostics import DslcError
from dslc.ops import conv as conv_module
from dslc.ops import workers as workers_module
from dslc.ops.base import ShapeError
from dslc.ops.conv import conv2d_nchw, conv2d_reference, conv_nd, pad_input
from dslc.ops.padding import fpad_order, resolve_padding
from dslc.ops.registry import OPS
from dslc.ops.workers import Workers
from tests.helpers import assert_close, compare_numpy_torch

pytestmark = pytest.mark.filterwarnings("ignore:Using padding=.same.")


def _lit(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v + '"'
    if isinstance(v, tuple):
        return "(" + ", ".join(_lit(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return repr(v)


def conv_spec(shape, op: str, out: int, kernel, **kw) -> str:
    args = ", ".join([str(out), f"kernel={_lit(kernel)}"] + [f"{k}={_lit(v)}"
                                                             for k, v in kw.items()])
    return (f"model t {{\n  input x: f32[{', '.join(map(str, shape))}]\n"
            f"  output y = x -> {op}({args}) as c\n}}\n")


def run_conv(shape, op, out, kernel, seed=0, **kw):
    """NumPy result, torch F.convNd result (same weights and input), and the checked type."""
    prog = dslc.load("t.dl", text=conv_spec(shape, op, out, kernel, **kw))
    params = prog.init_params(seed)
    x = np.random.default_rng(seed + 1).standard_normal(shape).astype(np.float32)
    got = prog.run({"x": x}, params)["y"]
    fn = F.conv1d if op == "conv1d" else F.conv2d
    bias = params.get("c.bias")
    want = fn(torch.from_numpy(x), torch.from_numpy(params["c.weight"]),
              None if bias is None else torch.from_numpy(bias),
              stride=kw.get("stride", 1), padding=kw.get("padding", 0),
              dilation=kw.get("dilation", 1), groups=kw.get("groups", 1)).numpy()
    node = next(n for n in prog.graph.nodes.values() if n.op == op)
    return got, want, node.types[0]


CONV2D_CASES = [
    # (input shape, out, kernel, attrs)
    ((2, 3, 8, 8), 4, 3, {}),
    ((1, 3, 9, 7), 5, 3, {"padding": 1}),
    ((2, 4, 11, 10), 6, 3, {"stride": 2}),
    ((2, 4, 11, 10), 6, 3, {"stride": 2, "padding": 1}),
    ((1, 2, 13, 12), 3, 5, {"stride": 3, "padding": 2}),
    ((2, 3, 10, 9), 4, (3, 5), {"stride": (2, 1), "padding": (1, 2)}),
    ((1, 3, 12, 12), 4, 3, {"dilation": 2}),
    ((1, 3, 14, 13), 4, 3, {"dilation": (2, 3), "padding": 2, "stride": 2}),
    ((2, 3, 7, 8), 4, 3, {"padding": "same"}),
    ((2, 3, 7, 8), 4, 4, {"padding": "same"}),  # even kernel: extra pixel after, as torch
    ((1, 3, 9, 9), 4, (2, 3), {"padding": "same", "dilation": 2}),
    ((1, 3, 9, 9), 4, 3, {"padding": "valid"}),
    ((2, 6, 8, 8), 4, 3, {"groups": 2, "padding": 1}),
    ((2, 6, 8, 8), 9, 3, {"groups": 3, "stride": 2, "bias": False}),
    ((2, 4, 9, 9), 4, 3, {"groups": 4, "padding": 1}),  # depthwise
    ((1, 4, 9, 9), 12, 3, {"groups": 4, "stride": 2, "dilation": 2}),  # depthwise x3
    ((2, 8, 7, 7), 5, 1, {}),  # 1x1
    ((2, 8, 7, 9), 5, 1, {"stride": 2}),  # strided 1x1 (ResNet's projection)
    ((1, 3, 5, 5), 2, 5, {}),  # kernel exactly the input
    ((3, 3, 30, 30), 16, 7, {"stride": 2, "padding": 3, "bias": False}),  # ResNet stem
    ((1, 1, 6, 6), 1, 3, {"padding": 1}),
    # more output channels than output pixels: patches gathered in the weight's own order
    ((2, 8, 5, 5), 40, 3, {"stride": 2, "padding": 1, "dilation": 2}),
    ((1, 16, 3, 3), 24, 3, {"padding": 1, "groups": 2}),
    # taps that read only padding are left out (ops/window.py): the middle one alone reaches
    ((1, 2, 5, 5), 3, 3, {"padding": 12, "dilation": 11}),
    ((1, 2, 4, 6), 3, (3, 2), {"padding": (7, 1), "dilation": (6, 1), "stride": (2, 1)}),
    ((1, 4, 5, 5), 4, 3, {"padding": 12, "dilation": 11, "groups": 4}),  # depthwise
    ((1, 2, 2, 4), 3, (2, 1), {"padding": (5, 0), "dilation": (10, 1)}),  # none: the bias
]


@pytest.mark.parametrize("shape,out,kernel,kw", CONV2D_CASES,
                         ids=[f"c2-{i}" for i in range(len(CONV2D_CASES))])
def test_conv2d_equals_torch(shape, out, kernel, kw):
    got, want, t = run_conv(shape, "conv2d", out, kernel, **kw)
    assert got.shape == want.shape == tuple(int(d) for d in t.shape)
    assert got.dtype == np.float32
    assert_close(got, want, what="conv2d")


CONV1D_CASES = [
    ((2, 3, 10), 4, 3, {}),
    ((2, 3, 11), 4, 3, {"stride": 2, "padding": 1}),
    ((1, 4, 17), 6, 5, {"stride": 2, "padding": 2, "dilation": 2, "groups": 2}),
    ((2, 3, 9), 4, 4, {"padding": "same"}),
    ((2, 3, 9), 4, 3, {"padding": "same", "dilation": 3, "bias": False}),
    ((2, 4, 9), 8, 3, {"groups": 4}),
    ((2, 5, 8), 3, 1, {}),
    ((1, 2, 5), 3, 3, {"padding": 12, "dilation": 11}),
]


@pytest.mark.parametrize("shape,out,kernel,kw", CONV1D_CASES,
                         ids=[f"c1-{i}" for i in range(len(CONV1D_CASES))])
def test_conv1d_equals_torch(shape, out, kernel, kw):
    got, want, t = run_conv(shape, "conv1d", out, kernel, **kw)
    assert got.shape == want.shape == tuple(int(d) for d in t.shape)
    assert_close(got, want, what="conv1d")


def test_chained_convs_and_pool_keep_values_with_channels_last_views():
    """The conv kernel returns an NCHW view of NHWC memory; everything after it (another
    conv, a pool, relu, add) must still compute the same as torch."""
    prog = dslc.load("t.dl", text="""model t {
  input x: f32[2, 3, 16, 16]
  h = x -> conv2d(8, kernel=3, padding=1) as c1 -> relu
  a = h -> conv2d(8, kernel=3, padding=1) as c2
  b = h -> conv2d(8, kernel=1) as c3
  output y = (a + b) -> max_pool2d(2) -> conv2d(4, kernel=3, stride=2, padding=1) as c4
}
""")
    np_out, t_out, _ = compare_numpy_torch(prog)
    assert np_out["y"].shape == (2, 4, 4, 4)


def test_kernel_accepts_any_memory_layout():
    rng = np.random.default_rng(0)
    base = rng.standard_normal((2, 7, 9, 6)).astype(np.float32)
    w = rng.standard_normal((5, 6, 3, 3)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    want = F.conv2d(torch.from_numpy(np.ascontiguousarray(base.transpose(0, 3, 1, 2))),
                    torch.from_numpy(w), torch.from_numpy(b), stride=2, padding=1).numpy()
    for x in (base.transpose(0, 3, 1, 2), np.ascontiguousarray(base.transpose(0, 3, 1, 2)),
              np.asfortranarray(base.transpose(0, 3, 1, 2))):
        got = conv2d_nchw(x, w, b, (2, 2), ((1, 1), (1, 1)), (1, 1), 1)
        assert_close(got, want, what=str(x.strides))


def test_large_image_uses_row_blocks_and_matches_torch():
    """An image whose patch matrix exceeds one block is gathered row block by row block."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 16, 70, 66)).astype(np.float32)
    w = rng.standard_normal((8, 16, 3, 3)).astype(np.float32) * 0.1
    got = conv2d_nchw(x, w, None, (1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    want = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1).numpy()
    assert_close(got, want, what="blocked")


def test_f64_stays_f64_and_f16_is_computed_in_f32():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 8, 8))
    w = rng.standard_normal((4, 3, 3, 3))
    got = conv2d_nchw(x, w, None, (1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    want = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1).numpy()
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    half = conv2d_nchw(x.astype(np.float16), w.astype(np.float16), None, (1, 1),
                       ((1, 1), (1, 1)), (1, 1), 1)
    assert half.dtype == np.float16
    assert_close(half, want, rtol=1e-2, atol=1e-2, what="f16")


def test_weight_tensor_input_is_functional_conv():
    """`conv2d(x, w)` uses a weight tensor (the edge detector's constant kernel)."""
    prog = dslc.load("t.dl", text="""model t {
  input x: f32[B, 1, H, W]
  const k: f32[1, 1, 3, 3] = [[[[1, 1, 1], [0, 0, 0], [-1, -1, -1]]]]
  output y = conv2d(x, k, padding=1)
}
""")
    np_out, _, _ = compare_numpy_torch(prog, bind={"B": 2, "H": 6, "W": 5})
    assert np_out["y"].shape == (2, 1, 6, 5)
    assert "F.conv2d(" in prog.to_torch_source()


# ---- output size -------------------------------------------------------------------------


@pytest.mark.parametrize("w", [5, 6, 7, 28, 31, 224, 227])
@pytest.mark.parametrize("f,p,s", [(1, 0, 1), (1, 0, 2), (3, 1, 1), (3, 1, 2), (3, 0, 2),
                                   (5, 2, 1), (5, 0, 3), (7, 3, 2), (11, 0, 4), (2, 0, 2)])
def test_output_size_is_the_notes_formula(w, f, p, s):
    """(w + 2P - F)/S + 1 rounded down, from the shape rule and from torch."""
    if w + 2 * p < f:
        return
    want = (w + 2 * p - f) // s + 1
    assert D.conv_out(D.const(w), f, s, p, 1) == want
    _, got, t = run_conv((1, 1, w, 3), "conv2d", 1, (f, 1), stride=(s, 1), padding=(p, 0))
    assert int(t.shape[2]) == got.shape[2] == want


def test_symbolic_output_size():
    prog = dslc.load("t.dl", text="""model t {
  input x: f32[B, 3, H, W]
  output y = x -> conv2d(4, kernel=3, stride=2, padding=1) as c
}
""")
    t = prog.graph.type_of(prog.graph.outputs[0][1])
    assert D.fmt(t.shape[0]) == "B" and int(t.shape[1]) == 4
    assert D.evaluate(t.shape[2], {"H": 9}) == 5 and D.evaluate(t.shape[3], {"W": 10}) == 5
    np_out, _, _ = compare_numpy_torch(prog, bind={"B": 2, "H": 9, "W": 10})
    assert np_out["y"].shape == (2, 4, 5, 5)


def test_same_padding_keeps_symbolic_size():
    prog = dslc.load("t.dl", text="""model t {
  input x: f32[B, 3, H, W]
  output y = x -> conv2d(4, kernel=4, padding="same", dilation=2) as c
}
""")
    t = prog.graph.type_of(prog.graph.outputs[0][1])
    assert D.equal(t.shape[2], D.symbol("H")) and D.equal(t.shape[3], D.symbol("W"))


# ---- MACs and parameters -----------------------------------------------------------------


def test_inception_5x5_macs():
    """The notes' naive 5x5 path: 28x28x192 -> 32 channels costs 5*5*192 * 28*28*32."""
    prog = dslc.load("t.dl", text=conv_spec((1, 192, 28, 28), "conv2d", 32, 5, padding=2))
    s = prog.summary()
    assert s["macs"] == 120_422_400 == 5 * 5 * 192 * 28 * 28 * 32


def test_macs_count_groups_and_1d():
    prog = dslc.load("t.dl", text=conv_spec((2, 8, 10, 10), "conv2d", 16, 3, groups=4))
    assert prog.summary()["macs"] == 2 * 16 * 8 * 8 * (8 // 4) * 9
    prog = dslc.load("t.dl", text=conv_spec((3, 4, 20), "conv1d", 6, 5, stride=2))
    assert prog.summary()["macs"] == 3 * 6 * 8 * 4 * 5


def test_macs_symbolic_in_batch():
    prog = dslc.load("t.dl", text=conv_spec(("B", 3, 32, 32), "conv2d", 6, 5))
    node = next(n for n in prog.graph.nodes.values() if n.op == "conv2d")
    ins = [prog.graph.type_of(r) for r in node.inputs]
    macs = OPS["conv2d"].macs(node.attrs, ins, node.types)
    assert D.substitute(macs, {"B": 2}) == 2 * 6 * 28 * 28 * 3 * 25


@pytest.mark.parametrize("op,shape,kw,wshape", [
    ("conv2d", (1, 6, 8, 8), {"groups": 3}, (12, 2, 3, 3)),
    ("conv2d", (1, 4, 8, 8), {"kernel": (3, 5)}, (12, 4, 3, 5)),
    ("conv1d", (1, 4, 8), {"groups": 2}, (12, 2, 3)),
])
def test_params_match_torch_modules(op, shape, kw, wshape):
    kernel = kw.pop("kernel", 3)
    prog = dslc.load("t.dl", text=conv_spec(shape, op, 12, kernel, **kw))
    params = prog.init_params(0)
    assert sorted(params) == ["c.bias", "c.weight"]
    assert params["c.weight"].shape == wshape and params["c.bias"].shape == (12,)
    assert params["c.weight"].dtype == np.float32
    fan_in = int(np.prod(wshape[1:]))
    assert np.abs(params["c.weight"]).max() <= 1 / np.sqrt(fan_in)
    assert np.abs(params["c.weight"]).max() > 0.5 / np.sqrt(fan_in)  # uniform over the range
    module = prog.to_torch()()
    state = module.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == \
        {k: v.shape for k, v in params.items()}


def test_no_bias_and_generated_module_text():
    prog = dslc.load("t.dl", text=conv_spec((1, 4, 9, 9), "conv2d", 8, 3, stride=2,
                                            padding=1, dilation=2,
                                            groups=2, bias=False))
    assert list(prog.init_params()) == ["c.weight"]
    src = prog.to_torch_source()
    assert ("nn.Conv2d(4, 8, kernel_size=3, stride=2, padding=1, dilation=2, groups=2, "
            "bias=False)") in src
    same = dslc.load("t.dl", text=conv_spec((1, 4, 9, 9), "conv2d", 8, 3, padding="same"))
    assert "padding='same'" in same.to_torch_source()


def test_label_reads_like_the_notes():
    label = OPS["conv2d"].label
    attrs = OPS["conv2d"].attrs
    assert label(attrs(out_channels=8, kernel=5, stride=2, padding=1)) == "5x5, s2, p1"
    assert label(attrs(out_channels=8, kernel=3)) == "3x3"
    assert label(attrs(out_channels=8, kernel=(1, 7), padding="same", groups=2)) == \
        "1x7, same, g2"
    assert OPS["conv1d"].label(OPS["conv1d"].attrs(out_channels=2, kernel=3, dilation=2)) \
        == "3, d2"


# ---- diagnostics -------------------------------------------------------------------------


def diag(text: str):
    with pytest.raises(DslcError) as exc:
        dslc.load("t.dl", text=text)
    return exc.value.diagnostics[0]


def test_kernel_larger_than_input_is_located():
    d = diag("model t {\n  input x: f32[1, 3, 4, 4]\n"
             "  output y = x -> conv2d(8, kernel=5, padding=0)\n}\n")
    assert d.code == "E0305"
    assert (d.span.line, d.span.column) == (3, 29)  # at `kernel=5`
    assert "5" in d.expected and "4" in d.found
    d = diag("model t {\n  input x: f32[1, 3, 4]\n  output y = x -> conv1d(8, 3, dilation=3)\n}\n")
    assert d.code == "E0305" and d.span.line == 3
    # padding makes it fit
    dslc.load("t.dl", text="model t {\n  input x: f32[1, 3, 4, 4]\n"
              "  output y = x -> conv2d(8, kernel=5, padding=1)\n}\n")


def test_groups_not_dividing_channels_is_located():
    d = diag("model t {\n  input x: f32[1, 6, 8, 8]\n"
             "  output y = x -> conv2d(8, kernel=3, groups=4)\n}\n")
    assert d.code == "E0301"
    assert (d.span.line, d.span.column) == (3, 39)  # at `groups=4`
    assert "divisible" in d.expected and "groups=4" in d.found
    d = diag("model t {\n  input x: f32[1, 6, 8, 8]\n"
             "  output y = x -> conv2d(8, kernel=3, groups=3)\n}\n")  # 8 % 3
    assert d.code == "E0301"


@pytest.mark.parametrize("body,code,word", [
    ("input x: f32[1, 3, 8, 8]\n  output y = x -> conv2d(4, kernel=3, stride=2, "
     "padding=\"same\")", "E0321", "stride"),
    ("input x: f32[1, 3, 8, 8]\n  output y = x -> conv2d(4, kernel=3, padding=\"full\")",
     "E0320", "same"),
    ("input x: f32[1, C, 8, 8]\n  output y = x -> conv2d(4, kernel=3)", "E0304", "fixed"),
    ("input x: f32[3, 8]\n  output y = x -> conv2d(4, kernel=3)", "E0301", "rank"),
    ("input x: i64[1, 3, 8, 8]\n  output y = x -> conv2d(4, kernel=3)", "E0302", "float"),
    ("input x: f32[1, 3, 8, 8]\n  output y = x -> conv2d(4, kernel=0)", "E0301", "kernel"),
])
def test_bad_conv_calls(body, code, word):
    d = diag("model t {\n  " + body + "\n}\n")
    assert d.code == code
    assert word in (d.message + " " + (d.expected or "") + " " + (d.found or ""))


def test_conv2d_padding_and_dilation_far_past_the_input():
    # Once a 2**62-element pad (fuzzing): only the middle tap reads the input.
    big = 2 ** 30
    prog = dslc.load("t.dl", text=conv_spec((1, 2, 5, 5), "conv2d", 3, 3, padding=big,
                                            dilation=big))
    params = prog.init_params(0)
    x = np.random.default_rng(1).standard_normal((1, 2, 5, 5)).astype(np.float32)
    got = prog.run({"x": x}, params)["y"]
    w, b = params["c.weight"], params["c.bias"]
    want = np.einsum("oc,nchw->nohw", w[:, :, 1, 1], x) + b[None, :, None, None]
    assert got.shape == (1, 3, 5, 5)
    assert_close(got, want)


# ---- against torch.nn modules with copied weights: conv3d, per-side padding, padding_mode --


def run_vs_module(shape, nd: int, out: int, kernel, torch_module, pre_pad=None, seed=0,
                  **kw):
    """The language's conv{nd}d against `torch_module` (a torch.nn conv) given the same
    weights (loaded from dslc's parameters) and input; `pre_pad` is F.pad's argument applied
    first when torch's module cannot pad that way itself."""
    prog = dslc.load("t.dl", text=conv_spec(shape, f"conv{nd}d", out, kernel, **kw))
    params = prog.init_params(seed)
    x = np.random.default_rng(seed + 1).standard_normal(shape).astype(np.float32)
    got = prog.run({"x": x}, params)["y"]
    state = {k.split(".", 1)[1]: torch.from_numpy(v) for k, v in params.items()}
    torch_module.load_state_dict(state, strict=True)
    xt = torch.from_numpy(x)
    if pre_pad is not None:
        xt = F.pad(xt, pre_pad)
    with torch.no_grad():
        want = torch_module(xt).numpy()
    node = next(n for n in prog.graph.nodes.values() if n.op == f"conv{nd}d")
    assert got.shape == want.shape == tuple(int(d) for d in node.types[0].shape)
    assert_close(got, want, what=f"conv{nd}d {kw}")
    return prog


CONV3D_CASES = [
    # (input shape, out, kernel, dslc attrs, nn.Conv3d kwargs)
    ((2, 3, 5, 6, 7), 4, 3, {}, {}),
    ((1, 3, 4, 9, 9), 8, (3, 7, 7), {"stride": (1, 2, 2), "padding": (1, 3, 3), "bias": False},
     {"stride": (1, 2, 2), "padding": (1, 3, 3), "bias": False}),  # r3d_18's stem
    ((2, 4, 7, 5, 6), 6, (2, 3, 1), {"stride": (2, 1, 2), "dilation": (2, 1, 3), "groups": 2,
                                     "padding": 2},
     {"stride": (2, 1, 2), "dilation": (2, 1, 3), "groups": 2, "padding": 2}),
    ((1, 4, 3, 4, 5), 8, 3, {"groups": 4, "padding": 1}, {"groups": 4, "padding": 1}),
    ((2, 3, 4, 5, 6), 5, 1, {"stride": 2}, {"stride": 2}),
    ((1, 2, 1, 1, 5), 3, (1, 1, 3), {}, {}),  # size-1 axes
    ((1, 2, 3, 4, 4), 3, 2, {"padding": 4}, {"padding": 4}),  # padding past the kernel
    ((1, 2, 2, 3, 3), 3, 3, {"padding": 9, "dilation": 8}, {"padding": 9, "dilation": 8}),
    ((1, 2, 4, 5, 6), 3, (2, 3, 4), {"padding": "same", "dilation": (2, 1, 2)},
     {"padding": "same", "dilation": (2, 1, 2)}),
    ((2, 3, 4, 5, 5), 4, 3, {"padding": "valid"}, {"padding": "valid"}),
]


@pytest.mark.parametrize("shape,out,kernel,kw,tkw", CONV3D_CASES,
                         ids=[f"c3-{i}" for i in range(len(CONV3D_CASES))])
def test_conv3d_equals_nn_conv3d(shape, out, kernel, kw, tkw):
    run_vs_module(shape, 3, out, kernel, torch.nn.Conv3d(shape[1], out, kernel, **tkw), **kw)


PADDING_MODE_CASES = [
    # (nd, input shape, out, kernel, padding, extra attrs) for each padding_mode
    (1, (2, 3, 7), 4, 3, 2, {}),
    (1, (2, 3, 6), 4, 4, "same", {"dilation": 2}),
    (2, (2, 3, 5, 6), 4, 3, 1, {"stride": 2}),
    (2, (1, 4, 5, 4), 4, (2, 3), (2, 1), {"groups": 4}),  # depthwise
    (2, (2, 3, 6, 7), 5, 4, "same", {}),  # even kernel: the odd pad after, as torch
    (2, (1, 2, 4, 4), 3, 3, 3, {"dilation": 2}),
    (3, (1, 2, 3, 4, 5), 3, (2, 3, 3), (1, 1, 2), {}),
    (3, (1, 2, 4, 4, 4), 3, 3, "same", {"stride": 1, "bias": False}),
]


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("nd,shape,out,kernel,padding,kw", PADDING_MODE_CASES,
                         ids=[f"pm-{i}" for i in range(len(PADDING_MODE_CASES))])
def test_padding_mode_equals_nn_conv(mode, nd, shape, out, kernel, padding, kw):
    module = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)[nd - 1](
        shape[1], out, kernel, padding=padding, padding_mode=mode, **kw)
    prog = run_vs_module(shape, nd, out, kernel, module, padding=padding, padding_mode=mode,
                         **kw)
    src = prog.to_torch_source()
    if mode != "zeros":
        assert f"padding_mode={mode!r}" in src
    compare_numpy_torch(prog)


PER_SIDE_CASES = [
    # (nd, input shape, out, kernel, per-side padding in F.pad order, extra attrs)
    (1, (2, 3, 9), 4, 3, (2, 0), {"dilation": 1}),  # causal
    (1, (2, 3, 9), 4, 2, (0, 5), {"stride": 2}),  # padding past the kernel
    (2, (2, 3, 8, 7), 4, 3, (0, 1, 0, 1), {"stride": 2}),  # TF "same" at stride 2
    (2, (1, 3, 6, 5), 6, (2, 4), (1, 2, 0, 1), {"groups": 3, "dilation": (2, 1)}),
    (2, (1, 2, 1, 4), 3, (2, 2), (0, 0, 1, 0), {}),  # size-1 height, padded on top only
    (2, (2, 4, 5, 5), 4, 3, (2, 0, 0, 2), {"groups": 4}),  # depthwise
    (3, (1, 2, 3, 4, 5), 3, 2, (1, 0, 0, 1, 1, 0), {}),
    (3, (1, 2, 2, 3, 4), 4, (1, 2, 3), (2, 2, 0, 3, 1, 0), {"stride": (1, 2, 1)}),
]


@pytest.mark.parametrize("nd,shape,out,kernel,pad,kw", PER_SIDE_CASES,
                         ids=[f"ps-{i}" for i in range(len(PER_SIDE_CASES))])
def test_per_side_padding_equals_fpad_then_conv(nd, shape, out, kernel, pad, kw):
    module = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)[nd - 1](
        shape[1], out, kernel, **kw)
    prog = run_vs_module(shape, nd, out, kernel, module, pre_pad=pad, padding=pad, **kw)
    src = prog.to_torch_source()
    assert f"self.c(F.pad(x, {pad}))" in src  # what timm and torchvision write
    compare_numpy_torch(prog)


def test_per_side_padding_with_a_mode_pads_with_that_mode():
    """(left, right) = (2, 0) with reflect: F.pad(..., mode='reflect') then the conv."""
    prog = dslc.load("t.dl", text=conv_spec((2, 3, 7), "conv1d", 4, 3, padding=(2, 0),
                                            padding_mode="reflect"))
    params = prog.init_params(0)
    x = np.random.default_rng(1).standard_normal((2, 3, 7)).astype(np.float32)
    got = prog.run({"x": x}, params)["y"]
    want = F.conv1d(F.pad(torch.from_numpy(x), (2, 0), mode="reflect"),
                     torch.from_numpy(params["c.weight"]), torch.from_numpy(params["c.bias"]))
    assert_close(got, want.numpy())
    assert "F.pad(x, (2, 0), mode='reflect')" in prog.to_torch_source()
    compare_numpy_torch(prog)


def test_generated_module_is_what_an_engineer_writes():
    prog = dslc.load("t.dl", text=conv_spec((1, 3, 8, 8), "conv2d", 8, 3, padding="same",
                                            padding_mode="reflect"))
    assert ("nn.Conv2d(3, 8, kernel_size=3, padding='same', padding_mode='reflect')"
            in prog.to_torch_source())
    prog = dslc.load("t.dl", text=conv_spec((1, 3, 4, 8, 8), "conv3d", 8, (3, 1, 1),
                                            padding=(1, 0, 0), stride=(1, 2, 2)))
    assert ("nn.Conv3d(3, 8, kernel_size=(3, 1, 1), stride=(1, 2, 2), padding=(1, 0, 0))"
            in prog.to_torch_source())
    # per side but symmetric per axis: torch's own per-axis padding, no F.pad
    prog = dslc.load("t.dl", text=conv_spec((1, 3, 8, 8), "conv2d", 8, 3,
                                            padding=(2, 2, 1, 1)))
    src = prog.to_torch_source()
    assert "nn.Conv2d(3, 8, kernel_size=3, padding=(1, 2))" in src and "F.pad" not in src


def test_conv3d_params_macs_and_label():
    prog = dslc.load("t.dl", text=conv_spec((2, 3, 4, 8, 8), "conv3d", 6, (3, 5, 5),
                                            groups=3, padding=(1, 2, 2)))
    params = prog.init_params(0)
    assert params["c.weight"].shape == (6, 1, 3, 5, 5) and params["c.bias"].shape == (6,)
    fan_in = 1 * 3 * 5 * 5
    assert 0.5 / np.sqrt(fan_in) < np.abs(params["c.weight"]).max() <= 1 / np.sqrt(fan_in)
    assert prog.summary()["macs"] == 2 * 6 * 4 * 8 * 8 * (1 * 3 * 5 * 5)
    label = OPS["conv3d"].label
    attrs = OPS["conv3d"].attrs
    assert label(attrs(out_channels=6, kernel=(3, 5, 5), stride=(1, 2, 2), padding=1,
                       padding_mode="replicate")) == "3x5x5, s1x2x2, p1, replicate"
    assert OPS["conv2d"].label(OPS["conv2d"].attrs(out_channels=2, kernel=3,
                                                   padding=(0, 1, 0, 1))) == "3x3, p(0,1,0,1)"


def test_reflect_padding_on_a_runtime_size_is_checked_when_it_runs():
    prog = dslc.load("t.dl", text="""model t {
  input x: f32[1, 2, H, 8]
  output y = x -> conv2d(3, kernel=3, padding=2, padding_mode="reflect") as c
}
""")
    compare_numpy_torch(prog, bind={"H": 3})
    with pytest.raises(DslcError) as exc:
        prog.run(prog.random_inputs(0, {"H": 2}), prog.init_params(0))
    assert exc.value.diagnostics[0].code == "E0507"
    assert "reflect" in exc.value.diagnostics[0].message
    with pytest.raises(RuntimeError):  # torch refuses it too
        F.pad(torch.zeros(1, 2, 2, 8), (2, 2, 2, 2), mode="reflect")


@pytest.mark.parametrize("mode,pad,size,ok", [
    ("reflect", 2, 3, True), ("reflect", 3, 3, False),
    ("circular", 3, 3, True), ("circular", 4, 3, False),
    ("replicate", 9, 1, True)])
def test_padding_mode_limits_agree_with_torch(mode, pad, size, ok):
    text = conv_spec((1, 1, size), "conv1d", 1, 1, padding=pad, padding_mode=mode)
    try:
        torch.nn.Conv1d(1, 1, 1, padding=pad, padding_mode=mode)(torch.zeros(1, 1, size))
        torch_ok = True
    except RuntimeError:
        torch_ok = False
    assert torch_ok == ok
    if ok:
        compare_numpy_torch(dslc.load("t.dl", text=text))
    else:
        assert diag(text).code == "E0323"


@pytest.mark.parametrize("body,code", [
    ('conv3d(4, kernel=3, padding=(1, 1))', "E0320"),
    ('conv3d(4, kernel=3, padding=(0, 0, 0, 0, 0, -1))', "E0320"),
    ('conv3d(4, kernel=3, stride=(1, 1, 2), padding="same")', "E0321"),
    ('conv3d(4, kernel=3, padding=1, padding_mode="zero")', "E0322"),
    ('conv3d(4, kernel=3, padding=(0, 0, 0, 0, 4, 4), padding_mode="circular")', "E0323"),
    ('conv3d(4, kernel=(5, 1, 1))', "E0305"),
    ('conv3d(4, kernel=3, groups=3)', "E0301"),
])
def test_bad_conv3d_calls(body, code):
    d = diag("model t {\n  input x: f32[1, 2, 3, 8, 8]\n  output y = x -> " + body + "\n}\n")
    assert d.code == code


@pytest.mark.parametrize("nd,shape", [(1, "3, 7"), (2, "3, 5, 6"), (3, "3, 4, 5, 6")])
@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("pad", ["2", '"same"', "per-side"])
def test_unbatched_input_with_every_padding_form_and_mode(nd, shape, mode, pad):
    """[C, *spatial] inputs: the generated module (and its F.pad) take them as torch does."""
    padding = "(" + ", ".join(["1", "0"] * nd) + ")" if pad == "per-side" else pad
    prog = dslc.load("t.dl", text=f"""model t {{
  input x: f32[{shape}]
  output y = x -> conv{nd}d(4, kernel=3, padding={padding}, padding_mode="{mode}") as c
}}""")
    np_out, _, _ = compare_numpy_torch(prog)
    assert np_out["y"].ndim == nd + 1


def test_conv3d_kernel_dtypes():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 4, 5, 6))
    w = rng.standard_normal((4, 3, 2, 3, 2))
    want = F.conv3d(torch.from_numpy(x), torch.from_numpy(w), stride=(2, 1, 1),
                    padding=1).numpy()
    got = conv_nd(x, w, None, (2, 1, 1), ((1, 1),) * 3, (1, 1, 1), 1)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    half = conv_nd(x.astype(np.float16), w.astype(np.float16), None, (2, 1, 1),
                   ((1, 1),) * 3, (1, 1, 1), 1)
    assert half.dtype == np.float16
    assert_close(half, want, rtol=1e-2, atol=1e-2, what="f16")


def test_random_geometries_equal_torch():
    """Seeded random 1/2/3-D convs (every padding form and mode, groups, strides, dilations,
    tiny sizes) through the kernel against F.pad + F.convNd; both refuse the same ones."""
    import random
    rnd = random.Random(1)
    checked = 0
    for _ in range(150):
        nd = rnd.randint(1, 3)
        g = rnd.choice([1, 1, 2])
        cin, cout = g * rnd.randint(1, 2), g * rnd.randint(1, 2)
        size = tuple(rnd.randint(1, 6) for _ in range(nd))
        k = tuple(rnd.randint(1, 4) for _ in range(nd))
        d = tuple(rnd.randint(1, 3) for _ in range(nd))
        form = rnd.choice(["int", "axis", "side", "same", "valid"])
        s = (1,) * nd if form == "same" else tuple(rnd.randint(1, 3) for _ in range(nd))
        pad = {"int": rnd.randint(0, 5), "axis": tuple(rnd.randint(0, 4) for _ in range(nd)),
               "side": tuple(rnd.randint(0, 4) for _ in range(2 * nd))}.get(form, form)
        mode = rnd.choice(["zeros", "reflect", "replicate", "circular"])
        x = torch.randn((2, cin) + size, dtype=torch.float64)
        w = torch.randn((cout, cin // g) + k, dtype=torch.float64)
        pads = resolve_padding(pad, k, s, d, nd, "conv")
        try:
            xt = F.pad(x, fpad_order(pads), mode="constant" if mode == "zeros" else mode)
            want = (F.conv1d, F.conv2d, F.conv3d)[nd - 1](xt, w, stride=s, dilation=d,
                                                          groups=g).numpy()
        except RuntimeError:
            want = None
        try:
            xx, zero = x.numpy(), pads
            if mode != "zeros":
                xx, zero = pad_input(xx, pads, mode), ((0, 0),) * nd
            got = conv_nd(xx, w.numpy(), None, s, zero, d, g)
        except ShapeError:
            got = None
        assert (got is None) == (want is None), (nd, size, k, s, d, pad, mode)
        if want is not None:
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
            checked += 1
    assert checked > 75


# The tuned kernels against the plain ones beside them (DESIGN.md: a kernel tuned for speed
# keeps a plain reference version, and a test holds the two equal).
TUNED_CASES = [
    # (input shape, out, kernel, stride, padding (top, bottom, left, right), dilation, groups)
    ((2, 8, 9, 9), 8, 3, 1, (1, 1, 1, 1), 1, 8),  # depthwise, MobileNet's
    ((2, 8, 10, 11), 8, 3, 2, (1, 1, 1, 1), 1, 8),  # strided depthwise: column phases
    ((1, 6, 13, 12), 6, 3, 3, (0, 2, 1, 0), 2, 6),  # stride 3, dilation 2, per side
    ((1, 5, 8, 9), 5, (2, 4), (2, 1), (0, 0, 3, 1), (1, 2), 5),  # non-square everything
    ((1, 4, 7, 7), 8, 3, 1, (1, 1, 1, 1), 1, 4),  # channel multiplier 2
    ((1, 64, 64, 64), 64, 3, 1, (1, 1, 1, 1), 1, 64),  # 4 row blocks
    ((2, 96, 30, 30), 96, 5, 2, (2, 2, 2, 2), 1, 96),  # EfficientNet's 5x5
    ((2, 6, 8, 8), 9, 3, 1, (1, 1, 1, 1), 1, 3),  # grouped
    ((2, 8, 7, 7), 5, 1, 1, (0, 0, 0, 0), 1, 1),  # 1x1: one matmul
    ((2, 8, 7, 7), 5, 1, 2, (0, 0, 0, 0), 1, 1),  # strided 1x1
    ((1, 3, 9, 10), 4, 3, 2, (1, 1, 1, 1), 1, 1),  # the patch gather
    ((1, 3, 5, 5), 2, 3, 1, (6, 0, 0, 7), 2, 1),  # padding past the kernel
]


@pytest.mark.parametrize("shape,out,kernel,stride,pad,dil,groups", TUNED_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("block", [None, 40])  # 40 elements: a block of 1 row, or a few
def test_tuned_conv2d_equals_plain_reference(shape, out, kernel, stride, pad, dil, groups,
                                             dtype, block, monkeypatch):
    if block is not None:  # the blocking of the depthwise kernel (the conv's too)
        monkeypatch.setattr(conv_module, "_DW_BLOCK", block)
        monkeypatch.setattr(conv_module, "_BLOCK", block * 8)
    k = (kernel, kernel) if isinstance(kernel, int) else kernel
    s = (stride, stride) if isinstance(stride, int) else stride
    d = (dil, dil) if isinstance(dil, int) else dil
    pads = ((pad[0], pad[1]), (pad[2], pad[3]))
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((out, shape[1] // groups) + k).astype(dtype)
    b = rng.standard_normal(out).astype(dtype)
    want = conv2d_reference(x, w, b, s, pads, d, groups)
    got = conv2d_nchw(x, w, b, s, pads, d, groups)
    assert got.shape == want.shape and got.dtype == want.dtype
    tol = 1e-4 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("shape,out,kernel,stride,pad,dil,groups", TUNED_CASES)
@pytest.mark.parametrize("block", [None, 40])
def test_threads_and_epilogue_give_the_serial_bits(shape, out, kernel, stride, pad, dil,
                                                   groups, block, monkeypatch):
    """Row blocks on 3 threads (every block split off, however small) and an epilogue applied
    block by block give exactly the serial kernel's result, then the epilogue over it."""
    monkeypatch.setattr(workers_module, "MIN_SPLIT", 1)
    if block is not None:
        monkeypatch.setattr(conv_module, "_DW_BLOCK", block)
        monkeypatch.setattr(conv_module, "_BLOCK", block * 8)
        monkeypatch.setattr(conv_module, "_FINISH_BLOCK", block)
    k = (kernel, kernel) if isinstance(kernel, int) else kernel
    s = (stride, stride) if isinstance(stride, int) else stride
    d = (dil, dil) if isinstance(dil, int) else dil
    pads = ((pad[0], pad[1]), (pad[2], pad[3]))
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.standard_normal((out, shape[1] // groups) + k).astype(np.float32)
    b = rng.standard_normal(out).astype(np.float32)
    serial = conv2d_nchw(x, w, b, s, pads, d, groups)
    pool = Workers(3)
    try:
        threaded = conv2d_nchw(x, w, b, s, pads, d, groups, workers=pool)
        seen = []

        def relu6(block):
            assert block.shape[-1] == out  # channels last, every channel
            seen.append(block.size)
            np.clip(block, 0, 6, out=block)
        fused = conv2d_nchw(x, w, b, s, pads, d, groups, workers=pool, epilogue=relu6)
    finally:
        pool.close()
    np.testing.assert_array_equal(threaded, serial)
    np.testing.assert_array_equal(fused, np.clip(serial, 0, 6))
    assert sum(seen) == serial.size  # each element once


def test_epilogue_of_a_float16_conv_sees_the_rounded_result():
    """f16 is computed in f32 and rounded: the epilogue runs after the rounding, as the next
    op's kernel would."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 4, 6, 6)).astype(np.float16)
    w = rng.standard_normal((4, 1, 3, 3)).astype(np.float16)
    dtypes = []

    def double(block):
        dtypes.append(block.dtype)
        block *= 2
    got = conv2d_nchw(x, w, None, (1, 1), ((1, 1), (1, 1)), (1, 1), 4, epilogue=double)
    want = conv2d_nchw(x, w, None, (1, 1), ((1, 1), (1, 1)), (1, 1), 4) * np.float16(2)
    assert set(dtypes) == {np.dtype(np.float16)}
    np.testing.assert_array_equal(got, want)


def test_plain_reference_equals_torch():
    """The reference itself is torch's conv (else the test above would prove little)."""
    rng = np.random.default_rng(4)
    for shape, out, kernel, stride, pad, dil, groups in TUNED_CASES:
        k = (kernel, kernel) if isinstance(kernel, int) else kernel
        x = rng.standard_normal(shape)
        w = rng.standard_normal((out, shape[1] // groups) + k)
        xt = F.pad(torch.from_numpy(x), (pad[2], pad[3], pad[0], pad[1]))
        want = F.conv2d(xt, torch.from_numpy(w), stride=stride, dilation=dil,
                        groups=groups).numpy()
        s = (stride, stride) if isinstance(stride, int) else stride
        d = (dil, dil) if isinstance(dil, int) else dil
        got = conv2d_reference(x, w, None, s, ((pad[0], pad[1]), (pad[2], pad[3])), d, groups)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)

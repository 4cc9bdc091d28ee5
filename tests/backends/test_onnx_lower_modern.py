"""ONNX lowerings of the ops added with issues 13 and later (dslc/backends/onnx_lower_conv.py,
onnx_lower_pool.py, onnx_lower_pointwise.py, onnx_lower_modern.py, onnx_lower_resample.py):
their registry examples at the opsets where the lowerings differ (17: no Mish, Reduce* axes as
attributes; 19+: Pad "wrap"), ONNX shape inference against dslc's types, runtime-sized inputs,
edge values the examples do not draw, and the located diagnostics where ONNX cannot say a form.

The registry examples at the default opset run in test_onnx_export.py
(test_op_example_equals_numpy_kernel); this file reuses its session and the registry's cases."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import dslc  # noqa: E402
from dslc.backends import (  # noqa: E402
    onnx_lower_conv,
    onnx_lower_modern,
    onnx_lower_pointwise,
    onnx_lower_pool,
    onnx_lower_resample,
)
from dslc.backends.onnx_export import build_model  # noqa: E402
from dslc.diagnostics import DslcError  # noqa: E402
from dslc.ops.registry import ALL_OPS  # noqa: E402
from tests.backends.test_onnx_export import (  # noqa: E402
    SIZES,
    _compare,
    _dims,
    _load,
    _session,
    _symbols,
)

NEW_TABLES = (onnx_lower_conv.LOWERINGS, onnx_lower_pool.LOWERINGS,
              onnx_lower_pointwise.LOWERINGS, onnx_lower_modern.LOWERINGS,
              onnx_lower_resample.LOWERINGS)
NEW_OPS = sorted({name for table in NEW_TABLES for name in table})


def _new_examples():
    return [pytest.param(op.name, i, id=f"{op.name}-{i}") for op in ALL_OPS
            if op.name in NEW_OPS for i, ex in enumerate(op.examples) if not ex.train]


def _case(name: str, index: int):
    from tests.ops.test_registry import case

    return case(name, index)


def test_every_new_lowering_has_an_example():
    """Each op these modules lower has a registry example the tests below run."""
    with_examples = {op.name for op in ALL_OPS if any(not ex.train for ex in op.examples)}
    assert set(NEW_OPS) <= with_examples, sorted(set(NEW_OPS) - with_examples)


@pytest.mark.parametrize("name,index", _new_examples())
def test_example_at_other_opsets(name, index):
    """Opsets 17, 19 and 23: the full checker passes and onnxruntime equals the kernel."""
    c = _case(name, index)
    for opset in (17, 19, 23):
        m = build_model(c.graph, c.params0, opset=opset)
        onnx.checker.check_model(m, full_check=True)
        got = _session(m).run(None, c.inputs)
        for (out_name, want), g in zip(c.outputs.items(), got):
            assert g.shape == want.shape and g.dtype == want.dtype, (opset, out_name)
            np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-5,
                                       err_msg=f"opset {opset}: {out_name}")


@pytest.mark.parametrize("name,index", _new_examples())
def test_shape_inference_agrees(name, index):
    """ONNX's own inference, on the model stripped of dslc's types, gives every output the
    shape dslc's checker gives it: fixed dims equal, named dims kept, or left open (ONNX does
    no symbolic arithmetic: H + 2 - 2 after a Pad is a new unknown), never a different one."""
    c = _case(name, index)
    m = build_model(c.graph, c.params0)
    want = {o.name: _dims(o) for o in m.graph.output}
    del m.graph.value_info[:]
    for out in m.graph.output:
        out.type.tensor_type.ClearField("shape")
    inferred = onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True,
                                                 data_prop=True)
    got = {o.name: _dims(o) for o in inferred.graph.output}
    for out_name, dims in want.items():
        assert len(got[out_name]) == len(dims), out_name
        for a, b in zip(dims, got[out_name]):
            if a is None or b is None or (isinstance(b, str) and b.startswith("unk__")):
                assert not isinstance(a, int), f"{out_name}: dim {a} not inferred"
                continue
            assert a == b, f"{out_name}: ONNX infers {got[out_name]}, dslc {dims}"


def _check_sizes(text: str, sizes: list[dict[str, int]], opset: int = 18):
    prog = dslc.load("t.dl", text=text)
    params = prog.init_params(1)
    m = build_model(prog.graph, params, opset=opset)
    onnx.checker.check_model(m, full_check=True)
    sess = _session(m)
    for bind in sizes:
        _compare(prog, sess, params, bind, seed=2)


def test_runtime_sized_images():
    """Runtime H and W: ceil-mode max and average pools and a plain average pool (their own
    pads and ceil_mode), per-side and "same" average pools (a zero Pad first; the input
    elements counted by pooling ones), divisor_override, lp pool, adaptive pools to 1,
    instance norm over a runtime channel count: one model, three sizes."""
    _check_sizes("""model m() {
  input x: f32[B, C, H, W]
  a = x -> instance_norm2d
  b = a -> max_pool2d(3, stride=2, padding=1, ceil_mode=true)
  c = b -> avg_pool2d(2, stride=1, padding=1, count_include_pad=false)
  c2 = c -> avg_pool2d(3, stride=2, padding=1, ceil_mode=true)
  c3 = c2 -> avg_pool2d(2, padding=(1, 0, 0, 1), ceil_mode=true, count_include_pad=false)
  c4 = c3 -> avg_pool2d(2, stride=1, padding="same") -> avg_pool2d(2, divisor_override=3)
  c5 = c4 -> avg_pool2d(3, stride=2, padding=(2, 0, 1, 2), ceil_mode=true)
  d = c5 -> lp_pool2d(2.0, 2, stride=1, ceil_mode=true)
  e = d -> adaptive_max_pool2d(1)
  output y = e, z = x -> adaptive_avg_pool2d((1, 1))
}""", [{"B": 2, "C": 3, "H": 21, "W": 18}, {"B": 1, "C": 5, "H": 24, "W": 23},
       {"B": 1, "C": 2, "H": 26, "W": 25}])


def test_runtime_sized_convs_at_opset_17_and_19():
    """Circular padding: Slice + Concat before opset 19, Pad "wrap" from 19."""
    text = """model m() {
  input x: f32[B, 2, H, W]
  y = x -> conv2d(3, 3, padding=(1, 2, 0, 1), padding_mode="circular")
  output z = y -> conv_transpose2d(2, 3, stride=2, padding=1, output_padding=1)
}"""
    for opset in (17, 19):
        _check_sizes(text, [{"B": 2, "H": 5, "W": 6}, {"B": 1, "H": 7, "W": 4}], opset=opset)
    ops = {n.op_type for n in build_model(dslc.load("t.dl", text=text).graph,
                                          dslc.load("t.dl", text=text).init_params(0),
                                          opset=19).graph.node}
    assert "Pad" in ops and "Concat" not in ops


@pytest.mark.parametrize("spec,what", [
    ("x -> avg_pool2d(3, stride=2, ceil_mode=true, divisor_override=2)", "runtime-sized"),
    ("x -> adaptive_avg_pool2d(3)", "runtime-sized axis"),
    ("x -> adaptive_max_pool2d((2, 1))", "runtime-sized axis"),
])
def test_forms_onnx_cannot_say_at_runtime_sizes_are_located(spec, what):
    prog = dslc.load("t.dl", text=f"model m() {{\n  input x: f32[B, 3, H, W]\n"
                                  f"  output y = {spec}\n}}\n")
    with pytest.raises(DslcError) as exc:
        build_model(prog.graph, prog.init_params(0))
    d = exc.value.diagnostics[0]
    assert d.code == "E0804" and what in d.message and d.span.line == 3, d
    assert "--bind" in (d.hint or "")
    # with the image size fixed, the same spec exports and runs
    _check_sizes(f"model m() {{\n  input x: f32[B, 3, 7, 9]\n  output y = {spec}\n}}\n",
                 [{"B": 2}])


def test_edge_values_match_the_kernels():
    """Values the examples do not draw: sign of NaN and -0.0 (0, as torch), log1p near 0
    (no cancellation), softplus past its threshold, clamp with min > max (max everywhere)."""
    prog = dslc.load("t.dl", text="""model m() {
  input x: f32[6]
  output s = x -> sign, l = x -> log1p, p = x -> softplus(2.0, 1.0), c = x -> clamp(2.0, 1.0)
}""")
    m = build_model(prog.graph, {})
    x = np.array([np.nan, -0.0, 1e-7, -3e-6, 30.0, -2.0], np.float32)
    got = dict(zip(["s", "l", "p", "c"], _session(m).run(None, {"x": x})))
    want = prog.run({"x": x}, {})
    np.testing.assert_array_equal(got["s"], want["s"])
    assert not np.signbit(got["s"][1])
    np.testing.assert_allclose(got["l"][:5], want["l"][:5], rtol=1e-6)
    np.testing.assert_allclose(got["p"], want["p"], rtol=1e-6)
    np.testing.assert_array_equal(got["c"][1:], want["c"][1:])


def test_cumsum_accumulates_like_the_kernel():
    """f32 running sums in f64, as the kernel (and torch's CPU cumsum): equal to the last
    bit over many terms."""
    prog = dslc.load("t.dl", text="model m() {\n  input x: f32[3, 4000]\n"
                                  "  output y = x -> cumsum(1)\n}\n")
    x = np.random.default_rng(0).standard_normal((3, 4000)).astype(np.float32)
    got = _session(build_model(prog.graph, {})).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, prog.run({"x": x}, {})["y"])


def test_new_forms_of_core_ops_give_the_kernels_numbers():
    """conv1d/conv2d padding per side, "same" with padding_mode, and layer_norm over channels
    (forms the first lowerings took as plain ones): exported, they equal dslc run."""
    _check_sizes("""model m() {
  input x: f32[B, 4, 6, 7]
  a = x -> conv2d(4, (3, 2), padding="same", padding_mode="reflect")
  b = a -> layer_norm(channels_first=true)
  c = b -> conv2d(6, 3, stride=2, padding=(0, 1, 0, 1), padding_mode="replicate")
  output y = c -> flatten(2) -> conv1d(2, 3, padding=(2, 0))
}""", [{"B": 2}, {"B": 3}])


def test_runtime_sized_resampling():
    """A U-Net style decoder over runtime H and W: upsampling to a skip connection's size
    (Resize with sizes from the input's Shape), a bilinear scale factor, reflect and circular
    pads, pixel shuffles and channel shuffle; at opsets 17 (circular by Slice + Concat) and
    19 (Pad wrap), two sizes each."""
    text = """model m() {
  input x: f32[B, 8, H, W]
  u = x -> max_pool2d(2) -> interpolate(size=(x.shape[2], x.shape[3]))
  p = u + x -> pad((1, 2, 0, 1), mode="reflect") -> pad((1, 1, 1, 1), mode="circular")
  b = x -> interpolate(scale_factor=2.0, mode="bilinear") -> pixel_unshuffle(2)
  output y = p -> channel_shuffle(2) -> pixel_shuffle(2), z = b
}"""
    for opset in (17, 19):
        _check_sizes(text, [{"B": 2, "H": 6, "W": 4}, {"B": 1, "H": 8, "W": 10}], opset=opset)


@pytest.mark.parametrize("dtype,rtol", [("f64", 1e-6), ("f16", 2e-2)])
def test_other_float_precisions(dtype, rtol):
    """The new ops on f16 and f64 inputs: outputs in the input's precision, equal to the
    kernels (f16 to its precision; the kernels compute it in f32). Celu is float32-only in
    ONNX and onnxruntime has no f64 InstanceNormalization: both have f64 patterns.
    (onnxruntime has no f64 Conv or AveragePool: the f64 model leaves them out.)"""
    conv = "conv2d(4, 3, padding=(1, 0, 1, 1), padding_mode=\"reflect\") -> " \
        if dtype == "f16" else ""
    avg = "avg_pool2d(2, padding=(0, 1, 1, 0), ceil_mode=true) -> " if dtype == "f16" else ""
    text = f"""model p() {{
  input x: {dtype}[B, 4, 8, 8]
  input s: {dtype}[B, 6, 4]
  a = x -> {conv}group_norm(2) -> hardswish -> max_pool2d(3, stride=2, ceil_mode=true)
  b = a -> {avg}instance_norm2d(affine=true) -> layer_norm(channels_first=true)
  c = b -> layer_scale(channels_first=true) -> adaptive_avg_pool2d(2) -> adaptive_max_pool2d(1)
  d = s -> rms_norm -> softplus(2.0, 1.0) -> mish -> glu -> selu -> celu(0.5) -> silu
  e = d -> logsigmoid -> softmin -> cumsum(1) -> topk(1) -> clamp(-0.5, 0.5) -> relu6
  f = s -> hardtanh -> hardsigmoid -> softsign -> abs -> sqrt -> log1p -> exp -> rsqrt
  output c, e, g = f -> reciprocal -> square -> sign
}}"""
    prog = dslc.load("p.dl", text=text)
    params = prog.init_params(0)
    m = build_model(prog.graph, params)
    onnx.checker.check_model(m, full_check=True)
    inputs = prog.random_inputs(0, {"B": 2})
    want = prog.run(inputs, params, bind={"B": 2})
    for (name, w), g in zip(want.items(), _session(m).run(None, inputs)):
        assert g.dtype == w.dtype, name
        np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=rtol,
                                   atol=rtol, err_msg=name)


@pytest.mark.parametrize("call,resize", [
    ('interpolate(scale_factor=3.0)', True),  # integer upscale: Resize picks the same pixels
    ('interpolate(size=(80, 90))', True),
    ('interpolate(scale_factor=1.7)', False),  # the kernel's indices, gathered
    ('interpolate(size=(61, 37), mode="nearest-exact")', False),
    ('interpolate(scale_factor=(1.1, 0.7))', False),  # torch copies a kept size (legacy path)
])
def test_nearest_picks_the_kernels_pixels(call, resize):
    """Nearest modes over fixed sizes: Resize only where it is exact, else Gathers of the
    kernel's source indices; equal to the kernel on images past torch's small-image path."""
    prog = dslc.load("t.dl", text=f"model m() {{\n  input x: f32[B, 2, 40, 30]\n"
                                  f"  output y = x -> {call}\n}}\n")
    m = build_model(prog.graph, {})
    onnx.checker.check_model(m, full_check=True)
    ops = {n.op_type for n in m.graph.node}
    assert ("Resize" in ops) == resize and ("Gather" in ops) != resize, ops
    _compare(prog, _session(m), {}, {"B": 2})


# Zoo models built from the newer ops, at the opsets where their lowerings differ (18, the
# default, runs in test_onnx_export.py's zoo test).
MODERN_ZOO = ("mobilenet_v3_small", "efficientnet_b0", "convnext_tiny", "r3d_18", "unet",
              "wavenet_tcn", "super_resolution")


@pytest.mark.parametrize("opset", [17, 19, 23])
def test_modern_zoo_at_other_opsets(opset):
    """At the zoo tests' small sizes: the full checker passes and onnxruntime equals dslc
    run, batch (and length) dims symbolic."""
    for stem in MODERN_ZOO:
        prog = _load(stem, None)
        params = prog.init_params(1)
        m = build_model(prog.graph, prog.fold_params(params), opset=opset)
        onnx.checker.check_model(m, full_check=True)
        _compare(prog, _session(m), params, {s: SIZES[0][s] for s in _symbols(prog)}, seed=4)


def _random_pool(rng) -> tuple[str, str, dict]:
    """One random pool call (max/avg/lp, 1-3-D, kernel, stride, dilation, symmetric or
    per-side padding, ceil_mode, count_include_pad, divisor_override) on an input whose
    spatial axes are fixed or the runtime dim H."""
    nd = int(rng.integers(1, 4))
    op = str(rng.choice(["max", "avg", "lp"]))
    k = tuple(int(v) for v in rng.integers(1, 4, nd))
    args = [f"kernel={k}", f"stride={tuple(int(v) for v in rng.integers(1, 4, nd))}",
            f"ceil_mode={'true' if rng.random() < 0.5 else 'false'}"]
    if op == "lp":
        args.insert(0, str(float(rng.choice([1.0, 2.0, 3.0]))))
    else:
        form = int(rng.integers(0, 3))
        if form == 1:
            args.append(f"padding={tuple(int(rng.integers(0, kk // 2 + 1)) for kk in k)}")
        elif form == 2:
            args.append(f"padding={tuple(int(v) for v in rng.integers(0, 3, 2 * nd))}")
        if op == "max" and rng.random() < 0.5:
            args.append(f"dilation={tuple(int(v) for v in rng.integers(1, 3, nd))}")
        if op == "avg" and rng.random() < 0.5:
            args.append("count_include_pad=false")
        if op == "avg" and nd > 1 and rng.random() < 0.3:
            args.append("divisor_override=3")
    dims = ["B", "2"] + ["H" if rng.random() < 0.3 else str(int(rng.integers(3, 9)))
                         for _ in range(nd)]
    bind = {"B": 2} | ({"H": int(rng.integers(4, 9))} if "H" in dims else {})
    return f"{op}_pool{nd}d({', '.join(args)})", ", ".join(dims), bind


def test_random_pool_configurations():
    """120 random pool calls (seeded): each one the checker accepts and the kernel runs
    exports, passes the full checker and equals the kernel in onnxruntime (windows of
    padding only, dropped ceil-mode windows, clipped counts included), or is the located
    E0804 (divisor_override with ceil_mode over a runtime size)."""
    rng = np.random.default_rng(0)
    compared = refused = 0
    for _ in range(120):
        call, dims, bind = _random_pool(rng)
        try:
            prog = dslc.load("t.dl", text=f"model m() {{\n  input x: f32[{dims}]\n"
                                          f"  output y = x -> {call}\n}}\n")
            inputs = prog.random_inputs(0, bind)
            if call.startswith("lp"):  # real roots of the odd powers
                inputs = {k: np.abs(v) + 0.1 for k, v in inputs.items()}
            want = prog.run(inputs, {}, bind=bind)["y"]
        except DslcError:  # a configuration torch refuses too
            continue
        try:
            m = build_model(prog.graph, {})
        except DslcError as exc:
            d = exc.diagnostics[0]
            assert d.code == "E0804" and "divisor_override" in d.message and "H" in dims, call
            refused += 1
            continue
        onnx.checker.check_model(m, full_check=True)
        got = _session(m).run(None, inputs)[0]
        assert got.shape == want.shape, (call, dims, bind)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"{call} {dims}")
        compared += 1
    assert compared >= 80 and refused <= 10, (compared, refused)


def _random_conv(rng) -> tuple[str, str, dict]:
    """One random conv or transposed conv: 1-3-D, kernel, stride, dilation, groups, padding
    per axis, per side or "same", padding_mode, output_padding."""
    nd = int(rng.integers(1, 4))
    k = tuple(int(v) for v in rng.integers(1, 4, nd))
    s = tuple(int(v) for v in rng.integers(1, 3, nd))
    d = tuple(int(v) for v in rng.integers(1, 3, nd))
    args = [str(2 * int(rng.integers(1, 3))), str(k), f"stride={s}", f"dilation={d}",
            f"groups={int(rng.choice([1, 2]))}"]
    transposed = rng.random() < 0.4
    form = int(rng.integers(0, 4))
    if form == 1:
        args.append(f"padding={tuple(int(v) for v in rng.integers(0, 3, nd))}")
    elif form == 2:
        args.append(f"padding={tuple(int(v) for v in rng.integers(0, 3, 2 * nd))}")
    elif form == 3 and not transposed:
        args.append('padding="same"')
    if transposed:
        outp = tuple(int(rng.integers(0, max(a, b))) for a, b in zip(s, d))
        args.append(f"output_padding={outp}")
    elif rng.random() < 0.5:
        args.append(f'padding_mode="{rng.choice(["reflect", "replicate", "circular"])}"')
    dims = ["B", "4"] + ["H" if rng.random() < 0.3 else str(int(rng.integers(3, 8)))
                         for _ in range(nd)]
    bind = {"B": 2} | ({"H": int(rng.integers(4, 8))} if "H" in dims else {})
    name = f"conv_transpose{nd}d" if transposed else f"conv{nd}d"
    return f"{name}({', '.join(args)})", ", ".join(dims), bind


_INTERP_MODES = {1: ["nearest", "nearest-exact", "linear", "area"],
                 2: ["nearest", "nearest-exact", "bilinear", "bicubic", "area"],
                 3: ["nearest", "nearest-exact", "trilinear", "area"]}


def _random_interpolate(rng) -> tuple[str, str, dict]:
    """One random interpolate: mode, size or scale factor (recompute_scale_factor),
    align_corners, fixed or runtime spatial axes."""
    nd = int(rng.integers(1, 4))
    mode = str(rng.choice(_INTERP_MODES[nd]))
    args = [f'mode="{mode}"']
    if rng.random() < 0.5:
        args.append(f"size={tuple(int(v) for v in rng.integers(1, 12, nd))}")
    else:
        factors = (0.5, 0.6, 0.75, 1.0, 1.5, 1.7, 2.0, 2.5, 3.0)
        args.append(f"scale_factor={tuple(float(rng.choice(factors)) for _ in range(nd))}")
        if rng.random() < 0.3:
            args.append("recompute_scale_factor=true")
    if mode in ("linear", "bilinear", "bicubic", "trilinear") and rng.random() < 0.5:
        args.append("align_corners=true")
    dims = ["B", "2"] + ["H" if rng.random() < 0.25 else str(int(rng.integers(1, 9)))
                         for _ in range(nd)]
    bind = {"B": 2} | ({"H": int(rng.integers(2, 9))} if "H" in dims else {})
    return f"interpolate({', '.join(args)})", ", ".join(dims), bind


@pytest.mark.parametrize("make,refusal", [(_random_conv, None),
                                          (_random_interpolate, "mode 'area'")])
def test_random_configurations(make, refusal):
    """80 random convs and interpolations (seeded): each one the checker accepts and the
    kernel runs exports, passes the full checker and equals the kernel in onnxruntime, or
    (interpolate) is the located E0804 for mode area over a runtime-sized axis."""
    rng = np.random.default_rng(1)
    compared = 0
    for _ in range(80):
        call, dims, bind = make(rng)
        try:
            prog = dslc.load("t.dl", text=f"model m() {{\n  input x: f32[{dims}]\n"
                                          f"  output y = x -> {call}\n}}\n")
            inputs = prog.random_inputs(0, bind)
            params = prog.init_params(0)
            want = prog.run(inputs, {k: v.copy() for k, v in params.items()}, bind=bind)["y"]
        except DslcError:  # a configuration torch refuses too
            continue
        try:
            m = build_model(prog.graph, params)
        except DslcError as exc:
            d = exc.diagnostics[0]
            assert refusal and d.code == "E0804" and refusal in d.message, (call, d.message)
            continue
        onnx.checker.check_model(m, full_check=True)
        got = _session(m).run(None, inputs)[0]
        assert got.shape == want.shape, (call, dims, bind)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=f"{call} {dims}")
        compared += 1
    assert compared >= 50, compared

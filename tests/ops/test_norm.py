"""Tests of dslc/ops/norm.py: batch_norm, instance_norm1d/2d/3d and local_response_norm against
torch.nn."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import dslc
from dslc import dims as D
from dslc.diagnostics import DslcError
from dslc.ops.norm import NORM_OPS
from tests.helpers import assert_close, compare_numpy_torch


def _lit(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v + '"'
    if isinstance(v, tuple):
        return "(" + ", ".join(_lit(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return repr(v)


def example_program(op, ex):
    """A one-op spec for an op record's example, so it goes through the whole language."""
    ins = "".join(f"  input a{i}: {t.dtype}[{', '.join(D.fmt(d) for d in t.shape)}]\n"
                  for i, t in enumerate(ex.inputs))
    args = [f"a{i}" for i in range(len(ex.inputs))]
    args += [f"{k}={_lit(v)}" for k, v in ex.attrs.items()]
    call = f"{op.name}({', '.join(args)})"
    return dslc.load("t.dl", text=f"model t {{\n{ins}  output y = {call}\n}}\n")


def load(body: str) -> dslc.program.Program:
    return dslc.load("t.dl", text="model t {\n" + body + "\n}\n")


def diag(body: str):
    with pytest.raises(DslcError) as exc:
        load(body)
    return exc.value.diagnostics[0]


EXAMPLES = [(op, ex) for op in NORM_OPS for ex in op.examples]


@pytest.mark.parametrize("op,ex", EXAMPLES,
                         ids=[f"{op.name}-{i}" for i, (op, _) in enumerate(EXAMPLES)])
def test_examples_numpy_equals_torch(op, ex):
    prog = example_program(op, ex)
    bind = {s: 3 for t in ex.inputs for d in t.shape for s in D.free_names(d)}
    np_out, _, _ = compare_numpy_torch(prog, bind=bind, train=ex.train)
    assert np_out["y"].shape == tuple(D.evaluate(d, bind) for d in ex.inputs[0].shape)


# ---- batch_norm --------------------------------------------------------------------------


def _random_bn_state(params, c, rng):
    params["bn1.weight"] = rng.uniform(0.5, 1.5, c).astype(np.float32)
    params["bn1.bias"] = rng.standard_normal(c).astype(np.float32)
    params["bn1.running_mean"] = rng.standard_normal(c).astype(np.float32)
    params["bn1.running_var"] = rng.uniform(0.5, 2.0, c).astype(np.float32)


@pytest.mark.parametrize("shape,torch_cls", [
    ((6, 4), torch.nn.BatchNorm1d),
    ((5, 4, 7), torch.nn.BatchNorm1d),
    ((3, 4, 5, 6), torch.nn.BatchNorm2d),
    ((2, 4, 3, 3, 2), torch.nn.BatchNorm3d),
])
def test_batch_norm_matches_torch_train_and_eval(shape, torch_cls):
    dims = ", ".join(str(s) for s in shape)
    prog = load(f"input x: f32[{dims}]\noutput y = x -> batch_norm(momentum=0.2)")
    assert f"nn.{torch_cls.__name__}(4, momentum=0.2)" in prog.to_torch_source()
    rng = np.random.default_rng(1)
    params = prog.init_params()
    _random_bn_state(params, 4, rng)
    ref = torch_cls(4, momentum=0.2)
    ref.load_state_dict({k.split(".", 1)[1]: torch.from_numpy(v.copy())
                         for k, v in params.items()})
    assert sorted(ref.state_dict()) == sorted(k.split(".", 1)[1] for k in params)
    for step in range(2):
        x = (rng.standard_normal(shape) * 3 + 1).astype(np.float32)
        y = prog.run({"x": x}, params, train=True)["y"]
        ref.train()
        with torch.no_grad():
            yt = ref(torch.from_numpy(x)).numpy()
        assert_close(y, yt, what=f"train step {step}")
        # Running statistics were updated in place, exactly as torch updates its buffers.
        for k, v in ref.state_dict().items():
            assert_close(params[f"bn1.{k}"], v.numpy(), what=k)
        assert int(params["bn1.num_batches_tracked"]) == step + 1
    x = rng.standard_normal(shape).astype(np.float32)
    y = prog.run({"x": x}, params, train=False)["y"]
    ref.eval()
    with torch.no_grad():
        assert_close(y, ref(torch.from_numpy(x)).numpy(), what="eval")


def test_batch_norm_state_dict_layout():
    prog = load("input x: f32[B, 3, 8, 8]\noutput y = x -> batch_norm")
    params = prog.init_params()
    assert list(params) == ["bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                            "bn1.num_batches_tracked"]
    assert list(params) == ["bn1." + k for k in torch.nn.BatchNorm2d(3).state_dict()]
    nbt = params["bn1.num_batches_tracked"]
    assert nbt.shape == () and nbt.dtype == np.int64 and int(nbt) == 0
    np.testing.assert_array_equal(params["bn1.weight"], np.ones(3, np.float32))
    np.testing.assert_array_equal(params["bn1.running_var"], np.ones(3, np.float32))
    np.testing.assert_array_equal(params["bn1.bias"], np.zeros(3, np.float32))
    spec = prog.graph.param_keys()["bn1.running_mean"][2]
    assert spec.buffer and not prog.graph.param_keys()["bn1.weight"][2].buffer
    compare_numpy_torch(prog, bind={"B": 4}, train=True)


def test_batch_norm_eval_uses_running_stats_train_uses_batch():
    prog = load("input x: f32[4, 2]\noutput y = x -> batch_norm(affine=false)")
    params = prog.init_params()
    params["bn1.running_mean"] = np.array([10.0, -10.0], np.float32)
    params["bn1.running_var"] = np.array([4.0, 1.0], np.float32)
    x = np.array([[1, 2], [3, 4], [5, 6], [7, 8]], np.float32)
    y_eval = prog.run({"x": x}, dict(params), train=False)["y"]
    expected = (x - [10.0, -10.0]) / np.sqrt(np.array([4.0, 1.0]) + 1e-5)
    assert_close(y_eval, expected, what="eval")
    y_train = prog.run({"x": x}, params, train=True)["y"]
    # Batch statistics: every column is {1,3,5,7} shifted, biased var 5.
    assert_close(y_train[:, 0], (x[:, 0] - 4) / np.sqrt(5 + 1e-5), what="train")
    # running_var takes the unbiased variance 20/3.
    assert_close(params["bn1.running_var"], 0.9 * np.array([4.0, 1.0]) + 0.1 * 20 / 3)


def test_batch_norm_stateless_uses_batch_stats_in_eval():
    prog = load("input x: f32[5, 3, 4]\n"
                "output y = x -> batch_norm(affine=false, track_running_stats=false)")
    assert prog.init_params() == {}
    src = prog.to_torch_source()
    assert "F.batch_norm(x, None, None, training=True" in src
    np_out, _, _ = compare_numpy_torch(prog, train=False)
    assert abs(float(np_out["y"].mean())) < 1e-5  # normalised with the batch's own stats


def test_batch_norm_one_value_per_channel_in_training_is_a_run_error():
    prog = load("input x: f32[1, 3]\noutput y = x -> batch_norm")
    x = np.ones((1, 3), np.float32)
    prog.run({"x": x}, train=False)  # fine in eval
    with pytest.raises(DslcError) as exc:
        prog.run({"x": x}, train=True)
    d = exc.value.diagnostics[0]
    assert d.code == "E0507" and "more than one value per channel" in d.message


def test_batch_norm_errors():
    d = diag("input x: f32[B, C, 4]\noutput y = x -> batch_norm")
    assert d.code == "E0304" and "channel" in d.message
    d = diag("input x: i64[2, 3]\noutput y = x -> batch_norm")
    assert d.code == "E0302"
    d = diag("input x: f32[8]\noutput y = x -> batch_norm")
    assert d.code == "E0301" and "rank" in d.expected and "f32[8]" in d.found
    d = diag("input x: f32[2, 3]\noutput y = x -> batch_norm(momentum=1.5)")
    assert d.code == "E0301" and d.found == "1.5"


def test_batch_norm_macs_one_per_element():
    op = {o.name: o for o in NORM_OPS}["batch_norm"]
    x = dslc.types.tensor("f32", D.symbol("B"), 3, 4, 4)
    assert D.equal(op.macs(op.attrs(), [x], [x]), D.symbol("B") * 48) is True


# ---- local_response_norm -----------------------------------------------------------------


@pytest.mark.parametrize("shape,size,kw", [
    ((2, 7, 5, 5), 5, {"alpha": 1e-2, "k": 2.0}),
    ((2, 6, 4, 4), 4, {"alpha": 0.3, "beta": 0.5}),
    ((3, 5, 9), 3, {"alpha": 0.1}),
    ((1, 4, 2, 3, 2), 2, {"alpha": 1.0, "beta": 1.25, "k": 0.5}),
    ((2, 3, 4, 4), 7, {"alpha": 0.5}),  # window wider than the channels
    ((2, 4, 3), 10, {"alpha": 2.0}),  # even and wider on both sides (lo 5, hi 4, C 4)
])
def test_local_response_norm_matches_torch(shape, size, kw):
    dims = ", ".join(str(s) for s in shape)
    args = ", ".join([str(size)] + [f"{k}={_lit(v)}" for k, v in kw.items()])
    prog = load(f"input x: f32[{dims}]\noutput y = x -> local_response_norm({args})")
    assert prog.init_params() == {}
    x = (np.random.default_rng(5).standard_normal(shape) * 3).astype(np.float32)
    y = prog.run({"x": x})["y"]
    with torch.no_grad():
        yt = torch.nn.LocalResponseNorm(size, **kw)(torch.from_numpy(x)).numpy()
    assert_close(y, yt)
    compare_numpy_torch(prog)


def test_local_response_norm_huge_window():
    # Every channel's window covers all channels; the divisor is still `size`. Once a 96 GiB
    # zero pad and a 2**31-step loop (found by the fuzzer).
    size = 2 ** 31
    prog = load(f"input x: f32[2, 3, 6]\noutput y = x -> local_response_norm({size}, alpha=1e9)")
    x = np.random.default_rng(1).standard_normal((2, 3, 6)).astype(np.float32)
    total = (x.astype(np.float64) ** 2).sum(axis=1, keepdims=True)
    want = x / (1.0 + 1e9 / size * total) ** 0.75
    assert_close(prog.run({"x": x})["y"], want, rtol=1e-6)


def test_local_response_norm_errors():
    d = diag("input x: f32[4, 8]\noutput y = x -> local_response_norm(5)")
    assert d.code == "E0301" and "rank >= 3" in d.expected
    d = diag("input x: f32[4, 8, 3]\noutput y = x -> local_response_norm(0)")
    assert d.code == "E0301" and d.found == "0"
    d = diag("input x: f32[4, 8, 3]\noutput y = x -> local_response_norm()")
    assert d.code == "E0208"


# ---- instance_norm1d / 2d / 3d -----------------------------------------------------------

IN_CLASSES = {1: torch.nn.InstanceNorm1d, 2: torch.nn.InstanceNorm2d,
              3: torch.nn.InstanceNorm3d}
IN_SHAPES = {1: (3, 4, 7), 2: (2, 4, 5, 3), 3: (2, 4, 3, 2, 3)}


def _in_spec(nd: int, shape, dtype: str = "f32", **kw) -> str:
    dims = ", ".join(str(s) for s in shape)
    args = ", ".join(f"{k}={_lit(v)}" for k, v in kw.items())
    return f"input x: {dtype}[{dims}]\noutput y = x -> instance_norm{nd}d({args})"


def _torch_state(params: dict, ref: torch.nn.Module, rng, dtype) -> None:
    """Random weights and running statistics, the same on both sides."""
    for k in params:
        if k.endswith("num_batches_tracked"):
            continue
        low = 0.5 if k.endswith("running_var") else -1.5
        params[k] = rng.uniform(low, 1.5, params[k].shape).astype(dtype)
    ref.load_state_dict({k.split(".", 1)[1]: torch.from_numpy(v.copy())
                         for k, v in params.items()})


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("affine,track,bias", [
    (False, False, True), (True, False, True), (False, True, True), (True, True, True),
    (True, True, False),
])
@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_instance_norm_matches_torch_train_then_eval(nd, affine, track, bias, dtype):
    kw = {"affine": affine, "track_running_stats": track, "momentum": 0.25}
    if not bias:
        kw["bias"] = False
    shape = IN_SHAPES[nd]
    prog = load(_in_spec(nd, shape, dtype, **kw))
    npdt = np.float32 if dtype == "f32" else np.float64
    ref = IN_CLASSES[nd](4, **kw)
    if dtype == "f64":
        ref = ref.double()
    params = prog.init_params()
    # The state_dict layout and the initial values are torch's.
    assert list(params) == ["inorm1." + k for k in ref.state_dict()]
    for k, v in ref.state_dict().items():
        np.testing.assert_array_equal(params[f"inorm1.{k}"], v.numpy(), err_msg=k)
    rng = np.random.default_rng(nd)
    params = {k: (v if v.dtype == np.int64 else v.astype(npdt)) for k, v in params.items()}
    _torch_state(params, ref, rng, npdt)
    tol = {"rtol": 1e-4} if dtype == "f32" else {"rtol": 1e-10, "atol": 1e-12}
    for step in range(2):
        x = (rng.standard_normal(shape) * 2 + 0.5).astype(npdt)
        y = prog.run({"x": x}, params, train=True)["y"]
        assert y.dtype == npdt
        ref.train()
        with torch.no_grad():
            assert_close(y, ref(torch.from_numpy(x)).numpy(), what=f"train {step}", **tol)
        for k, v in ref.state_dict().items():
            assert_close(params[f"inorm1.{k}"], v.numpy(), what=f"{k} after step {step}", **tol)
    if track:
        # torch's instance norm keeps num_batches_tracked but never counts.
        assert int(params["inorm1.num_batches_tracked"]) == 0
    x = rng.standard_normal(shape).astype(npdt)
    y = prog.run({"x": x}, params, train=False)["y"]
    ref.eval()
    with torch.no_grad():
        assert_close(y, ref(torch.from_numpy(x)).numpy(), what="eval", **tol)
    if dtype == "f32":  # the generated module holds f32 parameters, as torch's default
        compare_numpy_torch(prog, train=True)
        compare_numpy_torch(prog, train=False)


def test_instance_norm_eval_with_running_stats_is_not_instance_stats():
    prog = load(_in_spec(1, (2, 2, 3), track_running_stats=True))
    params = prog.init_params()
    params["inorm1.running_mean"] = np.array([1.0, -1.0], np.float32)
    params["inorm1.running_var"] = np.array([4.0, 0.25], np.float32)
    x = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    y = prog.run({"x": x}, params, train=False)["y"]
    want = (x - np.array([1.0, -1.0]).reshape(1, 2, 1)) \
        / np.sqrt(np.array([4.0, 0.25]).reshape(1, 2, 1) + 1e-5)
    assert_close(y, want)
    # Training normalises every (sample, channel) row with its own statistics.
    y = prog.run({"x": x}, params, train=True)["y"]
    assert_close(y, (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5))


def test_instance_norm_stateless_is_functional_and_takes_runtime_channels():
    prog = load("input x: f32[B, C, 6]\noutput y = x -> instance_norm1d(eps=1e-3)")
    assert prog.init_params() == {}
    src = prog.to_torch_source()
    assert "F.instance_norm(x, eps=0.001)" in src and "nn.InstanceNorm" not in src
    compare_numpy_torch(prog, bind={"B": 2, "C": 5})
    prog = load("input x: f32[2, 3, 4, 4]\noutput y = x -> instance_norm2d(affine=true)")
    assert "nn.InstanceNorm2d(3, affine=True)" in prog.to_torch_source()
    prog = load("input x: f32[2, 3, 4]\noutput y = x -> instance_norm1d(affine=true, bias=false)")
    assert "nn.InstanceNorm1d(3, affine=True, bias=False)" in prog.to_torch_source()
    assert list(prog.init_params()) == ["inorm1.weight"]


def test_instance_norm_size_one_spatial_axes():
    # One size-1 axis among others is fine.
    prog = load(_in_spec(2, (2, 3, 1, 5), affine=True))
    compare_numpy_torch(prog, train=True)
    # A single spatial element cannot be normalised with instance statistics (torch refuses);
    # without running statistics that is known when the spec is checked.
    d = diag(_in_spec(2, (2, 3, 1, 1)))
    assert d.code == "E0301" and "more than one spatial element" in d.message
    assert "f32[2, 3, 1, 1]" in d.found
    # With running statistics eval works and training is a run error, as in torch.
    prog = load(_in_spec(2, (2, 3, 1, 1), affine=True, track_running_stats=True))
    np_out, _, _ = compare_numpy_torch(prog, train=False)
    x = np.ones((2, 3, 1, 1), np.float32)
    with pytest.raises(DslcError) as exc:
        prog.run({"x": x}, train=True)
    d = exc.value.diagnostics[0]
    assert d.code == "E0507" and "more than one spatial element" in d.message
    with pytest.raises(ValueError, match="more than 1 spatial element"):
        torch.nn.InstanceNorm2d(3, track_running_stats=True).train()(torch.from_numpy(x))


def test_instance_norm_errors():
    d = diag("input x: f32[2, 3, 4]\noutput y = x -> instance_norm2d")
    assert d.code == "E0301" and "rank 4" in d.expected and "[B, C, H, W]" in d.message
    d = diag("input x: f32[2, 3, 4, 4, 4]\noutput y = x -> instance_norm1d")
    assert d.code == "E0301" and "rank 3" in d.expected
    d = diag("input x: f32[B, C, 4]\noutput y = x -> instance_norm1d(affine=true)")
    assert d.code == "E0304" and "channel" in d.message
    d = diag("input x: i32[2, 3, 4]\noutput y = x -> instance_norm1d")
    assert d.code == "E0302"
    d = diag("input x: f32[2, 3, 4]\noutput y = x -> instance_norm1d(momentum=-0.5)")
    assert d.code == "E0301" and d.found == "-0.5"
    d = diag("input x: f32[2, 3, 4]\noutput y = x -> instance_norm1d(eps=0.0)")
    assert d.code == "E0301" and d.expected == "> 0"


def test_instance_norm_is_not_folded_into_a_conv():
    # -O2 folds a batch norm into the convolution before it; an instance norm's statistics
    # belong to each sample and must stay.
    text = ("model t {\n input x: f32[2, 3, 6, 6]\n output y = x -> conv2d(4, kernel=3) "
            "-> instance_norm2d(affine=true, track_running_stats=true)\n}\n")
    prog = dslc.load("t.dl", text=text, opt_level=2)
    assert any(n.op == "instance_norm2d" for n in prog.graph.nodes.values())
    compare_numpy_torch(prog)


def test_instance_norm_macs_one_per_element():
    op = {o.name: o for o in NORM_OPS}["instance_norm3d"]
    x = dslc.types.tensor("f32", D.symbol("B"), 3, 2, 4, 4)
    assert D.equal(op.macs(op.attrs(), [x], [x]), D.symbol("B") * 96) is True


@pytest.mark.parametrize("shape", [(2, 5, 3, 4), (1, 16, 7, 9), (3, 1, 2, 2), (2, 4, 1, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_batch_norm_eval_channels_last_equals_the_plain_broadcast(shape, dtype):
    """The eval kernel tiles scale and shift along the width when the input's memory is
    channels-last (a conv's output): the same numbers as the plain per-channel broadcast on a
    contiguous NCHW input, bit for bit, and the result keeps the channels-last layout."""
    from dslc.ops.base import RunCtx
    from dslc.ops.norm import BatchNormAttrs, _bn_kernel

    rng = np.random.default_rng(5)
    c = shape[1]
    params = {"weight": rng.standard_normal(c).astype(np.float32),
              "bias": rng.standard_normal(c).astype(np.float32),
              "running_mean": rng.standard_normal(c).astype(np.float32),
              "running_var": rng.random(c).astype(np.float32) + 0.5,
              "num_batches_tracked": np.asarray(3, np.int64)}
    nchw = rng.standard_normal(shape).astype(dtype)
    nhwc = np.ascontiguousarray(nchw.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    a = BatchNormAttrs()

    def run(x):
        return _bn_kernel(a, [x], RunCtx(train=False, rng=rng, params=dict(params)))[0]

    plain, tiled = run(nchw), run(nhwc)
    assert tiled.dtype == plain.dtype == dtype
    np.testing.assert_array_equal(tiled, plain)
    if c > 1:
        assert tiled.transpose(0, 2, 3, 1).flags.c_contiguous
    # and both are torch's eval batch norm
    t = torch.nn.functional.batch_norm(
        torch.from_numpy(nchw.astype(np.float64)),
        torch.from_numpy(params["running_mean"].astype(np.float64)),
        torch.from_numpy(params["running_var"].astype(np.float64)),
        torch.from_numpy(params["weight"].astype(np.float64)),
        torch.from_numpy(params["bias"].astype(np.float64)), False, 0.1, 1e-5).numpy()
    tol = 1e-2 if dtype == np.float16 else 1e-5
    np.testing.assert_allclose(plain.astype(np.float64), t, rtol=tol, atol=tol)

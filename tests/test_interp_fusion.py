"""Tests of the interpreter's fusion (dslc/interp.py, epilogue_chains): in eval runs a batch
norm or activation that is the only reader of a conv's output is applied by the conv's kernel
in place; the results must be the bits of running every node's own kernel."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

import dslc
from dslc import interp
from dslc.ops import workers as workers_module

SPECS = Path(__file__).resolve().parents[1] / "specs"

BLOCKS = """model m {
  input x: f32[B, 4, 11, 10]
  h = x -> conv2d(8, 3, padding=1, bias=false) as c1 -> batch_norm as b1 -> relu6
  h = h -> conv2d(8, 3, stride=2, padding=1, groups=8) as dw -> batch_norm as b2 -> relu
  a = h -> conv2d(8, 1, bias=false) as p -> batch_norm as b3
  t = h -> conv2d(8, 3, padding=1) as c2 -> batch_norm as b4
  output y = h + a + relu(t) + t
}
"""

OUTPUT_MID_CHAIN = """model m {
  input x: f32[B, 3, 8, 8]
  output n = x -> conv2d(4, 3, padding=1) as c -> batch_norm as bn
  output r = relu(n)
}
"""

ONE_D_THREE_D = """model m {
  input x: f32[B, 3, 20]
  input v: f32[B, 2, 5, 6, 7]
  output y = x -> conv1d(6, 3, padding=1, bias=false) as c -> batch_norm as bn -> relu
  output z = v -> conv3d(4, 3, padding=1) as c3 -> batch_norm as bn3
                -> hardtanh(min_val=-0.5, max_val=0.5)
}
"""


def chains_of(prog) -> dict[str, list[str]]:
    """{producer's module: [ops fused after it]}."""
    by_id = {id(n): n for n in prog.graph.order()}
    return {by_id[k].module: [n.op for n in v]
            for k, v in interp.epilogue_chains(prog.graph).items()}


def perturbed(prog, seed: int) -> dict[str, np.ndarray]:
    """Parameters with running statistics that are not the identity, so batch norm works."""
    params = prog.init_params(seed)
    rng = np.random.default_rng(seed)
    for k, v in params.items():
        if k.endswith(("running_mean", "weight", "bias")):
            params[k] = (v + rng.standard_normal(v.shape)).astype(v.dtype)
        elif k.endswith("running_var"):
            params[k] = rng.uniform(0.5, 2.0, v.shape).astype(v.dtype)
    return params


def same_bits(prog, bind, threads: int, seed: int = 0, inputs=None) -> None:
    params = perturbed(prog, seed)
    inputs = inputs or prog.random_inputs(seed, bind)
    kept = {k: v.copy() for k, v in inputs.items()}
    plain = interp.run(prog.graph, inputs, params, bindings=bind, fuse=False, threads=1)
    fused = interp.run(prog.graph, inputs, params, bindings=bind, threads=threads)
    assert plain.keys() == fused.keys()
    for name in plain:
        assert plain[name].dtype == fused[name].dtype
        np.testing.assert_array_equal(fused[name], plain[name], err_msg=name)
    for k, v in kept.items():  # the inputs are never written
        np.testing.assert_array_equal(inputs[k], v)


def test_chains_stop_at_a_second_reader():
    prog = dslc.load("m.dl", text=BLOCKS)
    assert chains_of(prog) == {
        "c1": ["batch_norm", "relu6"],
        "dw": ["batch_norm", "relu"],  # relu's result has two readers: fused, the end
        "p": ["batch_norm"],
        "c2": ["batch_norm"],  # its result is read by relu and by the add
    }


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("batch", [1, 2])
def test_fused_run_gives_the_bits_of_the_plain_run(monkeypatch, threads, batch):
    monkeypatch.setattr(workers_module, "MIN_SPLIT", 1)  # split even these small convs
    prog = dslc.load("m.dl", text=BLOCKS)
    same_bits(prog, {"B": batch}, threads)


def test_a_graph_output_inside_a_chain_is_not_overwritten():
    prog = dslc.load("m.dl", text=OUTPUT_MID_CHAIN)
    assert chains_of(prog) == {"c": ["batch_norm"]}
    same_bits(prog, {"B": 2}, 2)
    out = prog.run(prog.random_inputs(1, {"B": 2}), perturbed(prog, 1))
    assert (out["n"] < 0).any()  # the relu did not run on it
    np.testing.assert_array_equal(out["r"], np.maximum(out["n"], 0))


def test_conv1d_and_conv3d_chains(monkeypatch):
    monkeypatch.setattr(workers_module, "MIN_SPLIT", 1)
    prog = dslc.load("m.dl", text=ONE_D_THREE_D)
    assert chains_of(prog) == {"c": ["batch_norm", "relu"],
                               "c3": ["batch_norm", "hardtanh"]}
    same_bits(prog, {"B": 2}, 2)


def test_float16_and_float64_models():
    f16 = BLOCKS.replace("f32[", "f16[")
    prog = dslc.load("m.dl", text=f16)
    assert chains_of(prog) == {}  # batch norm computes f16 in f32: not fused
    same_bits(prog, {"B": 2}, 2)
    prog = dslc.load("m.dl", text=BLOCKS.replace("f32[", "f64["))
    assert len(chains_of(prog)) == 4
    same_bits(prog, {"B": 2}, 2)


def test_training_runs_every_kernel_and_updates_the_statistics():
    prog = dslc.load("m.dl", text=BLOCKS)
    inputs = prog.random_inputs(0, {"B": 2})
    p1, p2 = perturbed(prog, 0), perturbed(prog, 0)
    a = interp.run(prog.graph, inputs, p1, train=True, bindings={"B": 2}, fuse=False)
    b = interp.run(prog.graph, inputs, p2, train=True, bindings={"B": 2}, threads=2)
    np.testing.assert_array_equal(a["y"], b["y"])
    for k in p1:
        np.testing.assert_array_equal(p1[k], p2[k], err_msg=k)
    assert not np.array_equal(p1["b1.running_mean"], perturbed(prog, 0)["b1.running_mean"])


def test_mobilenet_v2_fused_on_threads_equals_plain_and_leaves_no_thread():
    prog = dslc.load(SPECS / "mobilenet_v2.dl", hparams={"size": 64})
    chains = chains_of(prog)
    # every conv takes its batch norm, and its relu6 where one follows
    assert sum(len(c) for c in chains.values()) == 52 + 35
    before = threading.active_count()
    same_bits(prog, {"B": 1}, 2)
    assert threading.active_count() == before

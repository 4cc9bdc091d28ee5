"""Tests of dslc/interp.py: the interpreter loop drops each value after its last reader."""

from __future__ import annotations

import tracemalloc

import numpy as np

import dslc

DIAMOND = """model m {
  input x: f32[N, 4]
  a = relu(x)
  b = sigmoid(a)
  c = tanh(a)
  d = b + c
  output d, a
}
"""


def chain(n: int) -> str:
    body = "  h = tanh(h)\n" * n
    return f"model m {{\n  input x: f32[R, C]\n  h = x\n{body}  output h\n}}\n"


def test_last_uses_names_each_value_at_its_last_reader():
    prog = dslc.load("m.dl", text=DIAMOND, opt_level=0)
    g = prog.graph
    order = g.order()
    at = {node.op: i for i, node in enumerate(order)}
    plan = g.last_uses()
    dropped = {ref: i for i, refs in enumerate(plan) for ref in refs}
    ref_of = {node.op: (node.id, 0) for node in order}
    assert dropped[ref_of["input"]] == at["relu"]
    assert dropped[ref_of["sigmoid"]] == at["add"]
    assert dropped[ref_of["tanh"]] == at["add"]
    # outputs are never dropped, however early their last reader runs
    assert ref_of["relu"] not in dropped and ref_of["add"] not in dropped
    x = np.array([[-1.0, 0.5, 2.0, -3.0]], np.float32)
    out = prog.run({"x": x}, {})
    a = np.maximum(x, 0)
    np.testing.assert_allclose(out["a"], a)
    np.testing.assert_allclose(out["d"], 1 / (1 + np.exp(-a)) + np.tanh(a), rtol=1e-6)


def test_plan_follows_a_change_of_outputs():
    prog = dslc.load("m.dl", text=DIAMOND, opt_level=0)
    g = prog.graph
    relu = next(n for n in g.order() if n.op == "relu")
    assert all((relu.id, 0) not in refs for refs in g.last_uses())
    g.outputs = [o for o in g.outputs if o[0] != "a"]
    assert any((relu.id, 0) in refs for refs in g.last_uses())


def test_run_holds_two_values_of_a_chain_not_all_of_them():
    steps, rows, cols = 30, 256, 4096  # 4 MiB a value
    prog = dslc.load("m.dl", text=chain(steps), opt_level=0)
    x = np.random.default_rng(0).standard_normal((rows, cols), dtype=np.float32)
    prog.run({"x": x}, {})  # warm (imports, caches)
    tracemalloc.start()
    try:
        out = prog.run({"x": x}, {})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    want = x
    for _ in range(steps):
        want = np.tanh(want)
    np.testing.assert_allclose(out["h"], want, rtol=1e-6)
    # Keeping every intermediate would peak at 30 values (120 MiB).
    assert peak < 4 * x.nbytes, f"peak {peak / x.nbytes:.1f} values"

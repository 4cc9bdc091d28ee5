"""`dslc grad` on the command line (dslc/cli.py, dslc/gradcheck.py): the gradients file, the
--check table against finite differences, a wrong VJP caught by it, and the located E0530."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

import dslc
from dslc.cli import main
from dslc.ops.registry import OPS

NET = """\
model net {
  input x: f32[6, 5]
  input t: i64[6]
  h = x -> linear(8) as fc1 -> tanh -> layer_norm as ln
  y = h -> linear(3) as fc2
  output loss = cross_entropy(y, t)
}
"""

BLOCKED = """\
model blocked {
  input x: f32[4, 3]
  y = x -> linear(2) as fc -> sign
  output loss = y -> sum(dim=(0, 1))
}
"""

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^(?P<key>\S+)\s+(?P<n>\d+)\s+(?P<err>\S+)\s+(?P<a>\S+)\s+(?P<b>\S+)(?P<fail>"
                 r"\s+FAIL)?$")


@pytest.fixture
def net(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.dl").write_text(NET)
    return tmp_path


def table(out: str) -> dict[str, re.Match]:
    rows = {}
    for line in out.splitlines():
        m = ROW.match(line)
        if m and m["key"] != "parameter":
            rows[m["key"]] = m
    return rows


def test_grad_writes_every_parameter_gradient(net, capsys):
    assert main(["grad", "net.dl", "-o", "g.npz", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("loss: loss\n")
    prog = dslc.load(net / "net.dl")
    params = prog.init_params(3)
    want = prog.grad(prog.random_inputs(3), params, seed=3)
    with np.load(net / "g.npz") as f:
        got = dict(f)
    assert sorted(got) == sorted(want) == sorted(prog.init_params(0))
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])
        assert got[key].dtype == np.float32


def test_grad_with_inputs_and_params_files(net, capsys):
    prog = dslc.load(net / "net.dl")
    inputs = {"x": np.ones((6, 5), np.float32), "t": np.arange(6, dtype=np.int64) % 3}
    np.savez(net / "in.npz", **inputs)
    np.savez(net / "p.npz", **prog.init_params(7))
    assert main(["grad", "net.dl", "--inputs", "in.npz", "--params", "p.npz", "--wrt-inputs",
                 "-o", "g.npz"]) == 0
    want = prog.grad(inputs, prog.init_params(7), wrt_inputs=True)
    with np.load(net / "g.npz") as f:
        assert sorted(f) == sorted(want) and "x" in f
        np.testing.assert_allclose(f["x"], want["x"])


def test_check_prints_small_errors_for_every_parameter(net, capsys):
    assert main(["grad", "net.dl", "--check", "--points", "4", "-o", "g.npz"]) == 0
    out = capsys.readouterr().out
    rows = table(out)
    assert sorted(rows) == sorted(dslc.load(net / "net.dl").init_params(0)), out
    for key, m in rows.items():
        assert int(m["n"]) == (3 if key == "fc2.bias" else 4), key
        assert float(m["err"]) < 1e-6, (key, m["err"])
        assert not m["fail"]


def test_check_catches_a_wrong_vjp(net, capsys, monkeypatch):
    def wrong(a, xs, ys, gs, ctx):
        return [gs[0] * (1 - ys[0] * ys[0]) * 1.01], {}

    monkeypatch.setitem(OPS, "tanh", dataclasses.replace(OPS["tanh"], vjp=wrong))
    assert main(["grad", "net.dl", "--check", "-o", "g.npz"]) == 1
    captured = capsys.readouterr()
    rows = table(captured.out)
    # Only what lies before the tanh (fc1) is wrong, by about 1 %.
    assert rows["fc1.weight"]["fail"] and 5e-3 < float(rows["fc1.weight"]["err"]) < 2e-2
    assert not rows["fc2.weight"]["fail"]
    assert "gradient check failed" in captured.err


def test_e0530_through_the_cli_is_located_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocked.dl").write_text(BLOCKED)
    assert main(["grad", "blocked.dl", "-o", "g.npz"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("blocked.dl:3:")
    assert "error[E0530]: cannot differentiate through 'sign'" in err
    assert "^" in err and "Traceback" not in err
    assert not (tmp_path / "g.npz").exists()
    # docs/errors.md shows this very case and its first line.
    docs = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    assert BLOCKED in docs and err.splitlines()[0] in docs.splitlines()


def test_a_model_without_a_scalar_output_needs_loss_or_cotangents(tmp_path, monkeypatch,
                                                                    capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.dl").write_text("model m {\n input x: f32[2, 3]\n"
                                   " output y = x -> linear(4)\n}\n")
    assert main(["grad", "m.dl", "-o", "g.npz"]) == 1
    assert "error[E0531]" in capsys.readouterr().err
    np.savez(tmp_path / "c.npz", y=np.ones((2, 4), np.float32))
    assert main(["grad", "m.dl", "--cotangents", "c.npz", "-o", "g.npz", "--check"]) == 0
    with np.load(tmp_path / "g.npz") as f:
        # d/db of sum(y) is the batch size for every output unit.
        np.testing.assert_allclose(f["fc1.bias"], np.full(4, 2.0, np.float32))

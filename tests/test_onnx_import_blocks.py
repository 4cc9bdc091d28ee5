"""The repeat finder of `dslc import` (dslc/onnx_import_blocks.py): iterations that read outer
values, whose first differs in in-features only, or whose train-only rates rise layer by layer
come back as one block and a `repeat`, with the original `state_dict` keys."""

from __future__ import annotations

import numpy as np
import pytest

import dslc
from dslc.cli import main

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

SPEC = """block layer(width: int, p: float) {
  input x
  input ctx
  h = x -> linear(width) as fc -> relu
  output y = h * ctx -> drop_path(p)
}

model tower {
  input x: f32[B, 5]
  input ctx: f32[B, 8]
  h = x
  layers: repeat 4 as i { h = h -> layer(ctx, 8, RATE) }
  output y = h -> linear(2) as head
}
"""


def _round_trip(tmp_path, capsys, rate: str, folded: bool = True):
    src, first, out = tmp_path / "m.dl", tmp_path / "a.onnx", tmp_path / "b.dl"
    src.write_text(SPEC.replace("RATE", rate))
    assert main(["export", str(src), "-o", str(first)]) == 0, capsys.readouterr().err
    assert main(["import", str(first), "-o", str(out)]) == 0, capsys.readouterr().err
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal((3, 5)).astype(np.float32),
             "ctx": rng.standard_normal((3, 8)).astype(np.float32)}
    with np.load(out.with_suffix(".npz")) as z:
        params = {k: z[k] for k in z.files}
    original = dslc.load(src)
    want = {k: v.shape for k, v in original.init_params(0).items()}
    if folded:  # the repeat keeps the keys; flat statements are labelled `layers_0_fc`
        assert {k: v.shape for k, v in params.items()} == want
    else:
        assert {k.replace("_", "."): v.shape for k, v in params.items()} == want
    imported = dslc.load(out)
    got = list(imported.run(feeds, params).values())
    sess = ort.InferenceSession(str(first), providers=["CPUExecutionProvider"])
    for g, w in zip(got, sess.run(None, feeds), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    rates = [n.attrs.p for n in imported.graph.order() if n.op == "drop_path"]
    want = [n.attrs.p for n in original.graph.order() if n.op == "drop_path"]
    np.testing.assert_allclose(rates, want, rtol=1e-12)
    return out.read_text()


def test_outer_input_first_iteration_shapes_and_rising_rate_fold(tmp_path, capsys):
    """Iteration 0 reads 5 features, the others 8; every iteration reads `ctx`; the rate
    rises by 0.05: one repeat of the block with `ctx` and the rate as arguments."""
    text = _round_trip(tmp_path, capsys, "0.05 * i")
    assert "layers: repeat 4 as i {" in text, text
    assert "-> layers_block(ctx, rate=0.0 + 0.05 * i) }" in text, text
    assert "block layers_block(rate: float) {\n  input x\n  input ctx\n" in text, text
    assert "-> drop_path(p=rate)" in text and "linear(8) as fc" in text


def test_rates_that_do_not_rise_evenly_stay_flat(tmp_path, capsys):
    text = _round_trip(tmp_path, capsys, "0.05 * i * i", folded=False)
    assert "repeat" not in text and "drop_path(p=0.45)" in text, text


def test_equal_rates_stay_in_the_block(tmp_path, capsys):
    text = _round_trip(tmp_path, capsys, "0.2")
    assert "layers: repeat 4 { " in text and "-> layers_block(ctx) }" in text, text
    assert "drop_path(p=0.2)" in text, text

"""`dslc import` keeps a named sub-module that is not repeated as a block called `as NAME`
(dslc/onnx_import_nested.py), so the imported keys are the original's (`enc.0.weight`)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import dslc
from dslc.cli import main

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

SPEC = """block encoder(width: int) {
  input x
  output y = x -> linear(width) as 0 -> relu -> linear(width) as proj -> tanh
}

model nest {
  input x: f32[B, 5]
  h = x -> encoder(8) as enc -> relu
  output y = h -> linear(3) as head
}
"""


def _run_both(spec, npz, path, feeds):
    with np.load(npz) as z:
        params = {k: z[k] for k in z.files}
    got = list(dslc.load(spec).run(feeds, params).values())
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = sess.run(None, {i.name: feeds[i.name] for i in sess.get_inputs()})
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    return params


def test_block_call_comes_back_with_its_keys(tmp_path, capsys):
    """A block called `as enc` (layers `0` and `proj`, its tanh after the last layer) imports
    as `enc_block as enc`: the keys are the spec's, and the outputs onnxruntime's."""
    src, path, spec = tmp_path / "nest.dl", tmp_path / "nest.onnx", tmp_path / "out.dl"
    src.write_text(SPEC)
    assert main(["export", str(src), "-o", str(path)]) == 0, capsys.readouterr().err
    assert main(["import", str(path), "-o", str(spec)]) == 0, capsys.readouterr().err
    text = spec.read_text()
    assert "x -> enc_block as enc -> relu" in text, text
    block = text[text.index("block enc_block {"):text.index("model nest")]
    stages = [line.strip() for line in block.splitlines()]
    assert stages[3:7] == ["-> linear(8) as 0", "-> relu", "-> linear(8) as proj", "-> tanh"]
    original = dslc.load(src)
    feeds = original.random_inputs(0, {"B": 4})
    params = _run_both(spec, tmp_path / "out.npz", path, feeds)
    assert set(params) == set(original.source.param_keys())


def test_torch_sequential_keeps_its_state_dict_keys(tmp_path, capsys):
    """nn.Sequential's layers `net.0`, `net.2` (the Tanh between them, not a layer) import as
    one block called `as net`: the .npz has exactly the module's state_dict keys."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 4))
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            return self.head(torch.relu(self.net(x)))

    torch.manual_seed(0)
    model = M().eval()
    path, spec = tmp_path / "m.onnx", tmp_path / "out.dl"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(3, 6),), str(path), input_names=["x"],
                          dynamo=True, optimize=False,
                          dynamic_shapes=({0: torch.export.Dim("B", min=2)},))
    assert main(["import", str(path), "-o", str(spec)]) == 0, capsys.readouterr().err
    assert "as net" in spec.read_text()
    feeds = {"x": np.random.default_rng(1).standard_normal((5, 6)).astype(np.float32)}
    params = _run_both(spec, tmp_path / "out.npz", path, feeds)
    assert set(params) == set(model.state_dict())

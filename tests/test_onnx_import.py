"""`dslc import`: torch.nn reference models exported by torch.onnx, imported to specs that
check, run like onnxruntime on the original file, and hold the same parameters."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import dslc
from dslc.cli import main

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
nn = torch.nn


class CNN(nn.Module):
    """Grouped and dilated convolutions, batch norm, both poolings, flatten, linear."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=4, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.c3 = nn.Conv1d(8, 4, 3, stride=2)
        self.fc = nn.Linear(4 * 7, 10)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.bn1(self.c1(x))), 2)
        x = torch.nn.functional.avg_pool2d(torch.relu(self.bn2(self.c2(x))), 2)
        x = torch.flatten(x, 2)                     # [B, 8, 16]
        x = torch.nn.functional.max_pool1d(self.c3(x), 1)
        return self.fc(torch.flatten(x, 1))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        idn = x if self.downsample is None else self.downsample(x)
        return torch.relu(out + idn)


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.layer1 = nn.Sequential(BasicBlock(8, 8, 1), BasicBlock(8, 8, 1))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, 2), BasicBlock(16, 16, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.pool(x), 1))


class LSTMNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(5, 6, num_layers=2, batch_first=True, bidirectional=True)

    def forward(self, x):
        y, _ = self.lstm(x)
        return y


class GRUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(5, 6, num_layers=2, batch_first=True)

    def forward(self, x):
        return self.gru(x)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(12, 32), nn.Tanh(), nn.Linear(32, 16), nn.GELU(),
                                 nn.Linear(16, 3), nn.Softmax(-1))

    def forward(self, x):
        return self.net(x)


def _encoder():
    return nn.TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=0.0, batch_first=True)


# name: (factory, example input shape, symbolic dims of the input)
MODELS = {
    "mlp": (MLP, (4, 12), ("B",)),
    "cnn": (CNN, (2, 3, 16, 16), ("B",)),
    "resnet": (ResNet, (2, 3, 16, 16), ("B",)),
    "lstm": (LSTMNet, (3, 7, 5), ("B", "T")),
    "gru": (GRUNet, (3, 7, 5), ("B", "T")),
    "encoder": (_encoder, (2, 5, 16), ("B", "T")),
}


def _randomise(model: nn.Module, seed: int) -> None:
    """Non-trivial batch-norm statistics, so a lost or misplaced buffer shows."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.2)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Each reference model exported once (torch.onnx.export, dynamo, unoptimised so batch
    norm stays a node) and imported with `dslc import`."""
    root = tmp_path_factory.mktemp("onnx_import")
    out = {}
    for name, (factory, shape, dims) in MODELS.items():
        torch.manual_seed(0)
        model = factory().eval()
        _randomise(model, 1)
        x = torch.randn(*shape)
        path = root / f"{name}.onnx"
        spec = {i: torch.export.Dim(d, min=2) for i, d in enumerate(dims)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x,), str(path), input_names=["x"], dynamo=True,
                              optimize=False, dynamic_shapes=(spec,))
        rc = main(["import", str(path), "-o", str(root / f"{name}.dl")])
        out[name] = (model, path, root / f"{name}.dl", root / f"{name}.npz", rc)
    return out


def _ort(path: Path, x: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


@pytest.mark.parametrize("name", list(MODELS))
def test_import_matches_onnxruntime(exported, name):
    model, path, spec, npz, rc = exported[name]
    assert rc == 0 and spec.exists() and npz.exists()
    prog = dslc.load(spec)
    with np.load(npz) as z:
        params = {k: z[k] for k in z.files}
    shape = MODELS[name][1]
    for batch in (shape[0], shape[0] + 2):  # the symbolic dims at two sizes
        x = np.random.default_rng(batch).standard_normal((batch,) + shape[1:]).astype(
            np.float32)
        (in_name,) = [n for n, _ in prog.graph.inputs]
        got = list(prog.run({in_name: x}, params).values())
        want = _ort(path, x)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
def test_parameter_count_equals_torch(exported, name):
    model, _path, spec, _npz, _rc = exported[name]
    summary = dslc.load(spec).summary()
    assert int(summary["params"]) == sum(p.numel() for p in model.parameters())

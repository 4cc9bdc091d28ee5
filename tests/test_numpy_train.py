"""`dslc train --backend numpy` (dslc/numpy_train.py): the generated program's contract without
torch: the same data checks and messages, metrics keys, exact resume, refused checkpoints,
parameter groups, whole-graph training; torch is never imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dslc
from dslc.cli import main
from dslc.numpy_train import TrainError, load_data, param_groups
from dslc.sources import load_program
from dslc.train_check import check_train

ROOT = Path(__file__).resolve().parents[1]

NET = """
model net {
  input x: f32[B, 4]
  h = x -> linear(8) as fc1 -> layer_norm as norm -> tanh
  output logits = h -> linear(3) as fc2
}
train for net {
  target label: i64[B]
  loss = cross_entropy(logits, label)
  optimizer = adamw(lr=0.05, weight_decay=0.1)
  schedule = step(step_size=2, gamma=0.5)
  no_weight_decay = ["bias", "norm"]
  clip = norm(0.5)
  batch = 8
  epochs = 3
  validation = 0.25
  metrics = [accuracy(logits, label), accuracy(logits, label, k=2)]
}
"""


def _spec(tmp_path: Path, text: str = NET):
    path = tmp_path / "net.dl"
    path.write_text(text)
    prog = dslc.load(path)
    return path, prog, check_train(load_program(path), prog.source)


def _data(path: Path, n: int = 40) -> Path:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    label = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5).astype(np.int64)
    np.savez(path, x=x, label=label)
    return path


def _train(path: Path, data: Path, out: Path, *extra: str) -> int:
    return main(["train", str(path), "--data", str(data), "--out", str(out), "--backend",
                 "numpy", *extra])


def _params(run: Path) -> dict[str, np.ndarray]:
    with np.load(run / "params.npz") as f:
        return {k: f[k] for k in f.files}


def test_run_writes_params_metrics_and_checkpoint(tmp_path, capsys):
    path, prog, _ = _spec(tmp_path)
    data = _data(tmp_path / "d.npz")
    assert _train(path, data, tmp_path / "run") == 0
    params = _params(tmp_path / "run")
    assert set(params) == set(prog.init_params(0))
    lines = [json.loads(s) for s in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2, 3] and [m["step"] for m in lines] == [3, 6, 9]
    assert set(lines[0]) == {"epoch", "step", "loss", "val_loss", "val_accuracy",
                             "val_top2_accuracy"}
    assert (tmp_path / "run" / "checkpoint.npz").is_file()
    out = capsys.readouterr().out
    assert "epoch 3 step 9 loss" in out and "val_accuracy" in out


def test_resume_is_exact(tmp_path):
    path, _, _ = _spec(tmp_path)
    data = _data(tmp_path / "d.npz")
    assert _train(path, data, tmp_path / "full") == 0
    assert _train(path, data, tmp_path / "part", "--stop-after-steps", "4") == 0
    assert not (tmp_path / "part" / "params.npz").exists()
    assert _train(path, data, tmp_path / "resumed", "--resume", str(tmp_path / "part")) == 0
    full, resumed = _params(tmp_path / "full"), _params(tmp_path / "resumed")
    for k in full:
        np.testing.assert_array_equal(full[k], resumed[k], err_msg=k)
    assert (tmp_path / "full" / "metrics.jsonl").read_text() == \
        (tmp_path / "resumed" / "metrics.jsonl").read_text()


def test_corrupt_or_missing_checkpoint_is_refused(tmp_path, capsys):
    path, _, _ = _spec(tmp_path)
    data = _data(tmp_path / "d.npz")
    run = tmp_path / "run"
    assert _train(path, data, run, "--stop-after-steps", "2") == 0
    ckpt = run / "checkpoint.npz"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    before = (run / "metrics.jsonl").read_bytes()
    capsys.readouterr()
    assert _train(path, data, run, "--resume", str(run)) == 1
    err = capsys.readouterr().err
    assert "error[E0620]" in err and "nothing was loaded" in err
    assert (run / "metrics.jsonl").read_bytes() == before
    assert _train(path, data, run, "--resume", str(tmp_path / "none")) == 1
    assert "error[E0621]" in capsys.readouterr().err


@pytest.mark.parametrize("arrays", [
    {"x": np.zeros((40, 4), np.float32)},
    {"x": np.zeros((40, 4), np.float32), "labels": np.zeros(40, np.int64)},
    {"x": np.zeros((40, 4), np.float64), "label": np.zeros(40, np.int64)},
    {"x": np.zeros((40, 5), np.float32), "label": np.zeros(40, np.int64)},
    {"x": np.zeros((40, 4), np.float32), "label": np.zeros(39, np.int64)},
    {"x": np.zeros((40, 4), np.float32), "label": np.full(40, 3, np.int64)},
], ids=["missing", "misnamed", "dtype", "shape", "count", "label"])
def test_bad_data_gives_the_generated_programs_message(tmp_path, arrays, capsys):
    """Message for message what the generated program says (its load_data, run here)."""
    import types

    from dslc.backends.torch_train import generate_train

    path, prog, spec = _spec(tmp_path)
    np.savez(tmp_path / "d.npz", **arrays)
    mod = types.ModuleType("generated_train")
    exec(compile(generate_train(prog.source, spec, str(path)), "train.py", "exec"),  # noqa: S102
         mod.__dict__)
    with pytest.raises(SystemExit):
        mod.load_data(str(tmp_path / "d.npz"))
    want = capsys.readouterr().err.strip()
    with pytest.raises(TrainError) as exc:
        load_data(str(tmp_path / "d.npz"), spec)
    assert str(exc.value) == want
    assert _train(path, tmp_path / "d.npz", tmp_path / "r") == 1
    assert capsys.readouterr().err.strip() == want
    assert not (tmp_path / "r").exists()


def test_parameter_groups_keep_biases_and_norms_out_of_weight_decay(tmp_path):
    _, prog, spec = _spec(tmp_path)
    groups = param_groups(prog.source, prog.init_params(0), spec)
    assert groups == [(["fc1.weight", "fc2.weight"], {}),
                      (["fc1.bias", "norm.weight", "norm.bias", "fc2.bias"],
                       {"weight_decay": 0.0})]


def test_torch_is_never_imported_on_the_numpy_path(tmp_path):
    """With torch blocked, `dslc train` (no --backend) picks numpy and trains."""
    path, _, _ = _spec(tmp_path)
    data = _data(tmp_path / "d.npz")
    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ImportError('torch is blocked in this test')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from dslc.cli import main\n"
        f"code = main(['train', {str(path)!r}, '--data', {str(data)!r}, '--out', "
        f"{str(tmp_path / 'run')!r}])\n"
        "assert not any(m == 'torch' or m.startswith('torch.') for m in sys.modules)\n"
        "sys.exit(code)\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "run" / "params.npz").is_file()
    assert (tmp_path / "run" / "checkpoint.npz").is_file()


GRAPH = """
model g {
  input x: f32[N, 3]
  input edge_index: i64[2, E]
  output logits = x -> gcn_conv(edge_index, 2) as conv
}
train for g {
  target label: i64[N]
  loss = cross_entropy(logits, label)
  optimizer = sgd(lr=0.5)
  batch = full
  epochs = 4
  validation = 0.25
  metrics = [accuracy(logits, label)]
}
"""


def test_whole_graph_training_uses_the_training_nodes_only(tmp_path):
    """batch = full: every step one forward over the whole graph; the labels of the held-out
    nodes never reach the parameters, and the counts come from the targets."""
    path, prog, spec = _spec(tmp_path, GRAPH)
    assert spec.full_graph and spec.node_args == ("logits", "x")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 3)).astype(np.float32)
    edges = rng.integers(0, 8, size=(2, 12)).astype(np.int64)
    label = rng.integers(0, 2, size=8).astype(np.int64)
    np.savez(tmp_path / "a.npz", x=x, edge_index=edges, label=label)
    other = label.copy()
    other[6:] = 1 - other[6:]  # only the held-out nodes' labels differ (8 * 0.25 = 2)
    np.savez(tmp_path / "b.npz", x=x, edge_index=edges, label=other)
    assert _train(path, tmp_path / "a.npz", tmp_path / "ra") == 0
    assert _train(path, tmp_path / "b.npz", tmp_path / "rb") == 0
    a, b = _params(tmp_path / "ra"), _params(tmp_path / "rb")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["conv.weight"], prog.init_params(0)["conv.weight"])
    lines = (tmp_path / "ra" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(s)["step"] for s in lines] == [1, 2, 3, 4]  # one step an epoch
    np.savez(tmp_path / "c.npz", x=x, edge_index=edges, label=label[:7])
    with pytest.raises(TrainError, match=r"E0613|E0615"):
        load_data(str(tmp_path / "c.npz"), spec)


def test_both_back_ends_start_from_the_same_parameters_for_one_seed(tmp_path):
    """`dslc train` with the same --seed and no --init: the generated program starts from
    dslc's seeded initialisation (RUN/init.npz) as the NumPy back end does, so whole runs of
    the two back ends end with the same parameters; other seeds start elsewhere."""
    path, prog, _ = _spec(tmp_path)
    data = _data(tmp_path / "d.npz")
    runs = {}
    for backend, seed in (("numpy", "3"), ("torch", "3"), ("torch", "4")):
        out = tmp_path / f"{backend}{seed}"
        assert main(["train", str(path), "--data", str(data), "--out", str(out), "--backend",
                     backend, "--seed", seed, "--progress", "none"]) == 0
        runs[backend + seed] = _params(out)
    with np.load(tmp_path / "torch3" / "init.npz") as f:
        init = {k: f[k] for k in f.files}
    for key, value in prog.init_params(3).items():
        np.testing.assert_array_equal(init[key], value)
    for key, value in runs["numpy3"].items():
        np.testing.assert_allclose(runs["torch3"][key], value, rtol=1e-4, atol=1e-5)
    assert any(not np.allclose(runs["torch4"][k], runs["torch3"][k]) for k in runs["torch3"])

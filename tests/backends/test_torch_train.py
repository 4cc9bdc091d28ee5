"""The generated training program (dslc/backends/torch_train.py): DDP equals one process,
resume is exact, the optimisers and schedules follow the notes' update rules, bad data files
and checkpoints stop it with a message naming what is wrong."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

import dslc
from dslc.backends.torch_train import generate_train
from dslc.sources import load_program
from dslc.train_check import check_train

ROOT = Path(__file__).resolve().parents[2]

NET = """
model net {
  input x: f32[B, 4]
  h = x -> linear(8) as fc1 -> tanh
  output logits = h -> linear(3) as fc2
}
train for net {
  target label: i64[B]
  loss = cross_entropy(logits, label)
  optimizer = sgd(lr=0.1, momentum=0.9)
  schedule = step(step_size=2, gamma=0.5)
  batch = 8
  epochs = 2
  validation = 0.25
  metrics = [accuracy(logits, label)]
}
"""


def net_data(path: Path, n: int = 40) -> Path:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    label = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5).astype(np.int64)
    np.savez(path, x=x, label=label)
    return path


def program(tmp_path: Path, text: str, name: str = "t.dl") -> types.ModuleType:
    """The generated program of `text`'s train section, loaded as a module (not run)."""
    spec_file = tmp_path / name
    spec_file.write_text(text)
    prog = dslc.load(spec_file)
    spec = check_train(load_program(spec_file), prog.source)
    src = generate_train(prog.graph, spec, str(spec_file))
    (tmp_path / "train.py").write_text(src)
    mod = types.ModuleType("generated_train")
    exec(compile(src, str(tmp_path / "train.py"), "exec"), mod.__dict__)  # noqa: S102
    return mod


def params(run: Path) -> dict[str, np.ndarray]:
    with np.load(run / "params.npz") as f:
        return {k: f[k] for k in f.files}


def test_program_is_standalone_and_imports_torch_and_numpy_only(tmp_path):
    program(tmp_path, NET)
    src = (tmp_path / "train.py").read_text()
    imports = {ln.split()[1] for ln in src.splitlines() if ln.startswith(("import ", "from "))}
    assert imports <= {"argparse", "bisect", "difflib", "io", "json", "math", "os", "sys",
                       "time", "numpy", "torch", "torch.distributed", "torch.nn",
                       "torch.nn.functional", "torch.nn.parallel"}
    assert "class Net(nn.Module)" in src and "class NetLoss(nn.Module)" in src
    assert "torch.optim.SGD(\n        params,\n        lr=0.1,\n        momentum=0.9," in src


@pytest.mark.parametrize("spec", ["mlp_xor", "lenet5", "softmax_regression"])
def test_program_is_clean_python(spec, tmp_path):
    """No unused import, no undefined name, no line of the program's own over 100."""
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        pytest.fail("ruff is not installed next to the interpreter (bash .ci/setup)")
    out = tmp_path / "train.py"
    from dslc.cli import main

    assert main(["compile", str(ROOT / "specs" / f"{spec}.dl"), "--train", "-o", str(out)]) == 0
    proc = subprocess.run([str(ruff), "check", "--isolated", "--line-length", "100",
                           "--select", "F,E,W", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


def test_run_writes_params_metrics_and_checkpoint(tmp_path):
    mod = program(tmp_path, NET)
    data = net_data(tmp_path / "d.npz")
    run = tmp_path / "run"
    assert mod.main(["--data", str(data), "--out", str(run)]) == 0
    lines = (run / "metrics.jsonl").read_text().splitlines()
    import json

    records = [json.loads(ln) for ln in lines]
    # 40 samples, 10 held out, batch 8: 3 steps per epoch, one record per epoch.
    assert [(r["epoch"], r["step"]) for r in records] == [(1, 3), (2, 6)]
    assert {"loss", "val_loss", "val_accuracy"} <= set(records[0])
    p = params(run)
    net = dslc.load(tmp_path / "t.dl")
    assert sorted(p) == sorted(net.init_params(0))
    assert (run / "checkpoint.pt").is_file()
    # The same seed gives the same parameters.
    run2 = tmp_path / "run2"
    mod.main(["--data", str(data), "--out", str(run2)])
    assert all(np.array_equal(p[k], params(run2)[k]) for k in p)


def test_a_folder_of_npy_files_trains_like_the_npz(tmp_path):
    mod = program(tmp_path, NET)
    data = net_data(tmp_path / "d.npz")
    folder = tmp_path / "shards"
    folder.mkdir()
    with np.load(data) as f:
        for k in f.files:
            np.save(folder / f"{k}.npy", f[k])
    mod.main(["--data", str(data), "--out", str(tmp_path / "a")])
    mod.main(["--data", str(folder), "--out", str(tmp_path / "b")])
    a, b = params(tmp_path / "a"), params(tmp_path / "b")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_resume_is_exact(tmp_path):
    mod = program(tmp_path, NET.replace("epochs = 2", "epochs = 3"))
    data = net_data(tmp_path / "d.npz")
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert mod.main(["--data", str(data), "--out", str(whole)]) == 0
    # Stop in the middle of the second epoch, as a crash would: no params.npz yet.
    assert mod.main(["--data", str(data), "--out", str(part), "--stop-after-steps", "4"]) == 0
    assert not (part / "params.npz").exists()
    assert mod.main(["--data", str(data), "--out", str(part), "--resume", str(part)]) == 0
    a, b = params(whole), params(part)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert (whole / "metrics.jsonl").read_text() == (part / "metrics.jsonl").read_text()


def test_ddp_two_processes_equal_one(tmp_path):
    """torchrun --nproc_per_node=2 (gloo on CPU) and one process, the same global batch. The
    rank-0 decisions (plateau's lr cut, early stopping: no epoch improves by 1e9) reach every
    rank: the run stops after epoch 3 in both."""
    import json

    spec = tmp_path / "t.dl"
    spec.write_text(NET.replace("epochs = 2", "epochs = 6").replace(
        "schedule = step(step_size=2, gamma=0.5)",
        "schedule = plateau(factor=0.5, patience=0, min_delta=1e9)\n"
        "  early_stop = patience(2, min_delta=1e9)"))
    data = net_data(tmp_path / "d.npz", 32)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    runs = {}
    for nproc in (1, 2):
        out = tmp_path / f"run{nproc}"
        proc = subprocess.run([sys.executable, "-m", "dslc.cli", "train", str(spec), "--data",
                               str(data), "--out", str(out), "--nproc", str(nproc)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr[-3000:]
        # Progress lines (not a tty: plain lines) come from rank 0 alone.
        assert proc.stderr.count("epoch 1/6 step 1/18 loss ") == 1, proc.stderr[-3000:]
        runs[nproc] = params(out)
        lines = (out / "metrics.jsonl").read_text().splitlines()
        epochs = [json.loads(ln)["epoch"] for ln in lines]
        assert epochs == [1, 2, 3]
    for k in runs[1]:
        np.testing.assert_allclose(runs[2][k], runs[1][k], atol=1e-5, rtol=0)
    # ... and training moved them: the comparison is not of two untouched models.
    mod = program(tmp_path, spec.read_text(), name="t2.dl")
    mod.main(["--data", str(data), "--out", str(tmp_path / "init"), "--steps", "0"])
    init = params(tmp_path / "init")
    assert all(np.abs(runs[1][k] - init[k]).max() > 1e-3 for k in init)


# ---- update rules: k steps of the program against the notes' formulas in NumPy -----------

LIN = """
model lin {
  input x: f32[B, 3]
  output y = x -> linear(2) as fc
}
train for lin {
  target t: f32[B, 2]
  loss = mse_loss(y, t)
  optimizer = OPT
  schedule = SCHED
  batch = 6
  steps = 6
  shuffle = false
}
"""
K = 6


def _lin_data(path: Path) -> Path:
    rng = np.random.default_rng(1)
    np.savez(path, x=rng.standard_normal((6, 3)).astype(np.float32),
             t=rng.standard_normal((6, 2)).astype(np.float32))
    return path


def _grads(w, b, x, t):
    """d mse / d(w, b) for y = x w^T + b, the mean over every element."""
    dy = 2 * (x @ w.T + b - t) / t.size
    return dy.T @ x, dy.sum(0)


def _trained(tmp_path, opt: str, sched: str = "constant()", steps: int = K):
    mod = program(tmp_path, LIN.replace("OPT", opt).replace("SCHED", sched))
    data = _lin_data(tmp_path / "d.npz")
    mod.main(["--data", str(data), "--out", str(tmp_path / "init"), "--steps", "0"])
    mod.main(["--data", str(data), "--out", str(tmp_path / "run"), "--steps", str(steps)])
    with np.load(data) as f:
        x, t = f["x"].astype(np.float64), f["t"].astype(np.float64)
    p0 = {k: v.astype(np.float64) for k, v in params(tmp_path / "init").items()}
    return p0, params(tmp_path / "run"), x, t


def _check(p, theta):
    np.testing.assert_allclose(p["fc.weight"], theta[0], atol=1e-6, rtol=0)
    np.testing.assert_allclose(p["fc.bias"], theta[1], atol=1e-6, rtol=0)


def test_sgd_momentum_is_the_notes_rule(tmp_path):
    p0, p, x, t = _trained(tmp_path, "sgd(lr=0.1, momentum=0.9)")
    theta = [p0["fc.weight"], p0["fc.bias"]]
    v = [np.zeros_like(a) for a in theta]
    for _ in range(K):  # 002: v_t = gamma v_{t-1} + eta grad J(theta); theta = theta - v_t
        g = _grads(*theta, x, t)
        v = [0.9 * vi + 0.1 * gi for vi, gi in zip(v, g)]
        theta = [a - vi for a, vi in zip(theta, v)]
    _check(p, theta)
    assert not np.allclose(p["fc.weight"], p0["fc.weight"])


def test_sgd_nesterov_is_the_notes_rule(tmp_path):
    """002's NAG: v_t = gamma v_{t-1} + eta grad J(theta - gamma v_{t-1}); theta -= v_t.
    torch keeps the look-ahead point phi = theta - gamma v_t (Sutskever et al.'s form): the
    same iteration written in other variables, so the program's parameters are phi."""
    p0, p, x, t = _trained(tmp_path, "sgd(lr=0.05, momentum=0.9, nesterov=true)")
    theta = [p0["fc.weight"], p0["fc.bias"]]
    v = [np.zeros_like(a) for a in theta]
    for _ in range(K):
        g = _grads(*[a - 0.9 * vi for a, vi in zip(theta, v)], x, t)
        v = [0.9 * vi + 0.05 * gi for vi, gi in zip(v, g)]
        theta = [a - vi for a, vi in zip(theta, v)]
    _check(p, [a - 0.9 * vi for a, vi in zip(theta, v)])


def test_adam_is_the_notes_rule(tmp_path):
    """002's Adam. The notes put eps inside the root, torch (and so the program) outside:
    a parameter whose gradient is near eps moves differently, so eps is tiny here."""
    p0, p, x, t = _trained(tmp_path, "adam(lr=0.01, betas=(0.8, 0.99), eps=1e-12)")
    theta = [p0["fc.weight"], p0["fc.bias"]]
    m = [np.zeros_like(a) for a in theta]
    v = [np.zeros_like(a) for a in theta]
    for step in range(1, K + 1):
        g = _grads(*theta, x, t)
        m = [0.8 * mi + 0.2 * gi for mi, gi in zip(m, g)]
        v = [0.99 * vi + 0.01 * gi ** 2 for vi, gi in zip(v, g)]
        mh = [mi / (1 - 0.8 ** step) for mi in m]
        vh = [vi / (1 - 0.99 ** step) for vi in v]
        theta = [a - 0.01 * mi / np.sqrt(vi + 1e-12) for a, mi, vi in zip(theta, mh, vh)]
    _check(p, theta)


def test_rmsprop_is_the_notes_rule(tmp_path):
    p0, p, x, t = _trained(tmp_path, "rmsprop(lr=0.01, alpha=0.9, eps=1e-12)")
    theta = [p0["fc.weight"], p0["fc.bias"]]
    e = [np.zeros_like(a) for a in theta]
    for _ in range(K):  # E[g^2]_t = a E[g^2]_{t-1} + (1 - a) g^2; theta -= eta g / RMS[g]
        g = _grads(*theta, x, t)
        e = [0.9 * ei + 0.1 * gi ** 2 for ei, gi in zip(e, g)]
        theta = [a - 0.01 * gi / np.sqrt(ei + 1e-12) for a, gi, ei in zip(theta, g, e)]
    _check(p, theta)


def test_adagrad_is_the_notes_rule(tmp_path):
    p0, p, x, t = _trained(tmp_path, "adagrad(lr=0.1, eps=1e-12)")
    theta = [p0["fc.weight"], p0["fc.bias"]]
    acc = [np.zeros_like(a) for a in theta]
    for _ in range(K):  # 002: theta_{t+1} = theta_t - eta g_t / sqrt(sum of g^2 + eps)
        g = _grads(*theta, x, t)
        acc = [ai + gi ** 2 for ai, gi in zip(acc, g)]
        theta = [a - 0.1 * gi / np.sqrt(ai + 1e-12) for a, gi, ai in zip(theta, g, acc)]
    _check(p, theta)


SCHEDULES = [
    ("step(step_size=2, gamma=0.5)", lambda i: 0.5 ** (i // 2)),
    ("multistep(milestones=[1, 4], gamma=0.1)", lambda i: 0.1 ** ((i >= 1) + (i >= 4))),
    ("exponential(gamma=0.8)", lambda i: 0.8 ** i),
    ("cosine(t_max=5, eta_min=0.01)",
     lambda i: (0.01 + (0.2 - 0.01) * (1 + math.cos(math.pi * min(i, 5) / 5)) / 2) / 0.2),
    ("cosine()", lambda i: (1 + math.cos(math.pi * i / K)) / 2),  # t_max = the run's steps
    ("cosine_restarts(t_0=2, t_mult=2, eta_min=0.02)",  # cycles of 2, 4, 8 steps (SGDR)
     lambda i: (0.02 + 0.18 * (1 + math.cos(math.pi * ([0, 1, 0, 1, 2, 3][i]
                                                        / [2, 2, 4, 4, 4, 4][i]))) / 2) / 0.2),
    ("warmup(total_iters=3, then=exponential(gamma=0.5))",
     lambda i: (i + 1) / 3 if i < 3 else 0.5 ** (i - 3)),
    # One step an epoch here; no epoch improves by 1e9, so after `patience` (1) bad epochs
    # beyond it the rate halves: ReduceLROnPlateau on the epoch's training loss.
    ("plateau(factor=0.5, patience=1, min_delta=1e9)", lambda i: [1, 1, 1, .5, .5, .25][i]),
    ("noam(d_model=16, warmup=3)",
     lambda i: 16 ** -0.5 * min((i + 1) ** -0.5, (i + 1) * 3 ** -1.5)),
]


@pytest.mark.parametrize("sched,factor", SCHEDULES, ids=[s.split("(")[0] + str(i) for i, (s, _)
                                                         in enumerate(SCHEDULES)])
def test_schedules_are_the_formulas(tmp_path, sched, factor):
    p0, p, x, t = _trained(tmp_path, "sgd(lr=0.2)", sched)
    theta = [p0["fc.weight"], p0["fc.bias"]]
    for i in range(K):  # plain gradient descent with the learning rate of step i
        g = _grads(*theta, x, t)
        theta = [a - 0.2 * factor(i) * gi for a, gi in zip(theta, g)]
    _check(p, theta)


# ---- bad data files and checkpoints ---------------------------------------------------------


def _fails(mod, capsys, argv) -> str:
    with pytest.raises(SystemExit) as exc:
        mod.main(argv)
    assert exc.value.code == 1
    return capsys.readouterr().err


@pytest.mark.parametrize("arrays,code,words", [
    ({"x": np.zeros((40, 4), np.float32)}, "E0611", "no array 'label'"),
    ({"x": np.zeros((40, 4), np.float32), "labels": np.zeros(40, np.int64)}, "E0611",
     "did you mean 'labels'"),
    ({"x": np.zeros((40, 4), np.float64), "label": np.zeros(40, np.int64)}, "E0612",
     "array 'x' has dtype float64, expected float32"),
    ({"x": np.zeros((40, 5), np.float32), "label": np.zeros(40, np.int64)}, "E0613",
     "array 'x' has shape [40, 5], expected float32[N, 4]"),
    ({"x": np.zeros((40, 4), np.float32), "label": np.zeros(39, np.int64)}, "E0615",
     "array 'label' has 39 samples"),
    ({"x": np.zeros((40, 4), np.float32), "label": np.full(40, 3, np.int64)}, "E0614",
     "array 'label' holds label 3 at flat index 0; labels must lie in [0, 3)"),
    ({"x": np.zeros((4, 4), np.float32), "label": np.zeros(4, np.int64)}, "E0616",
     "fewer than one batch"),
])
def test_bad_data_stops_before_training(tmp_path, capsys, arrays, code, words):
    mod = program(tmp_path, NET)
    np.savez(tmp_path / "d.npz", **arrays)
    err = _fails(mod, capsys, ["--data", str(tmp_path / "d.npz"), "--out", str(tmp_path / "r")])
    assert f"error[{code}]" in err and words in err, err
    assert not (tmp_path / "r").exists()  # nothing written before the data is known good


def test_unreadable_data_file(tmp_path, capsys):
    mod = program(tmp_path, NET)
    (tmp_path / "d.npz").write_bytes(b"not a zip")
    err = _fails(mod, capsys, ["--data", str(tmp_path / "d.npz"), "--out", str(tmp_path / "r")])
    assert "error[E0610]" in err


def test_corrupt_checkpoint_is_refused(tmp_path, capsys):
    mod = program(tmp_path, NET)
    data = net_data(tmp_path / "d.npz")
    run = tmp_path / "run"
    mod.main(["--data", str(data), "--out", str(run), "--stop-after-steps", "2"])
    ckpt = run / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    before = (run / "metrics.jsonl").read_bytes()
    err = _fails(mod, capsys, ["--data", str(data), "--out", str(run), "--resume", str(run)])
    assert "error[E0620]" in err and "nothing was loaded" in err
    assert (run / "metrics.jsonl").read_bytes() == before
    err = _fails(mod, capsys, ["--data", str(data), "--out", str(run), "--resume",
                               str(tmp_path / "none")])
    assert "error[E0621]" in err


def test_no_weight_decay_on_biases(tmp_path):
    """A parameter group: weight decay (L2, added to the gradient) on the weight only."""
    text = LIN.replace("steps = 6", "steps = 6\n  no_weight_decay = [\"bias\"]")
    mod = program(tmp_path, text.replace("OPT", "sgd(lr=0.1, weight_decay=0.5)")
                  .replace("SCHED", "constant()"))
    data = _lin_data(tmp_path / "d.npz")
    mod.main(["--data", str(data), "--out", str(tmp_path / "init"), "--steps", "0"])
    mod.main(["--data", str(data), "--out", str(tmp_path / "run"), "--steps", str(K)])
    with np.load(data) as f:
        x, t = f["x"].astype(np.float64), f["t"].astype(np.float64)
    p0 = {k: v.astype(np.float64) for k, v in params(tmp_path / "init").items()}
    p = params(tmp_path / "run")
    w, b = p0["fc.weight"], p0["fc.bias"]
    for _ in range(K):
        gw, gb = _grads(w, b, x, t)
        w, b = w - 0.1 * (gw + 0.5 * w), b - 0.1 * gb
    _check(p, [w, b])


def test_no_weight_decay_groups_biases_and_norm_weights(tmp_path):
    text = NET.replace("-> tanh", "-> batch_norm as bn -> tanh").replace(
        "optimizer = sgd(lr=0.1, momentum=0.9)",
        'optimizer = sgd(lr=0.1, weight_decay=0.01)\n  no_weight_decay = ["bias", "norm"]')
    mod = program(tmp_path, text)
    model = mod.Model()
    decay, no_decay = mod.param_groups(model)
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in decay["params"]) == ["fc1.weight", "fc2.weight"]
    assert sorted(names[id(p)] for p in no_decay["params"]) == [
        "bn.bias", "bn.weight", "fc1.bias", "fc2.bias"]
    assert no_decay["weight_decay"] == 0.0


def test_early_stopping_and_its_resume(tmp_path):
    """min_delta larger than any change: no epoch after the first improves, so with patience
    2 the run ends after epoch 3; a run interrupted in epoch 2 and resumed ends alike."""
    import json

    text = NET.replace("epochs = 2", "epochs = 10\n  early_stop = patience(2, min_delta=1e9)")
    mod = program(tmp_path, text)
    data = net_data(tmp_path / "d.npz")
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert mod.main(["--data", str(data), "--out", str(whole)]) == 0
    records = [json.loads(ln) for ln in (whole / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert (whole / "best_params.npz").is_file() and (whole / "params.npz").is_file()
    mod.main(["--data", str(data), "--out", str(part), "--stop-after-steps", "4"])
    mod.main(["--data", str(data), "--out", str(part), "--resume", str(part)])
    assert (whole / "metrics.jsonl").read_text() == (part / "metrics.jsonl").read_text()
    for name in ("params.npz", "best_params.npz"):
        a, b = params_file(whole / name), params_file(part / name)
        assert all(np.array_equal(a[k], b[k]) for k in a)


def params_file(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def test_top_k_accuracy(tmp_path):
    """accuracy(logits, label, k=2): the label among the two highest scores."""
    import torch

    text = NET.replace("metrics = [accuracy(logits, label)]",
                       "metrics = [accuracy(logits, label), accuracy(logits, label, k=2)]")
    mod = program(tmp_path, text)
    scores = torch.tensor([[0.1, 0.5, 0.4], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5]])
    labels = torch.tensor([2, 0, 0])
    counts = mod.count_metrics({"logits": scores}, {"label": labels})
    assert counts == {"accuracy": (1, 3), "top2_accuracy": (2, 3)}

"""Regularisation terms of a train section's loss (dslc/train_reg.py): `l2(params("fc*"))` and
`l1(params(...))` on both back ends - the generated PyTorch program and the NumPy loss and
gradient (dslc/train_loss.py) - against the same loss written by hand in torch."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dslc
from dslc.backends.torch_train import generate_train
from dslc.diagnostics import DslcError
from dslc.sources import load_program
from dslc.train_check import check_train
from dslc.train_loss import loss_and_grads

REG = """
model net {
  input x: f32[B, 4]
  h = x -> linear(8) as fc1 -> batch_norm as bn -> tanh
  output logits = h -> linear(3) as fc2
}
train for net {
  target label: i64[B]
  loss = cross_entropy(logits, label) + 0.01 * l2(params("fc*.weight"))
         + 0.003 * l1(params("fc2.*", "bn.weight"))
  optimizer = sgd(lr=0.1, momentum=0.9)
  batch = 8
  steps = 4
  shuffle = false
}
"""


def hand_loss(logits, label, p):
    """The section's loss, written out."""
    l2 = (p["fc1.weight"] ** 2).sum() + (p["fc2.weight"] ** 2).sum()
    l1 = p["fc2.weight"].abs().sum() + p["fc2.bias"].abs().sum() + p["bn.weight"].abs().sum()
    return F.cross_entropy(logits, label) + 0.01 * l2 + 0.003 * l1


def data(n: int = 16) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    return {"x": x, "label": (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)}


def load(tmp_path: Path, text: str = REG):
    f = tmp_path / "reg.dl"
    f.write_text(text)
    prog = dslc.load(f)
    return prog, check_train(load_program(f), prog.source)


def test_the_generated_program_trains_the_hand_written_loss(tmp_path):
    prog, spec = load(tmp_path)
    assert spec.penalty_params == {"param_fc1_weight": "fc1.weight",
                                   "param_fc2_weight": "fc2.weight",
                                   "param_fc2_bias": "fc2.bias", "param_bn_weight": "bn.weight"}
    src = generate_train(prog.graph, spec, str(tmp_path / "reg.dl"))
    mod = types.ModuleType("generated_reg_train")
    exec(compile(src, "train.py", "exec"), mod.__dict__)  # noqa: S102
    d = data()
    np.savez(tmp_path / "d.npz", **d)
    assert mod.main(["--data", str(tmp_path / "d.npz"), "--out", str(tmp_path / "run")]) == 0
    with np.load(tmp_path / "run" / "params.npz") as f:
        got = {k: f[k] for k in f.files}
    torch.manual_seed(0)
    model = mod.Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for step in range(4):
        b = slice((step % 2) * 8, (step % 2) * 8 + 8)
        loss = hand_loss(model(torch.from_numpy(d["x"][b])), torch.from_numpy(d["label"][b]),
                         dict(model.named_parameters()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    for k, v in model.state_dict().items():
        np.testing.assert_allclose(got[k], v.detach().numpy(), rtol=0, atol=1e-6, err_msg=k)


def test_numpy_loss_and_gradient_equal_torch(tmp_path):
    """The NumPy back end: the interpreter and its vjps carry the l1/l2 terms' gradients."""
    prog, spec = load(tmp_path)
    params = prog.init_params(3)
    params["bn.weight"] = np.random.default_rng(1).standard_normal(8).astype(np.float32)
    d = data(8)
    loss, grads = loss_and_grads(prog.source, spec, d, dict(params), float64=True)
    model = prog.to_torch()().double()
    model.load_state_dict({k: torch.from_numpy(v).double() if v.dtype.kind == "f"
                           else torch.from_numpy(v) for k, v in params.items()})
    model.train()
    want = hand_loss(model(torch.from_numpy(d["x"]).double()), torch.from_numpy(d["label"]),
                     dict(model.named_parameters()))
    want.backward()
    # The loss graph takes the model's outputs as float32, as the program does.
    assert loss == pytest.approx(want.item(), rel=1e-6)
    for k, p in model.named_parameters():
        np.testing.assert_allclose(grads[k], p.grad.numpy(), rtol=1e-5, atol=1e-7, err_msg=k)


@pytest.mark.parametrize("loss,words", [
    ('cross_entropy(logits, label) + l2(params("conv*"))', "chooses no parameter"),
    ('cross_entropy(logits, label) + l2(params("bn.running_mean"))', "chooses no parameter"),
    ("cross_entropy(logits, label) + l2(logits)", "takes the parameters"),
    ('cross_entropy(logits, label) + sum(params("fc1.weight"))', "argument of l1(...) or l2"),
    ("cross_entropy(logits, label) + l1(params(fc1))", "patterns of state_dict keys"),
])
def test_bad_regularisation_terms_are_e0642(tmp_path, loss, words):
    text = REG.replace(REG[REG.index("  loss ="):REG.index("  optimizer")], f"  loss = {loss}\n")
    with pytest.raises(DslcError) as exc:
        load(tmp_path, text)
    d = exc.value.diagnostics[0]
    assert d.code == "E0642" and words in d.message, d.message


def test_numpy_back_end_trains_the_terms_as_the_torch_program(tmp_path):
    """`dslc train --backend numpy` and the generated program, from the same parameters."""
    from dslc.cli import main

    prog, spec = load(tmp_path)
    params = prog.init_params(5)
    np.savez(tmp_path / "init.npz", **params)
    np.savez(tmp_path / "d.npz", **data())
    src = generate_train(prog.graph, spec, str(tmp_path / "reg.dl"))
    mod = types.ModuleType("generated_reg_train2")
    exec(compile(src, "train.py", "exec"), mod.__dict__)  # noqa: S102
    common = ["--data", str(tmp_path / "d.npz"), "--init", str(tmp_path / "init.npz")]
    assert mod.main([*common, "--out", str(tmp_path / "torch")]) == 0
    assert main(["train", str(tmp_path / "reg.dl"), *common, "--out", str(tmp_path / "np"),
                 "--backend", "numpy"]) == 0
    with np.load(tmp_path / "torch" / "params.npz") as a, \
            np.load(tmp_path / "np" / "params.npz") as b:
        for k in a.files:
            np.testing.assert_allclose(b[k], a[k], rtol=1e-4, atol=1e-5, err_msg=k)
            if k.endswith("weight") and k != "bn.weight":
                assert np.abs(a[k] - params[k]).max() > 1e-3  # it trained


def test_terms_under_ddp_equal_one_process(tmp_path):
    """torchrun --nproc_per_node=2: each rank adds the terms' gradient once, DDP averages."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    text = REG.replace(" -> batch_norm as bn", "").replace(', "bn.weight"', "")
    (tmp_path / "reg.dl").write_text(text)
    np.savez(tmp_path / "d.npz", **data())
    env = dict(os.environ, PYTHONPATH=str(root), OMP_NUM_THREADS="1")
    runs = {}
    for nproc in (1, 2):
        out = tmp_path / f"run{nproc}"
        proc = subprocess.run([sys.executable, "-m", "dslc.cli", "train", str(tmp_path / "reg.dl"),
                               "--data", str(tmp_path / "d.npz"), "--out", str(out), "--nproc",
                               str(nproc), "--backend", "torch"],
                              cwd=root, env=env, capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr[-3000:]
        with np.load(out / "params.npz") as f:
            runs[nproc] = {k: f[k] for k in f.files}
    for k in runs[1]:
        np.testing.assert_allclose(runs[2][k], runs[1][k], atol=1e-6, rtol=0, err_msg=k)

"""Checking of train sections (dslc/train_check.py): what a section becomes, how one is
chosen, and the diagnostics the bad-input corpus does not cover."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import dslc
from dslc.cli import main
from dslc.diagnostics import DslcError
from dslc.sources import load_program
from dslc.train_check import OPTIMIZERS, check_train, lr_factor

ROOT = Path(__file__).resolve().parents[1]

MODEL = """
model net {
  input x: f32[B, 4]
  h = x -> linear(8) -> relu
  output mu = h -> linear(2)
  output logits = h -> linear(3)
}
"""


def spec_of(tmp_path, body: str, name: str | None = None):
    path = tmp_path / "t.dl"
    path.write_text(MODEL + body)
    prog = dslc.load(path)
    return check_train(load_program(path), prog.source, name)


def diag(tmp_path, body: str) -> str:
    with pytest.raises(DslcError) as exc:
        spec_of(tmp_path, body)
    d = exc.value.diagnostics[0]
    return f"{d.code} {d.message} {d.hint or ''}"


BASE = """
train for net {
  target label: i64[B]
  target z: f32[B, 2]
  loss = cross_entropy(logits, label) + 0.5 * mse_loss(mu, z)
  optimizer = adam(lr=0.01)
  batch = 16
  epochs = 3
}
"""


def test_weighted_sum_of_losses_and_defaults(tmp_path):
    s = spec_of(tmp_path, BASE)
    assert [(a.name, a.role, str(a.type)) for a in s.data] == [
        ("x", "input", "f32[B, 4]"), ("label", "target", "i64[B]"), ("z", "target", "f32[B, 2]")]
    assert s.data[1].classes == 3 and s.data[1].ignore_index == -100
    assert s.data[2].classes is None
    assert s.optimizer == "adam"
    assert s.optimizer_args == dict(OPTIMIZERS["adam"][1], lr=0.01)
    assert s.schedule == ("constant", {}) and s.clip is None and s.shuffle is True
    ops = [n.op for n in s.loss_graph.order() if n.op != "input"]
    assert "cross_entropy" in ops and "mse_loss" in ops


def test_the_loss_is_computed_like_torch(tmp_path):
    """The loss module of the program equals F.cross_entropy + 0.5 * F.mse_loss."""
    import torch
    import torch.nn.functional as F

    from dslc.backends.torch_codegen import generate

    body = BASE
    s = spec_of(tmp_path, body)
    ns: dict = {}
    exec(generate(s.loss_graph), ns)  # noqa: S102 - our own generated source
    loss = ns["NetLoss"]()
    g = torch.Generator().manual_seed(0)
    args = {"mu": torch.randn(5, 2, generator=g), "logits": torch.randn(5, 3, generator=g),
            "x": torch.randn(5, 4, generator=g), "label": torch.tensor([0, 2, 1, 1, 0]),
            "z": torch.randn(5, 2, generator=g)}
    got = loss(*[args[n] for n in s.loss_args])
    want = F.cross_entropy(args["logits"], args["label"]) + 0.5 * F.mse_loss(args["mu"],
                                                                              args["z"])
    assert torch.allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("change,code,words", [
    (("optimizer = adam(lr=0.01)", "optimizer = sgd(lr=0.1, nesterov=true)"), "E0277",
     "nesterov needs a momentum"),
    (("optimizer = adam(lr=0.01)", "optimizer = adam(lr=0.01, betas=(0.9,))"), "E0277",
     "'betas' takes 2 numbers"),
    (("epochs = 3", "epochs = 3\n  schedule = multistep(milestones=[5, 2])"), "E0279",
     "milestones must increase"),
    (("epochs = 3", "epochs = 3\n  schedule = stepp(step_size=2)"), "E0278",
     "did you mean 'step'"),
    (("epochs = 3", "epochs = 3\n  clip = l2(1.0)"), "E0283", "clip is"),
    (("epochs = 3", "epochs = 3\n  schedule = plateau(metric=\"val_loss\")"), "E0279",
     "add `validation = 0.1`"),
    (("epochs = 3", "epochs = 3\n  schedule = warmup(3, then=plateau())"), "E0279",
     "plateau cannot follow"),
    (("epochs = 3", "epochs = 3\n  metrics = [accuracy(logits, z)]"), "E0282",
     "accuracy cannot compare 'logits' with 'z'"),
    (("epochs = 3", "epochs = 3\n  metrics = [accuracy(logit, label)]"), "E0282",
     "did you mean 'logits'"),
    (("epochs = 3", "epochs = 3\n  validation = 1.5"), "E0275", "fraction"),
    (("batch = 16", "batch = 0.5"), "E0275", "'batch' must be an int"),
    (("epochs = 3", "epochs = 3\n  batch = 4"), "E0273", "given twice"),
    (("  epochs = 3\n", ""), "E0285", "epochs = N"),
    (("target z: f32[B, 2]", "target mu: f32[B, 2]"), "E0274", "an output"),
    (("target label: i64[B]", "target label: i64[4, B]"), "E0287", "samples first"),
    (("loss = cross_entropy(logits, label)",
      "loss = cross_entropy(logits, lable)"), "E0202", "did you mean 'label'"),
])
def test_diagnostics(tmp_path, change, code, words):
    body = BASE.replace(*change)
    got = diag(tmp_path, body)
    assert got.startswith(code) and words in got, got


def test_cosine_takes_the_run_length_from_steps(tmp_path):
    body = BASE.replace("epochs = 3", "steps = 50\n  schedule = warmup(5, then=cosine())")
    s = spec_of(tmp_path, body)
    assert s.schedule == ("warmup", {"total_iters": 5, "then": ("cosine", {"t_max": 50,
                                                                          "eta_min": 0.0})})
    assert lr_factor(s.schedule, 0, 0.01) == pytest.approx(0.2)
    assert lr_factor(s.schedule, 5, 0.01) == pytest.approx(1.0)
    assert lr_factor(s.schedule, 30, 0.01) == pytest.approx((1 + math.cos(math.pi * 25 / 50)) / 2)


def test_choosing_a_section(tmp_path, capsys):
    two = BASE.replace("train for net", "train a for net") + \
        BASE.replace("train for net", "train b for net").replace("adam", "sgd")
    path = tmp_path / "t.dl"
    path.write_text(MODEL + two)
    assert main(["compile", str(path), "--train"]) == 1
    assert "E0272" in capsys.readouterr().err
    assert main(["compile", str(path), "--train", "c"]) == 1
    assert "E0271" in capsys.readouterr().err
    assert main(["compile", str(path), "--train", "b"]) == 0
    assert "torch.optim.SGD(" in capsys.readouterr().out
    path.write_text(MODEL)
    assert main(["compile", str(path), "--train"]) == 1
    assert "E0270" in capsys.readouterr().err


def test_a_model_variable_may_be_called_target(tmp_path):
    path = tmp_path / "t.dl"
    path.write_text("model m {\n  input x: f32[B, 2]\n  target = x * 2\n"
                    "  output y = target\n}\n")
    assert dslc.load(path).name == "m"
    path.write_text(MODEL + BASE.replace("target z", "targt z"))
    with pytest.raises(DslcError) as exc:
        dslc.load(path)
    assert exc.value.diagnostics[0].code == "E0286"
    assert "did you mean 'target'" in exc.value.diagnostics[0].hint


def _vocab(prog, name: str) -> int:
    """The exclusive upper bound of an integer input (token ids: the embedding's size)."""
    from dslc.interp import input_int_high

    nid = dict(prog.graph.inputs)[name]
    return input_int_high(prog.graph, nid)


@pytest.mark.parametrize("spec", ["mlp_xor", "lenet5", "linear_regression", "logistic_regression",
                                  "softmax_regression", "mlp", "autoencoder", "vae",
                                  "sentiment", "word_embedding", "gpt_tiny", "seq2seq"])
def test_zoo_train_sections_compile_and_take_two_steps(spec, tmp_path):
    """Every spec's train section gives a program that trains on data of its arrays."""
    import types

    prog = dslc.load(ROOT / "specs" / f"{spec}.dl")
    s = check_train(load_program(ROOT / "specs" / f"{spec}.dl"), prog.source)
    from dslc.backends.torch_train import generate_train

    src = generate_train(prog.graph, s, str(ROOT / "specs" / f"{spec}.dl"))
    mod = types.ModuleType("t")
    exec(compile(src, "train.py", "exec"), mod.__dict__)  # noqa: S102
    rng = np.random.default_rng(0)
    n = 2 * s.batch + 8
    arrays = {}
    for a in s.data:
        # Symbolic dims (T, S: sequence lengths) get one size for every array.
        shape = (n,) + tuple(int(d) if d.is_Integer else 5 for d in a.type.shape[1:])
        if a.type.dtype == "i64":
            high = a.classes or _vocab(prog, a.name)
            arrays[a.name] = rng.integers(0, high, shape)
        else:
            arrays[a.name] = rng.random(shape).astype(np.float32)
    np.savez(tmp_path / "d.npz", **arrays)
    assert mod.main(["--data", str(tmp_path / "d.npz"), "--out", str(tmp_path / "run"),
                     "--steps", "2"]) == 0
    with np.load(tmp_path / "run" / "params.npz") as f:
        assert sorted(f.files) == sorted(prog.init_params(0))


def test_summary_json_has_the_train_object(capsys):
    import json

    assert main(["summary", str(ROOT / "specs" / "lenet5.dl"), "--json"]) == 0
    t = json.loads(capsys.readouterr().out)["train"]
    assert t["data"] == [
        {"name": "x", "role": "input", "dtype": "f32", "shape": ["B", 1, 32, 32]},
        {"name": "label", "role": "target", "dtype": "i64", "shape": ["B"], "classes": 10}]
    assert t["optimizer"]["name"] == "sgd" and t["optimizer"]["weight_decay"] == 0.0005
    assert t["schedule"] == {"name": "step", "step_size": 1000, "gamma": 0.5}
    assert t["batch"] == 64 and t["clip"] == ["norm", 5.0] and t["metrics"] == ["accuracy"]
    # A file without a train section says so.
    assert main(["summary", str(ROOT / "specs" / "elman_rnn.dl"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["train"] is None


def test_compile_train_is_deterministic(tmp_path):
    outs = []
    for i in range(2):
        out = tmp_path / f"t{i}.py"
        assert main(["compile", str(ROOT / "specs" / "lenet5.dl"), "--train", "-o",
                     str(out)]) == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    compile(outs[0], "train.py", "exec")  # valid Python


def test_dslc_train_passes_on_the_programs_failure(tmp_path, capfd):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 2), np.float32))
    rc = main(["train", str(ROOT / "specs" / "mlp_xor.dl"), "--data", str(tmp_path / "d.npz"),
               "--out", str(tmp_path / "run")])
    assert rc == 1
    assert "error[E0611]" in capfd.readouterr().err
    assert not (tmp_path / "run" / "params.npz").exists()


def test_vae_loss_is_the_negative_elbo():
    """specs/vae.dl's loss equals the PyTorch VAE example's: BCE summed + KL, per sample."""
    import torch
    import torch.nn.functional as F

    from dslc.backends.torch_codegen import generate

    path = ROOT / "specs" / "vae.dl"
    s = check_train(load_program(path), dslc.load(path).source)
    ns: dict = {}
    exec(generate(s.loss_graph), ns)  # noqa: S102 - our own generated source
    loss = next(v for k, v in ns.items() if k.endswith("Loss"))()
    g = torch.Generator().manual_seed(0)
    a = {"x": torch.rand(5, 784, generator=g), "recon": torch.rand(5, 784, generator=g),
         "mu": torch.randn(5, 20, generator=g), "logvar": torch.randn(5, 20, generator=g)}
    got = loss(*[a[n] for n in s.loss_args])
    kl = -0.5 * torch.sum(1 + a["logvar"] - a["mu"] ** 2 - a["logvar"].exp())
    want = (F.binary_cross_entropy(a["recon"], a["x"], reduction="sum") + kl) / 5
    assert torch.allclose(got, want, rtol=1e-5)


@pytest.mark.parametrize("setting,words", [
    ("early_stop = patience(3)", "needs a validation split"),
    ("validation = 0.2\n  early_stop = patience(3, metric=\"val_acuracy\")", "does not measure"),
    ("validation = 0.2\n  early_stop = stop(3)", "early_stop is"),
])
def test_early_stop_diagnostics(tmp_path, setting, words):
    got = diag(tmp_path, BASE.replace("epochs = 3", "epochs = 3\n  " + setting))
    assert got.startswith("E0288") and words in got, got


def test_early_stop_on_accuracy_maximises(tmp_path):
    s = spec_of(tmp_path, BASE.replace("epochs = 3", "epochs = 3\n  validation = 0.2\n"
                                       "  metrics = [accuracy(logits, label)]\n"
                                       "  early_stop = patience(4, metric=\"val_accuracy\")"))
    assert s.early_stop == {"patience": 4, "metric": "val_accuracy", "min_delta": 0.0,
                            "mode": "max"}


def test_the_loss_reads_the_models_hyperparameters(tmp_path):
    """`beta * ...` with `beta` a hyperparameter of the model (a beta-VAE's weight)."""
    path = tmp_path / "t.dl"
    path.write_text("model m(beta: float = 0.25) {\n  input x: f32[B, 3]\n"
                    "  output y = x -> linear(3)\n}\n"
                    "train for m {\n  loss = beta * mse_loss(y, x)\n  optimizer = sgd()\n"
                    "  batch = 2\n  epochs = 1\n}\n")
    s = check_train(load_program(path), dslc.load(path).source)
    assert "0.25" in generate_loss_source(s)
    s = check_train(load_program(path), dslc.load(path, hparams={"beta": 4.0}).source)
    assert "4.0" in generate_loss_source(s)


def generate_loss_source(spec) -> str:
    from dslc.backends.torch_codegen import generate

    return generate(spec.loss_graph)

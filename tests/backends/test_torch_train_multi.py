"""The generated training program of a multi-model section (dslc/backends/torch_train_multi.py):
a small GAN on 2-D points equals a hand-written PyTorch loop (the DCGAN tutorial's alternation
with the notes' objectives), both models learn, resume is exact, two processes equal one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import dslc
from dslc.backends.torch_train_multi import generate_multi_train
from dslc.sources import load_program
from dslc.train_check import pick_train
from dslc.train_multi import check_multi_train

ROOT = Path(__file__).resolve().parents[2]

GAN = """
model gen {
  input z: f32[B, 3]
  output point = z -> linear(8) as fc1 -> tanh -> linear(2) as fc2
}
model disc {
  input point: f32[B, 2]
  output p = point -> linear(8) as fc1 -> leaky_relu(0.2) -> linear(1) as fc2 -> sigmoid
}
train gan for gen, disc {
  target real: f32[B, 2]
  noise z: f32[B, 3]
  update disc {
    loss = -mean(log(disc(real)), dim=(0, 1)) - mean(log(1.0 - disc(gen(z))), dim=(0, 1))
    optimizer = adam(lr=0.01, betas=(0.5, 0.999))
  }
  update gen {
    loss = -mean(log(disc(gen(z))), dim=(0, 1))
    optimizer = sgd(lr=0.05, momentum=0.5)
  }
  batch = 8
  epochs = 3
  shuffle = false
}
"""


def gan_data(path: Path, n: int = 32) -> Path:
    rng = np.random.default_rng(0)
    real = (rng.standard_normal((n, 2)) * 0.3 + np.array([1.0, -1.0])).astype(np.float32)
    np.savez(path, real=real)
    return path


def program(tmp_path: Path, text: str = GAN) -> types.ModuleType:
    spec_file = tmp_path / "gan_t.dl"
    spec_file.write_text(text)
    prog = load_program(spec_file)
    graph = dslc.load(spec_file, model="gen").source
    spec = check_multi_train(prog, pick_train(prog, "gen", None), graph)
    src = generate_multi_train(spec, str(spec_file))
    (tmp_path / "train.py").write_text(src)
    mod = types.ModuleType("generated_gan_train")
    exec(compile(src, str(tmp_path / "train.py"), "exec"), mod.__dict__)  # noqa: S102
    return mod


def params(run: Path, name: str = "params.npz") -> dict[str, np.ndarray]:
    with np.load(run / name) as f:
        return {k: f[k] for k in f.files}


def hand_written(mod, data: Path, steps: int, seed: int = 0,
                 l2: float = 0.0) -> dict[str, np.ndarray]:
    """The notes' alternation written out as the DCGAN tutorial does: D on real and detached
    fake samples, then G with the non-saturating loss through the updated D."""
    with np.load(data) as f:
        real_all = torch.from_numpy(f["real"])
    torch.manual_seed(seed)
    gen, disc = mod.Gen(), mod.Disc()
    opt_d = torch.optim.Adam(disc.parameters(), lr=0.01, betas=(0.5, 0.999))
    opt_g = torch.optim.SGD(gen.parameters(), lr=0.05, momentum=0.5)
    per_epoch = len(real_all) // 8
    for step in range(steps):
        b = step % per_epoch
        real = real_all[b * 8:(b + 1) * 8]
        z = mod.draw_noise(seed, step, 0, 1, torch.device("cpu"))["z"]
        disc.zero_grad()
        fake = gen(z)
        loss_d = -torch.log(disc(real)).mean() - torch.log(1 - disc(fake.detach())).mean()
        loss_d = loss_d + l2 * (disc.fc1.weight ** 2).sum()
        loss_d.backward()
        opt_d.step()
        gen.zero_grad()
        loss_g = -torch.log(disc(fake)).mean()
        loss_g.backward()
        opt_g.step()
    out = {f"gen.{k}": v.detach().numpy() for k, v in gen.state_dict().items()}
    out.update({f"disc.{k}": v.detach().numpy() for k, v in disc.state_dict().items()})
    return out


@pytest.mark.parametrize("l2", [0.0, 0.05])
def test_gan_program_is_the_hand_written_loop(tmp_path, l2):
    """With l2 > 0, D's loss has a regularisation term on D's parameters."""
    text = GAN if not l2 else GAN.replace(
        "- mean(log(1.0 - disc(gen(z))), dim=(0, 1))",
        f"- mean(log(1.0 - disc(gen(z))), dim=(0, 1)) + {l2} * l2(params(\"fc1.weight\"))")
    assert text != GAN or not l2
    mod = program(tmp_path, text)
    data = gan_data(tmp_path / "d.npz")
    run = tmp_path / "run"
    assert mod.main(["--data", str(data), "--out", str(run)]) == 0
    got = params(run)
    want = hand_written(mod, data, steps=12, l2=l2)
    assert sorted(got) == sorted(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-6, err_msg=k)
    # One model's own file, under its own keys, as `dslc run --params` reads it.
    gen_only = params(run, "params.gen.npz")
    assert sorted(gen_only) == sorted(dslc.load(tmp_path / "gan_t.dl", model="gen")
                                      .init_params(0))
    assert all(np.array_equal(gen_only[k], got["gen." + k]) for k in gen_only)


def test_both_models_learn_and_the_losses_move(tmp_path):
    mod = program(tmp_path)
    data = gan_data(tmp_path / "d.npz")
    mod.main(["--data", str(data), "--out", str(tmp_path / "init"), "--steps", "0"])
    mod.main(["--data", str(data), "--out", str(tmp_path / "run")])
    init, trained = params(tmp_path / "init"), params(tmp_path / "run")
    for k in init:  # every parameter of both models got a gradient and moved
        assert np.abs(trained[k] - init[k]).max() > 1e-4, k
    records = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text()
               .splitlines()]
    assert [r["step"] for r in records] == [4, 8, 12]
    d_losses = [r["disc_loss"] for r in records]
    # D's first loss is near 2 log 2 (it cannot tell yet); it moves as D learns.
    assert abs(d_losses[0] - 2 * np.log(2)) < 0.3
    assert abs(d_losses[-1] - d_losses[0]) > 1e-3
    assert all(np.isfinite(r["gen_loss"]) for r in records)


def test_gan_resume_is_exact(tmp_path):
    mod = program(tmp_path)
    data = gan_data(tmp_path / "d.npz")
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert mod.main(["--data", str(data), "--out", str(whole)]) == 0
    assert mod.main(["--data", str(data), "--out", str(part), "--stop-after-steps", "6"]) == 0
    assert not (part / "params.npz").exists()
    assert mod.main(["--data", str(data), "--out", str(part), "--resume", str(part)]) == 0
    a, b = params(whole), params(part)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert (whole / "metrics.jsonl").read_text() == (part / "metrics.jsonl").read_text()


def test_gan_two_processes_equal_one(tmp_path):
    """torchrun --nproc_per_node=2 (gloo): each model's DDP wrapper runs in its own step."""
    spec = tmp_path / "gan_t.dl"
    spec.write_text(GAN.replace("epochs = 3", "epochs = 2"))
    data = gan_data(tmp_path / "d.npz")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    runs = {}
    for nproc in (1, 2):
        out = tmp_path / f"run{nproc}"
        proc = subprocess.run([sys.executable, "-m", "dslc.cli", "train", str(spec),
                               "--model", "gen", "--data", str(data), "--out", str(out),
                               "--nproc", str(nproc)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[nproc] = params(out)
    for k in runs[1]:
        np.testing.assert_allclose(runs[2][k], runs[1][k], atol=1e-5, rtol=0, err_msg=k)


def test_spec_gan_compiles_to_clean_python(tmp_path):
    ruff = Path(sys.executable).parent / "ruff"
    out = tmp_path / "train.py"
    from dslc.cli import main

    assert main(["compile", str(ROOT / "specs" / "gan.dl"), "--model", "discriminator",
                 "--train", "-o", str(out)]) == 0
    proc = subprocess.run([str(ruff), "check", "--isolated", "--line-length", "100",
                           "--select", "F,E,W", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
    assert "class Generator(nn.Module)" in out.read_text()


def test_summary_lists_the_data_noise_and_each_update(tmp_path, capsys):
    from dslc.cli import main

    assert main(["summary", str(ROOT / "specs" / "gan.dl"), "--model", "generator",
                 "--json"]) == 0
    train = json.loads(capsys.readouterr().out)["train"]
    assert train["models"] == ["generator", "discriminator"]
    assert train["data"] == [{"name": "real", "role": "target", "dtype": "f32",
                              "shape": ["B", 1, 28, 28]}]
    assert train["noise"] == [{"name": "z", "dtype": "f32", "shape": ["B", 100]}]
    assert [(u["model"], u["optimizer"]["name"], u["optimizer"]["betas"])
            for u in train["updates"]] == [("discriminator", "adam", [0.5, 0.999]),
                                           ("generator", "adam", [0.5, 0.999])]


def test_the_numpy_back_end_refuses_a_multi_model_section(tmp_path, capsys):
    from dslc.cli import main

    np.savez(tmp_path / "d.npz", real=np.zeros((70, 1, 28, 28), np.float32))
    rc = main(["train", str(ROOT / "specs" / "gan.dl"), "--model", "generator", "--data",
               str(tmp_path / "d.npz"), "--out", str(tmp_path / "run"), "--backend", "numpy"])
    assert rc == 1
    assert "E0638" in capsys.readouterr().err
    assert not (tmp_path / "run" / "params.npz").exists()


def test_init_starts_every_model_from_a_runs_params(tmp_path, capsys):
    """--init RUN/params.npz (MODEL.KEY keys): a run of 0 steps from a finished run's
    parameters ends with exactly them; a key of no model of the section is refused."""
    mod = program(tmp_path)
    data = gan_data(tmp_path / "d.npz")
    assert mod.main(["--data", str(data), "--out", str(tmp_path / "a")]) == 0
    assert mod.main(["--data", str(data), "--out", str(tmp_path / "b"), "--steps", "0",
                     "--init", str(tmp_path / "a" / "params.npz")]) == 0
    a, b = params(tmp_path / "a"), params(tmp_path / "b")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    np.savez(tmp_path / "bad.npz", **{"critic.fc1.weight": np.zeros((8, 2), np.float32)})
    with pytest.raises(SystemExit):
        mod.main(["--data", str(data), "--out", str(tmp_path / "c"), "--init",
                  str(tmp_path / "bad.npz")])
    assert "E0541" in capsys.readouterr().err

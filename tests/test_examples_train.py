"""The examples that learn real data through `dslc train` (examples/train_digits_lenet5.py,
train_char_lstm.py, train_vae_digits.py): each runs as a user runs it and reaches the
threshold its header states (the VAE on fewer epochs than its full run)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.test_examples import EXAMPLES, assert_nonempty, example_env


def run(script: str, *args: str, cwd) -> str:
    env = example_env()
    # One thread: the models are small, and threads spin-wait on a shared machine.
    env.update(OMP_NUM_THREADS="1", DSLC_PROGRESS="log")
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{script} exited {proc.returncode}\n--- stdout\n" \
        f"{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
    return proc.stdout


def test_lenet5_learns_the_digits(tmp_path):
    pytest.importorskip("sklearn")
    out = run("train_digits_lenet5.py", str(tmp_path / "d"), cwd=tmp_path)
    m = re.search(r"final validation accuracy: ([0-9.]+) after 12 epochs \(NumPy interpreter "
                  r"on the same 359 digits: ([0-9.]+)\)", out)
    assert m, out[-3000:]
    assert float(m[1]) >= 0.95 and float(m[1]) == float(m[2])
    assert_nonempty(tmp_path / "d" / "run" / "curves.png", b"\x89PNG")
    assert (tmp_path / "d" / "run" / "params.npz").is_file()


def test_char_lstm_loss_falls_below_the_stated_values(tmp_path):
    out = run("train_char_lstm.py", str(tmp_path / "c"), cwd=tmp_path)
    m = re.search(r"best held-out loss: ([0-9.]+) nats/char .* last training loss: ([0-9.]+)",
                  out)
    assert m, out[-3000:]
    assert float(m[1]) < 2.6 and float(m[2]) < 1.5
    sampled = out.split("--- sampled from the model (temperature 0.7):\n")[1].split("\n---")[0]
    assert sampled.startswith("Alice ") and len(sampled) == 306
    assert "early stop: val_loss has not improved" in out


def test_vae_learns_the_digits_and_draws_samples(tmp_path):
    pytest.importorskip("sklearn")
    out = run("train_vae_digits.py", str(tmp_path / "v"), "--epochs", "40", cwd=tmp_path)
    m = re.search(r"final loss \(negative ELBO\): ([0-9.]+) nats per digit after 40 epochs "
                  r"\(first epoch ([0-9.]+);", out)
    assert m, out[-3000:]
    # 64 ln 2 = 44.4 for an untrained decoder's one-half everywhere; 40 epochs reach ~25.
    assert float(m[1]) < 26.0 < float(m[2])
    import matplotlib.image

    samples = matplotlib.image.imread(str(tmp_path / "v" / "samples.png"))
    assert samples.shape[:2] == (480, 480)
    # Digits, not noise or a blank sheet: dark strokes on a white ground.
    gray = samples[..., :3].mean(axis=2)
    assert 0.05 < (gray < 0.5).mean() < 0.6
    assert_nonempty(tmp_path / "v" / "reconstructions.png", b"\x89PNG")

"""Example: LeNet-5 (specs/lenet5.dl) learns scikit-learn's handwritten digits with `dslc train`.

What it shows
-------------
- A data file for a train section: scikit-learn's 1,797 digits (8x8, shipped with the package,
  no download) upsampled to LeNet-5's 32x32 by repeating every pixel 4x4, standardised and
  shuffled once, in arrays named after the spec's input `x` and target `label`
  -> OUT/digits.npz.
- `dslc train specs/lenet5.dl --train digits`: the file's train section `digits` (Adam, the
  rate halved every 4 epochs, the last 20% of the samples held out) compiled to
  OUT/run/train.py and run; a progress bar on a terminal, plain lines otherwise;
  OUT/run/metrics.jsonl, params.npz, checkpoint.pt.
- The trained OUT/run/params.npz in dslc's NumPy interpreter (`prog.run`): the same held-out
  accuracy as the PyTorch program measured.
- `dslc plot OUT/run` -> OUT/run/curves.png (loss and accuracy curves; needs matplotlib).
- It prints the final validation accuracy, about 98.6% after 12 epochs, and exits 1 below 95%.

Run it (from the repository root; needs `pip install 'dslc[examples]'`, about 15 s of CPU):
    python examples/train_digits_lenet5.py [OUT] [--epochs N]     (OUT defaults to out/digits)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import dslc
from dslc.cli import main as dslc_main

SPEC = Path(__file__).resolve().parents[1] / "specs" / "lenet5.dl"
VALIDATION = 0.2  # the train section's `validation`: the last fifth of the file


def write_data(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0  # [1797, 8, 8], ink 0..1
    order = np.random.default_rng(0).permutation(len(images))
    images, labels = images[order], digits.target[order].astype(np.int64)
    x = np.kron(images, np.ones((4, 4), np.float32))[:, None]  # [N, 1, 32, 32]
    # LeNet-5's sigmoids stall on a plateau when the inputs are not centred.
    x = ((x - x.mean()) / x.std()).astype(np.float32)
    np.savez(path, x=x, label=labels)
    return x, labels


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", nargs="?", default="out/digits")
    p.add_argument("--epochs", type=int, help="default: the train section's 12")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    x, labels = write_data(out / "digits.npz")
    print(f"wrote {out / 'digits.npz'}: x {list(x.shape)}, label {list(labels.shape)}")

    run = out / "run"
    cmd = ["train", str(SPEC), "--train", "digits", "--data", str(out / "digits.npz"),
           "--out", str(run)]
    if args.epochs:
        cmd += ["--epochs", str(args.epochs)]
    if dslc_main(cmd) != 0:
        return 1
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])

    # The parameters in the NumPy interpreter, on the held-out samples.
    prog = dslc.load(SPEC)
    with np.load(run / "params.npz") as f:
        params = {k: f[k] for k in f.files}
    held = slice(len(x) - int(len(x) * VALIDATION), len(x))
    logits = prog.run({"x": x[held]}, params)["logits"]
    numpy_acc = float(np.mean(logits.argmax(1) == labels[held]))

    if dslc_main(["plot", str(run)]) != 0:  # E0652 without matplotlib: the run still counts
        print("no curves.png: dslc plot needs matplotlib")
    acc = last["val_accuracy"]
    print(f"final validation accuracy: {acc:.4f} after {last['epoch']} epochs "
          f"(NumPy interpreter on the same {held.stop - held.start} digits: {numpy_acc:.4f})")
    return 0 if acc >= 0.95 and abs(acc - numpy_acc) < 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())

"""Example: the notes' variational autoencoder (specs/vae.dl) learns scikit-learn's digits with
`dslc train`, then draws new digits from random codes into a PNG grid.

What it shows
-------------
- The VAE's train section as written in the spec: the negative ELBO per sample, the
  reconstruction's binary cross-entropy plus the KL divergence of the code's distribution
  from N(0, I) (note 001), Adam, batch 128. The spec's image size is a hyperparameter:
  `--set features=64` fits the 8x8 digits (the pixels, 0..16, scaled to 0..1, are the
  Bernoulli targets of the BCE) -> OUT/digits.npz, the array `x` [1797, 64].
- `dslc train specs/vae.dl --set features=64 --epochs 150` -> OUT/run/ (metrics.jsonl:
  the loss, in nats per digit, falls from about 44 = 64 ln 2 to about 24.3).
- Sampling: the generated PyTorch module (`dslc.load(...).to_torch()`) with the trained
  params.npz; its decoder layers (`fc3`, `fc4`, named in the spec) map 64 codes z ~ N(0, I)
  to images -> OUT/samples.png, an 8x8 grid of new digits (needs matplotlib), and the means
  of 8 training digits' codes decoded beside the originals -> OUT/reconstructions.png.
- It prints the final loss and exits 1 unless it is below 26.

Run it (from the repository root; needs `pip install 'dslc[examples]'`, about 15 s of CPU):
    python examples/train_vae_digits.py [OUT] [--epochs N]    (OUT defaults to out/vae)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

import dslc
from dslc.cli import main as dslc_main

SPEC = Path(__file__).resolve().parents[1] / "specs" / "vae.dl"
EPOCHS, LOSS_BELOW = 150, 26.0


def write_data(path: Path) -> np.ndarray:
    from sklearn.datasets import load_digits

    x = (load_digits().data / 16.0).astype(np.float32)  # [1797, 64], ink 0..1
    x = x[np.random.default_rng(0).permutation(len(x))]
    np.savez(path, x=x)
    return x


def grid_png(path: Path, images: np.ndarray, cols: int) -> None:
    """Images [n, 8, 8] (0..1) as a grid PNG, ink dark on white, deterministic bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = -(-len(images) // cols)
    sheet = np.ones((rows * 9 + 1, cols * 9 + 1), np.float32)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        sheet[1 + r * 9:r * 9 + 9, 1 + c * 9:c * 9 + 9] = 1.0 - img
    fig = Figure(figsize=(cols * 0.6, rows * 0.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(sheet, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    fig.savefig(path, format="png", metadata={"Software": None})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", nargs="?", default="out/vae")
    p.add_argument("--epochs", type=int, default=EPOCHS)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    x = write_data(out / "digits.npz")
    print(f"wrote {out / 'digits.npz'}: x {list(x.shape)}")

    run = out / "run"
    if dslc_main(["train", str(SPEC), "--set", "features=64", "--data",
                  str(out / "digits.npz"), "--out", str(run), "--epochs",
                  str(args.epochs)]) != 0:
        return 1
    records = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    first, last = records[0]["loss"], records[-1]["loss"]

    Vae = dslc.load(SPEC, hparams={"features": 64}).to_torch()
    model = Vae()
    with np.load(run / "params.npz") as f:
        model.load_state_dict({k: torch.from_numpy(f[k]) for k in f.files})
    model.eval()
    with torch.no_grad():
        z = torch.randn(64, model.fc3.in_features, generator=torch.Generator().manual_seed(0))
        samples = torch.sigmoid(model.fc4(torch.relu(model.fc3(z)))).numpy()
        _, mu, _ = model(torch.from_numpy(x[:8]))
        recon = torch.sigmoid(model.fc4(torch.relu(model.fc3(mu)))).numpy()
    try:
        grid_png(out / "samples.png", samples.reshape(-1, 8, 8), cols=8)
        pairs = np.concatenate([x[:8], recon]).reshape(-1, 8, 8)
        grid_png(out / "reconstructions.png", pairs, cols=8)
        print(f"wrote {out / 'samples.png'} (64 decoded random codes) and "
              f"{out / 'reconstructions.png'} (8 digits above, their codes' means decoded)")
    except ImportError:
        print("no PNG: matplotlib is not installed (pip install 'dslc[examples]')")
    print(f"final loss (negative ELBO): {last:.2f} nats per digit after {records[-1]['epoch']} "
          f"epochs (first epoch {first:.2f}; below {LOSS_BELOW} expected)")
    return 0 if last < LOSS_BELOW else 1


if __name__ == "__main__":
    sys.exit(main())

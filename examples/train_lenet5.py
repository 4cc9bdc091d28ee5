"""Example: compile specs/lenet5.dl to PyTorch with dslc and train it with a plain PyTorch loop.

What it shows
-------------
- `dslc.load(spec).to_torch()` gives an ordinary `nn.Module` class generated from the spec (the
  source is what `dslc compile` prints); its forward takes the spec's inputs by name (`x=`).
- The parameters dslc's NumPy side initialises (`prog.init_params(seed)`) carry the module's
  `state_dict` keys, so `load_state_dict(..., strict=True)` takes them as they are.
- Training is plain PyTorch: Adam, cross entropy, mini-batches. The data are made up here:
  ten classes of 32x32 "digit-like" images, each class a fixed pattern of strokes and blocks,
  drawn with a random shift, stroke thickness and noise (no download needed), standardised
  to zero mean and unit variance.
- The loss on the training set is printed before training and after every epoch; the script
  exits non-zero unless the final loss is below the initial one.
- The trained weights go back into dslc's NumPy interpreter (`prog.run`), which gives the same
  logits as PyTorch: one spec, two runtimes, one set of weights.

Run it:  python examples/train_lenet5.py     (a few seconds on one CPU core)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import dslc

SPEC = Path(__file__).resolve().parents[1] / "specs" / "lenet5.dl"
SIZE, CLASSES = 32, 10
# Each class is a set of strokes on an 8x8 grid of 4-pixel cells:
# ("h", row, col0, col1) a horizontal bar, ("v", col, row0, row1) a vertical bar,
# ("b", row0, col0, row1, col1) a filled block.
STROKES = [
    [("h", 1, 2, 5), ("h", 6, 2, 5), ("v", 2, 1, 6), ("v", 5, 1, 6)],  # 0: a ring
    [("v", 4, 1, 6)],                                                  # 1: one bar
    [("h", 1, 2, 5), ("v", 5, 1, 3), ("h", 3, 2, 5), ("v", 2, 3, 6), ("h", 6, 2, 5)],  # 2
    [("h", 1, 2, 5), ("h", 3, 3, 5), ("h", 6, 2, 5), ("v", 5, 1, 6)],  # 3
    [("v", 2, 1, 4), ("h", 4, 2, 5), ("v", 5, 1, 6)],                  # 4
    [("h", 1, 2, 5), ("v", 2, 1, 3), ("h", 3, 2, 5), ("v", 5, 3, 6), ("h", 6, 2, 5)],  # 5
    [("v", 2, 1, 6), ("h", 3, 2, 5), ("h", 6, 2, 5), ("v", 5, 3, 6)],  # 6
    [("h", 1, 2, 5), ("v", 5, 1, 6)],                                  # 7
    [("b", 1, 2, 3, 5), ("b", 4, 2, 6, 5)],                            # 8: two blocks
    [("h", 1, 2, 5), ("v", 2, 1, 3), ("h", 3, 2, 5), ("v", 5, 1, 6)],  # 9
]


def draw(cls: int, rng: np.random.Generator) -> np.ndarray:
    """One noisy 1x32x32 image of class `cls`."""
    img = np.zeros((SIZE, SIZE), np.float32)
    thick = int(rng.integers(2, 4))
    for s in STROKES[cls]:
        if s[0] == "h":
            _, r, c0, c1 = s
            img[r * 4:r * 4 + thick, c0 * 4:c1 * 4 + thick] = 1
        elif s[0] == "v":
            _, c, r0, r1 = s
            img[r0 * 4:r1 * 4 + thick, c * 4:c * 4 + thick] = 1
        else:
            _, r0, c0, r1, c1 = s
            img[r0 * 4:r1 * 4, c0 * 4:c1 * 4] = 1
    img = np.roll(img, tuple(rng.integers(-2, 3, size=2)), axis=(0, 1))
    img += rng.normal(0, 0.3, img.shape).astype(np.float32)
    return img[None]


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % CLASSES
    rng.shuffle(labels)
    images = np.stack([draw(int(c), rng) for c in labels])
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = model(x=x)
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


def main() -> int:
    torch.manual_seed(0)
    # LeNet-5 is tiny: one thread is as fast as several, and it cannot stall when other
    # processes share the CPU (several threads then spin waiting for each other).
    torch.set_num_threads(1)
    prog = dslc.load(SPEC)
    print(f"compiled {SPEC.name}: model {prog.name}, "
          f"{prog.summary({'B': 1})['params']:,} parameters")
    LeNet5 = prog.to_torch()  # the generated nn.Module class
    model = LeNet5()
    state = {k: torch.from_numpy(v) for k, v in prog.init_params(seed=0).items()}
    model.load_state_dict(state, strict=True)  # dslc's initialisation, same keys as torch's

    x_train, y_train = make_data(500, seed=1)
    x_test, y_test = make_data(200, seed=2)
    # Standardise with the training set's statistics: LeNet-5's sigmoids sit on a long
    # plateau (loss stuck near ln 10 = 2.30) when the inputs are not centred.
    mean, std = x_train.mean(), x_train.std()
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    epochs, batch = 8, 16

    initial, acc = evaluate(model, x_train, y_train)
    print(f"epoch  0: loss {initial:.4f}  train acc {acc:.2f}")
    loss = initial
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(x_train))
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            opt.zero_grad()
            F.cross_entropy(model(x=x_train[idx]), y_train[idx]).backward()
            opt.step()
        loss, acc = evaluate(model, x_train, y_train)
        print(f"epoch {epoch:2d}: loss {loss:.4f}  train acc {acc:.2f}")
    test_loss, test_acc = evaluate(model, x_test, y_test)
    print(f"held-out: loss {test_loss:.4f}  acc {test_acc:.2f}")

    # The trained weights run on dslc's NumPy interpreter too, with the same result.
    params = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    np_logits = prog.run({"x": x_test[:8].numpy()}, params)["logits"]
    with torch.no_grad():
        torch_logits = model(x=x_test[:8]).numpy()
    diff = float(np.abs(np_logits - torch_logits).max())
    print(f"NumPy interpreter vs PyTorch on 8 test images: max |difference| {diff:.2e}")

    print(f"loss fell: {initial:.4f} -> {loss:.4f}" if loss < initial
          else f"loss did not fall: {initial:.4f} -> {loss:.4f}")
    return 0 if loss < initial and diff < 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())

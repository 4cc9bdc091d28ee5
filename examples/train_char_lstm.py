"""Example: a character-level LSTM language model (specs/char_lm.dl, model `char_lstm`) learns
the opening of "Alice's Adventures in Wonderland" with `dslc train`, then writes new text.

What it shows
-------------
- A language model's data file: examples/data/alice.txt (Lewis Carroll, 1865, the start of
  chapter I: 4 KB, public domain) as character ids; windows of 64 characters every 8
  (`chars`, i64[N, 64]) and the same windows shifted by one, the characters to predict
  (`next`, i64[N, 64]) -> OUT/alice.npz. The last 10% of the windows (the end of the text)
  are held out.
- `dslc train specs/char_lm.dl --model char_lstm`: teacher forcing, cross-entropy of the
  next character at every position, Adam, gradients clipped by norm, early stopping on the
  held-out loss (OUT/run/best_params.npz keeps the best epoch's parameters).
- What the loss means, in nats per character: a uniform guess over the text's 55 characters
  costs ln 55 = 4.01, the characters' own frequencies (no context) 3.06. The run brings the
  training loss below 1.5 and the held-out loss below 2.6 (about 2.48): the model uses the
  context, and memorises much of this small text (its training loss keeps falling while the
  held-out loss turns up, which is when early stopping ends the run).
- The generated PyTorch module (`dslc.load(...).to_torch()`) with best_params.npz writes 300
  characters from the prompt "Alice ", sampling at temperature 0.7.
- It prints the best held-out loss and the last training loss; exits 1 above 2.6 / 1.5.

Run it (from the repository root; about 10 s of CPU):
    python examples/train_char_lstm.py [OUT] [--epochs N]      (OUT defaults to out/char_lstm)
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

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "char_lm.dl"
TEXT = ROOT / "examples" / "data" / "alice.txt"
WINDOW, STRIDE = 64, 8
VOCAB = 64  # the model's `vocab`: room for the text's 55 characters
TRAIN_BELOW, HELD_OUT_BELOW = 1.5, 2.6


def write_data(path: Path) -> list[str]:
    """The text as windows of character ids; returns the alphabet (id -> character)."""
    text = TEXT.read_text(encoding="utf-8")
    alphabet = sorted(set(text))
    assert len(alphabet) <= VOCAB, len(alphabet)
    ids = np.array([alphabet.index(c) for c in text], np.int64)
    starts = np.arange(0, len(ids) - WINDOW - 1, STRIDE)
    chars = np.stack([ids[s:s + WINDOW] for s in starts])
    np.savez(path, chars=chars, next=np.stack([ids[s + 1:s + WINDOW + 1] for s in starts]))
    return alphabet


def sample(run: Path, alphabet: list[str], prompt: str, n: int, temperature: float) -> str:
    """n characters from the trained model, each drawn from its softmax (one fixed seed)."""
    CharLstm = dslc.load(SPEC, model="char_lstm").to_torch()
    model = CharLstm()
    with np.load(run / "best_params.npz") as f:
        model.load_state_dict({k: torch.from_numpy(f[k]) for k in f.files})
    model.eval()
    gen = torch.Generator().manual_seed(0)
    ids = [alphabet.index(c) for c in prompt]
    with torch.no_grad():
        for _ in range(n):
            # The whole text so far each time: short, and the module's forward as generated.
            logits = model(torch.tensor([ids[-WINDOW:]]))[0, :, -1]
            probs = torch.softmax(logits[:len(alphabet)] / temperature, dim=0)
            ids.append(int(torch.multinomial(probs, 1, generator=gen)))
    return "".join(alphabet[i] for i in ids)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", nargs="?", default="out/char_lstm")
    p.add_argument("--epochs", type=int, help="default: the train section's 30 (early "
                   "stopping ends the run sooner)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    alphabet = write_data(out / "alice.npz")
    print(f"wrote {out / 'alice.npz'}: {len(alphabet)} distinct characters")

    run = out / "run"
    cmd = ["train", str(SPEC), "--model", "char_lstm", "--data", str(out / "alice.npz"),
           "--out", str(run)]
    if args.epochs:
        cmd += ["--epochs", str(args.epochs)]
    if dslc_main(cmd) != 0:
        return 1
    records = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    best = min(r["val_loss"] for r in records)
    train = records[-1]["loss"]

    text = sample(run, alphabet, "Alice ", 300, temperature=0.7)
    print("--- sampled from the model (temperature 0.7):")
    print(text)
    print("---")
    print(f"best held-out loss: {best:.3f} nats/char (below {HELD_OUT_BELOW}; unigram 3.06, "
          f"uniform 4.01); last training loss: {train:.3f} (below {TRAIN_BELOW}) after "
          f"{records[-1]['epoch']} epochs")
    return 0 if best < HELD_OUT_BELOW and train < TRAIN_BELOW else 1


if __name__ == "__main__":
    sys.exit(main())

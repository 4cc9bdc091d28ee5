"""Benchmark (run on demand, never in the test suite): the NumPy interpreter against the
generated PyTorch module for recurrent layers, eager CPU, same process, same thread count,
same weights.

    .venv/bin/python bench/bench_rnn.py [--runs N] [--only lstm,gru,rnn]

Prints median milliseconds per forward pass and the ratio numpy/torch for the zoo's 2-layer
LSTM, GRU and RNN (input 128, hidden 256) at T = 100, batch 8. Target: ratio <= 1.5.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import main  # noqa: E402

# name, spec file, model, bindings
CASES = (("lstm", "lstm.dl", "lstm_net", {"B": 8, "T": 100}),
         ("gru", "gru.dl", "gru_net", {"B": 8, "T": 100}),
         ("rnn", "deep_rnn.dl", "deep_rnn", {"B": 8, "T": 100}))


if __name__ == "__main__":
    main(__doc__, CASES, runs=10, warmup=2)

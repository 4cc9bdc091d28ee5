"""Benchmark (run on demand, never in the test suite): the NumPy interpreter against the
generated PyTorch module on the 6-layer Transformer encoder (d = 512, 8 heads, feed-forward
2048), eager CPU, same process, same thread count, same weights.

    .venv/bin/python bench/bench_attention.py [--runs N]

Prints median milliseconds per forward pass and the ratio numpy/torch. Target: ratio <= 1.2.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import main  # noqa: E402

# name, spec file, model, bindings
CASES = (("encoder6_b8_t128", "transformer_encoder.dl", None, {"B": 8, "T": 128}),)


if __name__ == "__main__":
    main(__doc__, CASES, runs=5, warmup=1)

"""Benchmark (run on demand, never in the test suite): the NumPy interpreter against the
generated PyTorch module, eager CPU, same process, same thread count, same weights.

    .venv/bin/python bench/bench_cnn.py [--runs N] [--only vgg16_b1,resnet18_b1,resnet18_b16]

Prints median milliseconds per forward pass and the ratio numpy/torch for VGG-16 (batch 1)
and ResNet-18 (batch 1 and 16) at 224x224. Target: ratio <= 1.5.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import main  # noqa: E402

# name, spec file, model, bindings
CASES = (("vgg16_b1", "vgg16.dl", None, {"B": 1}),
         ("resnet18_b1", "resnet18.dl", None, {"B": 1}),
         ("resnet18_b16", "resnet18.dl", None, {"B": 16}))


if __name__ == "__main__":
    main(__doc__, CASES, runs=5, warmup=1)

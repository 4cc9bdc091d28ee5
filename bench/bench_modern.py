"""Benchmark (run on demand, never in the test suite): the NumPy interpreter against the
generated PyTorch module on issue 13's modern CNNs, same process, same threads, same weights.

    .venv/bin/python bench/bench_modern.py [--runs N] [--blocks N]
        [--only mobilenet_v2_b1,mobilenet_v2_b16,unet_b1]

MobileNetV2 at 224x224 (batch 1 and 16: depthwise 3x3 and 1x1 convolutions) and the 2015
U-Net at 572x572 (batch 1: big valid 3x3 convolutions, 2x2 up-convolutions, crop-and-concat).
Target: ratio numpy/torch <= 1.5. The specs are the zoo's (specs/mobilenet_v2.dl,
specs/unet.dl).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import main  # noqa: E402

# name, spec file, model, bindings
CASES = (("mobilenet_v2_b1", "mobilenet_v2.dl", None, {"B": 1}),
         ("mobilenet_v2_b16", "mobilenet_v2.dl", None, {"B": 16}),
         ("unet_b1", "unet.dl", None, {"B": 1}))


if __name__ == "__main__":
    main(__doc__, CASES, runs=3, warmup=1)

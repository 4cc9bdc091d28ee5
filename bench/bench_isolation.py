"""Benchmark (run on demand, never in the test suite): does the NumPy interpreter's speed
depend on what ran before it in the process? The generated PyTorch module runs first, then
ten separate harness comparisons of ResNet-18 at batch 16 (alternating blocks, equality
checked first), each reporting its ratio numpy/torch and the page faults of a NumPy run.

    .venv/bin/python bench/bench_isolation.py [--repeats 10] [--runs 2] [--blocks 3]
        [--case resnet18_b16|mobilenet_v2_b16]

Target (issue 13): ratio <= 1.5 in every one of the ten, with the process's allocator
settings as the user left them (the library calls no mallopt).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.harness import blas_threads, compare, prepare  # noqa: E402

CASES = {"resnet18_b16": ("resnet18.dl", {"B": 16}),
         "mobilenet_v2_b16": ("mobilenet_v2.dl", {"B": 16})}


def faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=10, help="separate comparisons")
    ap.add_argument("--runs", type=int, default=2, help="timed runs per block")
    ap.add_argument("--blocks", type=int, default=3, help="alternating blocks per comparison")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--torch-first", type=int, default=3,
                    help="runs of the generated module before anything else")
    ap.add_argument("--case", default="resnet18_b16", choices=sorted(CASES))
    args = ap.parse_args()
    import numpy as np
    import torch

    threads = blas_threads()
    torch.set_num_threads(threads)
    print(f"threads: numpy BLAS {threads}, torch {torch.get_num_threads()}; "
          f"torch {torch.__version__}, numpy {np.__version__}; {args.case}")
    path, bind = CASES[args.case]
    run_np, run_torch, err = prepare(path, None, bind)  # runs NumPy once: the equality check
    for _ in range(args.torch_first):
        run_torch()
    print(f"max rel err {err:.1e}; the generated module ran {args.torch_first} times first")
    print(f"{'#':>2} {'numpy ms':>9} {'torch ms':>9} {'ratio':>6} {'min ratio':>9} "
          f"{'cpu ratio':>9} {'np faults':>9}")
    ratios = []
    for i in range(args.repeats):
        before = faults()
        t0 = time.perf_counter()
        run_np()
        np_once = (time.perf_counter() - t0) * 1e3
        np_faults = faults() - before
        np_med, t_med, np_min, t_min, cpu = compare(run_np, run_torch, args.runs,
                                                    args.warmup, args.blocks)
        ratios.append(np_med / t_med)
        print(f"{i + 1:>2} {np_med:9.1f} {t_med:9.1f} {np_med / t_med:6.2f} "
              f"{np_min / t_min:9.2f} {cpu:9.2f} {np_faults:9d}   (first run {np_once:.0f} ms)",
              flush=True)
    over = sum(r > 1.5 for r in ratios)
    print(f"ratios: median {statistics.median(ratios):.2f}, range {min(ratios):.2f}-"
          f"{max(ratios):.2f}; {len(ratios) - over} of {len(ratios)} within 1.5")


if __name__ == "__main__":
    main()

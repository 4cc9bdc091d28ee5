"""Benchmark (run on demand, never in the test suite): the NumPy interpreter against the
generated PyTorch module on the 6-layer Transformer encoder (d = 512, 8 heads, feed-forward
2048), eager CPU, same process, same thread count, same weights.

    .venv/bin/python bench/bench_attention.py [--runs N] [--batch 8] [--seq 128]

Prints median milliseconds per forward pass and the ratio numpy/torch. Target: ratio <= 1.2.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dslc  # noqa: E402
from bench.bench_cnn import blas_threads, timed  # noqa: E402


def bench(batch: int, seq: int, runs: int, warmup: int) -> tuple:
    import torch

    prog = dslc.load(ROOT / "specs" / "transformer_encoder.dl")
    bind = {"B": batch, "T": seq}
    params = prog.init_params(0)
    inputs = prog.random_inputs(0, bind)
    module = prog.to_torch()()
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in params.items()},
                           strict=True)
    module.eval()
    tin = {k: torch.from_numpy(v.copy()) for k, v in inputs.items()}

    def run_np():
        return prog.run(inputs, params, bind=bind)

    def run_torch():
        with torch.no_grad():
            return module(**tin)

    got = run_np()["y"]
    want = run_torch().numpy()
    err = float(np.abs(got - want).max() / max(1.0, float(np.abs(want).max())))
    # Timed in blocks, never interleaved call by call (see bench_cnn.py).
    np_ms, t_ms = [], []
    for _ in range(2):
        for _ in range(warmup):
            run_np()
        np_ms += timed(run_np, runs)
        time.sleep(0.2)
        for _ in range(warmup):
            run_torch()
        t_ms += timed(run_torch, runs)
        time.sleep(0.2)
    return statistics.median(np_ms), statistics.median(t_ms), min(np_ms), min(t_ms), err


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="timed runs per block (2 blocks)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    args = ap.parse_args()
    import torch

    threads = blas_threads()
    torch.set_num_threads(threads)
    print(f"threads: numpy BLAS {threads}, torch {torch.get_num_threads()}; "
          f"torch {torch.__version__}, numpy {np.__version__}")
    np_med, t_med, np_min, t_min, err = bench(args.batch, args.seq, args.runs, args.warmup)
    print(f"{'case':<22} {'numpy ms':>9} {'torch ms':>9} {'ratio':>6} {'min ratio':>9} "
          f"{'max rel err':>11}")
    print(f"{f'encoder6_b{args.batch}_t{args.seq}':<22} {np_med:9.1f} {t_med:9.1f} "
          f"{np_med / t_med:6.2f} {np_min / t_min:9.2f} {err:11.1e}")


if __name__ == "__main__":
    main()

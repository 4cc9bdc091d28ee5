"""Benchmark (run on demand, never in the test suite): the NumPy interpreter against the
generated PyTorch module for recurrent layers, eager CPU, same process, same thread count,
same weights.

    .venv/bin/python bench/bench_rnn.py [--runs N] [--only lstm,gru,rnn]

Prints median milliseconds per forward pass and the ratio numpy/torch for the zoo's 2-layer
LSTM, GRU and RNN (input 128, hidden 256) at T = 100, batch 8. Target: ratio <= 1.5.
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

# name, spec file, model, bindings
CASES = (("lstm", "lstm.dl", "lstm_net", {"B": 8, "T": 100}),
         ("gru", "gru.dl", "gru_net", {"B": 8, "T": 100}),
         ("rnn", "deep_rnn.dl", "deep_rnn", {"B": 8, "T": 100}))


def bench_case(path: str, model: str, bind: dict, runs: int, warmup: int) -> tuple:
    import torch

    prog = dslc.load(ROOT / "specs" / path, model)
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

    # Same answer first (a benchmark of a wrong kernel is worthless).
    got = next(iter(run_np().values()))
    want = run_torch()
    want = (want[0] if isinstance(want, tuple) else want).numpy()
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
    ap.add_argument("--runs", type=int, default=10, help="timed runs per block (2 blocks)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated case names")
    args = ap.parse_args()
    import torch

    threads = blas_threads()
    torch.set_num_threads(threads)
    print(f"threads: numpy BLAS {threads}, torch {torch.get_num_threads()}; "
          f"torch {torch.__version__}, numpy {np.__version__}")
    print(f"{'case':<6} {'numpy ms':>9} {'torch ms':>9} {'ratio':>6} {'min ratio':>9} "
          f"{'max rel err':>11}")
    only = set(filter(None, args.only.split(",")))
    for name, path, model, bind in CASES:
        if only and name not in only:
            continue
        np_med, t_med, np_min, t_min, err = bench_case(path, model, bind, args.runs,
                                                       args.warmup)
        print(f"{name:<6} {np_med:9.1f} {t_med:9.1f} {np_med / t_med:6.2f} "
              f"{np_min / t_min:9.2f} {err:11.1e}", flush=True)


if __name__ == "__main__":
    main()

"""Benchmark (run on demand, never in the test suite): the NumPy interpreter against the
generated PyTorch module for graph networks, eager CPU, same process, same thread count, same
weights, same random graph.

    .venv/bin/python bench/bench_gnn.py [--runs N] [--only gcn,gat,sage]

Prints median milliseconds per forward pass (inference) and the ratio numpy/torch on a
Cora-sized graph (N = 2708 nodes, E = 10556 edges, 1433 features). Target for gcn: ratio <= 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_cnn import blas_threads  # noqa: E402
from bench.bench_rnn import bench_case  # noqa: E402

CORA = {"N": 2708, "E": 10556}
# name, spec file, model, bindings
CASES = (("gcn", "gcn.dl", "gcn", CORA),
         ("gat", "gat.dl", "gat", CORA),
         ("sage", "graphsage_mean.dl", "graphsage_mean", CORA),
         ("cheb", "chebnet.dl", "chebnet", CORA))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="timed runs per block (2 blocks)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated case names")
    args = ap.parse_args()
    import torch

    threads = blas_threads()
    torch.set_num_threads(threads)
    print(f"threads: numpy BLAS {threads}, torch {torch.get_num_threads()}; "
          f"torch {torch.__version__}, numpy {np.__version__}; graph {CORA}")
    print(f"{'case':<6} {'numpy ms':>9} {'torch ms':>9} {'ratio':>6} {'min ratio':>9} "
          f"{'max rel err':>11}")
    only = set(filter(None, args.only.split(",")))
    for name, path, model, bind in CASES:
        if only and name not in only:
            continue
        np_med, t_med, np_min, t_min, err = bench_case(path, model, bind, args.runs,
                                                       args.warmup)
        print(f"{name:<6} {np_med:9.2f} {t_med:9.2f} {np_med / t_med:6.2f} "
              f"{np_min / t_min:9.2f} {err:11.1e}", flush=True)


if __name__ == "__main__":
    main()

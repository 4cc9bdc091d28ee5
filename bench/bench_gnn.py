"""Benchmark (run on demand, never in the test suite): the NumPy interpreter against the
generated PyTorch module for graph networks, eager CPU, same process, same thread count, same
weights, same random graph.

    .venv/bin/python bench/bench_gnn.py [--runs N] [--only gcn,gat,sage]

Prints median milliseconds per forward pass (inference) and the ratio numpy/torch on a
Cora-sized graph (N = 2708 nodes, E = 10556 edges, 1433 features). Target for gcn: ratio <= 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import main  # noqa: E402

CORA = {"N": 2708, "E": 10556}
# name, spec file, model, bindings
CASES = (("gcn", "gcn.dl", "gcn", CORA),
         ("gat", "gat.dl", "gat", CORA),
         ("sage", "graphsage_mean.dl", "graphsage_mean", CORA),
         ("cheb", "chebnet.dl", "chebnet", CORA))


if __name__ == "__main__":
    main(__doc__, CASES, runs=20, warmup=3, note=f"; graph {CORA}")

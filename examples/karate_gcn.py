"""Example: the notes' GCN (specs/gcn.dl) on Zachary's karate club, trained on the whole graph.

What it shows
-------------
- A graph data file for a whole-graph train section (`batch = full`): node features `x`
  (one-hot node ids, 34 x 34), `edge_index` (both directions of the 78 friendships) and one
  label per node (`label`: 0 = Mr. Hi's faction, 1 = the Officer's), from networkx's
  `karate_club_graph` (no download).
- `dslc train specs/gcn.dl --set features=34 --set classes=2 --backend numpy|torch`: each step
  sees every node and edge; the loss covers the training nodes, `val_accuracy` the held-out
  last fifth of the nodes (7 of 34; `validation = 0.2` of the spec's train section).
- `dslc run` with the trained parameters: the node accuracy over all 34 nodes (the faction of
  every member, as the notes' transductive setting predicts the unlabelled nodes too).
- It prints both, for each back end, and exits non-zero unless the node accuracy is >= 90%.
  (The held-out part is 6 nodes; one borderline member, e.g. node 8 or 30 depending on the
  split, is often predicted for the other faction: 5 of 6.)

Run it:  python examples/karate_gcn.py [OUT] [--backend numpy|torch|both]   (default both)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import networkx as nx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "gcn.dl"
HPARAMS = ["--set", "features=34", "--set", "hidden=16", "--set", "classes=2"]
EPOCHS = 100  # whole-graph steps (one per epoch)


def karate(out: Path) -> np.ndarray:
    g = nx.karate_club_graph()
    n = g.number_of_nodes()
    label = np.array([0 if g.nodes[i]["club"] == "Mr. Hi" else 1 for i in range(n)], np.int64)
    edges = np.array(list(g.edges()), np.int64).T
    edge_index = np.concatenate([edges, edges[::-1]], axis=1)  # undirected: both directions
    x = np.eye(n, dtype=np.float32)
    np.savez(out / "karate.npz", x=x, edge_index=edge_index, label=label)
    np.savez(out / "inputs.npz", x=x, edge_index=edge_index)
    return label


def dslc(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "dslc.cli", *args], capture_output=True,
                          text=True, check=False)
    if proc.returncode:
        sys.exit(f"dslc {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def train(out: Path, backend: str, label: np.ndarray) -> tuple[float, float]:
    run = out / f"run_{backend}"
    dslc("train", str(SPEC), *HPARAMS, "--data", str(out / "karate.npz"), "--out", str(run),
         "--epochs", str(EPOCHS), "--backend", backend)
    last = [line for line in (run / "metrics.jsonl").read_text().splitlines() if line][-1]
    val = float(json.loads(last)["val_accuracy"])
    dslc("run", str(SPEC), *HPARAMS, "--params", str(run / "params.npz"), "--inputs",
         str(out / "inputs.npz"), "-o", str(run / "logits.npz"))
    with np.load(run / "logits.npz") as f:
        pred = f["logits"].argmax(1)
    return val, float(np.mean(pred == label))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", nargs="?", default="out/karate")
    p.add_argument("--backend", choices=("numpy", "torch", "both"), default="both")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    label = karate(out)
    ok = True
    for backend in (("numpy", "torch") if args.backend == "both" else (args.backend,)):
        val, every = train(out, backend, label)
        print(f"{backend}: held-out node accuracy {val:.0%}, all 34 nodes {every:.0%}")
        ok = ok and every >= 0.9
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

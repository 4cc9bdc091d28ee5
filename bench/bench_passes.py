"""Benchmark of the optimiser (issue: passes): IR node counts per zoo spec at -O0/-O1/-O2, and
the -O2 generated ResNet-18 (batch norm folded) against -O0 in eval mode at batch 16.

Run on demand: `.venv/bin/python bench/bench_passes.py [--batch 16] [--repeats 5]`.
Prints ratios against the -O0 baseline measured in the same run; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dslc  # noqa: E402
from dslc.sources import load_program  # noqa: E402


def node_counts() -> None:
    print(f"{'spec':38} {'-O0':>6} {'-O1':>6} {'-O2':>6}")
    totals = [0, 0, 0]
    for path in sorted((ROOT / "specs").glob("*.dl")):
        try:
            models = [d.name for d in load_program(path).models_in(str(path))]
        except dslc.DslcError:
            continue
        for m in models:
            counts = []
            for level in (0, 1, 2):
                try:
                    counts.append(len(dslc.load(path, model=m, opt_level=level).graph.nodes))
                except dslc.DslcError:
                    counts.append(0)
            totals = [t + c for t, c in zip(totals, counts)]
            print(f"{path.stem + ':' + m:38} {counts[0]:6} {counts[1]:6} {counts[2]:6}")
    print(f"{'total':38} {totals[0]:6} {totals[1]:6} {totals[2]:6}")


def resnet_speed(batch: int, repeats: int) -> None:
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    spec = ROOT / "specs" / "resnet18.dl"
    p0 = dslc.load(spec, opt_level=0)
    p2 = dslc.load(spec, opt_level=2)
    params = {k: torch.from_numpy(v) for k, v in p0.init_params(0).items()}
    x = torch.randn(batch, 3, 224, 224)
    times = {}
    for name, prog in (("-O0", p0), ("-O2", p2)):
        m = prog.to_torch()()
        m.load_state_dict(params, strict=True)  # the -O0 parameter file, both times
        m.eval()
        with torch.no_grad():
            m(x=x)
            runs = []
            for _ in range(repeats):
                t = time.perf_counter()
                m(x=x)
                runs.append(time.perf_counter() - t)
        times[name] = statistics.median(runs)
    ratio = times["-O2"] / times["-O0"]
    print(f"\nResNet-18 eval, batch {batch}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, median of {repeats}")
    print(f"  -O0 {times['-O0'] * 1000:8.1f} ms")
    print(f"  -O2 {times['-O2'] * 1000:8.1f} ms   ratio -O2/-O0 = {ratio:.3f} "
          f"({(1 - ratio) * 100:.1f}% faster)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip-counts", action="store_true")
    args = ap.parse_args()
    if not args.skip_counts:
        node_counts()
    resnet_speed(args.batch, args.repeats)


if __name__ == "__main__":
    main()

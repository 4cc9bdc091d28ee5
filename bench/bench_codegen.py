"""The generated PyTorch module against a hand-written one of the same architecture, same
process, same weights and inputs (eval, no_grad, CPU): ResNet-18 at batch 16 and VGG-16 at
batch 1, each against a torchvision-layout reference (tests/specs/test_torchvision_layouts.py,
torchvision itself does not load beside the CPU torch build). Target: ratio <= 1.02.

    .venv/bin/python bench/bench_codegen.py [--blocks 5] [--runs 5] [--threads N]

With --threads 1 the CPU time of each run is reported too: on a machine shared with other
jobs it is the work done, which the wall time is not.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import dslc  # noqa: E402
from bench.harness import timed  # noqa: E402


def compare(name: str, reference, batch: int, size: int, blocks: int, runs: int) -> None:
    import torch

    from tests.helpers import assert_close

    torch.manual_seed(0)
    ref = reference().eval()
    prog = dslc.load(ROOT / "specs" / f"{name}.dl",
                     hparams={"size": size} if name == "resnet18" else None)
    gen = prog.to_torch()()
    gen.load_state_dict(ref.state_dict(), strict=True)
    gen.eval()
    x = torch.randn(batch, 3, size, size)
    with torch.no_grad():
        assert_close(gen(x).numpy(), ref(x).numpy(), what=name)
        ref(x)
        gen(x)
        ref_ms, gen_ms, ref_cpu, gen_cpu = [], [], [], []
        # Runs in adjacent pairs, which one first alternating: both modules see the same drift
        # of a shared machine, and the median of the pairs' ratios discounts a slow moment.
        for k in range(blocks * runs):
            first, second = (ref, gen) if k % 2 == 0 else (gen, ref)
            cpu: list[float] = []
            a, b = timed(lambda: first(x), 1, cpu)[0], timed(lambda: second(x), 1, cpu)[0]
            ref_ms.append(a if first is ref else b)
            gen_ms.append(b if first is ref else a)
            ref_cpu.append(cpu[0] if first is ref else cpu[1])
            gen_cpu.append(cpu[1] if first is ref else cpu[0])
    r, g = statistics.median(ref_ms), statistics.median(gen_ms)
    paired = statistics.median(gm / rm for gm, rm in zip(gen_ms, ref_ms))
    print(f"{name:9s} b{batch:<3d} hand-written {r:8.1f} ms  generated {g:8.1f} ms  "
          f"ratio {g / r:.3f}  paired {paired:.3f}  (best {min(gen_ms) / min(ref_ms):.3f})"
          + (f"  cpu ratio {statistics.median(gen_cpu) / statistics.median(ref_cpu):.3f}"
             if torch.get_num_threads() == 1 else ""))


def main() -> None:
    from tests.specs.test_torchvision_layouts import VGG16, ResNet18

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch's intra-op threads (default: torch's own choice)")
    args = ap.parse_args()
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    compare("resnet18", ResNet18, 16, 224, args.blocks, args.runs)
    compare("vgg16", VGG16, 1, 224, args.blocks, args.runs)


if __name__ == "__main__":
    main()

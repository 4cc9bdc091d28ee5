"""Benchmark (run on demand, never in the test suite): onnxruntime on the model `dslc export`
writes against the generated PyTorch module, eager CPU, same process, same thread count, same
weights and inputs.

    .venv/bin/python bench/onnx_vs_torch.py [--runs N] [--blocks N] [--only vgg16_b1,...]

Prints median milliseconds per forward pass and the ratio onnxruntime/torch for VGG-16
(batch 1) and ResNet-18 (batch 1 and 16) at 224x224, at -O2 (batch norm folded, as a
deployment export would be). onnxruntime is the deployment baseline a user compares against.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dslc  # noqa: E402
from bench.harness import ROOT, blas_threads, timed  # noqa: E402

# name, spec file, model, bindings
CASES = (("vgg16_b1", "vgg16.dl", None, {"B": 1}),
         ("resnet18_b1", "resnet18.dl", None, {"B": 1}),
         ("resnet18_b16", "resnet18.dl", None, {"B": 16}))


def bench_case(path: str, model: str | None, bind: dict, runs: int, warmup: int,
               blocks: int, threads: int) -> tuple:
    """(onnxruntime median ms, torch median ms, ort min, torch min, max relative error)."""
    import onnxruntime as ort
    import torch

    from dslc.backends.onnx_export import export_bytes

    prog = dslc.load(ROOT / "specs" / path, model, opt_level=2)
    params = prog.init_params(0)
    inputs = prog.random_inputs(0, bind)
    module = prog.to_torch()()
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in params.items()},
                           strict=True)
    module.eval()
    args = prog.torch_arg_names()
    tin = {args[k]: torch.from_numpy(v.copy()) for k, v in inputs.items()}
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(export_bytes(prog, params), opts,
                                providers=["CPUExecutionProvider"])

    def run_ort():
        return sess.run(None, inputs)

    def run_torch():
        with torch.no_grad():
            return module(**tin)

    got = run_ort()[0]
    want = run_torch()
    want = (want[0] if isinstance(want, tuple) else want).numpy()
    err = float(np.abs(got - want).max() / max(1.0, float(np.abs(want).max())))
    # Alternating blocks, never call by call: each library's worker threads spin after a call.
    o_ms, t_ms = [], []
    for _ in range(blocks):
        for _ in range(warmup):
            run_ort()
        o_ms += timed(run_ort, runs)
        time.sleep(0.2)
        for _ in range(warmup):
            run_torch()
        t_ms += timed(run_torch, runs)
        time.sleep(0.2)
    return statistics.median(o_ms), statistics.median(t_ms), min(o_ms), min(t_ms), err


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="timed runs per block")
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--only", default="", help="comma-separated case names")
    args = ap.parse_args()
    import onnxruntime as ort
    import torch

    threads = blas_threads()
    torch.set_num_threads(threads)
    print(f"threads: {threads}; torch {torch.__version__}, onnxruntime {ort.__version__}")
    width = max(len(c[0]) for c in CASES) + 1
    print(f"{'case':<{width}} {'ort ms':>9} {'torch ms':>9} {'ratio':>6} {'min ratio':>9} "
          f"{'max rel err':>11}")
    only = set(filter(None, args.only.split(",")))
    for name, path, model, bind in CASES:
        if only and name not in only:
            continue
        o_med, t_med, o_min, t_min, err = bench_case(path, model, bind, args.runs, args.warmup,
                                                     args.blocks, threads)
        print(f"{name:<{width}} {o_med:9.2f} {t_med:9.2f} {o_med / t_med:6.2f} "
              f"{o_min / t_min:9.2f} {err:11.1e}", flush=True)


if __name__ == "__main__":
    main()

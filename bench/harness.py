"""Shared benchmark harness: the NumPy interpreter against the generated PyTorch module,
eager CPU, same process, same thread count, same weights and inputs. Used by bench_*.py."""

from __future__ import annotations

import argparse
import ctypes
import glob
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import dslc  # noqa: E402


def blas_threads() -> int:
    """Threads NumPy's OpenBLAS uses (threadpoolctl when installed, else ask OpenBLAS)."""
    try:
        from threadpoolctl import threadpool_info

        for info in threadpool_info():
            if info.get("internal_api") == "openblas":
                return int(info["num_threads"])
    except ImportError:
        pass
    libs = glob.glob(os.path.join(os.path.dirname(np.__file__), "..", "numpy.libs", "*openblas*"))
    for path in libs:
        lib = ctypes.CDLL(path)
        for fn in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                   "openblas_get_num_threads"):
            if hasattr(lib, fn):
                return int(getattr(lib, fn)())
    return os.cpu_count() or 1


def timed(fn, runs: int, cpu: list[float] | None = None) -> list[float]:
    """Wall milliseconds of each run; with `cpu`, the process's CPU milliseconds (user +
    system, all threads) of each run are appended to it: on a busy machine, with one thread,
    that is the work done, which the wall time is not."""
    out = []
    for _ in range(runs):
        c0 = time.process_time()
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
        if cpu is not None:
            cpu.append((time.process_time() - c0) * 1e3)
    return out


def prepare(path: str, model: str | None, bind: dict) -> tuple:
    """(run_np, run_torch, max relative error): both sides with the same weights and inputs,
    checked to give the same answer first (a benchmark of a wrong kernel is worthless)."""
    import torch

    prog = dslc.load(ROOT / "specs" / path, model)
    params = prog.init_params(0)
    inputs = prog.random_inputs(0, bind)
    module = prog.to_torch()()
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in params.items()},
                           strict=True)
    module.eval()
    args = prog.torch_arg_names()
    tin = {args[k]: torch.from_numpy(v.copy()) for k, v in inputs.items()}

    def run_np():
        return prog.run(inputs, params, bind=bind)

    def run_torch():
        with torch.no_grad():
            return module(**tin)

    got = next(iter(run_np().values()))
    want = run_torch()
    want = (want[0] if isinstance(want, tuple) else want).numpy()
    err = float(np.abs(got - want).max() / max(1.0, float(np.abs(want).max())))
    return run_np, run_torch, err


def compare(run_np, run_torch, runs: int, warmup: int, blocks: int = 5) -> tuple:
    """(numpy median ms, torch median ms, numpy min, torch min, median CPU ratio
    numpy/torch), timed in blocks."""
    # Timed in blocks, never interleaved call by call: OpenBLAS's and torch's worker threads
    # spin for a while after each call and would steal the cores from the other library.
    # Several alternating blocks, so that both libraries see the same drift of a shared
    # machine (one library's block alone can be 30% off on our 2-core VMs).
    np_ms, t_ms, np_cpu, t_cpu = [], [], [], []
    for _ in range(blocks):
        for _ in range(warmup):
            run_np()
        np_ms += timed(run_np, runs, np_cpu)
        time.sleep(0.2)
        for _ in range(warmup):
            run_torch()
        t_ms += timed(run_torch, runs, t_cpu)
        time.sleep(0.2)
    return (statistics.median(np_ms), statistics.median(t_ms), min(np_ms), min(t_ms),
            statistics.median(np_cpu) / statistics.median(t_cpu))


def bench_case(path: str, model: str | None, bind: dict, runs: int, warmup: int,
               blocks: int = 5) -> tuple:
    """(numpy median ms, torch median ms, numpy min, torch min, CPU ratio, max relative
    error)."""
    run_np, run_torch, err = prepare(path, model, bind)
    return compare(run_np, run_torch, runs, warmup, blocks) + (err,)


def main(doc: str, cases, runs: int = 5, warmup: int = 1, note: str = "") -> None:
    """Command line of every bench script: `--runs`, `--warmup`, `--only`; prints a table of
    ratios numpy/torch. `cases` holds (name, spec file, model or None, bindings)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--runs", type=int, default=runs, help="timed runs per block")
    ap.add_argument("--blocks", type=int, default=5,
                    help="alternating numpy / torch blocks (medians are over all of them)")
    ap.add_argument("--warmup", type=int, default=warmup)
    ap.add_argument("--only", default="", help="comma-separated case names")
    ap.add_argument("--no-onednn", action="store_true",
                    help="torch without oneDNN (torch.backends.mkldnn off): its own ATen "
                         "kernels, e.g. an LSTM as separate GEMMs and pointwise ops")
    args = ap.parse_args()
    import torch

    threads = blas_threads()
    torch.set_num_threads(threads)
    if args.no_onednn:
        torch.backends.mkldnn.enabled = False
    print(f"threads: numpy BLAS {threads}, torch {torch.get_num_threads()}; "
          f"torch {torch.__version__}, numpy {np.__version__}{note}"
          f"{'; torch without oneDNN' if args.no_onednn else ''}")
    width = max(len(c[0]) for c in cases) + 1
    print(f"{'case':<{width}} {'numpy ms':>9} {'torch ms':>9} {'ratio':>6} {'min ratio':>9} "
          f"{'cpu ratio':>9} {'max rel err':>11}")
    only = set(filter(None, args.only.split(",")))
    for name, path, model, bind in cases:
        if only and name not in only:
            continue
        np_med, t_med, np_min, t_min, cpu, err = bench_case(path, model, bind, args.runs,
                                                            args.warmup, args.blocks)
        print(f"{name:<{width}} {np_med:9.2f} {t_med:9.2f} {np_med / t_med:6.2f} "
              f"{np_min / t_min:9.2f} {cpu:9.2f} {err:11.1e}", flush=True)

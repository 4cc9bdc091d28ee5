"""Benchmark (run on demand, never in the test suite): one training step on the NumPy
interpreter (forward, the backward walk of dslc/autodiff.py, a plain SGD update written
inline) against the generated PyTorch module's eager training step, same process, same
weights, inputs and thread count (2: `--threads`).

    .venv/bin/python bench/bench_train_numpy.py [--runs N] [--blocks N] [--only lenet5,lstm]

Both steps differentiate the same scalar, sum(output * C) over every float output with one
fixed random C each (what a loss hands back is such a C; the loss's own cost is nothing
beside the model's), in training mode (batch statistics), dropout at p = 0 so that both sides
compute the same thing (their random streams differ), then update every parameter by
p -= lr * grad. Before timing, one step's gradients are compared (float32, relative to each
gradient's largest entry). Targets: numpy/torch <= 2.0 for lenet5 (batch 64), mlp (batch 64),
gcn (Cora-sized: 2,708 nodes, 10,556 edges) and lstm (B=8, T=100); <= 2.5 for resnet18
(batch 16, 64x64) and transformer_encoder (B=8, T=128).

Memory, per case (no allocator tracing: it would slow both sides):
- numpy saved: the bytes the tape holds when the forward ends (distinct buffers of the kept
  inputs, outputs and ctx.saved of every node, views counted once), measured through
  autodiff's probe; numpy peak: the largest such figure over the whole step, cotangents and
  the arrays a vjp has in hand included (measured), and `dslc summary`'s static figure.
- torch saved: the bytes of the distinct storages autograd saves for backward, collected by
  torch.autograd.graph.saved_tensors_hooks during the forward, parameters excluded (they are
  saved by reference and exist anyway), i.e. torch's counterpart of "numpy saved".
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
from bench.harness import blas_threads, timed  # noqa: E402
from dslc import autodiff, grad_memory  # noqa: E402
from dslc import dims as D  # noqa: E402
from dslc.summary import DTYPE_BYTES  # noqa: E402

LR = 1e-4
CORA = {"N": 2708, "E": 10556}
# name, spec file, model, hparams, bindings, target ratio
CASES = (
    ("lenet5", "lenet5.dl", None, {}, {"B": 64}, 2.0),
    ("mlp", "mlp.dl", None, {}, {"B": 64}, 2.0),
    ("gcn", "gcn.dl", None, {"p": 0.0}, CORA, 2.0),
    ("lstm", "lstm.dl", "lstm_net", {}, {"B": 8, "T": 100}, 2.0),
    ("resnet18", "resnet18.dl", None, {"size": 64}, {"B": 16}, 2.5),
    ("transformer_encoder", "transformer_encoder.dl", None, {"p": 0.0},
     {"B": 8, "T": 128}, 2.5),
)


def owner(a: np.ndarray) -> np.ndarray:
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


class Meter:
    """autodiff's probe: bytes of the distinct buffers the walk holds, at the end of the
    forward and at its widest point."""

    def __init__(self, forward_nodes: int) -> None:
        self.forward_nodes = forward_nodes
        self.calls = 0
        self.saved = 0
        self.peak = 0

    def __call__(self, tape, cot, extra) -> None:
        held: dict[int, int] = {}
        arrays = [v for e in (tape.ins, tape.outs) for vs in e.values() for v in vs]
        arrays += [v for c in tape.ctxs.values() for v in c.saved.values()]
        arrays += [v for b in tape.seg_ins.values() for v in b.values()]
        arrays += [*tape.outputs.values(), *cot.values(), *extra]
        while arrays:
            a = arrays.pop()
            if isinstance(a, np.ndarray):
                base = owner(a)
                held[id(base)] = base.nbytes
            elif isinstance(a, (tuple, list)):  # a kernel's saved group (an LSTM's steps)
                arrays.extend(a)
        total = sum(held.values())
        self.calls += 1
        if self.calls == self.forward_nodes:  # the last forward instant: outputs only live
            self.saved = total
        self.peak = max(self.peak, total)


def setup(path: str, model: str | None, hparams: dict, bind: dict, checkpoint: bool):
    import torch

    prog = dslc.load(ROOT / "specs" / path, model, hparams=hparams)
    g = prog.source
    params = prog.init_params(0)
    inputs = prog.random_inputs(0, bind)
    rng = np.random.default_rng(1)
    cot = {}
    for name, ref in g.outputs:
        t = g.type_of(ref)
        if t.is_float:
            cot[name] = rng.standard_normal([D.evaluate(d, bind) for d in t.shape]).astype(
                np.float32)

    np_params = {k: v.copy() for k, v in params.items()}

    def step_np():
        grads, _ = autodiff.grad(g, inputs, np_params, cot, train=True, bindings=bind,
                                 checkpoint_blocks=checkpoint)
        for key, gr in grads.items():
            np_params[key] -= LR * gr  # plain SGD, in place
        return grads

    module = prog.to_torch()()
    module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in params.items()},
                           strict=True)
    module.train()
    args = prog.torch_arg_names()
    tin = {args[k]: torch.from_numpy(v.copy()) for k, v in inputs.items()}
    names = [n for n, _ in g.outputs]
    tcot = {n: torch.from_numpy(c) for n, c in cot.items()}
    tparams = list(module.parameters())

    def step_torch():
        out = module(**tin)
        out = out if isinstance(out, tuple) else (out,)
        total = sum((o * tcot[n]).sum() for n, o in zip(names, out) if n in tcot)
        total.backward()
        with torch.no_grad():
            for p in tparams:
                p -= LR * p.grad
                p.grad = None

    return prog, g, params, inputs, cot, module, tin, names, tcot, step_np, step_torch


def check(prog, g, params, inputs, cot, module, tin, names, tcot, bind) -> float:
    """The largest gradient difference, relative to each gradient's largest entry."""
    ours, _ = autodiff.grad(g, inputs, {k: v.copy() for k, v in params.items()}, cot,
                            train=True, bindings=bind)
    out = module(**tin)
    out = out if isinstance(out, tuple) else (out,)
    sum((o * tcot[n]).sum() for n, o in zip(names, out) if n in tcot).backward()
    worst = 0.0
    for key, p in module.named_parameters():
        want = p.grad.numpy()
        scale = max(float(np.abs(want).max()), 1e-6)
        worst = max(worst, float(np.abs(ours[key] - want).max()) / scale)
        p.grad = None
    return worst


def memory(g, inputs, params, cot, module, tin, names, tcot, bind, checkpoint: bool) -> dict:
    import torch

    meter = Meter(len(g.order()))
    autodiff.grad(g, inputs, {k: v.copy() for k, v in params.items()}, cot, train=True,
                  bindings=bind, checkpoint_blocks=checkpoint, probe=meter)

    def size_of(ref):
        t = g.type_of(ref)
        if g.nodes[ref[0]].op == "const":
            return 0
        return int(np.prod([D.evaluate(d, bind) for d in t.shape])) * DTYPE_BYTES[t.dtype]

    def extra_of(node):  # what a kernel keeps for its vjp (Op.vjp_keeps)
        n = D.evaluate(grad_memory.kept_elements(g, node), bind)
        return n * DTYPE_BYTES[node.types[0].dtype]

    static = grad_memory.training_peak(g, size_of, checkpoint=checkpoint, extra_of=extra_of)
    param_storages = {p.untyped_storage().data_ptr() for p in module.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in param_storages:
            saved[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = module(**tin)
    out = out if isinstance(out, tuple) else (out,)
    sum((o * tcot[n]).sum() for n, o in zip(names, out) if n in tcot).backward()
    for p in module.parameters():
        p.grad = None
    return {"np_saved": meter.saved, "np_peak": meter.peak, "static": static,
            "torch_saved": sum(saved.values())}


def mib(n: int) -> str:
    return f"{n / 2**20:7.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="timed steps per block")
    ap.add_argument("--blocks", type=int, default=3, help="alternating numpy/torch blocks")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated case names")
    ap.add_argument("--checkpoint-blocks", action="store_true",
                    help="the NumPy step recomputes each block in the backward walk")
    args = ap.parse_args()
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    limiter = threadpool_limits(args.threads, user_api="blas")
    print(f"threads: numpy BLAS {blas_threads()}, torch {torch.get_num_threads()}; "
          f"torch {torch.__version__}, numpy {np.__version__}; train mode, SGD lr={LR}"
          + ("; numpy with --checkpoint-blocks" if args.checkpoint_blocks else ""))
    print(f"{'case':<20} {'numpy ms':>9} {'torch ms':>9} {'ratio':>6} {'cpu ratio':>9} "
          f"{'target':>6} {'grad err':>8} | MiB: {'np saved':>8} {'np peak':>8} "
          f"{'static':>7} {'torch saved':>11}")
    only = set(filter(None, args.only.split(",")))
    for name, path, model, hparams, bind, target in CASES:
        if only and name not in only:
            continue
        parts = setup(path, model, hparams, bind, args.checkpoint_blocks)
        prog, g, params, inputs, cot, module, tin, names, tcot, step_np, step_torch = parts
        err = check(prog, g, params, inputs, cot, module, tin, names, tcot, bind)
        mem = memory(g, inputs, params, cot, module, tin, names, tcot, bind,
                     args.checkpoint_blocks)
        np_ms, t_ms, np_cpu, t_cpu = [], [], [], []
        for _ in range(args.blocks):
            for _ in range(args.warmup):
                step_np()
            np_ms += timed(step_np, args.runs, np_cpu)
            time.sleep(0.2)
            for _ in range(args.warmup):
                step_torch()
            t_ms += timed(step_torch, args.runs, t_cpu)
            time.sleep(0.2)
        a, b = statistics.median(np_ms), statistics.median(t_ms)
        cpu = statistics.median(np_cpu) / statistics.median(t_cpu)
        print(f"{name:<20} {a:9.1f} {b:9.1f} {a / b:6.2f} {cpu:9.2f} {target:6.1f} "
              f"{err:8.1e} | {'':5}{mib(mem['np_saved']):>8} {mib(mem['np_peak']):>8} "
              f"{mib(mem['static']):>7} {mib(mem['torch_saved']):>11}", flush=True)
    del limiter


if __name__ == "__main__":
    main()

"""Gradient checking for `dslc grad --check`: the backward walk's gradients (dslc/autodiff.py)
against central finite differences of the forward, in float64, on a random subset of
coordinates of every parameter."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dslc import autodiff
from dslc.ir import Graph

EPS = 1e-6  # central-difference step, in float64


@dataclass
class CheckRow:
    key: str
    checked: int  # coordinates compared
    worst: float  # the largest relative error among them
    analytic: float  # the gradient and the estimate at that coordinate
    numeric: float


def relative_error(a: float, b: float) -> float:
    """|a - b| relative to the larger magnitude; gradients below 1e-8 count as 1e-8 so that
    two near-zero numbers are not judged on their rounding noise."""
    return abs(a - b) / max(abs(a), abs(b), 1e-8)


def check(graph: Graph, inputs: dict[str, np.ndarray], params: dict[str, np.ndarray],
          loss: str | dict[str, np.ndarray] | None, train: bool = False, seed: int = 0,
          bindings: dict[str, int] | None = None, points: int = 5,
          ) -> tuple[dict[str, np.ndarray], list[CheckRow]]:
    """(float64 gradients, one row per parameter). Each forward re-runs with the same seed,
    so random ops draw the same masks; buffers updated in training do not leak between runs."""
    if loss is None:
        loss = autodiff.default_loss(graph)
    grads, _ = autodiff.grad(graph, inputs, {k: v.copy() for k, v in params.items()}, loss,
                             train=train, seed=seed, bindings=bindings, float64=True)
    wide = {k: autodiff.widen(v) for k, v in params.items()}

    def objective(ps: dict[str, np.ndarray]) -> float:
        tape = autodiff.forward(graph, inputs, {k: v.copy() for k, v in ps.items()}, train,
                                seed, bindings, float64=True)
        seeds = autodiff.output_seeds(graph, tape.outputs, loss)
        refs = dict(graph.outputs)
        total = 0.0
        for name, ref in refs.items():
            if ref in seeds:
                total += float(np.sum(tape.outputs[name].astype(np.float64) * seeds[ref]))
        return total

    rng = np.random.default_rng(seed)
    rows = []
    for key in sorted(k for k in grads if k in params):
        g = grads[key]
        x = wide[key]
        n = min(points, x.size)
        row = CheckRow(key, n, 0.0, 0.0, 0.0)
        for flat in sorted(rng.choice(x.size, size=n, replace=False)) if n else []:
            idx = np.unravel_index(flat, x.shape)
            values = []
            for step in (EPS, -EPS):
                ps = dict(wide)
                ps[key] = x.copy()
                ps[key][idx] += step
                values.append(objective(ps))
            numeric = (values[0] - values[1]) / (2 * EPS)
            err = relative_error(float(g[idx]), numeric)
            if err >= row.worst:
                row.worst, row.analytic, row.numeric = err, float(g[idx]), numeric
        rows.append(row)
    return grads, rows


def format_rows(rows: list[CheckRow], tol: float) -> str:
    """The table `dslc grad --check` prints."""
    width = max([len("parameter")] + [len(r.key) for r in rows])
    lines = [f"{'parameter':<{width}}  checked  worst rel. error  analytic        numeric"]
    for r in rows:
        flag = "" if r.worst <= tol else "  FAIL"
        lines.append(f"{r.key:<{width}}  {r.checked:>7}  {r.worst:>15.3e}  {r.analytic:>14.7g}"
                     f"  {r.numeric:>14.7g}{flag}")
    return "\n".join(lines)

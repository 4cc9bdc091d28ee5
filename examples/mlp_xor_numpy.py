"""Example: fit the 2-2-1 XOR network of specs/mlp_xor.dl on NumPy alone, without PyTorch.

What it shows
-------------
- `dslc.load` checks a spec and gives a `Program`; `prog.init_params(seed)` gives its parameters
  as a plain dict of NumPy arrays, keyed like the generated PyTorch module's `state_dict`
  (`hidden.weight`, `hidden.bias`, `out.weight`, `out.bias`: 9 numbers in all).
- `prog.run({"x": ...}, params)` runs the model in dslc's NumPy interpreter. The interpreter
  has no autodiff, so the script fits the 9 numbers with a derivative-free method: damped
  Gauss-Newton (Levenberg-Marquardt) on the squared error, with the Jacobian taken by finite
  differences, i.e. by running the model once per parameter with that parameter nudged.
- It prints the XOR truth table the fitted network computes, and exits non-zero unless all
  four rows are right. torch is never imported (checked at the end).

Run it:  python examples/mlp_xor_numpy.py     (a second or two on one CPU core)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import dslc

SPEC = Path(__file__).resolve().parents[1] / "specs" / "mlp_xor.dl"
X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
T = np.array([0, 1, 1, 0], dtype=np.float64)  # XOR of the two columns


def flatten(params: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([params[k].ravel() for k in sorted(params)]).astype(np.float64)


def unflatten(theta: np.ndarray, like: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out, i = {}, 0
    for k in sorted(like):
        n = like[k].size
        out[k] = theta[i:i + n].reshape(like[k].shape).astype(like[k].dtype)
        i += n
    return out


def fit(prog: dslc.Program, seed: int, iters: int = 200) -> dict[str, np.ndarray] | None:
    """Levenberg-Marquardt from the spec's default initialisation; None if it gets stuck."""
    like = prog.init_params(seed)
    theta = flatten(like)

    def residual(th: np.ndarray) -> np.ndarray:
        y = prog.run({"x": X}, unflatten(th, like))["y"]
        return y.reshape(-1).astype(np.float64) - T

    r = residual(theta)
    lam, h = 1e-2, 1e-3
    for _ in range(iters):
        if np.abs(r).max() < 0.1:  # every output on the right side of 0.5, with margin
            return unflatten(theta, like)
        # One extra forward run per parameter: column j of the 4x9 Jacobian.
        jac = np.stack([(residual(theta + h * e) - r) / h for e in np.eye(theta.size)], axis=1)
        while lam < 1e8:
            step = np.linalg.solve(jac.T @ jac + lam * np.eye(theta.size), -jac.T @ r)
            r_new = residual(theta + step)
            if r_new @ r_new < r @ r:
                theta, r, lam = theta + step, r_new, max(lam / 3, 1e-6)
                break
            lam *= 3  # a worse fit: take a shorter, more gradient-like step
        else:
            return None  # no step improves: a local minimum
    return None


def main() -> int:
    prog = dslc.load(SPEC)
    print(f"model {prog.name}: parameters", {k: list(v.shape)
                                            for k, v in prog.init_params(0).items()})
    params = None
    for seed in range(10):  # XOR has local minima; a fresh initialisation gets out of them
        params = fit(prog, seed)
        if params is not None:
            print(f"fitted from seed {seed}")
            break
    if params is None:
        print("did not converge")
        return 1
    y = prog.run({"x": X}, params)["y"].reshape(-1)
    print(" x1  x2 | xor | network")
    correct = 0
    for (a, b), t, p in zip(X.astype(int), T.astype(int), y):
        pred = int(p > 0.5)
        correct += pred == t
        print(f"  {a}   {b} |  {t}  | {p:.3f} -> {pred}")
    print(f"accuracy: {correct}/4")
    assert "torch" not in sys.modules, "this example must run on NumPy alone"
    print("torch imported: no")
    return 0 if correct == 4 else 1


if __name__ == "__main__":
    sys.exit(main())

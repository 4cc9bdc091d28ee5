"""Helpers for the pointwise op tests (activations, element-wise math, cumsum/topk): a one-op
program written in the language, run on NumPy and as generated PyTorch, and the edge values
both must agree on."""

from __future__ import annotations

import numpy as np
import pytest

import dslc
from dslc.diagnostics import Diagnostic, DslcError
from dslc.types import dtype_of_array
from tests.helpers import torch_outputs

# Values where pointwise kernels differ if they differ anywhere: infinities, NaN, signed zeros,
# the bends of the piecewise ops (-3, 0, 3, 6), softplus's threshold (20), overflow of exp
# (89 in float32, 710 in float64) and the largest finite float32.
EDGES = [-np.inf, -3e38, -1e4, -710.0, -100.0, -89.0, -20.0, -6.0, -3.0, -2.5, -1.0, -1e-8,
         -0.0, 0.0, 1e-8, 0.5, 1.0, 2.5, 3.0, 6.0, 6.5, 19.999, 20.0, 20.001, 89.0, 100.0,
         710.0, 1e4, 3e38, np.inf, np.nan]

DTYPES = {"f16": np.float16, "f32": np.float32, "f64": np.float64}


def edge_values(dtype: str, n_random: int = 200, scale: float = 8.0) -> np.ndarray:
    """The edge values in `dtype` (too large ones become inf in f16) and random ones."""
    rng = np.random.default_rng(0)
    with np.errstate(over="ignore"):
        fixed = np.array(EDGES, dtype=np.float64).astype(DTYPES[dtype])
    rand = (rng.standard_normal(n_random) * scale).astype(DTYPES[dtype])
    return np.concatenate([fixed, rand])


def one_op(expr: str, *arrays: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`output y = expr` over inputs `x` (or x0, x1, ...) of the arrays' dtypes and shapes:
    the NumPy interpreter's result and the generated PyTorch module's."""
    names = ["x"] if len(arrays) == 1 else [f"x{i}" for i in range(len(arrays))]
    decls = "".join(f"  input {n}: {dtype_of_array(a)}[{', '.join(map(str, a.shape))}]\n"
                    for n, a in zip(names, arrays))
    prog = dslc.load("t.dl", text=f"model t {{\n{decls}  output y = {expr}\n}}\n")
    inputs = dict(zip(names, arrays))
    got = prog.run(inputs)["y"]
    t_out, _ = torch_outputs(prog, inputs, {})
    return got, t_out["y"]


def assert_matches(got: np.ndarray, want: np.ndarray, rtol: float = 0.0,
                   atol: float = 0.0) -> None:
    """Same dtype and shape, NaN and infinities in the same places, the rest within rtol/atol
    (exactly equal by default)."""
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got.astype(np.float64) if got.dtype.kind == "f" else got,
                               want.astype(np.float64) if want.dtype.kind == "f" else want,
                               rtol=rtol, atol=atol, equal_nan=True)


def load_error(text: str) -> Diagnostic:
    """The first diagnostic of a spec that must not check."""
    with pytest.raises(DslcError) as exc:
        dslc.load("t.dl", text=text)
    return exc.value.diagnostics[0]

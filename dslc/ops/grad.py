"""Helpers the ops' vector-Jacobian products share (dslc/autodiff.py calls the VJPs)."""

from __future__ import annotations

import numpy as np


def is_float(x: np.ndarray) -> bool:
    return np.issubdtype(np.asarray(x).dtype, np.floating)


def unbroadcast(g: np.ndarray, x: np.ndarray) -> np.ndarray | None:
    """The cotangent of an input that was broadcast to g's shape: summed over the axes
    broadcasting added or stretched, in x's dtype; None for an integer or bool input (no
    gradient flows into it)."""
    if not is_float(x):
        return None
    g = np.asarray(g)
    shape = np.shape(x)
    extra = g.ndim - len(shape)
    if extra > 0:
        g = g.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if stretched:
        g = g.sum(axis=stretched, keepdims=True)
    return np.asarray(g, dtype=np.asarray(x).dtype).reshape(shape)

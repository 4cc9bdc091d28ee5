"""Helpers the recurrent ops (ops/recurrent.py) and their vjps (ops/recurrent_grad.py) share:
directions, parameter-key suffixes, sequence lengths."""

from __future__ import annotations

from typing import Any

import numpy as np

from dslc.ops.base import ShapeError


def dirs(a: Any) -> int:
    return 2 if a.bidirectional else 1


def suffixes(a: Any) -> tuple[str, ...]:
    return ("", "_reverse") if a.bidirectional else ("",)


def seq_lengths(ins, x: np.ndarray) -> np.ndarray | None:
    """The batch's sequence lengths (an integer last input), checked as torch checks them."""
    if len(ins) < 2 or not np.issubdtype(ins[-1].dtype, np.integer):
        return None
    lengths = np.asarray(ins[-1]).astype(np.int64)
    steps = x.shape[1]
    if lengths.size and (lengths.min() < 1 or lengths.max() > steps):
        # A ShapeError, so the interpreter reports it at the op's statement (E0507).
        bad = [int(v) for v in lengths if not 1 <= v <= steps][:8]
        raise ShapeError("sequence lengths must lie in [1, T] (torch's packed sequences take "
                         "no empty sequence)", expected=f"1 <= length <= {steps}",
                         found=", ".join(map(str, bad)), arg=len(ins) - 1)
    return lengths

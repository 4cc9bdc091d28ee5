"""Scratch buffers for the NumPy kernels, owned by one interpreter run (dslc/interp.py puts
one in every RunCtx of the run): the big temporaries a kernel needs only while it runs (the
padded window and the patch block of a conv) are taken from here, reused from op to op.

Why: a conv at batch 16 needs tens of MB of such temporaries. Allocated afresh by every op,
each one went through glibc's malloc, whose handling of big blocks (mmap'ed and handed back,
or kept on the heap) depends on what the process freed before: after the generated torch
module had run, ResNet-18 at batch 16 was bimodal (504 or 682 ms). Taken from the run's own
buffers, the kernels allocate these once per run whatever ran before, and the process's
allocator settings stay the user's. Nothing outlives the run: the buffers go with it.
"""

from __future__ import annotations

import math

import numpy as np


class Scratch:
    """Named byte buffers, grown to the largest request; `take` gives a view of one. A kernel
    must not hold a view past its return, nor take the same name twice while it uses the
    first view (the second would overwrite it)."""

    def __init__(self) -> None:
        self._bufs: dict[str, np.ndarray] = {}

    def take(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """An uninitialised array of `shape` and `dtype` on buffer `name`."""
        dt = np.dtype(dtype)
        nbytes = math.prod(shape) * dt.itemsize
        buf = self._bufs.get(name)
        # The view starts at the first 64-byte boundary of the buffer, so what fits is the
        # buffer less that offset (a buffer exactly `nbytes` long was once too short).
        if buf is None or buf.nbytes - (-buf.ctypes.data) % 64 < nbytes:
            # 64 bytes of slack to align the start: a float view must not straddle lines
            buf = np.empty(nbytes + 64, np.uint8)
            self._bufs[name] = buf
        start = (-buf.ctypes.data) % 64
        return buf[start:start + nbytes].view(dt).reshape(shape)

    def nbytes(self) -> int:
        """Bytes held (for tests and benchmarks)."""
        return sum(b.nbytes for b in self._bufs.values())


def alloc(scratch: Scratch | None, name: str):
    """An allocator `shape -> array` (float32 and float64 only through `dtype`): from the
    run's scratch when there is one, else np.empty (a kernel called outside a run)."""
    def make(shape: tuple[int, ...], dtype) -> np.ndarray:
        if scratch is None:
            return np.empty(shape, dtype)
        return scratch.take(name, shape, dtype)
    return make

"""Worker threads for the NumPy kernels, owned by one interpreter run (dslc/interp.py puts one
in every RunCtx of the run, beside the scratch buffers): a kernel whose work splits into
independent pieces (the depthwise conv's row blocks, an in-place epilogue over a conv's output)
runs them on several cores.

Why: NumPy runs element-wise work on one thread, where torch splits it over all of them; on
MobileNetV2 at batch 1 half the time is such work (depthwise convs, batch norms, relu6).
NumPy's ufuncs release the GIL over their loops, so plain Python threads run them in parallel.

The threads are started only when a kernel first has enough work to split (a small model never
starts one) and are joined when the run returns: nothing is left running in the user's process
between runs, and no process-wide setting changes. How many: as many as NumPy's BLAS is told to
use (OPENBLAS_NUM_THREADS, else OMP_NUM_THREADS), else the cores this process may run on, at
most MAX_THREADS.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

# Element-wise work is bound by memory bandwidth well before 8 cores; more threads would only
# cost their start-up in every run.
MAX_THREADS = 8

# Below this many elements of work a piece is not worth a hand-over to another thread: waking a
# worker costs 20-80 us on a busy 2-core machine, about what one thread needs for ~100k
# elements of a multiply-add.
MIN_SPLIT = 1 << 17


def default_threads() -> int:
    """The thread count BLAS was given (OPENBLAS_NUM_THREADS, then OMP_NUM_THREADS, as
    OpenBLAS reads them), else the usable cores; between 1 and MAX_THREADS."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        val = os.environ.get(var, "").strip()
        if val.isdigit() and int(val) > 0:
            return min(int(val), MAX_THREADS)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_THREADS))


class Workers:
    """Runs independent pieces of a kernel on up to `threads` threads, the caller's among
    them. The pool is started on first use and joined by `close` (the run's end)."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = default_threads() if threads is None else max(1, threads)
        self._pool: ThreadPoolExecutor | None = None

    def split(self, elements: int) -> int:
        """How many threads work of `elements` elements is worth: 1 when it is small."""
        return max(1, min(self.threads, elements // MIN_SPLIT))

    def run(self, fn: Callable[[Sequence[T]], None], pieces: Sequence[T],
            threads: int | None = None) -> None:
        """fn(run) for `threads` (default: all) contiguous runs of the pieces, in parallel,
        the first run on the calling thread (fn takes a run, so that it can hold one set of
        temporaries for all its pieces). Pieces must not write the same memory. An exception
        in any run is raised here, after every run has finished."""
        n = min(len(pieces), self.threads if threads is None else threads)
        if n <= 1:
            fn(pieces)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="dslc-kernel")
        bounds = [len(pieces) * k // n for k in range(n + 1)]
        futures = [self._pool.submit(fn, pieces[bounds[k]:bounds[k + 1]]) for k in range(1, n)]
        try:
            fn(pieces[:bounds[1]])
        finally:
            for f in futures:  # wait for all, even when one failed: they write our arrays
                f.exception()
        for f in futures:
            f.result()

    def close(self) -> None:
        """Join the threads (a run's end); the object may be used again afterwards."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def serial() -> Workers:
    """One thread: for kernels called outside a run."""
    return Workers(1)

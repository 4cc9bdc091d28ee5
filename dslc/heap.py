"""Run-time support for the NumPy back end: keeps glibc's allocator from handing each freed
tensor back to the operating system, so the next op's temporaries reuse warm pages.

Why: every op allocates its outputs and temporaries afresh. With glibc's defaults, blocks
over a (dynamic) threshold are mmap'ed and the heap top is trimmed as soon as it is free, so a
run of the zoo's 2-layer LSTM took 3,200 page faults; on the 2-core VM we measure on, faults
cost ~3 µs each, 15% of that run and 8% of the 6-layer Transformer encoder's. Raising the
mmap threshold to glibc's maximum (32 MiB) and the trim threshold to 256 MiB makes the heap
keep what it has, and the faults go to zero. The cost is that a process keeps up to 256 MiB
of freed memory after a run instead of returning it.

The setting is process-wide, so the library never applies it: a user's process keeps its own
allocator settings (it made the speed of later code in the same process depend on whether
dslc ran first). The `dslc run` command applies it once, in its own process, and only under
glibc; a program that wants it calls `keep_freed_memory()` itself. `DSLC_MALLOC_DEFAULTS=1`
in the environment leaves the allocator alone.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest accepted value on 64-bit
TRIM_THRESHOLD = 256 * 1024 * 1024

@functools.cache
def keep_freed_memory() -> bool:
    """Applies the thresholds (once per process); True when they are in effect."""
    if os.environ.get("DSLC_MALLOC_DEFAULTS") == "1":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
        bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))

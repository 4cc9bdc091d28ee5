"""Tests of dslc/heap.py: the allocator thresholds the NumPy interpreter sets once."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Runs a 2-layer LSTM three times and prints the page faults of the last two runs.
FAULTS = """
import resource, dslc
prog = dslc.load("m.dl", text="model m {\\n input x: f32[B, T, 128]\\n"
                 " y, h, c = x -> lstm(256, num_layers=2)\\n output y\\n}\\n")
params = prog.init_params(0)
inputs = prog.random_inputs(0, {"B": 8, "T": 100})
prog.run(inputs, params)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
prog.run(inputs, params)
prog.run(inputs, params)
from dslc.heap import keep_freed_memory
print(keep_freed_memory(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def run_faults(**env: str) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True,
                         env={**os.environ, **env}, check=True).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's")
def test_freed_tensors_are_reused_not_faulted_in_again():
    tuned, faults = run_faults()
    default, default_faults = run_faults(DSLC_MALLOC_DEFAULTS="1")
    assert tuned and not default
    # glibc's defaults fault in thousands of fresh pages a run; kept memory almost none
    assert faults < 100 < default_faults, (faults, default_faults)


def test_the_setting_is_applied_once_and_reports_itself():
    from dslc.heap import keep_freed_memory

    first = keep_freed_memory()
    assert keep_freed_memory() is first
    assert first == (GLIBC and os.environ.get("DSLC_MALLOC_DEFAULTS") != "1")

"""Tests of dslc/heap.py: the allocator thresholds the NumPy interpreter sets once."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Runs a 2-layer LSTM three times and prints the page faults of the last two runs; `dslc run`
# and programs that opt in call keep_freed_memory() first (OPT_IN is replaced by that call).
FAULTS = """
import resource, dslc
from dslc.heap import keep_freed_memory
OPT_IN
prog = dslc.load("m.dl", text="model m {\\n input x: f32[B, T, 128]\\n"
                 " y, h, c = x -> lstm(256, num_layers=2)\\n output y\\n}\\n")
params = prog.init_params(0)
inputs = prog.random_inputs(0, {"B": 8, "T": 100})
prog.run(inputs, params)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
prog.run(inputs, params)
prog.run(inputs, params)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def run_faults(opt_in: bool, **env: str) -> tuple[bool, int]:
    script = FAULTS.replace("OPT_IN", "print(keep_freed_memory())" if opt_in else "print(False)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env={**os.environ, **env}, check=True).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's")
def test_freed_tensors_are_reused_not_faulted_in_again():
    tuned, faults = run_faults(True)
    default, default_faults = run_faults(True, DSLC_MALLOC_DEFAULTS="1")
    assert tuned and not default
    # glibc's defaults fault in thousands of fresh pages a run; kept memory almost none
    assert faults < 100 < default_faults, (faults, default_faults)


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's")
def test_the_library_leaves_the_allocator_alone():
    # Loading and running a program through the API must not tune the user's process: without
    # the opt-in the faults are glibc's default count.
    _, faults = run_faults(False)
    assert faults > 100, faults


def test_the_cli_run_opts_in(tmp_path, monkeypatch):
    import dslc.heap
    from dslc.cli import main

    calls = []
    monkeypatch.setattr(dslc.heap, "keep_freed_memory", lambda: calls.append(1) or True)
    spec = tmp_path / "m.dl"
    spec.write_text("model m {\n  input x: f32[2, 3]\n  output y = x -> relu\n}\n")
    assert main(["run", str(spec), "-o", str(tmp_path / "out.npz")]) == 0
    assert calls == [1]


def test_the_setting_is_applied_once_and_reports_itself():
    from dslc.heap import keep_freed_memory

    first = keep_freed_memory()
    assert keep_freed_memory() is first
    assert first == (GLIBC and os.environ.get("DSLC_MALLOC_DEFAULTS") != "1")

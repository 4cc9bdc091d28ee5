"""Packaging: the installed (non-editable) dslc carries its grammar and works outside the
checkout; torch is optional for check/compile."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _installed_dslc() -> str | None:
    exe = Path(sys.executable).parent / "dslc"
    return str(exe) if exe.exists() else shutil.which("dslc")


def test_installed_cli_runs_outside_checkout(tmp_path):
    exe = _installed_dslc()
    if exe is None:
        pytest.fail("dslc is not installed: run `bash .ci/setup` (README) first")
    spec = tmp_path / "m.dl"
    spec.write_text("model m { input x: f32[B, 2]  output y = x -> linear(3) }\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([exe, "check", str(spec)], capture_output=True, text=True, cwd=tmp_path,
                       env=env)
    assert r.returncode == 0, r.stderr
    code = ("import dslc, importlib.resources as r, sys; "
            "assert 'site-packages' in dslc.__file__, dslc.__file__; "
            "assert (r.files('dslc') / 'grammar' / 'dslc.lark').is_file()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr


def test_compile_never_imports_torch(tmp_path):
    spec = tmp_path / "m.dl"
    spec.write_text("model m { input x: f32[B, 2]  output y = x -> linear(3) -> relu }\n")
    code = (f"import sys, dslc.cli as c; rc = c.main(['compile', {str(spec)!r}, '-o', "
            f"{str(tmp_path / 'm.py')!r}]); "
            "assert rc == 0; assert 'torch' not in sys.modules, 'torch imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr

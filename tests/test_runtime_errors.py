"""Bad inputs at run time through `dslc run`: every one exits 1 with a located, worded
diagnostic, never a traceback, and writes nothing (an existing output file is left as it was)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dslc
from dslc.cli import main

ROOT = Path(__file__).resolve().parents[1]

NET = """\
model Net {
    input x: f32[B, 10]
    output y = x -> linear(20) -> relu -> linear(5)
}
"""

# Dims that no single axis determines, and a check that waits for the runtime sizes.
SEQ = """\
model Seq {
    input x: f32[B, 2 * T]
    output y = x -> relu
}
"""
CHUNKS = """\
model Chunks {
    input x: f32[B, T]
    chunks = x.shape[1] / 4
    output y = x -> relu
}
"""

SENTINEL = b"an output file from an earlier run"


def savez(path: Path, **arrays) -> str:
    np.savez(path, **arrays)
    return path.name


def good_params(tmp: Path) -> dict[str, np.ndarray]:
    return dslc.load(tmp / "net.dl").init_params(0)


# Each case: (id, spec file, a function writing the case's files and returning extra argv,
# the code, and fragments the diagnostic must contain).
def _wrong_shape(tmp):
    return ["--inputs", savez(tmp / "in.npz", x=np.zeros((4, 11), np.float32))]


def _wrong_dtype(tmp):
    return ["--inputs", savez(tmp / "in.npz", x=np.zeros((4, 10), np.float64))]


def _wrong_rank(tmp):
    return ["--inputs", savez(tmp / "in.npz", x=np.zeros((4, 10, 2), np.float32))]


def _missing_input(tmp):
    return ["--inputs", savez(tmp / "in.npz", z=np.zeros((4, 10), np.float32))]


def _extra_input(tmp):
    return ["--inputs", savez(tmp / "in.npz", x=np.zeros((4, 10), np.float32),
                              mask=np.ones((4,), np.float32))]


def _missing_param(tmp):
    p = good_params(tmp)
    del p["fc2.bias"]
    return ["--bind", "B=4", "--params", savez(tmp / "p.npz", **p)]


def _extra_param(tmp):
    p = good_params(tmp)
    p["fc3.weight"] = np.zeros((5, 5), np.float32)
    return ["--bind", "B=4", "--params", savez(tmp / "p.npz", **p)]


def _wrong_shape_param(tmp):
    p = good_params(tmp)
    p["fc1.weight"] = np.zeros((20, 11), np.float32)
    return ["--bind", "B=4", "--params", savez(tmp / "p.npz", **p)]


def _unbound_dim(tmp):
    return []


def _unsolvable_dim(tmp):
    return ["--inputs", savez(tmp / "in.npz", x=np.zeros((3, 8), np.float32))]


def _runtime_check(tmp):
    return ["--inputs", savez(tmp / "in.npz", x=np.zeros((3, 6), np.float32))]


def _corrupt_npz(tmp):
    (tmp / "in.npz").write_bytes(b"PK\x03\x04 this is not really a zip archive")
    return ["--inputs", "in.npz"]


def _truncated_npz(tmp):
    savez(tmp / "full.npz", x=np.zeros((4, 10), np.float32))
    data = (tmp / "full.npz").read_bytes()
    (tmp / "in.npz").write_bytes(data[: len(data) // 2])
    return ["--inputs", "in.npz"]


def _text_as_npz(tmp):
    (tmp / "p.npz").write_text("weight = 1\n")
    return ["--bind", "B=4", "--params", "p.npz"]


def _pickled_npz(tmp):
    obj = np.empty(1, dtype=object)
    obj[0] = {"evil": True}
    np.savez(tmp / "in.npz", x=obj)
    return ["--inputs", "in.npz"]


def _missing_npz(tmp):
    return ["--inputs", "nowhere.npz"]


CASES = [
    ("wrong-shape", NET, _wrong_shape, "E0503",
     ["input 'x' axis 1 has the wrong size", "expected: 10 (shape [4, 10])",
      "found: 11 (shape [4, 11])", "net.dl:2:5"]),
    ("wrong-dtype", NET, _wrong_dtype, "E0502",
     ["input 'x' has the wrong dtype", "expected: f32", "found: float64"]),
    ("wrong-rank", NET, _wrong_rank, "E0503",
     ["input 'x' has the wrong rank", "(rank 2)", "found: shape [4, 10, 2] (rank 3)"]),
    ("missing-input", NET, _missing_input, "E0501",
     ["missing input 'x'", "expected: x", "found: z"]),
    ("extra-input", NET, _extra_input, "E0501", ["unknown input 'mask'", "expected: x"]),
    ("missing-param", NET, _missing_param, "E0510",
     ["missing parameter 'fc2.bias'", "fc1.weight", "hint: omit --params"]),
    ("extra-param", NET, _extra_param, "E0511",
     ["unexpected parameter 'fc3.weight'"]),
    ("wrong-shape-param", NET, _wrong_shape_param, "E0512",
     ["parameter 'fc1.weight' has the wrong shape", "expected: [20, 10]",
      "found: [20, 11]"]),
    ("unbound-dim", NET, _unbound_dim, "E0504",
     ["dim 'B' of input 'x' is unbound", "--bind B="]),
    ("unsolvable-dim", SEQ, _unsolvable_dim, "E0504",
     ["cannot solve dim", "--bind T="]),
    ("runtime-check", CHUNKS, _runtime_check, "E0506",
     ["T must be divisible by 4", "spec.dl:3:14"]),
    ("corrupt-npz", NET, _corrupt_npz, "E0602", ["cannot read inputs file", "in.npz"]),
    ("truncated-npz", NET, _truncated_npz, "E0602", ["cannot read inputs file"]),
    ("text-as-npz", NET, _text_as_npz, "E0602", ["cannot read parameters file", "p.npz"]),
    ("pickled-npz", NET, _pickled_npz, "E0602", ["cannot read inputs file"]),
    ("missing-npz", NET, _missing_npz, "E0601", ["inputs file not found", "nowhere.npz"]),
]


def run_cli(tmp: Path, spec: str, extra: list[str], monkeypatch, capsys,
            outputs=("out.npz",)) -> tuple[int, str, str]:
    monkeypatch.chdir(tmp)
    name = "net.dl" if spec is NET else "spec.dl"
    rc = main(["run", name, *extra, "-o", outputs[0],
               *(["--save-inputs", outputs[1], "--save-params", outputs[2]]
                 if len(outputs) == 3 else [])])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "net.dl").write_text(NET)
    return tmp_path


@pytest.mark.parametrize("preexisting", [False, True], ids=["no-output-yet", "output-exists"])
@pytest.mark.parametrize("case_id,spec,make,code,fragments", CASES, ids=[c[0] for c in CASES])
def test_run_error(workdir, monkeypatch, capsys, case_id, spec, make, code, fragments,
                   preexisting):
    if spec is not NET:
        (workdir / "spec.dl").write_text(spec)
    extra = make(workdir)
    outputs = ("out.npz", "saved_in.npz", "saved_p.npz")
    if preexisting:
        for name in outputs:
            (workdir / name).write_bytes(SENTINEL)
    rc, out, err = run_cli(workdir, spec, extra, monkeypatch, capsys, outputs)
    assert rc == 1, f"exit {rc}\n{err}"
    assert "Traceback" not in err and "internal error" not in err, err
    assert f"error[{code}]" in err, err
    for frag in fragments:
        assert frag in err, f"{frag!r} not in:\n{err}"
    assert out == "", "nothing is printed on stdout when the run fails"
    for name in outputs:
        path = workdir / name
        if preexisting:
            assert path.read_bytes() == SENTINEL, f"{name} was changed by a failed run"
        else:
            assert not path.exists(), f"{name} was written by a failed run"
    assert not list(workdir.glob(".*.tmp")), "a temporary file was left behind"


def test_the_good_run_does_write(workdir, monkeypatch, capsys):
    """The control: the same command with sound inputs succeeds and writes its outputs."""
    savez(workdir / "in.npz", x=np.ones((4, 10), np.float32))
    rc, out, err = run_cli(workdir, NET, ["--inputs", "in.npz"], monkeypatch, capsys)
    assert rc == 0, err
    with np.load(workdir / "out.npz") as z:
        assert z["y"].shape == (4, 5)


def test_input_error_points_at_the_declaration(workdir, monkeypatch, capsys):
    _, _, err = run_cli(workdir, NET, _wrong_dtype(workdir), monkeypatch, capsys)
    lines = err.splitlines()
    assert lines[0] == "net.dl:2:5: error[E0502]: input 'x' has the wrong dtype"
    assert lines[1] == "   2 |     input x: f32[B, 10]"
    assert lines[2] == "     |     ^~~~~~~~~~~~~~~~~~~"


def test_file_level_errors_have_no_fake_position(workdir, monkeypatch, capsys):
    _, _, err = run_cli(workdir, NET, _missing_npz(workdir), monkeypatch, capsys)
    assert err.startswith("nowhere.npz: error[E0601]: inputs file not found"), err


def test_json_format_is_not_offered_for_run_but_errors_stay_clean(workdir):
    """Through the real entry point: exit 1, one diagnostic on stderr, nothing written."""
    savez(workdir / "in.npz", x=np.zeros((2, 3), np.float32))
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONIOENCODING="utf-8")
    env.pop("DSLC_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "dslc.cli", "run", "net.dl", "--inputs",
                           "in.npz", "-o", "out.npz"], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("net.dl:2:5: error[E0503]: input 'x' axis 1 has the wrong")
    assert not (workdir / "out.npz").exists()

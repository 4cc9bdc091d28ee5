"""The CLI contract: exit codes, JSON, --bind/--set, run with files, atomic outputs."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dslc.cli import main

SPEC = """model mlp(hidden: int = 8) {
  input x: f32[B, 4]
  output y = x -> linear(hidden) -> relu -> linear(3), p = y -> softmax
}
"""


@pytest.fixture()
def spec(tmp_path):
    p = tmp_path / "mlp.dl"
    p.write_text(SPEC)
    return p


def test_check_ok_and_bad(spec, tmp_path, capsys):
    assert main(["check", str(spec)]) == 0
    bad = tmp_path / "bad.dl"
    bad.write_text("model m { input x: f32[B, 4]\n  output y = x -> lineer(3) }\n")
    assert main(["check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:2:19: error[E0203]" in err
    assert "did you mean 'linear'" in err
    assert "^" in err


def test_check_json(tmp_path, capsys):
    bad = tmp_path / "bad.dl"
    bad.write_text("model m { input x: f32[B, 4]  output y = x -> linear(\"a\") }")
    assert main(["check", str(bad), "--format", "json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False
    d = out["diagnostics"][0]
    assert d["code"] == "E0209" and d["line"] == 1 and d["expected"] == "int"


def test_usage_error_exit_2(spec, tmp_path):
    r = subprocess.run([sys.executable, "-m", "dslc.cli", "frobnicate"], capture_output=True)
    assert r.returncode == 2
    assert main(["render", str(spec), "-o", str(tmp_path / "x.jpg")]) == 2


def test_summary_json_and_bind_warning(spec, capsys):
    assert main(["summary", str(spec), "--json", "--bind", "B=2", "--bind", "T=7"]) == 0
    captured = capsys.readouterr()
    s = json.loads(captured.out)
    assert "--bind T" in captured.err and "ignored" in captured.err
    assert s["model"] == "mlp"
    assert s["inputs"] == [{"name": "x", "dtype": "f32", "shape": [2, 4]}]
    assert [o["name"] for o in s["outputs"]] == ["y", "p"]
    assert s["params"] == 4 * 8 + 8 + 8 * 3 + 3
    assert isinstance(s["macs"], int)


def test_compile_is_deterministic_and_set_works(spec, tmp_path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    assert main(["compile", str(spec), "-o", str(a)]) == 0
    assert main(["compile", str(spec), "-o", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()
    assert main(["compile", str(spec), "--set", "hidden=5", "-o", str(b)]) == 0
    assert "nn.Linear(4, 5)" in b.read_text()


def test_run_roundtrip(spec, tmp_path):
    out, inp, par = tmp_path / "o.npz", tmp_path / "i.npz", tmp_path / "p.npz"
    assert main(["run", str(spec), "--bind", "B=3", "--seed", "1", "--save-inputs", str(inp),
                 "--save-params", str(par), "-o", str(out)]) == 0
    first = dict(np.load(out))
    assert list(first) == ["y", "p"] and first["y"].shape == (3, 3)
    out2 = tmp_path / "o2.npz"
    assert main(["run", str(spec), "--inputs", str(inp), "--params", str(par),
                 "-o", str(out2)]) == 0
    np.testing.assert_array_equal(first["y"], np.load(out2)["y"])


def test_run_unbound_dim_names_it_and_writes_nothing(spec, tmp_path, capsys):
    out = tmp_path / "o.npz"
    out.write_bytes(b"old")
    assert main(["run", str(spec), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "'B'" in err and "--bind B=" in err and "Traceback" not in err
    assert out.read_bytes() == b"old"
    assert not [p for p in Path(tmp_path).iterdir() if p.name.startswith(".o.npz")]


def test_installed_entry_point(spec):
    r = subprocess.run([sys.executable, "-m", "dslc.cli", "check", str(spec)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "ok (model mlp)" in r.stdout


def test_run_with_a_dim_that_does_not_divide(tmp_path, capsys):
    """Found by the fuzzer (seed 2024, case 16306): `3/S` with S=2 crashed random inputs."""
    spec = tmp_path / "frac.dl"
    spec.write_text("model example {\n  input x: i64[3/S, 2]\n  output y = x[1:100]\n}\n")
    out = tmp_path / "o.npz"
    assert main(["run", str(spec), "--bind", "S=2", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "E0506" in err and "3/2 with S=2" in err and "Traceback" not in err
    assert not out.exists()


def test_run_refuses_a_huge_input_before_allocating(tmp_path, capsys):
    """Found by the fuzzer (seed 1, case 57524): a [10**9, 1] input ran for minutes."""
    spec = tmp_path / "big.dl"
    spec.write_text("model example {\n  input x: f32[1000000000, 1]\n  output y = x -> relu\n}\n")
    out = tmp_path / "o.npz"
    assert main(["run", str(spec), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "E0505" in err and "Traceback" not in err
    assert not out.exists()


# ---- .npz files that are not archives of arrays: the real cause, never "allow_pickle" ------


def _write_text(p):
    p.write_text("weight = 1\n")


def _write_truncated(p):
    np.savez(p.with_name("full.npz"), x=np.zeros((2, 4), np.float32))
    data = p.with_name("full.npz").read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _write_objects(p):
    obj = np.empty(1, dtype=object)
    obj[0] = {"evil": True}
    np.savez(p, x=obj)


def _write_npy(p):
    with p.open("wb") as f:
        np.save(f, np.zeros((2, 4), np.float32))


def _write_raw_member(p):
    import zipfile

    with zipfile.ZipFile(p, "w") as z:
        z.writestr("x.txt", "hello")


@pytest.mark.parametrize("make,message,found", [
    (_write_text, "not an npz archive", "a text file"),
    (lambda p: p.write_bytes(b""), "not an npz archive", "an empty file"),
    (_write_npy, "not an npz archive", "a single .npy array"),
    (lambda p: p.write_bytes(b"\x80\x04\x95 pickled"), "not an npz archive", "a Python pickle"),
    (_write_truncated, "the zip archive is damaged", "File is not a zip file"),
    (_write_objects, "array 'x' holds Python objects", "array 'x' of dtype object"),
    (_write_raw_member, "member 'x.txt' is not a .npy array", "5 bytes of other data"),
    (lambda p: p.mkdir(), "it is a directory", "a folder"),
], ids=["text", "empty", "npy", "pickle", "truncated", "objects", "raw-member", "directory"])
@pytest.mark.parametrize("flag", ["--inputs", "--params"])
def test_bad_npz_names_its_real_cause(spec, tmp_path, capsys, make, message, found, flag):
    bad = tmp_path / "bad.npz"
    make(bad)
    rc = main(["run", str(spec), "--bind", "B=2", flag, str(bad), "-o", str(tmp_path / "o.npz")])
    err = capsys.readouterr().err
    what = "inputs" if flag == "--inputs" else "parameters"
    assert rc == 1, err
    assert err.startswith(f"{bad}: error[E0602]: cannot read {what} file: {message}"), err
    assert f"found: {found}" in err
    assert "allow_pickle" not in err and "Traceback" not in err
    assert not (tmp_path / "o.npz").exists()


def test_missing_npz_is_not_found(spec, tmp_path, capsys):
    rc = main(["run", str(spec), "--bind", "B=2", "--params", str(tmp_path / "none.npz"), "-o",
               str(tmp_path / "o.npz")])
    assert rc == 1
    assert "error[E0601]: parameters file not found" in capsys.readouterr().err


# ---- several diagnostics, warnings and --Werror ------------------------------------------

SEVERAL = """model m {
  input x: f32[B, 4]
  a = x -> lineer(3)
  b = a -> relu
  c = x -> linear(3) -> softmx
  output y = x -> linear(2, bais=false), z = b
}
"""

WARNS = """model m {
  input img: f32[B, 3, 8, 8]
  h = img -> conv2d(4, kernel=3) -> global_avg_pool
  output y = h -> linear(10) as training
}
"""


def test_check_reports_every_independent_error_in_source_order(tmp_path, capsys):
    p = tmp_path / "several.dl"
    p.write_text(SEVERAL)
    assert main(["check", str(p)]) == 1
    err = capsys.readouterr().err
    heads = [line for line in err.splitlines() if line.startswith(str(p))]
    assert [h.split(": ")[1] for h in heads] == ["error[E0203]", "error[E0203]",
                                                 "error[E0239]"]
    assert [h.split(":")[1] for h in heads] == ["3", "5", "6"]  # `b = a -> relu` adds nothing
    assert main(["check", str(p), "--format", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False
    assert [(d["code"], d["line"]) for d in doc["diagnostics"]] == [
        ("E0203", 3), ("E0203", 5), ("E0239", 6)]


def test_warnings_print_but_do_not_fail_without_werror(tmp_path, capsys):
    p = tmp_path / "w.dl"
    p.write_text(WARNS)
    assert main(["check", str(p)]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"{p}: ok")
    assert f"{p}:4:19: warning[W0001]" in captured.err
    assert f"{p}:4:33: warning[W0004]" in captured.err
    assert main(["check", str(p), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True
    assert [(d["code"], d["severity"]) for d in doc["diagnostics"]] == [
        ("W0001", "warning"), ("W0004", "warning")]


@pytest.mark.parametrize("command", [
    ["check"], ["summary"], ["compile"], ["run", "--bind", "B=2", "-o", "OUT"],
    ["render", "-o", "OUT.dot"], ["ir"]])
def test_werror_turns_warnings_into_errors_on_every_command(tmp_path, capsys, command):
    p = tmp_path / "w.dl"
    p.write_text(WARNS)
    out = str(tmp_path / "out")
    args = [a.replace("OUT", out) for a in command]
    argv = [args[0], str(p), *args[1:]]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "warning[W0001]" in captured.err and "warning[W0004]" in captured.err
    for f in tmp_path.glob("out*"):
        f.unlink()
    assert main([*argv, "--Werror"]) == 1
    captured = capsys.readouterr()
    assert "error[W0001]" in captured.err and "error[W0004]" in captured.err
    assert "warning[" not in captured.err
    assert not list(tmp_path.glob("out*")), "--Werror fails before writing anything"
    if command[0] != "check":
        assert captured.out == ""


def test_no_warnings_no_noise(spec, capsys):
    assert main(["summary", str(spec), "--Werror"]) == 0
    assert "warning" not in capsys.readouterr().err

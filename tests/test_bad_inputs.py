"""Bad-input corpus: each `tests/bad_inputs/*.dl` must give, through `dslc check`, exactly the
diagnostic written next to it in `<name>.expected` - never a traceback.

The `.expected` file holds the full rendered stderr of `dslc check <name>.dl` run from inside
tests/bad_inputs/ (so paths are relative). A first line `# args: --model Net` gives extra
command-line arguments. Files under tests/bad_inputs/lib/ are helpers that cases import; they
are not cases themselves. Regenerate with `pytest --regen-golden` or `DSLC_REGEN_GOLDEN=1` and
review the diff.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from dslc.cli import main

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent / "bad_inputs"
DOCS = ROOT / "docs" / "errors.md"
CASES = sorted(p.name for p in HERE.glob("*.dl"))
# W codes are warnings; a case shows one with `# args: --Werror`, which makes it an error.
HEAD = re.compile(r"^(?P<file>[^\s:]+):(?P<line>\d+):(?P<col>\d+): "
                  r"error\[(?P<code>[EW]\d{4})\]: \S")


def _regen(request) -> bool:
    try:
        flag = request.config.getoption("--regen-golden")
    except ValueError:  # the option lives in tests/conftest.py; tolerate running without it
        flag = False
    return bool(flag) or os.environ.get("DSLC_REGEN_GOLDEN", "") not in ("", "0")


def case_args(name: str) -> list[str]:
    first = (HERE / name).read_bytes().split(b"\n", 1)[0].decode("utf-8", "replace")
    m = re.match(r"#\s*args:\s*(.*)", first)
    return shlex.split(m.group(1)) if m else []


def check_in_process(name: str, monkeypatch, capsys, *extra: str) -> tuple[int, str, str]:
    monkeypatch.chdir(HERE)
    rc = main(["check", name, *case_args(name), *extra])
    out, err = capsys.readouterr()
    return rc, out, err


def expected_text(name: str) -> str:
    return (HERE / name).with_suffix(".expected").read_bytes().decode("utf-8")


def test_corpus_is_complete():
    assert len(CASES) >= 45, f"only {len(CASES)} bad-input cases"
    expected = sorted(p.with_suffix(".dl").name for p in HERE.glob("*.expected"))
    assert expected == CASES, "every case needs a .expected file, and every .expected a case"


@pytest.mark.parametrize("name", CASES)
def test_diagnostic_matches_expected(name, monkeypatch, capsys, request):
    rc, out, err = check_in_process(name, monkeypatch, capsys)
    assert rc == 1, f"exit code {rc}\n{err}"
    assert out == ""
    assert "Traceback" not in err and "internal error" not in err, err
    m = HEAD.match(err)
    assert m, f"first line is not `file:line:col: error[CODE]: message`:\n{err}"
    # It points into the case itself, or into the helper the case imports (an import cycle).
    assert m["file"] == name or m["file"].startswith("lib/"), m["file"]
    assert int(m["line"]) >= 1 and int(m["col"]) >= 1
    # Every located diagnostic quotes its source line with a caret under the fault.
    lines = err.splitlines()
    assert re.match(rf"^ *{m['line']} \| ", lines[1]) and "^" in lines[2], err
    path = (HERE / name).with_suffix(".expected")
    if _regen(request):
        path.write_bytes(err.encode("utf-8"))
        return
    assert path.exists(), f"{path.name} is missing; create it with DSLC_REGEN_GOLDEN=1"
    assert err == expected_text(name), (
        f"diagnostic for {name} differs from {path.name}; if intended, regenerate with "
        "`pytest --regen-golden` and review the diff")


@pytest.mark.parametrize("name", CASES)
def test_json_format_agrees(name, monkeypatch, capsys):
    rc, out, err = check_in_process(name, monkeypatch, capsys, "--format", "json")
    assert rc == 1
    assert "Traceback" not in err
    doc = json.loads(out)
    assert doc["ok"] is False
    first = doc["diagnostics"][0]
    m = HEAD.match(expected_text(name))
    assert m is not None
    assert (first["code"], first["file"], first["line"], first["column"]) == (
        m["code"], m["file"], int(m["line"]), int(m["col"]))
    assert first["severity"] == "error" and first["message"]


def test_every_expected_code_is_documented():
    doc = DOCS.read_text(encoding="utf-8")
    for name in CASES:
        m = HEAD.match(expected_text(name))
        assert m is not None, name
        assert f"## {m['code']}" in doc, f"{m['code']} (from {name}) is not in docs/errors.md"


def test_every_code_in_the_compiler_is_documented():
    """Codes are stable and documented: any `"E1234"` the package can raise has a section."""
    doc = DOCS.read_text(encoding="utf-8")
    documented = set(re.findall(r"^## ([EW]\d{4})\b", doc, re.M))
    used: dict[str, str] = {}
    for src in sorted((ROOT / "dslc").rglob("*.py")):
        for code in re.findall(r"[\"']([EW]\d{4})[\"']", src.read_text(encoding="utf-8")):
            used.setdefault(code, str(src.relative_to(ROOT)))
    missing = {c: f for c, f in sorted(used.items()) if c not in documented}
    assert not missing, f"codes raised but not documented in docs/errors.md: {missing}"


@pytest.mark.parametrize("name", ["syntax_missing_brace.dl", "syntax_non_utf8.dl",
                                  "shape_mismatch_add.dl", "set_wrong_type.dl",
                                  "import_cycle.dl"])
def test_subprocess_gives_the_same_text(name):
    """The installed entry point prints what the in-process call prints."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONIOENCODING="utf-8")
    env.pop("DSLC_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "dslc.cli", "check", name, *case_args(name)],
                          cwd=HERE, env=env, capture_output=True, timeout=120)
    err = proc.stderr.decode("utf-8")
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    assert err == expected_text(name)


def test_file_that_does_not_exist(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc = main(["check", "nowhere.dl"])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("nowhere.dl: error[E0109]: cannot read 'nowhere.dl'")
    assert "Traceback" not in err


def test_directory_instead_of_file(tmp_path, monkeypatch, capsys):
    (tmp_path / "specs.dl").mkdir()
    monkeypatch.chdir(tmp_path)
    rc = main(["check", "specs.dl"])
    err = capsys.readouterr().err
    assert rc == 1 and "error[E0109]" in err and "Traceback" not in err


def test_all_errors_of_several_files_are_reported(monkeypatch, capsys):
    """`dslc check a.dl b.dl` reports every failing file, each with its own diagnostic."""
    monkeypatch.chdir(HERE)
    rc = main(["check", "unknown_op.dl", "undefined_name.dl"])
    err = capsys.readouterr().err
    assert rc == 1
    assert err == expected_text("unknown_op.dl") + "\n" + expected_text("undefined_name.dl")


def doc_examples() -> list[tuple[str, str]]:
    """The ```dl-error blocks of docs/errors.md, as (declared code, source)."""
    text = DOCS.read_text(encoding="utf-8")
    out = []
    for block in re.findall(r"^```dl-error\n(.*?)^```", text, re.M | re.S):
        m = re.match(r"# error: (E\d{4})\n", block)
        assert m, f"a dl-error example lacks its `# error: CODE` line:\n{block}"
        out.append((m[1], block))
    return out


@pytest.mark.parametrize("code,src", doc_examples(), ids=[c for c, _ in doc_examples()])
def test_docs_examples_fail_with_their_code(code, src, tmp_path):
    import dslc
    from dslc.diagnostics import DslcError

    path = tmp_path / "example.dl"
    path.write_text(src, encoding="utf-8")
    with pytest.raises(DslcError) as exc:
        dslc.load(path)
    assert exc.value.diagnostics[0].code == code, exc.value


def doc_warning_examples() -> list[tuple[str, str]]:
    """The ```dl-warning blocks of docs/errors.md, as (declared code, source)."""
    text = DOCS.read_text(encoding="utf-8")
    out = []
    for block in re.findall(r"^```dl-warning\n(.*?)^```", text, re.M | re.S):
        m = re.match(r"# warning: (W\d{4})\n", block)
        assert m, f"a dl-warning example lacks its `# warning: CODE` line:\n{block}"
        out.append((m[1], block))
    return out


@pytest.mark.parametrize("code,src", doc_warning_examples(),
                         ids=[c for c, _ in doc_warning_examples()])
def test_docs_warning_examples_warn_with_their_code(code, src, tmp_path):
    import dslc

    path = tmp_path / "example.dl"
    path.write_text(src, encoding="utf-8")
    prog = dslc.load(path)  # a warning never stops loading
    assert [w.code for w in prog.warnings][:1] == [code]
    assert all(w.severity == "warning" for w in prog.warnings)


def test_every_warning_code_has_a_doc_example_and_a_case():
    doc = DOCS.read_text(encoding="utf-8")
    codes = sorted(set(re.findall(r"^## (W\d{4})\b", doc, re.M)))
    assert codes, "docs/errors.md documents no warnings"
    assert [c for c, _ in doc_warning_examples()] == codes
    cases = {HEAD.match(expected_text(n))["code"] for n in CASES}
    assert set(codes) <= cases, f"warnings without a bad-input case: {set(codes) - cases}"


# ---- robustness: a damaged spec gives a syntax diagnostic, never a crash -------------------

VALID = """\
import "lib.dl"
block Res(width: int = 4) {
  input x
  output y = x + (x -> linear(width) -> relu)
}
model Net(depth: int = 2, act: string = "relu") {
  input x: f32[B, 4]   # a comment
  h = x
  layers: repeat depth as i { h = h -> Res(4) }
  if depth > 1 and not false { h = h * 2.5 } else { h = -h }
  assert depth % 1 == 0, "depth"
  output y = h[:, 0:2] -> softmax(dim=-1)
}
"""


def test_damaged_specs_never_crash_the_parser():
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from dslc.diagnostics import DslcError, render
    from dslc.syntax.parser import parse

    alphabet = st.sampled_from(list("(){}[],:;=+-*/<>.\"'#$!@ \n\tx0") + ["->", "model",
                                                                          "output", "1.2.3"])
    edit = st.tuples(st.integers(0, len(VALID)), st.integers(0, 3), st.lists(alphabet,
                                                                             max_size=3))

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(edit, min_size=1, max_size=3))
    def check(edits):
        text = VALID
        for pos, cut, ins in edits:
            pos = min(pos, len(text))
            text = text[:pos] + "".join(ins) + text[pos + cut:]
        try:
            parse(text, "fuzz.dl")
        except DslcError as exc:
            d = exc.diagnostics[0]
            assert d.code.startswith("E01"), d
            assert 1 <= d.span.line <= max(1, text.count("\n") + 1), d
            assert d.span.column >= 1
            shown = render(d)
            assert shown.startswith(f"fuzz.dl:{d.span.line}:{d.span.column}: error[")

    check()

"""Tests of the user-facing walkthroughs: every script in examples/ runs and prints what it
promises, and every ```dl snippet of docs/language.md checks (```dl-error ones fail as shown)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sympy

import dslc
from dslc import DslcError
from dslc.diagnostics import render_all

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
LANGUAGE_MD = ROOT / "docs" / "language.md"


def example_env() -> dict[str, str]:
    """The environment a user has after `bash .ci/setup` and `PATH=$PWD/.venv/bin:$PATH`:
    this interpreter's bin folder first on PATH. PYTHONPATH points at this checkout so the
    examples exercise the source under test. When the `dslc` script is not installed next to
    the interpreter, the shell examples use `python -m dslc.cli` through their $DSLC hook."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    if shutil.which("dslc", path=bindir) is None:
        env["DSLC"] = f"{sys.executable} -m dslc.cli"
    else:
        env.pop("DSLC", None)
    return env


def run_example(args: list[str], cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=example_env(), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(args)} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n"
        f"--- stderr\n{proc.stderr}")
    return proc


def need_dot():
    if shutil.which("dot") is None:
        pytest.fail("Graphviz `dot` is not installed: run `bash .ci/setup` (README)")


def assert_nonempty(path: Path, magic: bytes | None = None) -> None:
    assert path.is_file(), f"{path} was not written"
    data = path.read_bytes()
    assert len(data) > 100, f"{path} is only {len(data)} bytes"
    if magic == b"<svg":
        assert b"<svg" in data[:1000] and data.rstrip().endswith(b"</svg>"), f"{path}: not SVG"
    elif magic is not None:
        assert data.startswith(magic) or magic in data[:8], f"{path}: not a {magic!r} file"


# ---- examples/ ---------------------------------------------------------------------------


def test_every_example_has_a_readme_header():
    scripts = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".py", ".sh"))
    assert {p.name for p in scripts} >= {"train_lenet5.py", "mlp_xor_numpy.py",
                                         "render_cnns.sh", "quickstart.sh"}
    for p in scripts:
        head = p.read_text(encoding="utf-8")[:1500]
        assert "What it shows" in head, f"{p.name} lacks its 'What it shows' section"


def test_mlp_xor_numpy_fits_xor_without_torch(tmp_path):
    proc = run_example([sys.executable, str(EXAMPLES / "mlp_xor_numpy.py")], tmp_path)
    out = proc.stdout
    rows = re.findall(r"^\s+([01])\s+([01]) \|\s+([01])\s+\| ([0-9.]+) -> ([01])$", out, re.M)
    assert len(rows) == 4, out
    for a, b, want, prob, pred in rows:
        assert int(want) == int(a) ^ int(b)
        assert int(pred) == int(want), out
        assert (float(prob) > 0.5) == (want == "1"), out
    assert "accuracy: 4/4" in out
    assert "torch imported: no" in out


def test_train_lenet5_loss_falls(tmp_path):
    pytest.importorskip("torch")
    proc = run_example([sys.executable, str(EXAMPLES / "train_lenet5.py")], tmp_path,
                       timeout=300)
    out = proc.stdout
    losses = [float(v) for v in re.findall(r"^epoch\s+\d+: loss ([0-9.]+)", out, re.M)]
    assert len(losses) >= 3, out
    assert losses[-1] < 0.5 * losses[0], f"loss did not fall enough: {losses}"
    assert "61,706 parameters" in out
    diff = float(re.search(r"max \|difference\| ([0-9.e+-]+)", out).group(1))
    assert diff < 1e-3
    assert "loss fell" in out


def test_train_xor_reaches_full_accuracy_through_dslc_train(tmp_path):
    out = tmp_path / "xor"
    proc = run_example(["bash", str(EXAMPLES / "train_xor.sh"), str(out)], tmp_path,
                       timeout=300)
    assert "accuracy 100%" in proc.stdout, proc.stdout + proc.stderr
    assert (out / "run" / "train.py").is_file() and (out / "run" / "checkpoint.pt").is_file()
    lines = (out / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 300 and '"accuracy": 1.0' in lines[-1]


def test_train_xor_reaches_full_accuracy_on_numpy(tmp_path):
    out = tmp_path / "xor"
    env_args = ["env", "BACKEND=numpy", "bash", str(EXAMPLES / "train_xor.sh"), str(out)]
    proc = run_example(env_args, tmp_path, timeout=300)
    assert "accuracy 100%" in proc.stdout, proc.stdout + proc.stderr
    assert (out / "run" / "checkpoint.npz").is_file()
    assert not (out / "run" / "train.py").exists()  # no PyTorch program was written
    lines = (out / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 300 and '"accuracy": 1.0' in lines[-1]


def test_karate_gcn_reaches_90_percent_on_both_back_ends(tmp_path):
    pytest.importorskip("torch")
    proc = run_example([sys.executable, str(EXAMPLES / "karate_gcn.py"), str(tmp_path / "k")],
                       tmp_path, timeout=600)
    found = re.findall(r"^(numpy|torch): held-out node accuracy (\d+)%, all 34 nodes (\d+)%$",
                       proc.stdout, re.M)
    assert [f[0] for f in found] == ["numpy", "torch"], proc.stdout
    for _, _held, every in found:
        assert int(every) >= 90, proc.stdout


def test_quickstart_writes_every_artifact_into_out(tmp_path):
    need_dot()
    # No argument: the README's command, which writes into ./out of the working directory.
    proc = run_example(["bash", str(EXAMPLES / "quickstart.sh")], tmp_path)
    out = tmp_path / "out"
    text = proc.stdout
    assert "ok (model lenet5)" in text
    assert re.search(r"Trainable params:\s+61,706", text), text
    assert "logits: float32[2, 10]" in text
    src = (out / "lenet5.py").read_text(encoding="utf-8")
    assert "(nn.Module)" in src and "def forward" in src
    for name in ("lenet5_outputs.npz", "lenet5_inputs.npz", "lenet5_params.npz"):
        assert_nonempty(out / name, b"PK")
    assert_nonempty(out / "lenet5.svg", b"<svg")
    assert_nonempty(out / "lenet5.png", b"\x89PNG")


def test_render_cnns_writes_svg_and_png(tmp_path):
    need_dot()
    out = tmp_path / "figs"
    run_example(["bash", str(EXAMPLES / "render_cnns.sh"), str(out)], tmp_path, timeout=300)
    for name in ("vgg16", "resnet18"):
        assert_nonempty(out / f"{name}.svg", b"<svg")
        assert_nonempty(out / f"{name}.png", b"\x89PNG")
        assert_nonempty(out / f"{name}_expanded.svg", b"<svg")
        # Expanding every repeat iteration can only add to the drawing.
        assert (out / f"{name}_expanded.svg").stat().st_size >= \
            (out / f"{name}.svg").stat().st_size


def test_shell_examples_explain_a_missing_dslc(tmp_path):
    env = example_env()
    env["DSLC"] = "no-such-dslc-command"
    proc = subprocess.run(["bash", str(EXAMPLES / "quickstart.sh"), str(tmp_path / "o")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "not found" in proc.stderr and ".ci/setup" in proc.stderr
    assert not (tmp_path / "o").exists()


# ---- docs/language.md --------------------------------------------------------------------

FENCE = re.compile(r"^```(dl|dl-error)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


def doc_snippets() -> list[tuple[str, int, str]]:
    text = LANGUAGE_MD.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        body = m.group(2)
        if re.search(r"\bmodel\b", body):
            line = text.count("\n", 0, m.start()) + 2
            out.append((m.group(1), line, body))
    return out


SNIPPETS = doc_snippets()


def test_language_doc_has_many_checked_examples():
    kinds = [k for k, _, _ in SNIPPETS]
    assert kinds.count("dl") >= 25 and kinds.count("dl-error") >= 4
    text = LANGUAGE_MD.read_text(encoding="utf-8")
    assert "(ops.md)" in text and "(errors.md)" in text


def _snippet_path(line: int, body: str) -> Path:
    """Snippets live "in specs/" so that `import "blocks/cnn.dl"` resolves as in the zoo; a
    first line `# saved as NAME.dl` gives the file name (model selection depends on it)."""
    m = re.match(r"#.*saved as (\w+\.dl)", body)
    return ROOT / "specs" / (m.group(1) if m else f"language_md_line{line}.dl")


@pytest.mark.parametrize("kind,line,body", [s for s in SNIPPETS if s[0] == "dl"],
                         ids=[f"line{s[1]}" for s in SNIPPETS if s[0] == "dl"])
def test_language_snippet_checks_and_runs(kind, line, body):
    try:
        prog = dslc.load(_snippet_path(line, body), text=body)
    except DslcError as exc:
        pytest.fail(f"docs/language.md:{line}: the example does not check:\n"
                    f"{render_all(exc.diagnostics)}")
    # Every model of the snippet can be chosen with model= (docs: "which model runs").
    for name in re.findall(r"^model (\w+)", body, re.M):
        assert dslc.load(_snippet_path(line, body), model=name, text=body).name == name
    # Beyond checking: bind every symbolic dim to a small size and run it on NumPy, and emit
    # PyTorch source, so a snippet cannot rely on a shape the interpreter rejects.
    syms = set()
    for _name, nid in prog.graph.inputs:
        for d in prog.graph.nodes[nid].types[0].shape:
            syms |= {s.name for s in sympy.sympify(d).free_symbols}
    bind = {s: 4 for s in sorted(syms)}
    inputs = prog.random_inputs(0, bind)
    outputs = prog.run(inputs, prog.init_params(0), bind=bind)
    assert set(outputs) == {n for n, _ in prog.graph.outputs}
    assert "nn.Module" in prog.to_torch_source()


@pytest.mark.parametrize("kind,line,body", [s for s in SNIPPETS if s[0] == "dl-error"],
                         ids=[f"line{s[1]}" for s in SNIPPETS if s[0] == "dl-error"])
def test_language_error_snippet_fails_as_documented(kind, line, body):
    m = re.search(r"# error: (E\d{4})", body)
    assert m, f"docs/language.md:{line}: a dl-error example must say `# error: E....`"
    with pytest.raises(DslcError) as info:
        dslc.load(_snippet_path(line, body), text=body)
    codes = [d.code for d in info.value.diagnostics]
    assert m.group(1) in codes, f"docs/language.md:{line}: expected {m.group(1)}, got {codes}"


# ---- README.md ---------------------------------------------------------------------------

README = ROOT / "README.md"


def readme_snippets() -> list[tuple[int, str]]:
    text = README.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 2, m.group(2)) for m in FENCE.finditer(text)
            if m.group(1) == "dl"]


@pytest.mark.parametrize("line,body", readme_snippets(),
                         ids=[f"readme{line}" for line, _ in readme_snippets()])
def test_readme_snippet_checks_and_runs(line, body):
    prog = dslc.load(ROOT / "specs" / f"readme_line{line}.dl", text=body)
    bind = {"B": 2, "T": 3}
    out = prog.run(prog.random_inputs(0, bind), prog.init_params(0), bind=bind)
    assert set(out) == {n for n, _ in prog.graph.outputs}


def test_readme_commands_are_the_ci_commands():
    text = README.read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert ci in text, "README's test command and .ci/run differ"
    assert "bash .ci/setup && PATH=$PWD/.venv/bin:$PATH bash examples/quickstart.sh" in text

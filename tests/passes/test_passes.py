"""Optimisation passes: each keeps every zoo spec's results, the IR stays well formed, and
each has a golden before/after example."""

from pathlib import Path

import numpy as np
import pytest

import dslc
from dslc.cli import main
from dslc.ir_text import format_ir
from dslc.passes import optimize, pass_names
from dslc.passes.lint import lint
from tests.helpers import assert_close, compare_numpy_torch
from tests.specs.zoo_sizes import SMALL_HPARAMS

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted(p for p in (ROOT / "specs").glob("*.dl"))
FOLDING = {"fold_batch_norm", "fold_constants"}


def _models(path: Path) -> list[str]:
    from dslc.sources import load_program

    prog = load_program(path)
    return [d.name for d in prog.models_in(str(path))]


def _cases():
    for path in SPECS:
        try:
            models = _models(path)
        except Exception:  # noqa: BLE001 - a broken spec fails in the zoo tests, not here
            continue
        for m in models:
            yield pytest.param(path, m, id=f"{path.stem}-{m}")


BIND = {"B": 2, "T": 5, "S": 4, "N": 6, "E": 12, "G": 2, "H": 8, "W": 8, "L": 6}


def _run(graph_prog, inputs, params):
    return graph_prog.run(inputs, dict(params))


@pytest.mark.parametrize("path,model", list(_cases()))
def test_every_pass_keeps_results(path, model):
    hp = SMALL_HPARAMS.get(model)  # the big nets beyond the notes at small sizes
    base = dslc.load(path, model=model, opt_level=0, hparams=hp)
    bind = {k: v for k, v in BIND.items()}
    params = base.init_params(0)
    try:
        inputs = base.random_inputs(0, bind)
    except dslc.DslcError:
        pytest.fail(f"{path.name}: cannot draw inputs with {bind}")
    ref = base.run(inputs, dict(params))
    for name in pass_names() + ["O2"]:
        if name == "O2":
            prog = dslc.load(path, model=model, opt_level=2, hparams=hp)
        else:
            prog = dslc.load(path, model=model, passes=[name], hparams=hp)
        lint(prog.graph)
        if not prog.changes:
            assert format_ir(prog.graph) == format_ir(base.graph), name
            continue
        out = prog.run(inputs, dict(params))
        rtol = 1e-4 if name in FOLDING or name == "O2" else 1e-5
        for key in ref:
            assert_close(out[key], ref[key], rtol=rtol, atol=1e-5, what=f"{name}: {key}")


GOLDEN = {
    "dead_code": """
model m { input x: f32[B, 4]
  unused = x -> linear(3)
  output y = x -> linear(2) }""",
    "cse": """
model m { input x: f32[B, 4]
  a = relu(x)
  b = relu(x)
  output y = a + b }""",
    "fold_constants": """
model m { input x: f32[B, 3]
  const k: f32[3] = [1, 2, 3]
  output y = x + k * 2.0 }""",
    "identity": """
model m { input x: f32[B, 3, 4]
  a = x -> transpose(1, 2) -> transpose(2, 1) -> identity
  b = reshape(a, [B, 12]) -> reshape([B, 3, 4]) -> reshape([B, 12])
  output y = b -> linear(2) }""",
    "inference": """
model m { input x: f32[B, 4]
  output y = x -> dropout(0.5) -> linear(2) }""",
    "fold_batch_norm": """
model m { input x: f32[B, 3, 8, 8]
  output y = x -> conv2d(4, kernel=3, bias=false) -> batch_norm -> relu }""",
    "channels_last": """
model m { input x: f32[B, 3, 8, 8]
  output y = x -> conv2d(4, kernel=3) -> relu -> flatten -> linear(2) }""",
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_before_after(name, golden):
    before = dslc.load(f"{name}.dl", text=GOLDEN[name], opt_level=0)
    after = dslc.load(f"{name}.dl", text=GOLDEN[name], passes=[name])
    assert after.changes, f"{name} changed nothing on its own example"
    lint(after.graph)
    text = ("# before\n" + format_ir(before.graph) + "\n# after\n" + format_ir(after.graph)
            + "\n# changes\n" + "".join(f"{c.message} (line {c.span.line})\n"
                                         for c in after.changes))
    golden(f"passes/{name}.txt", text)
    inputs = before.random_inputs(0, {"B": 2})
    params = before.init_params(0)
    assert_close(after.run(inputs, dict(params))["y"], before.run(inputs, dict(params))["y"])


def test_every_pass_has_a_golden_example():
    assert set(GOLDEN) == set(pass_names())


def test_passes_leave_their_input_graph_alone():
    prog = dslc.load("m.dl", text=GOLDEN["cse"], opt_level=0)
    before = format_ir(prog.graph)
    optimize(prog.graph, ("cse", "dead_code"))
    assert format_ir(prog.graph) == before


def test_o2_module_loads_o0_parameter_file():
    torch = pytest.importorskip("torch")
    src = """
model m { input x: f32[B, 3, 8, 8]
  h = x -> conv2d(4, kernel=3, bias=false) -> batch_norm -> relu -> dropout(0.2)
  output y = h -> flatten -> linear(5) -> batch_norm }"""
    p0 = dslc.load("m.dl", text=src, opt_level=0)
    p2 = dslc.load("m.dl", text=src, opt_level=2)
    assert sum(n.op == "batch_norm" for n in p2.graph.nodes.values()) == 0
    params = p0.init_params(0)
    rng = np.random.default_rng(3)
    for k in params:
        if k.endswith("running_mean"):
            params[k] = rng.normal(size=params[k].shape).astype(np.float32)
        if k.endswith("running_var"):
            params[k] = rng.uniform(0.5, 2.0, size=params[k].shape).astype(np.float32)
    inputs = p0.random_inputs(0, {"B": 3})
    ref = p0.run(inputs, dict(params))["y"]
    assert_close(p2.run(inputs, dict(params))["y"], ref)
    m = p2.to_torch()()
    m.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()}, strict=True)
    m.eval()
    with torch.no_grad():
        out = m(x=torch.from_numpy(inputs["x"])).numpy()
    assert_close(out, ref)
    # training an -O2 program trains the model as written
    p2.run(inputs, params, train=True)
    assert params["bn1.num_batches_tracked"] == 1


def test_dslc_ir_cli(tmp_path, capsys):
    spec = tmp_path / "m.dl"
    spec.write_text(GOLDEN["fold_batch_norm"])
    assert main(["ir", str(spec), "-O2"]) == 0
    out = capsys.readouterr().out
    assert "batch_norm" not in out.split("# passes")[0]
    assert "# fold_batch_norm: folded batch norm 'bn1' into conv2d 'conv1' (m.dl:3:" in out
    assert main(["ir", str(spec), "-O0"]) == 0
    assert "batch_norm" in capsys.readouterr().out
    assert main(["ir", str(spec), "-O2", "--after", "identity"]) == 0
    assert "batch_norm" in capsys.readouterr().out.split("# passes")[0]
    assert main(["ir", str(spec), "--passes", "cse,nope"]) == 1
    assert "E0701" in capsys.readouterr().err


def test_channels_last_module_equals_numpy_and_runs_on_meta():
    torch = pytest.importorskip("torch")
    prog = dslc.load("m.dl", text=GOLDEN["channels_last"], opt_level=2)
    src = prog.to_torch_source()
    assert "self.to(memory_format=torch.channels_last)" in src
    assert "x = x.contiguous(memory_format=torch.channels_last)" in src
    compare_numpy_torch(prog, {"B": 2})
    module = prog.to_torch()()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in prog.init_params(0).items()})
    assert module.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    out = module.to("meta")(x=torch.zeros(2, 3, 8, 8, device="meta"))
    assert out.device.type == "meta"

"""PyTorch code generation: equal results, readable and deterministic code, device/dtype
agnostic modules that pass torch.compile(fullgraph=True)."""

import ast as pyast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dslc
from tests.helpers import compare_numpy_torch

torch = pytest.importorskip("torch")

SRC = """
block res(d: int) { input x  output y = x + (x -> linear(d) -> relu) }
model net(d: int = 8) {
  input x: f32[B, d]
  input z: f32[B, 1]
  h = x -> linear(d) as stem
  layers: repeat 3 { h = h -> res(d) }
  output y = h * z, logits = h -> linear(2)
}
"""


@pytest.fixture(scope="module")
def prog():
    return dslc.load("net.dl", text=SRC)


def test_numpy_equals_torch(prog):
    compare_numpy_torch(prog, {"B": 4})


def test_code_is_readable(prog):
    src = prog.to_torch_source()
    pyast.parse(src)
    assert "class Net(nn.Module):" in src
    assert "def forward(self, x, z):" in src
    assert "for block in self.layers:" in src  # identical iterations become a loop
    assert "# net.dl:6: h = x -> linear(d) as stem" in src
    assert "return (y, logits)" in src
    assert "import numpy" not in src


def test_code_is_deterministic_across_processes(prog):
    code = ("import dslc,sys; sys.stdout.write(dslc.load('net.dl', "
            f"text={SRC!r}).to_torch_source())")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={"PYTHONHASHSEED": str(seed), "PATH": ""}, check=True).stdout
            for seed in (0, 1, 12345)}
    assert len(outs) == 1
    assert outs.pop() == prog.to_torch_source()


def test_state_dict_keys_equal_param_file(prog):
    m = prog.to_torch()()
    params = prog.init_params(0)
    assert list(m.state_dict()) == list(params)
    for k, v in m.state_dict().items():
        assert tuple(v.shape) == params[k].shape


def test_meta_and_double(prog):
    m = prog.to_torch()()
    out = m.to("meta")(x=torch.zeros(3, 8, device="meta"), z=torch.zeros(3, 1, device="meta"))
    assert out[0].device.type == "meta" and tuple(out[1].shape) == (3, 2)
    m = prog.to_torch()().double()
    out = m(x=torch.zeros(3, 8, dtype=torch.float64), z=torch.ones(3, 1, dtype=torch.float64))
    assert out[0].dtype == torch.float64


def test_torch_compile_fullgraph(prog):
    m = prog.to_torch()().eval()
    x, z = torch.randn(2, 8), torch.randn(2, 1)
    compiled = torch.compile(m, fullgraph=True, backend="eager")
    with torch.no_grad():
        a = compiled(x=x, z=z)
        b = m(x=x, z=z)
    for u, v in zip(a, b):
        assert torch.allclose(u, v)


def test_hyperparameter_guard(prog):
    cls = prog.to_torch()
    assert cls(d=8) is not None
    with pytest.raises(ValueError, match="dslc compile --set d="):
        cls(d=16)
    bigger = dslc.load("net.dl", text=SRC, hparams={"d": 16})
    assert "nn.Linear(16, 16)" in bigger.to_torch_source()


def test_const_is_a_buffer():
    prog = dslc.load("c.dl", text="""
model c {
  input x: f32[B, 3]
  const w: f32[3] = [1, 0, -1]
  output y = x * w
}""")
    np_out, t_out, module = compare_numpy_torch(prog, {"B": 2})
    # A spec constant is a buffer (it follows .to(device)) but part of the program, not of
    # the parameter file: non-persistent.
    assert "w" in dict(module.named_buffers()) and "w" not in module.state_dict()
    assert "w" not in prog.init_params(0)
    np.testing.assert_array_equal(module.w.numpy(), [1, 0, -1])


def test_dims_inside_expressions_are_solved_in_forward():
    prog = dslc.load("t.dl", text="model m { input x: f32[B, 2*T+1]  "
                                  "output y = reshape(x[:, 1:], [B, T, 2]) }")
    compare_numpy_torch(prog, {"B": 2, "T": 3})
    assert "((x.shape[1] - 1) // 2)" in prog.to_torch_source()


def test_hostile_names_stay_valid_and_unique():
    src = """
block keys(n: int) { input x  output y = x -> linear(n) }
model class(print: int = 3, self: string = "a\\"b") {
  input lambda: f32[B, 3]
  input torch: f32[B, 3]
  forward = lambda + torch
  range = forward -> linear(print) as __init__
  ﬁ = range -> linear(3) as values
  fi = ﬁ -> keys(3) as F
  block = (fi -> relu) + ﬁ
  items: repeat 2 { block = block -> keys(3) }
  output block, range
}"""
    prog = dslc.load("hostile.dl", text=src)
    code = prog.to_torch_source()
    tree = pyast.parse(code)
    assert prog.torch_arg_names() == {"lambda": "lambda_", "torch": "torch_"}
    compare_numpy_torch(prog, {"B": 2})
    calls = {n.func.attr for n in pyast.walk(tree) if isinstance(n, pyast.Call)
             and isinstance(n.func, pyast.Attribute)}
    # only what the emitters emit, plus the layers themselves (self.values_)
    assert calls <= {"Linear", "ModuleDict", "ModuleList", "add_module", "relu", "__init__",
                     "values_"}, sorted(calls)


# Golden generated code: every change to what users read is reviewed as a diff
# (regenerate with `pytest --regen-golden`).
GOLDEN_SPECS = ("lenet5", "resnet18", "lstm", "transformer_encoder", "gcn")


@pytest.mark.parametrize("name", GOLDEN_SPECS)
def test_generated_code_is_golden(name, golden):
    prog = dslc.load(Path(__file__).resolve().parents[2] / "specs" / f"{name}.dl")
    golden(f"codegen/{name}.py", prog.to_torch_source())


def test_comments_quote_this_programs_text_not_a_later_load():
    first = dslc.load("same.dl", text="model same {\n  input x: f32[B, 4]\n"
                      "  output y = x -> linear(2) as head\n}\n")
    before = first.to_torch_source()
    dslc.load("same.dl", text="model same {\n  input x: f32[B, 4]\n"
              "  output y = x -> linear(3) as other\n}\n")
    assert first.to_torch_source() == before
    assert "# same.dl:3: output y = x -> linear(2) as head" in before


def test_spec_asserts_are_checked_by_the_generated_module():
    prog = dslc.load("a.dl", text=(
        "model a {\n  input x: f32[B, T, D]\n  assert T % 2 == 0, \"T must be even\"\n"
        "  assert D >= 4\n  output y = x -> reshape((B, T / 2, 2 * D))\n}\n"))
    module = prog.to_torch()()
    assert module(torch.zeros(1, 4, 4)).shape == (1, 2, 8)
    for shape, message in (((1, 3, 4), "T must be even (a.dl:3)"),
                           ((1, 4, 3), "assertion failed (a.dl:4)")):
        with pytest.raises(ValueError) as exc:
            module(torch.zeros(shape))
        assert str(exc.value) == message
        # the same words as dslc run's diagnostic
        with pytest.raises(dslc.DslcError) as diag:
            prog.run({"x": np.zeros(shape, np.float32)})
        assert diag.value.diagnostics[0].message == message.split(" (")[0]

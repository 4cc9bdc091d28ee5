"""Hostile names: Python keywords and builtins, dunders, names the generated code uses, very
long and Unicode names, names that collide once made identifiers. The generated code stays
valid, unique and readable, and no spec text can inject code."""

from __future__ import annotations

import ast
import keyword

import pytest

import dslc
from dslc.names import py_ident
from tests.helpers import compare_numpy_torch

NAMES = ["class", "lambda", "print", "torch", "self", "forward", "nn", "F", "__init__",
         "__class__", "exec", "eval", "__import__", "None", "True", "type", "super", "t",
         "block", "é", "e\u0301", "数据", "ℌ", "ﬁ", "fi", "a" * 500]

# What emitted code may call: torch's namespaces, the module's own layers, and builtins the
# emitters use (getattr(self, "__init__") reaches a layer named so). A spec name can only ever
# appear as an identifier or inside a comment or string.
ALLOWED_ROOTS = {"torch", "nn", "F", "self", "super"}


def spec_with(name: str, other: str) -> str:
    return (f"model m {{\n  input {name}: f32[B, 4]\n  input {other}: f32[B, 4]\n"
            f"  h = ({name} + {other}) -> linear(4) as {name}\n"
            f"  {name}2 = h -> relu\n  output {name}2, h\n}}\n")


def called_roots(tree: ast.AST) -> set[str]:
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            while isinstance(f, ast.Attribute):
                f = f.value
            if isinstance(f, ast.Name):
                roots.add(f.id)
            elif isinstance(f, ast.Call):
                continue  # super().__init__(): the inner call is checked on its own
            else:
                roots.add(type(f).__name__)
    return roots


@pytest.mark.parametrize("name", NAMES)
def test_hostile_name_compiles_runs_and_calls_nothing_else(name):
    other = "x" if name != "x" else "y"
    try:
        prog = dslc.load("hostile.dl", text=spec_with(name, other))
    except dslc.DslcError as exc:
        # A name the grammar cannot read as a name (a keyword of the language) is a diagnostic.
        assert exc.diagnostics[0].code.startswith("E01"), exc
        return
    code = prog.to_torch_source()
    tree = ast.parse(code)
    builtins_used = {"int", "range", "len", "zip", "tuple", "getattr"}
    assert called_roots(tree) <= ALLOWED_ROOTS | builtins_used, called_roots(tree)
    args = prog.torch_arg_names()
    assert len(set(args.values())) == len(args)
    for py in args.values():
        assert py.isidentifier() and not keyword.iskeyword(py)
    compare_numpy_torch(prog, {"B": 2})


def test_names_that_collide_as_identifiers_stay_distinct():
    # `ﬁ` and `fi` are one identifier once NFKC-normalised, as Python reads source.
    prog = dslc.load("c.dl", text=spec_with("ﬁ", "fi"))
    args = prog.torch_arg_names()
    assert len(set(args.values())) == 2
    compare_numpy_torch(prog, {"B": 2})


@pytest.mark.parametrize("payload", [
    '"; import os; os.system("echo pwned") #',
    '\\n    import os\\n',
    "'''",
    '"""',
])
def test_strings_cannot_inject_code(payload):
    src = ("model m(act: string = \"" + payload.replace('"', '\\"') + "\") {\n"
           "  input x: f32[B, 4]\n  assert true, \"" + payload.replace('"', "'") + "\"\n"
           "  output y = x -> linear(2)\n}\n")
    try:
        prog = dslc.load("inj.dl", text=src)
    except dslc.DslcError as exc:
        assert exc.diagnostics[0].code.startswith("E0"), exc
        return
    code = prog.to_torch_source()
    tree = ast.parse(code)
    assert not any(isinstance(n, (ast.Import, ast.ImportFrom)) and
                   any(a.name == "os" for a in n.names) for n in ast.walk(tree))
    assert "os" not in called_roots(tree)


def test_py_ident_is_always_a_safe_identifier():
    for name in NAMES + ["1abc", "a-b", "", "__", "match", "case", "_"]:
        s = py_ident(name)
        assert s.isidentifier() and not keyword.iskeyword(s), (name, s)
        assert not s.startswith("__") or s.endswith("_")


def test_mangled_and_nfkc_names_work_as_keyword_arguments():
    """`__k` would be mangled inside the class (`_Net__k`) and `ｗ` is `w` to Python: the
    generated constructor and forward still take every argument by the name dslc reports."""
    import numpy as np
    torch = pytest.importorskip("torch")

    src = ("model net(__k: int = 3, w: int = 2, ｗ: int = 2) {\n"
           "  input __x: f32[B, 4]\n  input x: f32[B, 4]\n  input ｘ: f32[B, 4]\n"
           "  h = (__x + x + ｘ) -> linear(__k) as __fc\n"
           "  g = h -> linear(w) as ｗ\n"
           "  output y = g -> linear(ｗ) as w\n}\n")
    prog = dslc.load("net.dl", text=src)
    code = prog.to_torch_source()
    init = ast.parse(code).body[-1].body[1]
    hp = [a.arg for a in init.args.kwonlyargs]
    assert hp == ["_k", "w", "w_"] and len(set(hp)) == 3
    names = prog.torch_arg_names()
    assert sorted(names.values()) == ["_x", "x", "x_"]
    module = prog.to_torch()(**{a: d.value for a, d in zip(hp, init.args.kw_defaults)})
    params = prog.init_params(0)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()})
    inputs = prog.random_inputs(0, {"B": 2})
    want = prog.run(inputs, params)["y"]
    got = module(**{names[k]: torch.from_numpy(v) for k, v in inputs.items()})
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-5, atol=1e-6)

"""Op tests generated from the registry: every op's facts, and every Example run as a one-op
program through the shape rule, the NumPy kernel and the generated PyTorch module.

The tests read `ALL_OPS` when they are collected, so an op added to the registry is tested
without touching this file.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from dslc import dims as D
from dslc import interp
from dslc.diagnostics import Span
from dslc.ir import Graph, IRNode
from dslc.ops import registry
from dslc.ops.base import Attrs, Example, Op, no_module, no_params
from dslc.ops.docs import CONSTRUCTS
from dslc.ops.registry import ALL_OPS, OPS
from dslc.program import Program
from dslc.types import DTYPES, TensorType, numpy_dtype
from tests.helpers import assert_close, torch_outputs

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]

# Render families (colour groups of the diagrams); an op outside these has no style.
FAMILIES = ("dense", "conv", "pool", "act", "norm", "shape", "arith", "reg", "embed", "sample",
            "spatial", "const", "graph", "attn", "rnn", "loss")

# The family file mapping: each file under dslc/ops/ that the registry imports, and the
# families its ops may have. One family may live in several files (concat and index are data
# movement like reshape, so "shape"), but each file holds one kind of op. A new op file is added
# here together with its import line in registry.py.
FAMILY_FILES: dict[str, tuple[str, ...]] = {
    "linear": ("dense",),
    "activation": ("act",),
    "arith": ("arith",),
    "math": ("arith",),
    "const": ("const",),
    "shape": ("shape",),
    "concat": ("shape",),
    "index": ("shape",),
    "conv": ("conv",),
    "conv_transpose": ("conv",),
    "pool": ("pool",),
    "pool_adaptive": ("pool",),
    "norm": ("norm",),
    "norm_layer": ("norm",),
    "dropout": ("reg",),
    "embedding": ("embed",),
    "spatial": ("spatial",),
    "sample": ("sample",),
    "resample": ("spatial",),
    "attention": ("attn",),
    "rnn": ("rnn",),
    "graph": ("graph",),
    "scan": ("rnn",),
    "recurrent": ("rnn",),
    "reduce": ("arith",),
    "loss": ("loss",),
}

# Size given to a symbolic dim (B, T, ...) of an Example's input types.
SYMBOL_SIZE = 3
# No source line: the generated code then carries no spec-line comments.
SPAN = Span("t.dl", 0, 0, 0, 0)
FILE = "t.dl"
SEED = 0
RTOL = 1e-4


def grammar_keywords() -> set[str]:
    """The words the grammar reserves (`model`, `input`, `repeat`, ...)."""
    text = (ROOT / "grammar" / "dslc.lark").read_text(encoding="utf-8")
    return set(re.findall(r'"([a-z_]+)"', text))


def op_files() -> dict[str, str]:
    """Op name -> the dslc/ops file it is imported from, read off the registry's imports."""
    tree = ast.parse(inspect.getsource(registry))
    files: dict[str, str] = {}
    for stmt in tree.body:
        if not (isinstance(stmt, ast.ImportFrom) and stmt.module
                and stmt.module.startswith("dslc.ops.")):
            continue
        stem = stmt.module.rsplit(".", 1)[1]
        for alias in stmt.names:
            value = getattr(registry, alias.asname or alias.name)
            items = value if isinstance(value, tuple) else (value,)
            for item in items:
                if isinstance(item, Op):
                    files.setdefault(item.name, stem)
    return files


# ---- completeness ------------------------------------------------------------------------


def missing_facts(op: Op, files: dict[str, str], reserved: set[str]) -> list[str]:
    """Every fact DESIGN.md asks an op to have; returns what is missing or wrong."""
    bad: list[str] = []
    if not (isinstance(op.name, str) and re.fullmatch(r"[a-z][a-z0-9_]*", op.name)):
        bad.append(f"name {op.name!r} is not a lower-case DSL identifier")
    elif (op.name in reserved) != (op.name in CONSTRUCTS):
        bad.append(f"name {op.name!r} is a grammar keyword, so it cannot be called"
                   if op.name in reserved else
                   f"{op.name!r} is in docs.CONSTRUCTS but no grammar keyword")
    if OPS.get(op.name) is not op:
        bad.append("OPS[name] is another op")
    stem = files.get(op.name)
    if stem is None:
        bad.append("not imported by registry.py from a dslc/ops file")
    elif stem not in FAMILY_FILES:
        bad.append(f"file {stem}.py is not in FAMILY_FILES (tests/ops/test_registry.py)")
    elif op.family not in FAMILY_FILES[stem]:
        bad.append(f"family {op.family!r} does not belong in {stem}.py "
                   f"(expected {' or '.join(FAMILY_FILES[stem])})")
    if op.family not in FAMILIES:
        bad.append(f"render family {op.family!r} is not one of {', '.join(FAMILIES)}")
    if not (isinstance(op.doc, str) and op.doc.strip()):
        bad.append("doc is empty")
    if not (inspect.isclass(op.attrs) and issubclass(op.attrs, Attrs)):
        bad.append("attrs is not an Attrs subclass")
        return bad
    for fact in ("shape", "numpy", "torch_call", "params", "macs", "label", "torch_module",
                 "n_outputs"):
        if not callable(getattr(op, fact, None)):
            bad.append(f"{fact} is not a function")
    fields = op.attrs.model_fields
    for p in op.positional:
        if p not in fields:
            bad.append(f"positional {p!r} is not an attribute")
    if len(set(op.positional)) != len(op.positional):
        bad.append("positional names repeat")
    if op.min_inputs < 0 or (op.max_inputs is not None and op.max_inputs < op.min_inputs):
        bad.append(f"input range {op.min_inputs}..{op.max_inputs} is empty")
    if op.params is not no_params and op.name not in CONSTRUCTS:
        # const's buffer is registered by the code generator itself (see test_const_*).
        if op.torch_module is no_module:
            bad.append("has params but no torch_module")
        if not (op.module_prefix and op.module_prefix.isidentifier()):
            bad.append("has params but no module_prefix")
    if op.name in CONSTRUCTS:
        # Made by syntax (`const k: ...`, `scan cell ...`) with attrs an Example cannot hold
        # (a value, a cell sub-graph): tested through the language (const below, scan in
        # its own tests).
        return bad
    if not op.examples:
        bad.append("no Example")
    for i, ex in enumerate(op.examples):
        if not isinstance(ex, Example):
            bad.append(f"example {i} is not an Example")
            continue
        unknown = sorted(set(ex.attrs) - set(fields))
        if unknown:
            bad.append(f"example {i} sets unknown attrs {unknown}")
            continue
        try:
            op.attrs(**ex.attrs)
        except Exception as exc:  # pydantic's ValidationError: report, do not crash
            bad.append(f"example {i} attrs do not validate: {exc}")
        n = len(ex.inputs)
        if not all(isinstance(t, TensorType) for t in ex.inputs):
            bad.append(f"example {i} inputs are not TensorTypes")
        if n < op.min_inputs or (op.max_inputs is not None and n > op.max_inputs):
            bad.append(f"example {i} has {n} inputs, outside {op.min_inputs}..{op.max_inputs}")
    return bad


def test_registry_is_not_empty_and_names_are_unique():
    assert len(ALL_OPS) >= 10
    assert len({op.name for op in ALL_OPS}) == len(ALL_OPS)
    assert list(OPS) == [op.name for op in ALL_OPS]


def test_family_file_mapping_is_real():
    """Each mapped family is known, and every op file the registry imports is mapped."""
    for stem, fams in FAMILY_FILES.items():
        assert set(fams) <= set(FAMILIES), stem
    stems = set(op_files().values())
    assert stems <= set(FAMILY_FILES), sorted(stems - set(FAMILY_FILES))


@pytest.mark.parametrize("op", ALL_OPS, ids=lambda op: op.name)
def test_op_has_every_fact(op):
    bad = missing_facts(op, op_files(), grammar_keywords())
    assert not bad, f"op '{op.name}': " + "; ".join(bad)


def test_every_family_has_a_render_style():
    """Each op's family is drawn in its own style (DESIGN.md: render style by family)."""
    from dslc.render import FAMILY_STYLE

    unstyled = sorted({f"{op.family} ({op.name})" for op in ALL_OPS
                       if op.family not in FAMILY_STYLE})
    assert not unstyled, "no style in dslc/render.py FAMILY_STYLE for " + ", ".join(unstyled)


def test_missing_facts_catches_an_incomplete_op():
    """The completeness check itself fails on an op that lacks facts."""
    from dslc.ops.linear import LINEAR

    broken = Op(name="linear", family="blue", doc=" ", attrs=LINEAR.attrs, shape=LINEAR.shape,
                numpy=LINEAR.numpy, torch_call=LINEAR.torch_call, examples=(),
                params=LINEAR.params, positional=("nope",))
    bad = missing_facts(broken, op_files(), grammar_keywords())
    text = "; ".join(bad)
    for word in ("OPS[name]", "family 'blue'", "doc is empty", "positional 'nope'",
                 "no torch_module", "no module_prefix", "no Example"):
        assert word in text, (word, text)
    assert missing_facts(LINEAR, op_files(), grammar_keywords()) == []


# ---- one-op programs from Examples --------------------------------------------------------


def input_names(n: int) -> list[str]:
    return ["x"] if n == 1 else [f"x{i}" for i in range(n)]


def output_names(n: int) -> list[str]:
    return ["y"] if n == 1 else [f"y{i}" for i in range(n)]


def build_graph(op: Op, ex: Example) -> Graph:
    """A one-op program made directly as IR: inputs of the example's types, the op, outputs.

    It mirrors what the elaborator makes for `y = x -> op(...)`, without the language in the
    way, so an op is tested even before any syntax reaches it.
    """
    g = Graph(model="t", hparams={}, file=FILE)
    refs = []
    for name, t in zip(input_names(len(ex.inputs)), ex.inputs):
        node = g.add(IRNode(g.new_id(), "input", None, [], [t], SPAN, name))
        g.inputs.append((name, node.id))
        refs.append((node.id, 0))
    attrs = op.attrs(**ex.attrs)
    ins = list(ex.inputs)
    types = op.shape(attrs, ins)
    params = op.params(attrs, ins)
    outs = output_names(len(types))
    node = g.add(IRNode(g.new_id(), op.name, attrs, refs, list(types), SPAN, ",".join(outs),
                        module=op.module_prefix + "1" if params else None,
                        params=dict(params)))
    g.outputs = [(name, (node.id, port)) for port, name in enumerate(outs)]
    return g


def op_node(g: Graph) -> IRNode:
    return next(n for n in g.nodes.values() if n.op != "input")


def symbol_bindings(ex: Example) -> dict[str, int]:
    names = sorted({s for t in ex.inputs for d in t.shape for s in D.free_names(d)})
    return {s: SYMBOL_SIZE for s in names}


def example_inputs(g: Graph, ex: Example, bind: dict[str, int]) -> dict[str, np.ndarray]:
    """Random inputs; integer ones drawn in [0, ex.int_high) as the Example asks."""
    arrays = interp.random_inputs(g, SEED, bind)
    rng = np.random.default_rng(SEED + 1)
    for name, nid in g.inputs:
        t = g.nodes[nid].types[0]
        if t.dtype in ("i32", "i64"):
            arr = arrays[name]
            arrays[name] = rng.integers(0, ex.int_high, size=arr.shape).astype(arr.dtype)
        elif t.is_float and ex.float_range is not None:
            arr = arrays[name]
            arrays[name] = rng.uniform(*ex.float_range, size=arr.shape).astype(arr.dtype)
    return arrays


@dataclass
class Case:
    op: Op
    ex: Example
    graph: Graph
    prog: Program
    bind: dict[str, int]  # every runtime dim, solved from the inputs
    inputs: dict[str, np.ndarray]
    params0: dict[str, np.ndarray]  # before the run
    params1: dict[str, np.ndarray]  # after the run (training updates buffers)
    outputs: dict[str, np.ndarray]  # the NumPy result
    # False for a random op that draws numbers in this mode (dropout in training, sampling):
    # the two sides then draw different numbers and only shapes and dtypes can be compared.
    deterministic: bool

    def out_types(self) -> list[TensorType]:
        return op_node(self.graph).types

    def shape_of(self, t: TensorType) -> tuple[int, ...]:
        return tuple(D.evaluate(d, self.bind) for d in t.shape)


@functools.cache
def case(name: str, index: int) -> Case:
    op = OPS[name]
    return make_case(op, op.examples[index])


def make_case(op: Op, ex: Example) -> Case:
    """Build the one-op program, draw inputs and parameters, and run it on NumPy."""
    g = build_graph(op, ex)
    interp.check(g)
    given = symbol_bindings(ex)
    inputs = example_inputs(g, ex, given)
    bind = interp.bind_inputs(g, inputs, given)
    params0 = interp.init_params(g, SEED)
    params1 = {k: v.copy() for k, v in params0.items()}
    outputs = interp.run(g, inputs, params1, train=ex.train, seed=SEED, bindings=given)
    deterministic = True
    if op.random:
        # Whether it draws in this mode shows in the result: run again with another seed.
        again = interp.run(g, inputs, {k: v.copy() for k, v in params0.items()},
                           train=ex.train, seed=SEED + 1, bindings=given)
        deterministic = all(np.array_equal(outputs[k], again[k], equal_nan=True)
                            for k in outputs)
    return Case(op, ex, g, Program(g, FILE), bind, inputs, params0, params1, outputs,
                deterministic)


def example_cases():
    return [pytest.param(op.name, i, id=f"{op.name}-{i}")
            for op in ALL_OPS for i in range(len(op.examples))]


CASES = example_cases()


def _has_float(op, ex) -> bool:
    """Float inputs or float parameters: the Examples the float64 check applies to."""
    if any(t.is_float for t in ex.inputs):
        return True
    try:
        params = op.params(op.attrs.model_validate(dict(ex.attrs)), list(ex.inputs))
    except Exception:  # noqa: BLE001 - let the check itself report a broken example
        return True
    return any(spec.dtype in ("f16", "bf16", "f32", "f64") for spec in params.values())


# Integer-only examples (an index op on i64, say) have nothing to turn into float64.
FLOAT_CASES = [pytest.param(op.name, i, id=f"{op.name}-{i}")
               for op in ALL_OPS for i, ex in enumerate(op.examples) if _has_float(op, ex)]


def torch_module(c: Case):
    m = c.prog.to_torch()()
    m.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in c.params0.items()},
                      strict=True)
    m.train(c.ex.train)
    return m


def torch_dtype(dtype: str):
    return getattr(torch, DTYPES[dtype][1].split(".")[1])


def check_shape_rule_vs_kernel(c: Case) -> None:
    """(1) The types the shape rule predicts are the shapes and dtypes the kernel makes."""
    types = c.out_types()
    assert len(types) == c.op.n_outputs(op_node(c.graph).attrs)
    assert list(c.outputs) == output_names(len(types))
    for (out_name, arr), t in zip(c.outputs.items(), types):
        assert arr.shape == c.shape_of(t), f"{out_name}: kernel {arr.shape}, rule {t}"
        assert arr.dtype == numpy_dtype(t.dtype), f"{out_name}: kernel {arr.dtype}, rule {t}"


@pytest.mark.parametrize("name,index", CASES)
def test_shape_rule_matches_kernel(name, index):
    check_shape_rule_vs_kernel(case(name, index))


def check_numpy_vs_torch(c: Case) -> None:
    """(2) NumPy kernel == generated PyTorch, same inputs and parameters. Random ops in
    training draw different numbers on each side: only their shapes and dtypes are compared."""
    t_out, module = torch_outputs(c.prog, c.inputs,
                                  {k: v.copy() for k, v in c.params0.items()}, train=c.ex.train)
    for (out_name, want), t in zip(c.outputs.items(), c.out_types()):
        got = t_out[out_name]
        assert got.shape == want.shape, f"{out_name}: torch {got.shape}, numpy {want.shape}"
        assert got.dtype == numpy_dtype(t.dtype), f"{out_name}: torch {got.dtype}, type {t}"
        if not c.deterministic:
            continue
        if t.is_float:
            assert_close(want, got, rtol=RTOL, what=out_name)
        else:
            np.testing.assert_array_equal(want, got, err_msg=out_name)
    if c.ex.train and c.deterministic:
        # Training updates buffers (batch-norm statistics) the same way on both sides.
        state = module.state_dict()
        for key, want in c.params1.items():
            got = state[key].detach().numpy()
            assert_close(want, got, rtol=RTOL, what=f"{key} after a training step")


@pytest.mark.parametrize("name,index", CASES)
def test_numpy_matches_torch(name, index):
    check_numpy_vs_torch(case(name, index))


def check_params_vs_state_dict(c: Case) -> None:
    """(3) Param names, shapes, dtypes and buffer-ness are the generated module's."""
    m = c.prog.to_torch()()
    state = m.state_dict()
    specs = c.graph.param_keys()
    assert sorted(state) == sorted(specs)
    buffers = {k for k, _ in m.named_buffers()}
    for key, (_node, _local, spec) in specs.items():
        assert tuple(state[key].shape) == tuple(int(d) for d in spec.shape), key
        assert state[key].dtype == torch_dtype(spec.dtype), key
        assert (key in buffers) == spec.buffer, f"{key}: buffer={spec.buffer}"
    m.load_state_dict({k: torch.from_numpy(v) for k, v in c.params0.items()}, strict=True)


@pytest.mark.parametrize("name,index", CASES)
def test_params_match_state_dict(name, index):
    check_params_vs_state_dict(case(name, index))


def check_macs_count(c: Case) -> None:
    """(4) MACs for the example's concrete shapes is a non-negative integer."""
    node = op_node(c.graph)
    ins = [c.graph.type_of(r) for r in node.inputs]
    macs = D.substitute(D.as_dim(c.op.macs(node.attrs, ins, node.types)), c.bind)
    assert macs.is_Integer and int(macs) >= 0, macs


@pytest.mark.parametrize("name,index", CASES)
def test_macs_is_a_count(name, index):
    check_macs_count(case(name, index))


def check_label(c: Case) -> None:
    """(5) The diagram label is a string."""
    assert isinstance(c.op.label(op_node(c.graph).attrs), str)


@pytest.mark.parametrize("name,index", CASES)
def test_label_is_text(name, index):
    check_label(case(name, index))


def needs_float_check(c: Case) -> bool:
    return any(t.is_float for t in c.ex.inputs) or any(
        spec.dtype in ("f16", "bf16", "f32", "f64") for spec in op_node(c.graph).params.values())


def check_runs_in_float64(c: Case) -> None:
    """(6a) After `.double()` with float64 inputs the module computes in float64 (tensors it
    makes take the inputs' dtype) and agrees with the float32 NumPy result."""
    assert needs_float_check(c), "FLOAT_CASES and needs_float_check disagree"
    m = torch_module(c).double()
    ins = {}
    for k, v in c.inputs.items():
        x = torch.from_numpy(v)
        ins[k] = x.double() if x.is_floating_point() else x
    torch.manual_seed(SEED)
    with torch.no_grad():
        out = m(**ins)
    out = out if isinstance(out, tuple) else (out,)
    for (out_name, want), t, got in zip(c.outputs.items(), c.out_types(), out):
        assert tuple(got.shape) == want.shape, out_name
        if t.is_float:
            assert got.dtype == torch.float64, f"{out_name}: {got.dtype}"
            if c.deterministic:
                assert_close(want, got.detach().numpy(), rtol=RTOL, what=out_name)
        else:
            assert got.dtype == torch_dtype(t.dtype), f"{out_name}: {got.dtype}"


@pytest.mark.parametrize("name,index", FLOAT_CASES)
def test_runs_in_float64(name, index):
    check_runs_in_float64(case(name, index))


def check_runs_on_meta_device(c: Case) -> None:
    """(6b) After `.to('meta')` with meta inputs the module runs where it was moved (integer
    data too: shape ops must not make tensors on the CPU for any dtype)."""
    m = torch_module(c).to("meta")
    ins = {k: torch.empty(v.shape, dtype=torch.from_numpy(v).dtype, device="meta")
           for k, v in c.inputs.items()}
    with torch.no_grad():
        out = m(**ins)
    out = out if isinstance(out, tuple) else (out,)
    for (out_name, want), t, got in zip(c.outputs.items(), c.out_types(), out):
        assert got.device.type == "meta", out_name
        assert tuple(got.shape) == want.shape, out_name
        assert got.dtype == torch_dtype(t.dtype), out_name


@pytest.mark.parametrize("name,index", CASES)
def test_runs_on_meta_device(name, index):
    check_runs_on_meta_device(case(name, index))


# The generated checks catch broken ops: each check on a deliberately broken copy of an op.


def broken_case(monkeypatch, name: str, **change) -> Case:
    op = dataclasses.replace(OPS[name], **change)
    monkeypatch.setitem(OPS, name, op)  # interp and codegen look ops up in this dict
    return make_case(op, op.examples[0])


def test_check_catches_a_wrong_kernel(monkeypatch):
    c = broken_case(monkeypatch, "relu", numpy=lambda a, xs, ctx: [xs[0]])
    with pytest.raises(AssertionError, match="max abs error"):
        check_numpy_vs_torch(c)


def test_check_catches_a_wrong_shape_rule(monkeypatch):
    c = broken_case(monkeypatch, "relu", shape=lambda a, ins: [ins[0].with_shape((4, 6, 1))],
                    numpy=lambda a, xs, ctx: [np.maximum(xs[0], 0)])
    with pytest.raises(AssertionError, match="kernel"):
        check_shape_rule_vs_kernel(c)


def test_check_catches_wrong_param_names(monkeypatch):
    def params(a, ins):
        p = OPS_BEFORE["linear"].params(a, ins)
        return {"w" if k == "weight" else k: v for k, v in p.items()}

    c = broken_case(monkeypatch, "linear", params=params,
                    numpy=lambda a, xs, ctx: [xs[0] @ ctx.params["w"].T + ctx.params["bias"]])
    with pytest.raises(AssertionError):
        check_params_vs_state_dict(c)


def test_check_catches_a_tensor_made_on_the_wrong_device(monkeypatch):
    c = broken_case(monkeypatch, "relu",
                    torch_call=lambda a, args, ctx, ins: f"torch.maximum({args[0]}, "
                                                         f"torch.zeros({args[0]}.shape))")
    check_numpy_vs_torch(c)  # right on the CPU in float32 ...
    with pytest.raises((RuntimeError, NotImplementedError)):
        check_runs_on_meta_device(c)  # ... but stuck there


OPS_BEFORE = dict(OPS)


def test_builder_makes_what_the_language_makes():
    """The IR builder above agrees with the elaborator on a spec written in the language."""
    import dslc

    ex = Example({"out_features": 7}, (TensorType("f32", (D.const(3), D.const(5))),))
    built = build_graph(OPS["linear"], ex)
    prog = dslc.load("t.dl", text="model t {\n input x: f32[3, 5]\n y = x -> linear(7)\n"
                                  " output y\n}\n", opt_level=0)
    a, b = op_node(built), op_node(prog.graph)
    assert (a.op, a.attrs, a.types, a.module, a.params) == (b.op, b.attrs, b.types, b.module,
                                                            b.params)
    assert built.outputs == prog.graph.outputs and built.inputs == prog.graph.inputs


# ---- const: made by declarations, tested through the language -----------------------------

CONST_SPEC = """
model consts {
  input x: f32[2, 3]
  const k: f32[2, 3] = [[1.5, -2, 3], [4, 5, 6]]
  const idx: i64[3] = [0, 2, 1]
  y = x * k
  output y, idx
}
"""


@pytest.fixture(scope="module")
def const_prog():
    import dslc

    return dslc.load("consts.dl", text=CONST_SPEC, opt_level=0)


def test_const_runs_and_matches_torch(const_prog):
    params = const_prog.init_params(SEED)
    inputs = const_prog.random_inputs(SEED)
    np_out = const_prog.run(inputs, {k: v.copy() for k, v in params.items()})
    np.testing.assert_array_equal(np_out["idx"], np.array([0, 2, 1], dtype=np.int64))
    assert_close(np_out["y"], inputs["x"] * np.array([[1.5, -2, 3], [4, 5, 6]], np.float32))
    t_out, m = torch_outputs(const_prog, inputs, params)
    assert_close(np_out["y"], t_out["y"], rtol=RTOL)
    np.testing.assert_array_equal(np_out["idx"], t_out["idx"])
    assert t_out["idx"].dtype == np.int64


def test_const_is_a_buffer_with_its_declared_type(const_prog):
    m = const_prog.to_torch()()
    buffers = dict(m.named_buffers())
    assert sorted(buffers) == ["idx", "k"] and not list(m.parameters())
    assert buffers["k"].dtype == torch.float32 and tuple(buffers["k"].shape) == (2, 3)
    assert buffers["idx"].dtype == torch.int64 and tuple(buffers["idx"].shape) == (3,)
    nodes = [n for n in const_prog.graph.order() if n.op == "const"]
    op = OPS["const"]
    for n in nodes:
        assert n.module == n.name and isinstance(op.label(n.attrs), str)
        assert op.shape(n.attrs, []) == n.types
        assert D.as_dim(op.macs(n.attrs, [], n.types)) == 0


def test_const_follows_dtype_and_device(const_prog):
    m = const_prog.to_torch()()
    x = torch.randn(2, 3, dtype=torch.float64)
    y, idx = m.double()(x=x)
    assert y.dtype == torch.float64 and idx.dtype == torch.int64
    m = const_prog.to_torch()().to("meta")
    y, idx = m(x=torch.empty(2, 3, device="meta"))
    assert y.device.type == "meta" and idx.device.type == "meta"

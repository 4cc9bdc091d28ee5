"""Elaboration: blocks, repeats, conditions, names and layer naming, constraints."""

import pytest

import dslc
from dslc.diagnostics import DslcError


def load(src, **kw):
    return dslc.load("t.dl", text=src, **kw)


def test_block_repeat_and_layer_names():
    prog = load("""
block res(d: int) { input x  output y = x + (x -> linear(d) -> relu) }
model m(d: int = 4) {
  input x: f32[B, d]
  h = x -> linear(d) as stem
  layers: repeat 2 { h = h -> res(d) }
  other: repeat 2 as i { h = h -> linear(d + i) -> linear(d) }
  output h
}""")
    keys = list(prog.init_params(0))
    assert keys[:2] == ["stem.weight", "stem.bias"]
    assert "layers.0.fc1.weight" in keys and "layers.1.fc1.weight" in keys
    assert prog.init_params(0)["other.1.fc1.weight"].shape == (5, 4)


def test_if_on_hyperparameters_and_fixed_dims():
    src = """
model m(act: string = "relu") {
  input x: f32[B, 3]
  if act == "relu" and x.shape[1] == 3 { h = relu(x) } else { h = tanh(x) }
  output h
}"""
    assert load(src).graph.order()[-1].op == "relu"
    assert load(src, hparams={"act": "tanh"}).graph.order()[-1].op == "tanh"


def test_condition_on_runtime_dim_is_an_error():
    with pytest.raises(DslcError) as exc:
        load("model m { input x: f32[B, 3]  if x.shape[0] == 2 { h = x } else { h = x } "
             "output h }")
    assert exc.value.diagnostics[0].code == "E0225"


def test_undefined_name_suggests():
    with pytest.raises(DslcError) as exc:
        load("model m { input xin: f32[B, 3]  output y = xni -> relu }")
    d = exc.value.diagnostics[0]
    assert d.code == "E0202" and "xin" in d.hint


def test_unknown_op_suggests():
    with pytest.raises(DslcError) as exc:
        load("model m { input x: f32[B, 3]  output y = x -> lineer(3) }")
    assert exc.value.diagnostics[0].code == "E0203"
    assert "linear" in exc.value.diagnostics[0].hint


def test_exact_division_of_dims():
    with pytest.raises(DslcError) as exc:
        load("model m { input x: f32[B, 10]  output y = x -> linear(x.shape[1] / 3) }")
    assert exc.value.diagnostics[0].code == "E0231"
    assert load("model m { input x: f32[B, 10]  output y = x -> linear(x.shape[1] / 2) }")


def test_linear_shape_mismatch_in_add_is_located_with_origins():
    with pytest.raises(DslcError) as exc:
        load("model m {\n  input x: f32[B, 3]\n  y = x -> linear(4)\n  output z = x + y\n}")
    d = exc.value.diagnostics[0]
    assert d.code == "E0303"
    assert (d.span.line, d.span.column) == (4, 18)
    assert "[B, 3]" in d.found and "[B, 4]" in d.found
    assert any("made here" in n for n, _ in d.notes)


def test_model_selection():
    two = "model a { input x: f32[B, 1]  output x }\nmodel b { input x: f32[B, 1]  output x }"
    with pytest.raises(DslcError) as exc:
        load(two)
    assert exc.value.diagnostics[0].code == "E0403"
    assert load(two, model="b").name == "b"
    assert dslc.load("a.dl", text=two).name == "a"  # named like the file


def test_hyperparameter_override_and_type_check():
    src = "model m(n: int = 2) { input x: f32[B, 3]  output y = x -> linear(n) }"
    assert load(src, hparams={"n": 5}).graph.order()[-1].types[0].shape[-1] == 5
    with pytest.raises(DslcError) as exc:
        load(src, hparams={"n": "five"})
    assert exc.value.diagnostics[0].code == "E0209"
    with pytest.raises(DslcError) as exc:
        load(src, hparams={"m": 1})
    assert exc.value.diagnostics[0].code == "E0404"


def test_symbolic_divisibility_becomes_a_runtime_constraint():
    prog = load("model m { input x: f32[B, T]  n = x.shape[1] / 2  output x }")
    assert len(prog.graph.constraints) == 1
    import numpy as np
    prog.run({"x": np.zeros((1, 4), np.float32)}, {})
    with pytest.raises(DslcError) as exc:
        prog.run({"x": np.zeros((1, 5), np.float32)}, {})
    assert exc.value.diagnostics[0].code == "E0506"


def test_block_typed_input_binds_dims():
    prog = load("""
block proj(out: int) { input x: f32[B, C]  output y = x -> linear(out * C) }
model m { input x: f32[B, 3]  output y = proj(x, 2) }""")
    assert int(prog.graph.order()[-1].types[0].shape[-1]) == 6


def test_repeat_limits():
    with pytest.raises(DslcError) as exc:
        load("model m { input x: f32[B, 3]  repeat 1000000000 { x = relu(x) }  output x }")
    assert exc.value.diagnostics[0].code == "E0220"
    with pytest.raises(DslcError) as exc:
        load("model m { input x: f32[B, 3]  repeat 1.5 { x = relu(x) }  output x }")
    assert exc.value.diagnostics[0].code == "E0220"


def test_as_after_a_plain_call_names_the_layer_as_in_a_pipe():
    """`y = conv2d(x, 6) as c1` is `y = x -> conv2d(6) as c1`: same parameter keys, same
    generated module names, same results; blocks, scans and outputs take a name the same way."""
    lib = """
block cell(hidden: int) { input x  input h  output h2 = (x -> linear(hidden)) + h }
block two(d: int) { input x  output y = x -> linear(d) -> relu }
"""
    plain = load(lib + """
model m {
  input x: f32[B, 3, 8, 8]
  input s: f32[B, 5, 4]
  input h0: f32[B, 4]
  y = conv2d(x, 6, kernel=3) as c1
  z = (y -> flatten) as flat
  b = two(z, 5) as pair
  hs, h = scan cell(4) over s from h0 as rnn1
  output b, hs, o = linear(b, 2) as head
}""")
    piped = load(lib + """
model m {
  input x: f32[B, 3, 8, 8]
  input s: f32[B, 5, 4]
  input h0: f32[B, 4]
  y = x -> conv2d(6, kernel=3) as c1
  z = y -> flatten as flat
  b = z -> two(5) as pair
  hs, h = scan cell(4) over s from h0 as rnn1
  output b, hs, o = b -> linear(2) as head
}""")
    keys = list(plain.init_params(0))
    assert keys == list(piped.init_params(0))
    assert keys == ["c1.weight", "c1.bias", "pair.fc1.weight", "pair.fc1.bias",
                    "rnn1.fc1.weight", "rnn1.fc1.bias", "head.weight", "head.bias"]
    # The same code; only the comments quoting each program's own source lines differ.
    def code(prog):
        return [ln for ln in prog.to_torch_source().splitlines() if not ln.strip().startswith("#")]
    assert code(plain) == code(piped)
    params, inputs = plain.init_params(1), plain.random_inputs(1, {"B": 2})
    for name, value in plain.run(inputs, params).items():
        assert (value == piped.run(inputs, params)[name]).all()


@pytest.mark.parametrize("stmt, found", [
    ("y = x * 2 as twice", "an arithmetic expression"),
    ("y = x as same", "a name"),
    ("y = x -> relu as a as b", "as a as b"),
])
def test_as_after_something_that_makes_no_layer_is_located(stmt, found):
    with pytest.raises(DslcError) as exc:
        load("model m {\n  input x: f32[B, 3]\n  " + stmt + "\n  output y\n}\n")
    d = exc.value.diagnostics[0]
    assert d.code == "E0110" and d.span.line == 3
    assert d.span.column == 3 + stmt.rindex(" as ") + 4  # at the name after the last `as`
    assert d.found == found


def test_a_name_given_twice_with_as_is_refused_even_without_parameters():
    with pytest.raises(DslcError) as exc:
        load("model m {\n  input x: f32[B, 3]\n  a = relu(x) as act\n"
             "  b = x -> linear(3) as act\n  output a, b\n}\n")
    d = exc.value.diagnostics[0]
    assert d.code == "E0206" and d.span.line == 4


@pytest.mark.parametrize("name,candidates,want", [
    ("conv_transpose2d", ["transpose", "conv2d", "conv1d"], None),
    ("lienar", ["linear", "lstm"], "did you mean 'linear'?"),
    ("conv2", ["conv2d", "conv1d", "gmm_conv"], "did you mean 'conv2d'?"),
    ("maxpool2d", ["max_pool2d", "avg_pool2d", "max_pool1d"],
     "did you mean 'max_pool2d' or 'max_pool1d'?"),
    ("Relu", ["relu", "elu", "prelu"], "did you mean 'relu' or 'elu' or 'prelu'?"),
    ("upsample", ["sample", "upsample_bilinear2d_vec"], None),
])
def test_op_suggestions_are_a_slip_away(name, candidates, want):
    from dslc.diagnostics import did_you_mean_op

    assert did_you_mean_op(name, candidates) == want


def test_unknown_long_op_does_not_suggest_a_short_op_it_contains():
    with pytest.raises(DslcError) as exc:
        load("model m { input x: f32[B, 3, 8, 8]\n output y = x -> conv_transposed_2d(4) }")
    d = exc.value.diagnostics[0]
    assert d.code == "E0203"
    assert "transpose'" not in (d.hint or "")


# ---- conditional expressions -------------------------------------------------------------


def test_conditional_keeps_the_layer_and_its_keys_across_iterations():
    prog = load("""
block stage(i: int) { input x
  output y = x -> conv2d(4, kernel=3, stride=2 if i == 0 else 1, padding=1) }
model m(wide: bool = false) {
  input x: f32[B, 4, 16, 16]
  h = x
  stages: repeat 3 as i { h = h -> stage(i) }
  output y = h -> flatten -> linear(8 if wide else 2)
}""")
    shapes = {k: v.shape for k, v in prog.init_params(0).items()}
    assert shapes["stages.0.conv1.weight"] == shapes["stages.2.conv1.weight"] == (4, 4, 3, 3)
    convs = [n for n in prog.source.order() if n.op == "conv2d"]
    assert [n.attrs.stride for n in convs] == [2, 1, 1] or \
        [n.attrs.stride for n in convs] == [(2, 2), (1, 1), (1, 1)]
    assert prog.graph.nodes[prog.graph.outputs[0][1][0]].types[0].shape[1] == 2
    wide = load(prog_src := """
model m(wide: bool = false) { input x: f32[B, 4]
  output y = x -> linear(8 if wide else 2) }""", hparams={"wide": True})
    assert wide.init_params(0)["fc1.weight"].shape == (8, 4)
    assert load(prog_src).init_params(0)["fc1.weight"].shape == (2, 4)


def test_conditional_elaborates_only_the_chosen_branch():
    prog = load("""model m(deep: bool = false) { input x: f32[B, 4]
  output y = x -> linear(4) -> linear(4) if deep else x -> nonexistent_op }""",
                hparams={"deep": True})
    assert [n.op for n in prog.source.order() if n.op == "linear"] == ["linear", "linear"]


@pytest.mark.parametrize("expr,code", [
    ("4 if x.shape[0] == 2 else 3", "E0225"),
    ("4 if x else 3", "E0224"),
    ("4 if 7 else 3", "E0224"),
])
def test_conditional_needs_a_compile_time_bool(expr, code):
    with pytest.raises(DslcError) as exc:
        load(f"model m {{ input x: f32[B, 4]\n  output y = x -> linear({expr}) }}")
    d = exc.value.diagnostics[0]
    assert d.code == code and d.span.line == 2 and d.span.column == 31


# ---- several errors per model, without cascades ------------------------------------------


def test_errors_after_the_first_are_reported_and_uses_of_failed_values_are_quiet():
    with pytest.raises(DslcError) as exc:
        load("""block b(n: int) { input x
  output y = x -> linear(n) -> nope }
model m {
  input x: f32[B, 4]
  a = x -> undefined_thing
  c = (a -> relu -> linear(3)) + a
  layers: repeat 3 { h = x -> b(2) }
  if a.shape[1] == 4 { d = a } else { d = x }
  e = d + h
  f = x -> linear(3, kernel=2)
  output y = x -> relu, z = e
}""")
    got = [(d.code, d.span.line) for d in exc.value.diagnostics]
    # the unknown op inside the block is reported once, not once per iteration; c, d, e and
    # the output z use failed values and add nothing
    assert got == [("E0203", 2), ("E0203", 5), ("E0239", 10)]


def test_at_most_twenty_errors_then_a_note_counts_the_rest():
    body = "\n".join(f"  h{i} = x -> bad{i}" for i in range(30))
    with pytest.raises(DslcError) as exc:
        load(f"model m {{ input x: f32[B, 4]\n{body}\n  output y = x }}")
    diags = exc.value.diagnostics
    assert len(diags) == 20
    assert [d.span.line for d in diags] == list(range(2, 22))
    assert diags[-1].notes[-1][0] == "10 more errors not shown (the first 20 are)"


def test_a_limit_error_stops_at_once():
    with pytest.raises(DslcError) as exc:
        load("model m { input x: f32[B, 4]\n a = x -> nope\n"
             " b = x -> linear(2000000) -> linear(2000000) -> linear(2000000)\n"
             " c = x -> nope2\n output y = x }")
    assert [d.code for d in exc.value.diagnostics] == ["E0203", "E0241"]


# ---- warnings ----------------------------------------------------------------------------


def warning_codes(src: str) -> list[tuple[str, int]]:
    return [(w.code, w.span.line) for w in load(src).warnings]


@pytest.mark.parametrize("body,warns", [
    ("output y = x -> global_avg_pool -> linear(10)", True),
    ("output y = x -> conv2d(4, kernel=3) -> batch_norm -> relu -> dropout(0.1) -> linear(3)",
     True),
    ("output y = x -> global_avg_pool -> flatten -> linear(10)", False),
    ("output y = x -> conv2d(4, kernel=3) -> permute([0, 2, 3, 1]) -> linear(3)", False),
    ("output y = x -> reshape([B, 3, 64]) -> linear(3)", False),
    ("output y = x -> mean(dim=-1, keepdim=true) -> linear(3)", True),
])
def test_dense_over_a_spatial_last_axis_warns(body, warns):
    got = warning_codes(f"model m {{ input x: f32[B, 3, 8, 8]\n  {body} }}")
    assert got == ([("W0001", 2)] if warns else [])


@pytest.mark.parametrize("src", [
    "model m { input x: f32[B, T, 16]\n output y = x -> linear(8) }",
    "model m { input x: f32[B, T, 1]\n output y = x -> linear(8) }",  # a univariate series
    "model m { input t: i64[B, T]\n output y = t -> embedding(100, 16) -> linear(8) }",
    "model m { input x: f32[B, 16]\n output y = x -> linear(8) }",
])
def test_sequences_and_features_do_not_warn(src):
    assert warning_codes(src) == []


def test_conv1d_output_into_linear_warns():
    assert warning_codes("model m { input x: f32[B, 4, 32]\n"
                         " output y = x -> conv1d(8, kernel=3) -> linear(8) }") == [("W0001", 2)]


def test_shadowing_and_renamed_labels_warn_once_per_place():
    got = warning_codes("""block b(true: int = 1, dropout: float = 0.1) { input x
  output y = x -> dropout(dropout) }
model m {
  input x: f32[B, 4]
  relu = x
  layers: repeat 3 { relu = relu -> b -> linear(4) as forward }
  false = 1
  output y = relu
}""")
    # the block's `dropout` hyperparameter mirrors torch's keyword and does not warn
    assert got == [("W0002", 1), ("W0003", 5), ("W0003", 6), ("W0004", 6), ("W0002", 7)]


def test_warnings_are_sorted_in_source_order_and_located_at_the_name():
    prog = load("model m { input x: f32[B, 4]\n  mean = x -> linear(4) as eval\n"
                "  output y = mean }")
    (w1, w2) = prog.warnings
    assert (w1.code, w1.span.column, w1.span.end_column) == ("W0003", 3, 7)
    assert (w2.code, w2.span.column, w2.span.end_column) == ("W0004", 28, 32)
    assert "eval_" in w2.message
    assert list(prog.init_params(0)) == ["eval_.weight", "eval_.bias"]


def test_on_failure_errors_come_first_then_warnings():
    with pytest.raises(DslcError) as exc:
        load("model m { input x: f32[B, 4]\n  relu = x -> relu\n  y = relu -> nope\n"
             "  output y }")
    assert [(d.code, d.severity) for d in exc.value.diagnostics] == [
        ("E0203", "error"), ("W0003", "warning")]


@pytest.mark.parametrize("decl,problem,expected", [
    ("f64[B, 4]", "dtype is f32, declared f64", "f64[B, 4] as declared"),
    ("f32[B, 4, 1]", "rank is 2, declared 3", "f32[B, 4, 1] as declared"),
    ("f32[N, w + 1]", "axis 1 is 4, declared 6 (`w + 1`)", "f32[N, 6] as declared"),
])
def test_typed_block_input_mismatch_says_what_differs(decl, problem, expected):
    with pytest.raises(DslcError) as exc:
        load(f"block b(w: int) {{ input x: {decl}\n output y = x }}\n"
             "model m { input x: f32[B, 4]\n output y = x -> b(5) }")
    d = exc.value.diagnostics[0]
    assert d.code == "E0301"
    assert d.message == f"block input 'x' does not match its declared type: {problem}"
    assert d.expected == expected and d.found == "f32[B, 4]"


def test_a_bad_model_parameter_is_reported_with_the_errors_of_the_body():
    with pytest.raises(DslcError) as exc:
        load("model m(k: int = 1.5, n: int = 2) {\n input x: f32[B, 4]\n"
             " h = x -> linear(k)\n y = x -> linear(n) -> nope\n output y }")
    assert [(d.code, d.span.line) for d in exc.value.diagnostics] == [("E0209", 1),
                                                                       ("E0203", 4)]


def test_an_unknown_op_is_reported_even_where_its_input_failed():
    with pytest.raises(DslcError) as exc:
        load("block b { input x\n output y = x -> nope }\n"
             "model m { input x: f32[B, 4]\n h = x -> b\n"
             " y = (h -> relu if h.rank == 2 else h -> also_unknown) -> lineer(3)\n output y }")
    # `also_unknown` sits in a branch of a conditional that is never decided: not reported
    assert [(d.code, d.span.line, d.span.column) for d in exc.value.diagnostics] == [
        ("E0203", 2, 18), ("E0203", 5, 59)]

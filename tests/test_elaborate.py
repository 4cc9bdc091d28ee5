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
    assert plain.to_torch_source() == piped.to_torch_source()
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

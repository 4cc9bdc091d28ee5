"""Tests of dslc/ops/recurrent.py: rnn, lstm, gru against torch.nn.RNN/LSTM/GRU, and the scan
cells of specs/blocks/rnn.dl against the fast ops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dslc
from dslc import dims as D
from dslc.diagnostics import DslcError
from dslc.ops.recurrent import GRU, LSTM, RNN
from dslc.types import tensor
from tests.helpers import assert_close, compare_numpy_torch

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]
BLOCKS = (ROOT / "specs" / "blocks" / "rnn.dl").read_text(encoding="utf-8")
TORCH = {"rnn": torch.nn.RNN, "rnn_relu": torch.nn.RNN, "lstm": torch.nn.LSTM,
         "gru": torch.nn.GRU}
F_IN, H, B, T = 3, 5, 2, 6


def load(body: str, name: str = "t.dl"):
    return dslc.load(name, text="model t {\n" + body + "\n}\n")


def diag(body: str):
    with pytest.raises(DslcError) as exc:
        load(body)
    return exc.value.diagnostics[0]


def layer_src(kind: str, layers: int, bidir: bool, init: bool) -> str:
    op = "rnn" if kind == "rnn_relu" else kind
    dirs = 2 if bidir else 1
    lines = [f"input x: f32[B, T, {F_IN}]"]
    states = ["h0", "c0"] if kind == "lstm" else ["h0"]
    if init:
        lines += [f"input {s}: f32[{layers * dirs}, B, {H}]" for s in states]
    outs = ["y", "h", "c"] if kind == "lstm" else ["y", "h"]
    args = ", ".join((states if init else []) + [str(H), f"num_layers={layers}",
                                                  f"bidirectional={str(bidir).lower()}"])
    if kind == "rnn_relu":
        args += ', nonlinearity="relu"'
    lines.append(f"{', '.join(outs)} = x -> {op}({args}) as net")
    lines.append(f"output {', '.join(outs)}")
    return "\n".join(lines)


def reference(kind: str, layers: int, bidir: bool, params: dict, **kw):
    extra = {"nonlinearity": "relu"} if kind == "rnn_relu" else {}
    m = TORCH[kind](F_IN, H, num_layers=layers, bidirectional=bidir, batch_first=True,
                    **extra, **kw)
    state = {k.split(".", 1)[1]: torch.from_numpy(v.copy()) for k, v in params.items()}
    m.load_state_dict(state, strict=True)  # the same keys, shapes and order as torch's
    assert list(state) == list(m.state_dict())
    return m.eval()


@pytest.mark.parametrize("init", [False, True], ids=["zeros", "h0"])
@pytest.mark.parametrize("bidir", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("kind", ["rnn", "rnn_relu", "lstm", "gru"])
def test_equals_torch_module_with_copied_weights(kind, layers, bidir, init):
    prog = load(layer_src(kind, layers, bidir, init))
    bind = {"B": B, "T": T}
    params = prog.init_params(seed=layers)
    inputs = prog.random_inputs(seed=layers, bind=bind)
    out = prog.run(inputs, params)
    m = reference(kind, layers, bidir, params)
    x = torch.from_numpy(inputs["x"])
    with torch.no_grad():
        if not init:
            y, st = m(x)
        elif kind == "lstm":
            y, st = m(x, (torch.from_numpy(inputs["h0"]), torch.from_numpy(inputs["c0"])))
        else:
            y, st = m(x, torch.from_numpy(inputs["h0"]))
    hn, cn = st if kind == "lstm" else (st, None)
    assert out["y"].shape == (B, T, (2 if bidir else 1) * H)
    assert_close(out["y"], y.numpy(), what="y")
    assert_close(out["h"], hn.numpy(), what="h_n")
    if cn is not None:
        assert_close(out["c"], cn.numpy(), what="c_n")
    # and the generated module, which holds the torch module itself
    compare_numpy_torch(prog, bind)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_generated_code_uses_the_torch_module(kind):
    prog = load(layer_src(kind, 2, True, False))
    src = prog.to_torch_source()
    cls = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}[kind]
    assert f"self.net = nn.{cls}({F_IN}, {H}, num_layers=2, batch_first=True, " \
           "bidirectional=True)" in src
    if kind == "lstm":
        assert "y, (h, c) = self.net(x)" in src
    else:
        assert "y, h = self.net(x)" in src
    assert " in range(" not in src  # no explicit loop: the module is the fast path


def test_lstm_with_initial_states_passes_the_pair():
    src = load(layer_src("lstm", 1, False, True)).to_torch_source()
    assert "y, (h, c) = self.net(x, (h0, c0))" in src


def test_options_reach_the_module():
    prog = load(f"input x: f32[B, T, {F_IN}]\n"
                "y, h = x -> rnn(4, num_layers=2, nonlinearity=\"relu\", bias=false, "
                "dropout=0.25) as net\noutput y, h")
    src = prog.to_torch_source()
    assert (f"nn.RNN({F_IN}, 4, num_layers=2, nonlinearity='relu', bias=False, "
            "batch_first=True, dropout=0.25)") in src
    assert sorted(prog.init_params()) == sorted(
        f"net.weight_{a}_l{k}" for a in ("ih", "hh") for k in (0, 1))


def test_parameter_names_shapes_and_init():
    prog = load(f"input x: f32[B, T, {F_IN}]\ny, h, c = x -> lstm(8, num_layers=2, "
                "bidirectional=true) as net\noutput y")
    params = prog.init_params(seed=0)
    m = torch.nn.LSTM(F_IN, 8, num_layers=2, bidirectional=True, batch_first=True)
    want = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert {k[4:]: v.shape for k, v in params.items()} == want
    assert list(params)[:4] == ["net.weight_ih_l0", "net.weight_hh_l0", "net.bias_ih_l0",
                                "net.bias_hh_l0"]
    assert params["net.weight_ih_l1_reverse"].shape == (32, 16)
    # U(-1/sqrt(H), 1/sqrt(H)) with H the hidden size, as torch draws them
    bound = 1 / np.sqrt(8)
    for v in params.values():
        assert np.abs(v).max() <= bound and np.abs(v).max() > 0.8 * bound


@pytest.mark.parametrize("op,gates", [(RNN, 1), (LSTM, 4), (GRU, 3)])
def test_macs_are_per_step_times_t_dirs_layers(op, gates):
    a = op.attrs(hidden_size=16, num_layers=3, bidirectional=True)
    x = tensor("f32", D.symbol("B"), D.symbol("T"), 10)
    outs = op.shape(a, [x])
    macs = D.as_dim(op.macs(a, [x], outs))
    per_step = gates * 16 * (10 + 16) + 2 * gates * 16 * (32 + 16)  # layer 0, layers 1-2
    assert D.equal(macs, D.symbol("B") * D.symbol("T") * 2 * per_step) is True
    # the summary of a one-layer model: B·T·G·H·(F + H)
    prog = load(f"input x: f32[B, T, {F_IN}]\ny, h = x -> gru({H}) as net\noutput y")
    assert prog.summary({"B": 2, "T": 7})["macs"] == 2 * 7 * 3 * H * (F_IN + H)


def test_symbolic_output_types():
    prog = load("input x: f32[B, T, 4]\ny, h, c = x -> lstm(6, num_layers=2, "
                "bidirectional=true)\noutput y, h, c")
    node = next(n for n in prog.graph.order() if n.op == "lstm")
    assert [str(t) for t in node.types] == ["f32[B, T, 12]", "f32[4, B, 6]", "f32[4, B, 6]"]
    assert node.module == "lstm1"


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_long_sequence_stays_finite(kind):
    outs = "y, h, c" if kind == "lstm" else "y, h"
    prog = load(f"input x: f32[B, T, 3]\n{outs} = x -> {kind}(4, num_layers=2)\noutput y")
    inputs = prog.random_inputs(0, {"B": 1, "T": 2000})
    inputs["x"] *= 10  # saturating inputs
    y = prog.run(inputs, prog.init_params(0))["y"]
    assert y.shape == (1, 2000, 4)
    assert np.isfinite(y).all() and np.abs(y).max() <= 1.0


def test_dropout_between_layers_only_in_training():
    prog = load("input x: f32[B, T, 3]\ny, h = x -> gru(6, num_layers=2, dropout=0.5)\n"
                "output y")
    params = prog.init_params(0)
    x = prog.random_inputs(0, {"B": 2, "T": 5})
    ev = prog.run(x, dict(params))["y"]
    a = prog.run(x, dict(params), train=True, seed=1)["y"]
    b = prog.run(x, dict(params), train=True, seed=1)["y"]
    c = prog.run(x, dict(params), train=True, seed=2)["y"]
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, ev) and not np.allclose(a, c)
    # one layer: nothing between layers, so training changes nothing (torch warns, same result)
    one = load("input x: f32[B, T, 3]\ny, h = x -> gru(6, dropout=0.5)\noutput y")
    p1 = one.init_params(0)
    np.testing.assert_array_equal(one.run(x, dict(p1), train=True)["y"], one.run(x, p1)["y"])


@pytest.mark.parametrize("body,code,line,col", [
    # a sequence without a batch or a time axis
    ("input x: f32[T, 3]\ny, h = x -> rnn(4)\noutput y", "E0301", 3, 8),
    # an initial state of the wrong size
    ("input x: f32[B, T, 3]\ninput h0: f32[1, B, 5]\ny, h = x -> gru(h0, 4)\noutput y",
     "E0301", 4, 17),
    # an lstm given h0 without c0
    ("input x: f32[B, T, 3]\ninput h0: f32[1, B, 4]\ny, h, c = x -> lstm(h0, 4)\noutput y",
     "E0301", 4, 21),
    # features that are not a fixed number
    ("input x: f32[B, T, F]\ny, h = x -> rnn(4)\noutput y", "E0304", 3, 8),
    ("input x: f32[B, T, 3]\ny, h = x -> rnn(0)\noutput y", "E0301", 3, 17),
    ("input x: i64[B, T, 3]\ny, h = x -> rnn(4)\noutput y", "E0302", 3, 8),
])
def test_bad_inputs_are_located(body, code, line, col):
    d = diag(body)
    assert d.code == code, d
    assert (d.span.line, d.span.column) == (line, col), d


# ---- the scan cells of specs/blocks/rnn.dl equal the fast ops -------------------------------


def cell_prog(cell: str, states: list[str], reverse: bool = False):
    ins = "\n".join(f"  input {s}: f32[B, {H}]" for s in states)
    outs = ["ys"] + [s + "_n" for s in states]
    src = BLOCKS + f"""
model t {{
  input x: f32[B, T, {F_IN}]
{ins}
  {', '.join(outs)} = scan {cell} over x from {', '.join(states)}{' reverse' if reverse else ''}
  output {', '.join(outs)}
}}
"""
    return dslc.load("cells.dl", text=src)


def fast_prog(kind: str):
    return load(layer_src(kind, 1, False, True))


def run_both(cell: str, kind: str, states: list[str], mapping, reverse: bool = False):
    """Run the scan cell and the fast op with the cell's weights mapped onto torch's layout."""
    sp = cell_prog(cell, states, reverse)
    fp = fast_prog(kind)
    bind = {"B": B, "T": T}
    p = sp.init_params(seed=4)
    inputs = sp.random_inputs(seed=4, bind=bind)
    out = sp.run(inputs, p)
    fast_in = {"x": inputs["x"][:, ::-1].copy() if reverse else inputs["x"]}
    for s in states:
        fast_in[s + "0"] = inputs[s][None]
    fout = fp.run(fast_in, {f"net.{k}": v.astype(np.float32) for k, v in mapping(p).items()})
    ys = fout["y"][:, ::-1] if reverse else fout["y"]
    assert_close(out["ys"], ys, what="per-step outputs")
    assert_close(out["h_n"], fout["h"][0], what="final h")
    if "c" in states:
        assert_close(out["c_n"], fout["c"][0], what="final c")
    compare_numpy_torch(sp, bind)  # and the scan's generated loop
    return p


def cat(p, prefix, names, part):
    return np.concatenate([p[f"{prefix}.{n}.{part}"] for n in names])


@pytest.mark.parametrize("reverse", [False, True])
def test_lstm_cell_equals_the_lstm_op(reverse):
    def mapping(p):
        pre = "lstm_cell1"
        return {"weight_ih_l0": cat(p, pre, ["x_i", "x_f", "x_c", "x_o"], "weight"),
                "weight_hh_l0": cat(p, pre, ["h_i", "h_f", "h_c", "h_o"], "weight"),
                "bias_ih_l0": cat(p, pre, ["x_i", "x_f", "x_c", "x_o"], "bias"),
                "bias_hh_l0": np.zeros(4 * H, np.float32)}
    p = run_both(f"lstm_cell({H})", "lstm", ["h", "c"], mapping, reverse)
    assert not any(".c_" in k for k in p)  # no peephole weights without peepholes


def test_gru_cell_equals_the_gru_op():
    def mapping(p):
        pre = "gru_cell1"
        return {"weight_ih_l0": cat(p, pre, ["x_r", "x_z", "x_n"], "weight"),
                "weight_hh_l0": cat(p, pre, ["h_r", "h_z", "h_n"], "weight"),
                "bias_ih_l0": cat(p, pre, ["x_r", "x_z", "x_n"], "bias"),
                "bias_hh_l0": cat(p, pre, ["h_r", "h_z", "h_n"], "bias")}
    run_both(f"gru_cell({H})", "gru", ["h"], mapping)


@pytest.mark.parametrize("kind", ["tanh", "relu"])
def test_elman_cell_equals_the_rnn_op(kind):
    def mapping(p):
        return {"weight_ih_l0": p["elman_cell1.ih.weight"],
                "weight_hh_l0": p["elman_cell1.hh.weight"],
                "bias_ih_l0": p["elman_cell1.ih.bias"], "bias_hh_l0": p["elman_cell1.hh.bias"]}
    run_both(f'elman_cell({H}, "{kind}")', "rnn_relu" if kind == "relu" else "rnn", ["h"],
             mapping)


def test_peephole_cell_with_zero_peepholes_is_the_plain_cell():
    peep = cell_prog(f"lstm_cell({H}, true)", ["h", "c"])
    plain = cell_prog(f"lstm_cell({H})", ["h", "c"])
    p = peep.init_params(seed=1)
    inputs = peep.random_inputs(seed=1, bind={"B": B, "T": T})
    with_peep = peep.run(inputs, dict(p))
    for k in ("c_i", "c_f", "c_o"):
        assert p[f"lstm_cell1.{k}.weight"].shape == (H, H)
    zeroed = {k: (np.zeros_like(v) if ".c_" in k else v) for k, v in p.items()}
    base = plain.run(inputs, {k: v for k, v in p.items() if ".c_" not in k})
    assert_close(peep.run(inputs, zeroed)["ys"], base["ys"], what="zero peepholes")
    assert not np.allclose(with_peep["ys"], base["ys"], atol=1e-4)


# ---- variable-length batches: the lengths input equals torch's packed sequences -----------


@pytest.mark.parametrize("init", [False, True], ids=["zeros", "h0"])
@pytest.mark.parametrize("bidir", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_lengths_equal_torch_packed_sequences(kind, layers, bidir, init):
    lines = [f"input x: f32[B, T, {F_IN}]", "input lengths: i64[B]"]
    states = (["h0", "c0"] if kind == "lstm" else ["h0"]) if init else []
    lines += [f"input {s}: f32[{layers * (2 if bidir else 1)}, B, {H}]" for s in states]
    outs = ["y", "h", "c"] if kind == "lstm" else ["y", "h"]
    args = ", ".join(states + ["lengths", str(H), f"num_layers={layers}",
                               f"bidirectional={str(bidir).lower()}"])
    lines += [f"{', '.join(outs)} = x -> {kind}({args}) as net", f"output {', '.join(outs)}"]
    prog = load("\n".join(lines))
    bsz, steps = 5, 7
    params = prog.init_params(seed=layers)
    inputs = prog.random_inputs(seed=layers, bind={"B": bsz, "T": steps})
    # unsorted, with the extremes: length 1 and the full length
    inputs["lengths"] = np.array([3, steps, 1, 6, 1], np.int64)
    out = prog.run(inputs, params)
    m = reference(kind, layers, bidir, params)
    x = torch.from_numpy(inputs["x"])
    hx = [torch.from_numpy(inputs[s]) for s in states]
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        x, torch.from_numpy(inputs["lengths"]), batch_first=True, enforce_sorted=False)
    with torch.no_grad():
        y, st = m(packed, (tuple(hx) if len(hx) == 2 else hx[0]) if hx else None)
    y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=steps)
    hn, cn = st if kind == "lstm" else (st, None)
    assert_close(out["y"], y.numpy(), what="y")
    assert_close(out["h"], hn.numpy(), what="h_n")
    if cn is not None:
        assert_close(out["c"], cn.numpy(), what="c_n")
    # steps past a row's length output zeros; the length-1 rows differ from a full-length run
    assert np.all(out["y"][2, 1:] == 0) and np.any(out["y"][2, 0] != 0)
    full = prog.run({**inputs, "lengths": np.full(bsz, steps, np.int64)}, params)
    assert not np.allclose(full["h"], out["h"])
    # the generated module packs and pads itself
    src = prog.to_torch_source()
    assert "nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, " \
           "enforce_sorted=False)" in src
    assert "total_length=x.shape[1]" in src
    mod = prog.to_torch()()
    mod.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in params.items()})
    with torch.no_grad():
        got = mod(**{k: torch.from_numpy(v.copy()) for k, v in inputs.items()})
    got = got if isinstance(got, (tuple, list)) else (got,)
    assert_close(got[0].numpy(), out["y"], what="generated y")
    assert_close(got[1].numpy(), out["h"], what="generated h")


def test_full_lengths_equal_no_lengths():
    base = load(f"input x: f32[B, T, {F_IN}]\ny, h = x -> gru({H}, bidirectional=true) as net"
                "\noutput y, h")
    packed = load(f"input x: f32[B, T, {F_IN}]\ninput n: i64[B]\n"
                  f"y, h = x -> gru(n, {H}, bidirectional=true) as net\noutput y, h")
    p = base.init_params(0)
    x = base.random_inputs(0, {"B": B, "T": T})
    a = base.run(x, p)
    b = packed.run({**x, "n": np.full(B, T, np.int64)}, p)
    np.testing.assert_array_equal(a["y"], b["y"])
    np.testing.assert_array_equal(a["h"], b["h"])


def test_lengths_outside_one_to_t_are_refused():
    prog = load(f"input x: f32[B, T, {F_IN}]\ninput n: i64[B]\ny, h = x -> rnn(n, 4)\noutput y")
    x = prog.random_inputs(0, {"B": 2, "T": 3})
    p = prog.init_params(0)
    for bad, found in (([0, 3], "0"), ([1, 4], "4")):
        with pytest.raises(DslcError) as exc:
            prog.run({**x, "n": np.array(bad, np.int64)}, p)
        d = exc.value.diagnostics[0]
        # a located diagnostic at the rnn's statement, not an internal error
        assert d.code == "E0507" and d.span.line == 4, d
        assert "lengths must lie in [1, T]" in d.message
        assert d.expected == "1 <= length <= 3" and d.found == found


@pytest.mark.parametrize("decl,code", [("f32[B]", "E0302"), ("i64[B, T]", "E0301"),
                                       ("i64[3]", "E0301")])
def test_bad_lengths_are_located(decl, code):
    d = diag(f"input x: f32[B, T, 3]\ninput n: {decl}\ny, h = x -> gru(n, 4)\noutput y")
    assert d.code == code, d
    assert (d.span.line, d.span.column) == (4, 17), d


# ---- the kernel's chunked input projections ---------------------------------------------


@pytest.mark.parametrize("lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("bidir", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_projection_chunks_do_not_change_the_result(monkeypatch, kind, bidir, lengths):
    """The kernel projects the inputs of up to _CHUNK_STEPS steps at a time; with 3-step
    chunks over T = 7 (two full chunks and a ragged one, the backward direction's chunks taken
    from the end) the result equals torch's, and the one-chunk result to the last bits."""
    from dslc.ops import recurrent

    lines = [f"input x: f32[B, T, {F_IN}]"] + (["input lengths: i64[B]"] if lengths else [])
    outs = ["y", "h", "c"] if kind == "lstm" else ["y", "h"]
    args = ", ".join((["lengths"] if lengths else []) +
                     [str(H), "num_layers=2", f"bidirectional={str(bidir).lower()}"])
    lines += [f"{', '.join(outs)} = x -> {kind}({args}) as net", f"output {', '.join(outs)}"]
    prog = load("\n".join(lines))
    bsz, steps = 3, 7
    params = prog.init_params(seed=5)
    inputs = prog.random_inputs(seed=5, bind={"B": bsz, "T": steps})
    if lengths:
        inputs["lengths"] = np.array([7, 2, 5], np.int64)
    whole = prog.run(inputs, params)
    monkeypatch.setattr(recurrent, "_CHUNK_STEPS", 3)
    chunked = prog.run(inputs, params)
    for name in outs:  # the GEMM's rounding may differ in the last bit with its row count
        np.testing.assert_allclose(chunked[name], whole[name], rtol=1e-6, atol=1e-7)
    m = reference(kind, 2, bidir, params)
    x = torch.from_numpy(inputs["x"])
    if lengths:
        x = torch.nn.utils.rnn.pack_padded_sequence(
            x, torch.from_numpy(inputs["lengths"]), batch_first=True, enforce_sorted=False)
    with torch.no_grad():
        y, st = m(x)
    if lengths:
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=steps)
    assert_close(chunked["y"], y.numpy(), what="y")
    assert_close(chunked["h"], (st[0] if kind == "lstm" else st).numpy(), what="h_n")

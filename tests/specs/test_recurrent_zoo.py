"""The recurrent zoo (ZOO.md, Recurrent): every spec checks, runs on NumPy, compiles and equals
the generated PyTorch; the published facts (parameter counts, torch module equality, sequence
modes) through the API and `dslc summary --json`."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest

import dslc
from dslc import cli
from dslc.diagnostics import DslcError
from tests.helpers import assert_close, compare_numpy_torch, torch_outputs

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"
BLOCKS = (SPECS / "blocks" / "rnn.dl").read_text(encoding="utf-8")

MODELS = {
    "elman_rnn.dl": ["elman_rnn"],
    "jordan_rnn.dl": ["jordan_rnn"],
    "birnn.dl": ["birnn", "birnn_scan"],
    "deep_rnn.dl": ["deep_rnn"],
    "lstm.dl": ["lstm_net"],
    "lstm_peephole.dl": ["lstm_peephole"],
    "gru.dl": ["gru_net"],
    "seq2seq.dl": ["seq2seq"],
    "sentiment.dl": ["sentiment", "tagger"],
    "char_lm.dl": ["char_lm", "char_lstm"],
}
CASES = [(f, m) for f, ms in MODELS.items() for m in ms]
BIND = {"B": 2, "T": 5, "S": 4}


@cache
def load(file: str, model: str) -> dslc.Program:
    return dslc.load(SPECS / file, model=model)


def bind_for(prog) -> dict[str, int]:
    names = {s for _, nid in prog.graph.inputs
             for d in prog.graph.nodes[nid].types[0].shape for s in map(str, d.free_symbols)}
    return {k: v for k, v in BIND.items() if k in names}


def summary(capsys, file: str, *args: str) -> dict:
    capsys.readouterr()
    rc = cli.main(["summary", str(SPECS / file), "--json", *args])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out)


def test_each_spec_names_its_note():
    for f in MODELS:
        first = (SPECS / f).read_text(encoding="utf-8").splitlines()[0]
        assert first.startswith("# ") and "note" in first, f


@pytest.mark.parametrize("file,model", CASES, ids=[m for _, m in CASES])
def test_numpy_equals_torch(file, model):
    prog = load(file, model)
    bind = bind_for(prog)
    np_out, _, module = compare_numpy_torch(prog, bind)
    for name, ref in prog.graph.outputs:
        t = prog.graph.nodes[ref[0]].types[ref[1]]
        want = tuple(int(d.subs({s: bind[s.name] for s in d.free_symbols})) for d in t.shape)
        assert np_out[name].shape == want, name
    assert sum(p.numel() for p in module.parameters()) == prog.summary(bind)["params"]
    assert prog.to_dot().lstrip().startswith("digraph")


@pytest.mark.parametrize("file,model,params", [
    ("deep_rnn.dl", "deep_rnn", 230_400),
    ("lstm.dl", "lstm_net", 921_600),
    ("gru.dl", "gru_net", 691_200),
])
def test_published_parameter_counts(capsys, file, model, params):
    s = summary(capsys, file, "--bind=B=1", "--bind=T=10")
    assert s["model"] == model and s["params"] == params
    # MACs: per step G·H·(in + H) for each layer, times T (and B = 1)
    gates = {"deep_rnn": 1, "lstm_net": 4, "gru_net": 3}[model]
    assert s["macs"] == 10 * gates * 256 * ((128 + 256) + (256 + 256))


def test_lstm_is_4x_and_gru_3x_the_plain_rnn(capsys):
    rnn = summary(capsys, "deep_rnn.dl", "--set", "layers=1", "--bind=B=1", "--bind=T=3")
    lstm = summary(capsys, "lstm.dl", "--set", "layers=1", "--bind=B=1", "--bind=T=3")
    gru = summary(capsys, "gru.dl", "--set", "layers=1", "--bind=B=1", "--bind=T=3")
    assert lstm["params"] == 4 * rnn["params"] and gru["params"] == 3 * rnn["params"]


def test_bidirectional_macs_double(capsys):
    s = summary(capsys, "birnn.dl", "--model", "birnn", "--bind=B=3", "--bind=T=7")
    assert s["macs"] == 3 * 7 * 2 * 32 * (16 + 32)
    assert s["outputs"][0]["shape"] == [3, 7, 64]


@pytest.mark.parametrize("file,model,cls", [
    ("deep_rnn.dl", "deep_rnn", torch.nn.RNN),
    ("lstm.dl", "lstm_net", torch.nn.LSTM),
    ("gru.dl", "gru_net", torch.nn.GRU),
    ("birnn.dl", "birnn", torch.nn.RNN),
])
def test_fast_specs_equal_the_torch_module(file, model, cls):
    prog = load(file, model)
    src = prog.to_torch_source()
    assert f"nn.{cls.__name__}(" in src and " in range(" not in src
    params = prog.init_params(1)
    x = prog.random_inputs(1, {"B": 2, "T": 9})
    out = prog.run(x, params)
    kw = {"bidirectional": True} if model == "birnn" else {"num_layers": 2}
    size = (16, 32) if model == "birnn" else (128, 256)
    m = cls(*size, batch_first=True, **kw)
    m.load_state_dict({k.split(".", 1)[1]: torch.from_numpy(v) for k, v in params.items()})
    with torch.no_grad():
        y = m(torch.from_numpy(x["x"]))[0].numpy()
    assert_close(out["ys"], y, what=model)


def test_elman_spec_equals_nn_rnn():
    prog = load("elman_rnn.dl", "elman_rnn")
    p = prog.init_params(2)
    x = prog.random_inputs(2, {"B": 3, "T": 8})
    out = prog.run(x, p)
    m = torch.nn.RNN(16, 32, batch_first=True)
    m.load_state_dict({"weight_ih_l0": torch.from_numpy(p["elman_cell1.ih.weight"]),
                       "bias_ih_l0": torch.from_numpy(p["elman_cell1.ih.bias"]),
                       "weight_hh_l0": torch.from_numpy(p["elman_cell1.hh.weight"]),
                       "bias_hh_l0": torch.from_numpy(p["elman_cell1.hh.bias"])})
    with torch.no_grad():
        y, h = m(torch.from_numpy(x["x"]), torch.from_numpy(x["h0"])[None])
    assert_close(out["hs"], y.numpy(), what="hs")
    assert_close(out["h"], h[0].numpy(), what="h")


def test_birnn_scan_equals_the_fast_birnn():
    """Two scans (one `reverse`) with the weights moved across equal nn.RNN(bidirectional)."""
    fast, scan = load("birnn.dl", "birnn"), load("birnn.dl", "birnn_scan")
    p = scan.init_params(3)
    x = scan.random_inputs(3, {"B": 2, "T": 6})
    x["h0"][:] = 0.0  # the fast op starts from zeros
    moved = {}
    for cell, sfx in (("elman_cell1", ""), ("elman_cell2", "_reverse")):
        for ours, theirs in (("ih.weight", "weight_ih_l0"), ("hh.weight", "weight_hh_l0"),
                             ("ih.bias", "bias_ih_l0"), ("hh.bias", "bias_hh_l0")):
            moved[f"rnn.{theirs}{sfx}"] = p[f"{cell}.{ours}"]
    assert sorted(moved) == sorted(fast.init_params())
    assert_close(scan.run(x, p)["ys"], fast.run({"x": x["x"]}, moved)["ys"])


def test_jordan_feeds_back_its_output_by_hand():
    """hidden 1, out 1, features 1: h = tanh(w x + v y + b), y' = sigmoid(o h + c)."""
    prog = dslc.load(SPECS / "jordan_rnn.dl", hparams={"features": 1, "hidden": 1, "out": 1})
    w, bi, v, bv, o, c = 0.5, 0.1, -1.5, 0.2, 2.0, -0.3
    p = {"jordan_cell1.ih.weight": [[w]], "jordan_cell1.ih.bias": [bi],
         "jordan_cell1.yh.weight": [[v]], "jordan_cell1.yh.bias": [bv],
         "jordan_cell1.ho.weight": [[o]], "jordan_cell1.ho.bias": [c]}
    p = {k: np.asarray(val, np.float32) for k, val in p.items()}
    xs = [1.0, -2.0, 0.5]
    y, want = 0.25, []
    for xt in xs:
        h = np.tanh(w * xt + bi + v * y + bv)
        y = 1 / (1 + np.exp(-(o * h + c)))
        want.append(y)
    inputs = {"x": np.asarray(xs, np.float32).reshape(1, 3, 1),
              "y0": np.full((1, 1), 0.25, np.float32)}
    out = prog.run(inputs, p)["ys"]
    np.testing.assert_allclose(out.ravel(), want, rtol=1e-6)
    t_out, _ = torch_outputs(prog, inputs, p)
    np.testing.assert_allclose(t_out["ys"].ravel(), want, rtol=1e-6)


def test_peephole_lstm_has_the_extra_matrices(capsys):
    s = summary(capsys, "lstm_peephole.dl", "--bind=B=1", "--bind=T=4")
    plain = 4 * (32 * 16 + 32 + 32 * 32)
    assert s["params"] == plain + 3 * 32 * 32
    assert " in range(" in load("lstm_peephole.dl", "lstm_peephole").to_torch_source()


def test_sequence_modes_are_symbolic_in_T():
    def out_types(file, model):
        g = load(file, model).graph
        return [str(g.type_of(ref)) for _, ref in g.outputs]
    assert out_types("sentiment.dl", "sentiment") == ["f32[B, 2]"]  # many-to-one
    assert out_types("sentiment.dl", "tagger") == ["f32[B, T, 17]"]  # many-to-many
    assert out_types("char_lm.dl", "char_lm") == ["f32[B, 20, 64]"]  # one-to-many
    assert out_types("seq2seq.dl", "seq2seq") == ["f32[B, T, 1000]"]  # S in, T out


def test_char_lm_generates_distributions_fed_back():
    prog = load("char_lm.dl", "char_lm")
    x = prog.random_inputs(0, {"B": 3})
    probs = prog.run(x, prog.init_params(0))["probs"]
    assert probs.shape == (3, 20, 64)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    assert not np.allclose(probs[:, 1], probs[:, 2])  # the fed-back input moves each step


def test_seq2seq_decoder_starts_from_the_encoder_state():
    prog = load("seq2seq.dl", "seq2seq")
    p = prog.init_params(0)
    x = prog.random_inputs(0, {"B": 2, "S": 4, "T": 3})
    a = prog.run(x, p)["logits"]
    x2 = dict(x, src=(x["src"] + 1) % 1000)
    b = prog.run(x2, p)["logits"]
    assert not np.allclose(a, b)  # another source sentence, another translation
    line = next(ln for ln in prog.to_torch_source().splitlines() if "self.decoder(" in ln)
    assert line.strip().startswith("dec, (h_dec, c_dec) = ") and line.endswith(", (h, c))")


def test_long_sequence_stays_finite():
    for file, model in (("lstm_peephole.dl", "lstm_peephole"), ("elman_rnn.dl", "elman_rnn")):
        prog = dslc.load(SPECS / file, model=model, hparams={"features": 3, "hidden": 4})
        x = prog.random_inputs(0, {"B": 1, "T": 2000})
        outs = prog.run(x, prog.init_params(0))
        assert all(np.isfinite(v).all() for v in outs.values()), model


# ---- bad recurrences: located diagnostics ----------------------------------------------------


def bad(model_body: str, extra: str = ""):
    src = BLOCKS + extra + "\nmodel t {\n" + model_body + "\n}\n"
    with pytest.raises(DslcError) as exc:
        dslc.load("bad.dl", text=src)
    d = exc.value.diagnostics[0]
    line = src.count("\n", 0, src.index("\nmodel t {")) + 2  # the model's first line
    return d, d.span.line - line


def test_state_shape_change_is_located():
    d, at = bad("  input x: f32[B, T, 3]\n  input h0: f32[B, 6]\n"
                "  hs, h = scan elman_cell(5) over x from h0\n  output hs")
    assert d.code == "E0310" and at == 3
    assert "f32[B, 6]" in d.expected and "f32[B, 5]" in d.found


def test_wrong_time_axis_is_located():
    d, at = bad("  input x: f32[B, 3]\n  input h0: f32[B, 5]\n"
                "  hs, h = scan elman_cell(5) over x from h0 along 2\n  output hs")
    assert d.code == "E0314" and at == 3


def test_feedback_of_the_wrong_size_is_located():
    """One-to-many: the cell's output is fed back as its next input, so its size must match."""
    cell = """
block bad_step(vocab: int, hidden: int) {
  input y
  input h
  h_new = tanh((y -> linear(hidden) as ih) + (h -> linear(hidden) as hh))
  output p = h_new -> linear(vocab + 1) -> softmax, h_new
}
"""
    d, at = bad("  input y0: f32[B, 8]\n  input h0: f32[B, 4]\n"
                "  ps, y, h = scan bad_step(8, 4) from y0, h0 steps 3\n  output ps", cell)
    assert d.code == "E0310" and at == 3
    assert "f32[B, 8]" in d.expected and "f32[B, 9]" in d.found

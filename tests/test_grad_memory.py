"""The backward walk's memory (dslc/grad_memory.py, dslc/autodiff.py): the static training
peak against the bytes the interpreter really holds during a forward and backward walk, and
checkpointed blocks (recomputed in the backward walk) giving the same gradients for less."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import dslc
from dslc import autodiff, grad_memory
from dslc import dims as D
from dslc.summary import DTYPE_BYTES

ROOT = Path(__file__).resolve().parents[1]


def owner(a: np.ndarray) -> np.ndarray:
    """The array that owns a view's memory (a reshape or a slice holds no bytes of its own)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


class Meter:
    """An autodiff.Probe: at each instant, the bytes of every distinct buffer the walk holds
    (tape entries, what kernels keep in ctx.saved, checkpointed blocks' inputs, the outputs,
    the cotangents and the arrays the walk has in hand); the peak over the instants."""

    def __init__(self) -> None:
        self.peak = 0
        self.instants = 0

    def __call__(self, tape: autodiff.Tape, cot: dict, extra: list) -> None:
        held: dict[int, int] = {}

        def add(a) -> None:
            if isinstance(a, np.ndarray):
                base = owner(a)
                held[id(base)] = base.nbytes
            elif isinstance(a, (tuple, list)):  # a kernel's saved group (the qkv projections)
                for v in a:
                    add(v)

        for entries in (tape.ins, tape.outs):
            for values in entries.values():
                for v in values:
                    add(v)
        for ctx in tape.ctxs.values():
            for v in ctx.saved.values():
                add(v)
        for block in tape.seg_ins.values():
            for v in block.values():
                add(v)
        for v in [*tape.outputs.values(), *cot.values(), *extra]:
            add(v)
        self.instants += 1
        self.peak = max(self.peak, sum(held.values()))


def setup(spec: str, hparams: dict, bind: dict[str, int]):
    prog = dslc.load(ROOT / "specs" / spec, hparams=hparams)
    g = prog.source
    inputs = prog.random_inputs(0, bind)
    rng = np.random.default_rng(1)
    cot = {}
    for name, ref in g.outputs:
        t = g.type_of(ref)
        if t.is_float:
            shape = [D.evaluate(d, bind) for d in t.shape]
            cot[name] = rng.standard_normal(shape).astype(np.float32)
    return prog, g, inputs, cot


def measured(spec, hparams, bind, train=True, checkpoint=False):
    """(gradients, parameters after the step, measured peak bytes, static peak bytes)."""
    prog, g, inputs, cot = setup(spec, hparams, bind)
    params = prog.init_params(0)
    meter = Meter()
    grads, _ = autodiff.grad(g, inputs, params, cot, train=train, bindings=bind,
                             checkpoint_blocks=checkpoint, probe=meter)
    assert meter.instants > len(g.nodes)  # every forward node and every vjp was watched

    def size_of(ref):
        t = g.type_of(ref)
        return int(np.prod([D.evaluate(d, bind) for d in t.shape])) * DTYPE_BYTES[t.dtype]

    def extra_of(node):  # what a kernel keeps for its vjp (Op.vjp_keeps)
        n = D.evaluate(grad_memory.kept_elements(g, node), bind)
        return n * DTYPE_BYTES[node.types[0].dtype]

    static = grad_memory.training_peak(g, size_of, checkpoint=checkpoint, extra_of=extra_of)
    return grads, params, meter.peak, static


# Models without dropout: the static figure replays the walk's own events, what kernels keep
# for their vjp included (Op.vjp_keeps: the LSTM's recorded steps), so it is the measured
# peak to within 1% (views of a value count once in the measure, as in memory).
EXACT = [
    ("resnet18.dl", {"size": 64, "classes": 10}, {"B": 2}),
    ("lenet5.dl", {}, {"B": 8}),
    ("mlp.dl", {}, {"B": 8}),
    ("gcn.dl", {}, {"N": 60, "E": 240}),
    ("lstm.dl", {}, {"B": 3, "T": 12}),
]


@pytest.mark.parametrize("checkpoint", [False, True])
@pytest.mark.parametrize("spec,hparams,bind", EXACT, ids=[e[0] for e in EXACT])
def test_static_training_peak_is_what_the_walk_holds(spec, hparams, bind, checkpoint):
    _, _, peak, static = measured(spec, hparams, bind, checkpoint=checkpoint)
    assert static > 0
    assert abs(peak - static) <= 0.01 * static, (peak, static)


def test_static_peak_bounds_a_transformer_without_dropout():
    """Dropout at p = 0 hands back its input array, which the static figure counts as a value
    of its own: there it is an upper bound, within 35% (attention's kept q, k, v counted)."""
    hp = {"d": 32, "heads": 4, "ff": 64, "n": 2, "p": 0.0}
    for checkpoint in (False, True):
        _, _, peak, static = measured("transformer_encoder.dl", hp, {"B": 2, "T": 16},
                                      checkpoint=checkpoint)
        assert 0.65 * static <= peak <= static, (checkpoint, peak, static)


def test_every_saved_value_is_released_and_only_the_loss_path_is_taped():
    prog = dslc.load("t.dl", text="model t {\n input x: f32[4, 3]\n"
                                  " a = x -> linear(5) as used -> relu -> sum(dim=(0, 1))\n"
                                  " b = x -> linear(6) as unused -> tanh\n output a, b\n}\n")
    g = prog.source
    refs = dict(g.outputs)
    tape = autodiff.forward(g, prog.random_inputs(0), prog.init_params(0),
                            loss_refs=[refs["a"]])
    used = {n.id for n in g.nodes.values() if n.op != "input" and n.module != "unused"
            and n.op != "tanh"}
    assert set(tape.ins) == used  # the used linear, relu and the sum: not b's branch
    autodiff.backward(g, tape, autodiff.output_seeds(g, tape.outputs, "a"))
    assert not tape.ins and not tape.outs and not tape.ctxs


# ---- checkpointed blocks -------------------------------------------------------------------


CHECKPOINTED = [
    # batch norm in training (buffers must be updated once), projection shortcuts
    ("resnet18.dl", {"size": 64, "classes": 10}, {"B": 2}, 0.65),
    # dropout in training: a recomputed block draws the forward's masks again
    ("transformer_encoder.dl", {"d": 32, "heads": 4, "ff": 64, "n": 6, "p": 0.1},
     {"B": 2, "T": 16}, 0.45),
]


@pytest.mark.parametrize("spec,hparams,bind,most", CHECKPOINTED,
                         ids=[c[0] for c in CHECKPOINTED])
def test_checkpointed_blocks_give_identical_gradients_in_less_memory(spec, hparams, bind,
                                                                     most):
    plain, plain_params, plain_peak, plain_static = measured(spec, hparams, bind)
    ckpt, ckpt_params, ckpt_peak, ckpt_static = measured(spec, hparams, bind, checkpoint=True)
    assert sorted(plain) == sorted(ckpt)
    for key in plain:
        np.testing.assert_array_equal(ckpt[key], plain[key], err_msg=key)
    for key in plain_params:  # batch-norm statistics updated once, not twice
        np.testing.assert_array_equal(ckpt_params[key], plain_params[key], err_msg=key)
    # resnet18 (64x64, B=2): 57% of the plain peak; transformer_encoder (6 layers): 29%.
    assert ckpt_peak <= most * plain_peak, (ckpt_peak, plain_peak)
    assert ckpt_static <= most * plain_static


# A scan (its cell's runs taped as regions) and dropout inside each checkpointed block.
STACKED_SCAN = """import "blocks/rnn.dl"

block rnn_layer(hidden: int) {
  input x
  input h0
  hs, h = scan elman_cell(hidden) over x from h0
  output y = hs -> linear(hidden) as proj -> dropout(0.3)
}

model stacked_scan {
  input x: f32[B, T, 4]
  input h0: f32[B, 4]
  layers: repeat 2 { x = rnn_layer(x, h0, 4) }
  output y = x
}
"""


@pytest.mark.parametrize("spec,model", [
    ("stacked_scan.dl", "stacked_scan"),
    ("bert_tiny.dl", "bert_tiny"),  # embeddings and dropout
    ("unet.dl", "unet"),  # skip connections across blocks
])
def test_checkpointing_other_models_changes_no_gradient(spec, model):
    from tests.specs.test_zoo import HPARAMS, bind_for

    text = STACKED_SCAN if model == "stacked_scan" else None
    prog = dslc.load(ROOT / "specs" / spec, model=model, hparams=HPARAMS.get(model),
                     text=text)
    bind = bind_for(prog)
    g = prog.source
    inputs = prog.random_inputs(0, bind)
    rng = np.random.default_rng(1)
    cot = {n: rng.standard_normal([D.evaluate(d, bind) for d in g.type_of(r).shape])
           .astype(np.float32) for n, r in g.outputs if g.type_of(r).is_float}
    plain, _ = autodiff.grad(g, inputs, prog.init_params(0), cot, train=True, bindings=bind)
    ckpt, _ = autodiff.grad(g, inputs, prog.init_params(0), cot, train=True, bindings=bind,
                            checkpoint_blocks=True)
    assert len(grad_memory.make_plan(g, checkpoint=True).members) >= 2
    assert sorted(plain) == sorted(ckpt)
    for key in plain:
        np.testing.assert_array_equal(ckpt[key], plain[key], err_msg=key)
        assert plain[key].any(), key  # a gradient reached every parameter


def test_summary_reports_both_training_peaks():
    prog = dslc.load(ROOT / "specs" / "resnet18.dl", hparams={"size": 64})
    mem = prog.summary({"B": 16})["memory"]
    assert mem["inference_peak_bytes"] < mem["training_peak_checkpoint_bytes"]
    assert mem["training_peak_checkpoint_bytes"] < mem["training_peak_bytes"]
    # Unbound, everything scales with B: the figure is a multiple of it.
    per_b = prog.summary()["memory"]["training_peak_bytes"]
    assert per_b.endswith("*B") and int(per_b[:-2]) * 16 == mem["training_peak_bytes"]


DEEP = """\
model deep {
  input x: f32[6, 5]
  input t: i64[6]
  layers: repeat 3 {
    x = x -> linear(5) as fc -> tanh -> dropout(0.25) -> layer_norm as ln
  }
  output loss = cross_entropy(x, t)
}
"""


def test_cli_checkpoint_blocks_writes_the_same_gradients(tmp_path, monkeypatch):
    from dslc.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "deep.dl").write_text(DEEP)
    assert main(["grad", "deep.dl", "--train", "--seed", "2", "-o", "plain.npz"]) == 0
    assert main(["grad", "deep.dl", "--train", "--seed", "2", "--checkpoint-blocks",
                 "-o", "ckpt.npz"]) == 0
    with np.load(tmp_path / "plain.npz") as f:
        plain = dict(f)
    with np.load(tmp_path / "ckpt.npz") as f:
        ckpt = dict(f)
    assert sorted(plain) == sorted(ckpt) and len(plain) == 12  # 3 x (fc, ln) x 2
    for key in plain:
        np.testing.assert_array_equal(ckpt[key], plain[key], err_msg=key)
    # The Python API passes it through too.
    prog = dslc.load(tmp_path / "deep.dl")
    inputs = prog.random_inputs(2)
    api = prog.grad(inputs, prog.init_params(2), train=True, seed=2, checkpoint_blocks=True)
    for key in plain:
        np.testing.assert_array_equal(api[key], plain[key], err_msg=key)

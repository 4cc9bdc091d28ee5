"""ONNX lowerings of recurrences: the rnn/lstm/gru fast paths as ONNX RNN/LSTM/GRU nodes (one
per layer), and a general `scan` as an ONNX Loop whose body is the cell."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from dslc.backends.onnx_builder import GraphBuilder, Lower, value_info
from dslc.ops.recurrent import GATES, dirs, n_states, suffixes

# torch's gate blocks in ONNX's order: LSTM i,f,g,o -> i,o,f,c; GRU r,z,n -> z,r,h.
_ONNX_GATES = {"rnn": (0,), "lstm": (0, 3, 1, 2), "gru": (1, 0, 2)}
_OP_TYPE = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


def _rows(kind: str, hidden: int) -> np.ndarray:
    return np.concatenate([np.arange(k * hidden, (k + 1) * hidden)
                           for k in _ONNX_GATES[kind]]).astype(np.int64)


def _recurrent(kind: str):
    def lower(lw: Lower, node, ins):
        """Per layer: X [T, B, F] -> ONNX RNN/LSTM/GRU with W, R, B built from the state_dict
        initializers (gate rows reordered by a Gather, directions stacked), the layer's
        slice of h0 (c0), and the lengths as sequence_lens; Y [T, D, B, H] becomes the next
        layer's [T, B, D·H]; the final states are concatenated over layers."""
        a = lw.attrs
        x_t = lw.in_types[0]
        has_lengths = len(ins) > 1 and not lw.in_types[-1].is_float
        states = ins[1:len(ins) - 1] if has_lengths else ins[1:]
        nd, hs = dirs(a), a.hidden_size
        rows = lw.ints(_rows(kind, hs))
        seq_lens = lw.cast(ins[-1], "i32") if has_lengths else ""
        b_dim, t_dim = x_t.shape[0], x_t.shape[1]
        layer_in = lw.op("Transpose", [ins[0]], perm=[1, 0, 2])  # [T, B, F]
        finals: list[list[str]] = [[] for _ in range(n_states(kind))]
        y = None
        for layer in range(a.num_layers):
            def stacked(name: str) -> str:
                per_dir = [lw.unsqueeze(lw.op("Gather", [lw.param(f"{name}_l{layer}{s}"),
                                                         rows], axis=0), [0])
                           for s in suffixes(a)]
                return per_dir[0] if nd == 1 else lw.op("Concat", per_dir, axis=0)

            w, r = stacked("weight_ih"), stacked("weight_hh")
            bias = ""
            if a.bias:
                per_dir = []
                for s in suffixes(a):
                    bi = lw.op("Gather", [lw.param(f"bias_ih_l{layer}{s}"), rows], axis=0)
                    bh = lw.op("Gather", [lw.param(f"bias_hh_l{layer}{s}"), rows], axis=0)
                    per_dir.append(lw.unsqueeze(lw.op("Concat", [bi, bh], axis=0), [0]))
                bias = per_dir[0] if nd == 1 else lw.op("Concat", per_dir, axis=0)
            init = [lw.op("Slice", [st, lw.ints([layer * nd]), lw.ints([(layer + 1) * nd]),
                                    lw.ints([0])]) for st in states]
            extra = {}
            if kind == "rnn":
                extra["activations"] = ["Relu" if a.nonlinearity == "relu" else "Tanh"] * nd
            if kind == "gru":
                extra["linear_before_reset"] = 1  # torch applies r after W_hn h + b_hn
            inputs = [layer_in, w, r, bias, seq_lens] + init
            outs = lw.op(_OP_TYPE[kind], inputs, n_out=1 + n_states(kind), hidden_size=hs,
                         direction="bidirectional" if nd == 2 else "forward", **extra)
            y = outs[0]  # [T, D, B, H]
            for i in range(n_states(kind)):
                finals[i].append(outs[1 + i])
            if layer + 1 < a.num_layers:
                layer_in = lw.reshape(lw.op("Transpose", [y], perm=[0, 2, 1, 3]),
                                      [t_dim, b_dim, nd * hs])
        out = lw.reshape(lw.op("Transpose", [y], perm=[2, 0, 1, 3]), lw.out_types[0].shape)
        result = [out]
        for fs in finals:
            result.append(fs[0] if len(fs) == 1 else lw.op("Concat", fs, axis=0))
        return result
    return lower


def _scan(lw: Lower, node, ins):
    """A Loop over the steps: the body takes x[t] of each sequence with a Gather (t counted
    down for `reverse`), runs the cell (its layers' initializers and the statics read from the
    outer graph), and yields the new states and the step's outputs; the stacked outputs
    [steps, ...] are reversed back for `reverse` and moved to axis `along`."""
    a = lw.attrs
    cell = a.cell
    seqs = ins[:a.n_seq]
    inits = ins[a.n_seq:a.n_seq + a.n_states]
    statics = ins[a.n_seq + a.n_states:]
    steps_dim = lw.in_types[0].shape[a.along] if a.n_seq else a.steps
    trip = lw.squeeze(lw.dim(steps_dim), [0])
    cond = lw.const(np.asarray(True), "true")

    body = GraphBuilder(lw.state, f"{lw.label}/body")
    it = lw.state.unique(f"{lw.label}/t")
    cond_in = lw.state.unique(f"{lw.label}/cond")
    body.inputs.append(helper.make_tensor_value_info(it, TensorProto.INT64, []))
    body.inputs.append(helper.make_tensor_value_info(cond_in, TensorProto.BOOL, []))
    cell_in_types = [cell.nodes[nid].types[0] for _, nid in cell.inputs]
    state_names = []
    for i in range(a.n_states):
        name = lw.state.unique(f"{lw.label}/{cell.inputs[a.n_seq + i][0]}")
        body.inputs.append(value_info(name, cell_in_types[a.n_seq + i], lw.state.bindings))
        state_names.append(name)
    t = it
    if a.reverse:
        last = lw.squeeze(lw.dim(steps_dim - 1), [0])
        t = lw.op("Sub", [last, it], into=body)
    step_ins = [lw.op("Gather", [s, t], into=body, axis=a.along) for s in seqs]
    values = lw.lower_cell(body, cell, step_ins + state_names + list(statics))
    refs = [ref for _, ref in cell.outputs]
    new_states = refs[:a.n_states]
    outs = refs[a.n_states:] or new_states
    cond_out = lw.op("Identity", [cond_in], into=body)
    body.outputs.append(helper.make_tensor_value_info(cond_out, TensorProto.BOOL, []))
    for ref in new_states + outs:
        # An Identity for each: a body output may not be a body input or an outer value, and
        # a state that is also the step's output appears twice.
        v = lw.op("Identity", [values[ref]], into=body)
        body.outputs.append(value_info(v, cell.type_of(ref), lw.state.bindings))
    loop_outs = lw.op("Loop", [trip, cond] + list(inits), n_out=a.n_states + len(outs),
                      body=body.make_graph())
    loop_outs = loop_outs if isinstance(loop_outs, list) else [loop_outs]
    finals, stacked = loop_outs[:a.n_states], loop_outs[a.n_states:]
    result = []
    for j, s in enumerate(stacked[:a.n_outs] if a.n_outs else stacked):
        if a.reverse:
            s = lw.op("Slice", [s, lw.ints([-1]), lw.ints([np.iinfo(np.int64).min]),
                                lw.ints([0]), lw.ints([-1])])
        rank = lw.out_types[j].rank
        if a.along != 0:
            perm = list(range(1, a.along + 1)) + [0] + list(range(a.along + 1, rank))
            s = lw.op("Transpose", [s], perm=perm)
        result.append(s)
    return result + finals


LOWERINGS = {
    "rnn": _recurrent("rnn"),
    "lstm": _recurrent("lstm"),
    "gru": _recurrent("gru"),
    "scan": _scan,
}

assert set(GATES) == set(_ONNX_GATES)

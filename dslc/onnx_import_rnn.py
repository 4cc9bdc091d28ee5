"""ONNX import of the recurrent layers: ONNX `LSTM`/`GRU`/`RNN` nodes -> dslc's `lstm`/`gru`/
`rnn` fast paths, with the gates put back in torch's order and stacked layers merged.

ONNX runs time-major ([T, B, F] in, Y [T, dirs, B, H] out); dslc's layers are batch-first
([B, T, F] in, y [B, T, dirs*H] out). The transposes and reshapes torch's exporter puts around
each node are matched through lazy values (tags `swap01`, `rnn_y`, `rnn_y_tb`), so the spec
feeds `x` straight in and reads `y` straight out; a consumer that needs the ONNX layout gets
it written out. Gate orders: ONNX LSTM i, o, f, c -> torch i, f, g, o; GRU z, r, h -> r, z, n.
"""

from __future__ import annotations

import re

import numpy as np

from dslc import onnx_import_ops as ops
from dslc.onnx_import_core import Importer, ImportProblem
from dslc.onnx_import_values import Const, Tensor, Zeros

# For each kind: torch gate blocks as slices of ONNX's gate blocks (in units of H).
GATES = {"LSTM": (0, 2, 3, 1), "GRU": (1, 0, 2), "RNN": (0,)}
OPS = {"LSTM": "lstm", "GRU": "gru", "RNN": "rnn"}


def _reorder(w: np.ndarray, kind: str, hidden: int) -> np.ndarray:
    blocks = [w[g * hidden:(g + 1) * hidden] for g in GATES[kind]]
    return np.ascontiguousarray(np.concatenate(blocks, axis=0).astype(np.float32))


def _text(attr) -> str:
    return attr.decode() if isinstance(attr, bytes) else str(attr)


@ops.handles("LSTM", "GRU", "RNN")
def _recurrent(imp: Importer, node, ins, attrs):
    kind = node.op_type
    x, w, r = ins[0], ins[1], ins[2]
    b = ins[3] if len(ins) > 3 else None
    seq = ins[4] if len(ins) > 4 else None
    h0 = ins[5] if len(ins) > 5 else None
    c0 = ins[6] if len(ins) > 6 else None
    if len(ins) > 7 and ins[7] is not None:
        raise ImportProblem("an LSTM with peephole weights (nn.LSTM has none; write a scan "
                            "cell)")
    if not all(isinstance(v, Const) for v in (w, r)) or (b is not None and
                                                         not isinstance(b, Const)):
        raise ImportProblem(f"an {kind} whose weights are computed at run time")
    if seq is not None:
        raise ImportProblem(f"an {kind} with sequence_lens (pass lengths to the dslc layer "
                            "instead)")
    if "clip" in attrs or attrs.get("input_forget", 0):
        raise ImportProblem(f"an {kind} with clip or input_forget")
    direction = _text(attrs.get("direction", b"forward"))
    if direction == "reverse":
        raise ImportProblem(f"an {kind} that runs only in reverse")
    dirs = 2 if direction == "bidirectional" else 1
    hidden = int(attrs["hidden_size"])
    acts = [_text(a) for a in attrs.get("activations", [])]
    nonlinearity = None
    if kind == "RNN":
        if acts and acts[0] not in ("Tanh", "Relu") or len(set(acts)) > 1:
            raise ImportProblem(f"an RNN with activations {acts}")
        nonlinearity = "relu" if acts and acts[0] == "Relu" else None
    elif acts and acts != (["Sigmoid", "Tanh", "Tanh"] * dirs if kind == "LSTM"
                           else ["Sigmoid", "Tanh"] * dirs):
        raise ImportProblem(f"an {kind} with activations {acts}")
    if kind == "GRU" and not attrs.get("linear_before_reset", 0):
        raise ImportProblem("a GRU with linear_before_reset=0 (torch's GRU applies the reset "
                            "gate after the recurrent product: linear_before_reset=1)")
    layout = attrs.get("layout", 0)
    states = [v for v in (h0, c0) if v is not None]
    zero_states = all(isinstance(v, Zeros) and v.fill == 0 for v in states)
    if not zero_states and any(isinstance(v, Zeros) for v in states):
        raise ImportProblem(f"an {kind} whose initial state is a non-zero fill")

    layer = _layer_index(w.sources)

    def weights(k: int) -> dict:
        out = {}
        for d in range(dirs):
            sfx = f"_l{k}" + ("_reverse" if d else "")
            out[f"weight_ih{sfx}"] = _reorder(w.array[d], kind, hidden)
            out[f"weight_hh{sfx}"] = _reorder(r.array[d], kind, hidden)
            if b is not None:
                g = len(GATES[kind]) * hidden
                out[f"bias_ih{sfx}"] = _reorder(b.array[d][:g], kind, hidden)
                out[f"bias_hh{sfx}"] = _reorder(b.array[d][g:], kind, hidden)
        return out
    sources = tuple(w.sources) + tuple(r.sources) + (tuple(b.sources) if b is not None else ())

    from dslc.onnx_import_train import train_value

    # the dropout between stacked layers, which dslc's export records (dslc.train_attrs)
    dropout = float(train_value(imp, node, OPS[kind], "dropout") or 0.0)
    merged = _merge(imp, node, kind, x, hidden, dirs, layer, b is not None, zero_states,
                    nonlinearity, sources, weights(layer), dropout) if layout == 0 else None
    if merged is not None:
        return merged

    if layout == 0:
        xb = _batch_first(imp, node, x)
    else:
        xb = ops._t(imp, x, node)
    state_vars = [] if zero_states else [ops._t(imp, v, node) for v in states]
    n_out = 3 if kind == "LSTM" else 2
    label = imp.take_label(imp.label_for(sources), OPS[kind])
    hints = [node.output[0] or "y", node.output[1] if len(node.output) > 1 and node.output[1]
             else "h"] + (["c"] if kind == "LSTM" else [])
    first = xb if not state_vars else None
    call = _call(kind, hidden, 1, dirs, b is not None, nonlinearity, dropout)
    if state_vars:
        call = f"{OPS[kind]}({', '.join([xb] + state_vars)}, {call[len(OPS[kind]) + 1:]}"
    # A layer standing alone is layer 0 of its own statement, whatever its weights' names.
    targets = imp.emit(call, first=first, hint=hints, n_out=n_out, label=label, params=weights(0),
                       node=ops._name(node))
    stmt = imp.stmts[-1]
    stmt.meta.update(kind=kind, hidden=hidden, dirs=dirs, layers=1, bias=b is not None,
                     nonlinearity=nonlinearity, dropout=dropout, prefix=_prefix(sources),
                     merged=False,
                     states=bool(state_vars), y_onnx_name=node.output[0])
    return _outputs(imp, node, stmt, targets, layer_k=0)


def _layer_index(sources: tuple[str, ...]) -> int:
    """The layer number torch's names carry (`lstm.weight_ih_l1`), so a merged stack keeps
    torch's keys; 0 when the names say nothing."""
    for s in sources:
        m = re.search(r"_l(\d+)(_reverse)?$", s)
        if m:
            return int(m.group(1))
    return 0


def _prefix(sources: tuple[str, ...]) -> str | None:
    heads = {s.rpartition(".")[0] for s in sources}
    return heads.pop() if len(heads) == 1 else None


def _call(kind, hidden, layers, dirs, bias, nonlinearity, dropout: float = 0.0) -> str:
    kw = ""
    if layers > 1:
        kw += f", num_layers={layers}"
    if dirs == 2:
        kw += ", bidirectional=true"
    if not bias:
        kw += ", bias=false"
    if nonlinearity:
        kw += f', nonlinearity="{nonlinearity}"'
    if dropout:
        kw += f", dropout={dropout!r}"
    return f"{OPS[kind]}({hidden}{kw})"


def _batch_first(imp: Importer, node, x) -> str:
    """The batch-first variable for ONNX's time-major X: the tensor before torch's transpose
    when there is one, else a written `transpose(0, 1)`."""
    if isinstance(x, Tensor) and x.tag and x.tag[0] == "swap01":
        return ops._t(imp, x.tag[1], node)
    (var,) = imp.emit("transpose(0, 1)", first=ops._t(imp, x, node), hint="xb",
                      node=ops._name(node))
    return var


def _outputs(imp: Importer, node, stmt, targets, layer_k: int) -> list:
    """ONNX's Y, Y_h, Y_c as lazy values over the dslc layer's y, h, c."""
    y_var = targets[0]
    dirs, hidden = stmt.meta["dirs"], stmt.meta["hidden"]
    y_base = Tensor([], "f32", var=y_var)
    y_base.extra["rnn_stmt"] = stmt
    y_onnx = imp.tensor(node.output[0], tag=("rnn_y", y_base, dirs, hidden))

    def write_y() -> str:
        (v,) = imp.emit(f"reshape(({y_base.var}.shape[0], {y_base.var}.shape[1], {dirs}, "
                        f"{hidden}))", first=y_base.var, hint=node.output[0],
                        node=ops._name(node))
        (v,) = imp.emit("permute((1, 2, 0, 3))", first=v, hint=node.output[0],
                        node=ops._name(node))
        return v
    y_onnx.lazy = write_y
    outs = [y_onnx]
    for port in (1, 2)[:len(targets) - 1]:
        outs.append(_state_slice(imp, stmt, port, layer_k, node))
    return outs


def _state_slice(imp: Importer, stmt, port: int, layer_k: int, node) -> Tensor:
    """Layer k's final state: the whole state output while the layer stands alone, a slice
    of it once later layers are merged in."""
    out = imp.tensor(node.output[port] if len(node.output) > port else "",
                     tag=("rnn_state", stmt, port, layer_k))

    def write() -> str:
        var = stmt.targets[port]
        if stmt.meta["layers"] == 1:
            return var
        d = stmt.meta["dirs"]
        (v,) = imp.emit(f"{var}[{layer_k * d}:{(layer_k + 1) * d}]", hint=var,
                        node=ops._name(node))
        return v
    out.lazy = write
    stmt.meta.setdefault("state_values", []).append(out)
    return out


def _fail(what: str) -> str:
    raise ImportProblem(f"{what} is used elsewhere")


def _merge(imp: Importer, node, kind, x, hidden, dirs, layer, bias, zero_states, nonlin,
           sources, params, dropout: float = 0.0):
    """A layer whose input is the previous same-kind layer's output (and that starts from
    zeros) becomes that layer's next `num_layers`, as nn.LSTM(num_layers=2) exports."""
    if not (isinstance(x, Tensor) and x.tag and x.tag[0] == "swap01" and zero_states):
        return None
    base = x.tag[1]
    stmt = base.extra.get("rnn_stmt") if isinstance(base, Tensor) else None
    if stmt is None or stmt.meta.get("states"):
        return None
    m = stmt.meta
    if (m["kind"], m["hidden"], m["dirs"], m["bias"], m["nonlinearity"], m["dropout"]) != (
            kind, hidden, dirs, bias, nonlin, dropout):
        return None
    if m["prefix"] is None or m["prefix"] != _prefix(sources) or layer != m["layers"]:
        return None
    if any(v.var is not None for v in m.get("state_values", [])):
        return None  # an earlier layer's state was already read as a whole
    if len(imp.consumers.get(m["y_onnx_name"], [])) != 1:
        return None
    m["layers"] += 1
    stmt.params.update(params)
    stmt.expr = _call(kind, hidden, m["layers"], dirs, bias, nonlin, dropout)
    base.var = None
    base.lazy = lambda: _fail("the output of a layer merged into the next")
    y_new = Tensor([], "f32", var=stmt.targets[0])
    y_new.extra["rnn_stmt"] = stmt
    m["y_onnx_name"] = node.output[0]
    y_onnx = imp.tensor(node.output[0], tag=("rnn_y", y_new, dirs, hidden))
    y_onnx.lazy = lambda: _fail("the time-major output of a merged layer")
    outs = [y_onnx]
    n_states = 2 if kind == "LSTM" else 1
    for port in range(1, n_states + 1):
        outs.append(_state_slice(imp, stmt, port, m["layers"] - 1, node))
    return outs


# ---- reading through the layout changes around a node ------------------------------------


def _through_transpose(imp: Importer, node, x: Tensor, perm: list[int]):
    tag = x.tag
    if tag[0] == "swap01" and perm == [1, 0, 2]:
        return tag[1]
    if tag[0] == "rnn_y" and perm == [0, 2, 1, 3]:
        out = imp.tensor(node.output[0], tag=("rnn_y_tb",) + tag[1:])
        out.lazy = lambda: _write_tb(imp, node, tag[1], tag[2], tag[3])
        return out
    if tag[0] == "rnn_y" and perm == [2, 0, 1, 3]:  # [B, T, dirs, H]: y before its merge
        out = imp.tensor(node.output[0], tag=("rnn_y_bt",) + tag[1:])
        out.lazy = lambda: _write_bt(imp, node, tag[1], tag[2], tag[3])
        return out
    return None


def _write_bt(imp: Importer, node, y: Tensor, dirs: int, hidden: int) -> str:
    v = ops._t(imp, y, node)
    (v2,) = imp.emit(f"reshape(({v}.shape[0], {v}.shape[1], {dirs}, {hidden}))", first=v,
                     hint=node.output[0], node=ops._name(node))
    return v2


def _write_tb(imp: Importer, node, y: Tensor, dirs: int, hidden: int) -> str:
    v = ops._t(imp, y, node)
    (v2,) = imp.emit(f"reshape(({v}.shape[0], {v}.shape[1], {dirs}, {hidden}))", first=v,
                     hint=node.output[0], node=ops._name(node))
    (v3,) = imp.emit("transpose(0, 1)", first=v2, hint=node.output[0], node=ops._name(node))
    return v3


def _swap_of(imp: Importer, node, y: Tensor) -> Tensor:
    """[T, B, dirs*H]: the time-major view of the layer's batch-first y."""
    return ops._lazy_swap(imp, node, y)


def _through_reshape(imp: Importer, node, x: Tensor, target):
    tag = x.tag
    if tag[0] == "rnn_y_bt" and len(target) == 3 and target[2] in (-1, tag[2] * tag[3]):
        return tag[1]
    if tag[0] != "rnn_y_tb" or len(target) != 3:
        return None
    dirs, hidden = tag[2], tag[3]
    last = target[2]
    if last == -1 or last == dirs * hidden:
        return _swap_of(imp, node, tag[1])
    return None


def _through_squeeze(imp: Importer, node, x: Tensor, axes):
    tag = x.tag
    if tag[0] == "rnn_y" and tag[2] == 1 and axes is not None and [a % 4 for a in axes] == [1]:
        return _swap_of(imp, node, tag[1])
    return None


def _concat_states(imp: Importer, node, ins, attrs):
    """Concat of every layer's final state, in order, on axis 0: the merged layer's state."""
    tags = [v.tag if isinstance(v, Tensor) else () for v in ins]
    if attrs.get("axis", 0) == 0 and tags and all(t and t[0] == "rnn_state" for t in tags):
        stmt, port = tags[0][1], tags[0][2]
        if all(t[1] is stmt and t[2] == port for t in tags) and [t[3] for t in tags] == list(
                range(stmt.meta["layers"])):
            return [imp.tensor(node.output[0], var=stmt.targets[port])]
    return _plain_concat(imp, node, ins, attrs)


_plain_concat = ops.HANDLERS["Concat"]
ops.HANDLERS["Concat"] = _concat_states
ops.TRANSPOSE_THROUGH.update(swap01=_through_transpose, rnn_y=_through_transpose)
ops.RESHAPE_THROUGH.update(rnn_y_tb=_through_reshape, rnn_y_bt=_through_reshape)
ops.SQUEEZE_THROUGH.update(rnn_y=_through_squeeze)

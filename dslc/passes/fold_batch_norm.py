"""Pass `fold_batch_norm` (-O2): a batch norm right after a convolution or linear layer is
folded into that layer's weight and bias (the ops' traits `folds_into_layer` and
`absorbs_norm` say which) for inference: W' = W·s, b' = (b − μ)·s + β with
s = γ / sqrt(σ² + ε) per output channel.

Before:                                       After:
  %1 = conv2d[bias=False](%0) conv1             %1 = conv2d(%0) conv1
  %2 = batch_norm(%1) bn1                       %3 = relu(%1)
  %3 = relu(%2)
The parameter file keeps the unoptimised keys (conv1.weight, bn1.*): the fold happens when it is
loaded (ParamFold "batch_norm"), so users never handle two weight formats.
"""

from __future__ import annotations

import numpy as np

from dslc.ir import Graph
from dslc.ops.registry import OPS
from dslc.passes.result import Change, ParamFold, PassResult


def run(graph: Graph) -> PassResult:
    res = PassResult(graph)
    removed = []
    for bn in graph.order():
        norm = OPS.get(bn.op)
        if norm is None or norm.folds_into_layer is None or not norm.folds_into_layer(bn.attrs):
            continue
        src_id, port = bn.inputs[0]
        layer = graph.nodes[src_id]
        op = OPS.get(layer.op)
        if op is None or op.absorbs_norm is None or port != 0 or \
                graph.users(layer.id) != [bn.id]:
            continue
        if any(r == (layer.id, 0) for _, r in graph.outputs):
            continue
        if not op.absorbs_norm(layer.attrs, layer.types):
            continue  # (linear over [B, C, L]: the norm's axis 1 is not linear's features)
        had_bias = bool(layer.attrs.bias)
        layer.attrs = layer.attrs.model_copy(update={"bias": True})
        ins = [graph.type_of(r) for r in layer.inputs]
        layer.params = op.params(layer.attrs, ins)
        graph.replace_uses((bn.id, 0), (layer.id, 0))
        removed.append(bn.id)
        res.folds.append(ParamFold("batch_norm", target=layer.module, source=bn.module,
                                   eps=bn.attrs.eps, had_bias=had_bias))
        res.changes.append(Change("fold_batch_norm", f"folded batch norm '{bn.module}' into "
                                  f"{layer.op} '{layer.module}'", bn.span))
    graph.remove(removed)
    return res


def fold_numpy(params: dict[str, np.ndarray], fold: ParamFold) -> None:
    """Apply a batch-norm fold to a parameter dict in place (the interpreter's side)."""
    t, s = fold.target, fold.source
    w = params.pop(f"{t}.weight")
    b = params.pop(f"{t}.bias") if fold.had_bias else np.zeros(w.shape[0], w.dtype)
    gamma = params.pop(f"{s}.weight")
    beta = params.pop(f"{s}.bias")
    mean = params.pop(f"{s}.running_mean")
    var = params.pop(f"{s}.running_var")
    params.pop(f"{s}.num_batches_tracked", None)
    scale = gamma / np.sqrt(var + fold.eps)
    params[f"{t}.weight"] = (w * scale.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype)
    params[f"{t}.bias"] = ((b - mean) * scale + beta).astype(w.dtype)

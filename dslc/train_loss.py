"""A train section's loss on NumPy: the model (dslc/interp.py) and the section's loss graph
(dslc/train_check.py) run and differentiated (dslc/autodiff.py) as one function of the
parameters - including the loss's l1/l2 terms (dslc/train_reg.py), whose parameters are inputs
of the loss graph and whose gradients are added to the model's."""

from __future__ import annotations

import numpy as np

from dslc import autodiff
from dslc.ir import Graph
from dslc.train_check import TrainSpec
from dslc.types import DTYPES


def loss_inputs(spec: TrainSpec, outputs: dict[str, np.ndarray], batch: dict[str, np.ndarray],
                params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The loss graph's inputs: model outputs, model inputs and targets, penalised parameters."""
    out = {}
    for name in spec.loss_args:
        if name in spec.penalty_params:
            out[name] = params[spec.penalty_params[name]]
        elif name in outputs:
            out[name] = outputs[name]
        else:
            out[name] = batch[name]
    return out


def loss_and_grads(graph: Graph, spec: TrainSpec, batch: dict[str, np.ndarray],
                   params: dict[str, np.ndarray], train: bool = True, seed: int = 0,
                   float64: bool = False) -> tuple[float, dict[str, np.ndarray]]:
    """(the loss, its gradient by parameter key) for one batch (arrays named after the model's
    inputs and the section's targets). Buffers updated in training are written to `params`
    once, as one torch training step does."""
    inputs = {n: batch[n] for n, _ in graph.inputs}
    tape = autodiff.forward(graph, inputs, params, train, seed, None, float64)
    loss_in = loss_inputs(spec, tape.outputs, batch, params)
    # float64 runs give float64 outputs; the loss graph takes its inputs' declared dtypes.
    declared = {n: DTYPES[spec.loss_graph.nodes[nid].types[0].dtype][0]
                for n, nid in spec.loss_graph.inputs}
    loss_in = {n: np.asarray(v).astype(declared[n], copy=False) for n, v in loss_in.items()}
    lgrads, louts = autodiff.grad(spec.loss_graph, loss_in, {}, train=train, seed=seed,
                                  wrt_inputs=True, float64=float64)
    cot = {n: lgrads[n] for n, _ in graph.outputs if n in lgrads}
    seeds = autodiff.output_seeds(graph, tape.outputs, cot)
    grads = autodiff.backward(graph, tape, seeds)
    out: dict[str, np.ndarray] = {}
    for key, (node, local, _spec) in graph.param_keys().items():
        if local in autodiff.trainable(node):
            g = grads.get(key)
            dt = np.float64 if float64 else params[key].dtype
            out[key] = np.zeros(params[key].shape, dt) if g is None else np.asarray(g, dt)
    for arg, key in spec.penalty_params.items():
        out[key] = out[key] + lgrads[arg].astype(out[key].dtype)
    return float(louts["loss"]), out

"""NumPy back end, training: a checked train section (dslc/train_check.py) run on the
interpreter's reverse mode (dslc/autodiff.py) and dslc/numpy_optim.py, with the generated
PyTorch program's contract (dslc/backends/torch_train.py): the same data-file checks and
messages, batch order, validation split, metrics, checkpoints, `--resume` and params.npz.

Never imports torch. Randomness (dropout masks) comes from a NumPy generator seeded with the
run's seed: the one documented difference from the generated program, whose masks are torch's.
"""

from __future__ import annotations

import difflib
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dslc import autodiff, interp
from dslc import dims as D
from dslc.atomic import write_atomic
from dslc.ir import Graph
from dslc.numpy_optim import Optimizer, Schedule, make_optimizer, make_schedule
from dslc.train_check import TrainSpec
from dslc.types import DTYPES

CHECKPOINT = "checkpoint.npz"
FORMAT = "dslc-numpy-train-1"
# The ops torch builds as normalisation layers (their weights: `no_weight_decay = ["norm"]`).
NORM_OPS = ("batch_norm", "instance_norm1d", "instance_norm2d", "instance_norm3d",
            "layer_norm", "rms_norm", "group_norm")


class TrainError(Exception):
    """A run stopped before (or instead of) training, with the generated program's code and
    message (`error[CODE]: message` on stderr, exit 1)."""

    def __init__(self, code: str, message: str):
        super().__init__(f"error[{code}]: {message}")
        self.code = code
        self.message = message


# ---- the data file ---------------------------------------------------------------------------


@dataclass
class Array:
    name: str
    role: str
    dtype: str  # numpy dtype name
    shape: tuple[int | None, ...]  # None: any size (the first, the sample dim, always)
    classes: int | None
    ignore: int | None


def data_table(spec: TrainSpec) -> list[Array]:
    """The generated program's DATA table: the arrays the data file must hold."""
    out = []
    for a in spec.data:
        dims = [int(d) if D.as_dim(d).is_Integer else None for d in a.type.shape]
        if dims and not spec.full_graph:
            dims[0] = None
        out.append(Array(a.name, a.role, DTYPES[a.type.dtype][0], tuple(dims), a.classes,
                         a.ignore_index))
    return out


def shape_words(dtype: str, shape: tuple[int | None, ...], full_graph: bool = False) -> str:
    return dtype + "[" + ", ".join("N" if i == 0 and not full_graph else "*" if d is None
                                   else str(d) for i, d in enumerate(shape)) + "]"


def read_arrays(path: str) -> dict[str, np.ndarray]:
    """An .npz file, or a folder of NAME.npy files (memory-mapped)."""
    try:
        if os.path.isdir(path):
            return {name[:-4]: np.load(os.path.join(path, name), mmap_mode="r",
                                       allow_pickle=False)
                    for name in sorted(os.listdir(path)) if name.endswith(".npy")}
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same message
        raise TrainError("E0610", f"cannot read data file {path}: {exc}") from None


def load_data(path: str, spec: TrainSpec) -> tuple[dict[str, np.ndarray], int]:
    """Every array of the section checked before any training (the generated program's
    load_data, message for message); the number of samples (of nodes, for a whole graph)."""
    arrays = read_arrays(path)
    table = data_table(spec)
    n = None
    for a in table:
        want = shape_words(a.dtype, a.shape, spec.full_graph)
        if a.name not in arrays:
            close = difflib.get_close_matches(a.name, list(arrays), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise TrainError("E0611", f"{path}: no array '{a.name}' ({a.role} {want}); the "
                             f"file has {', '.join(sorted(arrays)) or 'no arrays'}{hint}")
        x = arrays[a.name]
        if x.dtype != np.dtype(a.dtype):
            raise TrainError("E0612", f"{path}: array '{a.name}' has dtype {x.dtype}, "
                             f"expected {a.dtype} ({a.role} {want}); convert it with "
                             f".astype(np.{a.dtype})")
        if x.ndim != len(a.shape) or any(w is not None and g != w
                                         for g, w in zip(x.shape, a.shape)):
            raise TrainError("E0613", f"{path}: array '{a.name}' has shape {list(x.shape)}, "
                             f"expected {want}")
        # A whole graph: the targets and the inputs with their node dim count the nodes.
        counted = a.role == "target" or a.name in spec.node_args if spec.full_graph else True
        if counted:
            if n is None:
                n = x.shape[0]
                first = a.name
            elif x.shape[0] != n:
                raise TrainError("E0615", f"{path}: array '{a.name}' has {x.shape[0]} "
                                 f"{'nodes' if spec.full_graph else 'samples'}, '{first}' "
                                 f"has {n}")
        if a.classes is not None:
            bad = (x != a.ignore) & ((x < 0) | (x >= a.classes))
            if bad.any():
                i = int(np.flatnonzero(bad.reshape(-1))[0])
                raise TrainError("E0614", f"{path}: array '{a.name}' holds label "
                                 f"{x.reshape(-1)[i]} at flat index {i}; labels must lie in "
                                 f"[0, {a.classes})")
    return {a.name: arrays[a.name] for a in table}, int(n or 0)


def epoch_order(seed: int, epoch: int, n: int, shuffle: bool) -> np.ndarray:
    """The generated program's epoch_order: a function of (seed, epoch) only."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)


# ---- one step ---------------------------------------------------------------------------------


@dataclass
class Trainer:
    """The model (as written: no inference folds), its loss, parameters and optimiser."""

    graph: Graph
    spec: TrainSpec
    params: dict[str, np.ndarray]
    opt: Optimizer
    sched: Schedule
    rng: np.random.Generator
    float64: bool = False  # float inputs widened after the checks (parameters given float64)

    def forward(self, inputs: dict[str, np.ndarray], train: bool) -> autodiff.Tape:
        graph = self.graph
        bound = interp.bind_inputs(graph, inputs)
        interp.check_sizes(graph, bound)
        interp.validate_params(graph, self.params)
        if self.float64:
            inputs = {k: autodiff.widen(v) for k, v in inputs.items()}
        return autodiff.taped(graph, inputs, self.params, train, self.rng, bound)

    def batch(self, data: dict[str, np.ndarray], indices: np.ndarray) -> dict[str, np.ndarray]:
        """A batch's arrays; for a whole graph, every input whole and the targets of the
        nodes `indices` (the outputs are sliced in `loss_env`)."""
        inputs = {n for n, _ in self.graph.inputs}
        if self.spec.full_graph:
            return {name: np.asarray(a) if name in inputs else np.ascontiguousarray(a[indices])
                    for name, a in data.items()}
        return {name: np.ascontiguousarray(a[indices]) for name, a in data.items()}

    def loss_env(self, outputs: dict[str, np.ndarray], batch: dict[str, np.ndarray],
                 nodes: np.ndarray | None) -> dict[str, np.ndarray]:
        env = dict(outputs)
        env.update(batch)
        if nodes is not None:
            for name in self.spec.node_args:
                env[name] = env[name][nodes]
        for arg, key in self.spec.penalty_params.items():  # l1/l2(params(...)) terms
            env[arg] = self.params[key]
        return {name: env[name] for name in self.spec.loss_args}

    def loss_tape(self, env: dict[str, np.ndarray]) -> autodiff.Tape:
        """The loss's forward, kept for its backward. Its inputs' sizes are checked as the
        interpreter checks any inputs; their float dtypes may be wider than declared (a model
        trained from float64 parameters computes float64 outputs)."""
        graph = self.spec.loss_graph
        declared = {n: graph.nodes[nid].types[0] for n, nid in graph.inputs}
        views = {n: v.astype(DTYPES[declared[n].dtype][0]) if declared[n].is_float and
                 v.dtype != np.dtype(DTYPES[declared[n].dtype][0]) else v
                 for n, v in env.items()}
        bound = interp.bind_inputs(graph, views)
        return autodiff.taped(graph, env, {}, True, self.rng, bound)

    def step(self, batch: dict[str, np.ndarray], nodes: np.ndarray | None) -> float:
        """Forward in train mode, backward, clip, update, schedule; the batch's loss."""
        graph = self.graph
        tape = self.forward({n: batch[n] for n, _ in graph.inputs}, True)
        env = self.loss_env(tape.outputs, batch, nodes)
        ltape = self.loss_tape(env)
        lgrads = autodiff.backward(self.spec.loss_graph, ltape, autodiff.output_seeds(
            self.spec.loss_graph, ltape.outputs, "loss"), wrt_inputs=True)
        louts = ltape.outputs
        refs = dict(graph.outputs)
        seeds: dict = {}
        for name, ref in graph.outputs:
            g = lgrads.get(name)
            if g is None or not autodiff.is_float(tape.outputs[name]):
                continue
            if nodes is not None and name in self.spec.node_args:
                full = np.zeros_like(tape.outputs[name])
                full[nodes] = g
                g = full
            seeds[refs[name]] = seeds[ref] + g if ref in seeds else g
        grads = autodiff.backward(graph, tape, seeds)
        keyed: dict[str, np.ndarray | None] = {}
        for key in trainable_keys(graph):
            g = grads.get(key)
            keyed[key] = None if g is None else np.asarray(g, self.params[key].dtype)
        for arg, key in self.spec.penalty_params.items():  # the l1/l2 terms' gradients
            g = lgrads[arg].astype(self.params[key].dtype)
            keyed[key] = g if keyed[key] is None else keyed[key] + g
        clip_gradients(keyed, self.spec.clip)
        self.opt.step(self.params, keyed)
        if self.spec.schedule[0] != "plateau":
            self.sched.step(self.opt)
        return float(louts["loss"])

    def evaluate(self, data: dict[str, np.ndarray], indices: np.ndarray, batch: int
                 ) -> dict[str, float]:
        """Mean loss and metrics over `indices` in eval mode, in chunks of `batch`."""
        total, count, correct = 0.0, 0, {}
        for start in range(0, len(indices), batch):
            part = indices[start:start + batch]
            b = self.batch(data, part)
            nodes = part if self.spec.full_graph else None
            outs = self.forward({n: b[n] for n, _ in self.graph.inputs}, False).outputs
            env = self.loss_env(outs, b, nodes)
            loss = self.loss_tape(env).outputs["loss"]
            total, count = total + float(loss) * len(part), count + len(part)
            seen = dict(outs)
            seen.update(b)
            seen.update(env)
            for name, (c, m) in count_metrics(self.spec, seen).items():
                old = correct.get(name, (0, 0))
                correct[name] = (old[0] + c, old[1] + m)
        out = {"loss": total / max(count, 1)}
        out.update({name: c / max(m, 1) for name, (c, m) in correct.items()})
        return out


def clip_gradients(grads: dict[str, np.ndarray | None], clip: tuple[str, float] | None
                   ) -> None:
    """torch.nn.utils.clip_grad_norm_ / clip_grad_value_, in place."""
    if clip is None:
        return
    kind, limit = clip
    present = [k for k, g in grads.items() if g is not None]
    if kind == "value":
        for k in present:
            grads[k] = np.clip(grads[k], -limit, limit)
        return
    if not present:
        return
    norms = [np.sqrt(np.sum(np.square(grads[k], dtype=np.float64))) for k in present]
    total = float(np.sqrt(np.sum(np.square(norms))))
    coef = min(limit / (total + 1e-6), 1.0)  # torch multiplies even by 1.0
    for k in present:
        grads[k] = grads[k] * np.asarray(coef, grads[k].dtype)


def count_metrics(spec: TrainSpec, env: dict[str, np.ndarray]) -> dict[str, tuple[int, int]]:
    """Per metric: (correct, counted) over one batch (the generated program's count_metrics)."""
    counts = {}
    for m in spec.metrics:
        tgt = next(a for a in spec.data if a.name == m.target)
        scores, labels = env[m.output], env[m.target]
        if tgt.type.dtype == "i64":
            ign = tgt.ignore_index if tgt.ignore_index is not None else -100
            kept = labels != ign
            if m.k == 1:
                hits = scores.argmax(1) == labels
            else:
                top = np.argsort(-scores, axis=1, kind="stable")[:, :m.k]
                hits = (top == np.expand_dims(labels, 1)).any(1)
            counts[m.name] = (int((hits & kept).sum()), int(kept.sum()))
        else:
            hits = (scores > m.threshold) == (labels > 0.5)
            counts[m.name] = (int(hits.sum()), int(labels.size))
    return counts


def param_groups(graph: Graph, params: dict[str, np.ndarray], spec: TrainSpec
                 ) -> list[tuple[list[str], dict]]:
    """The generated program's param_groups: biases and/or normalisation layers' parameters
    kept out of weight decay when the section says so."""
    keys = trainable_keys(graph)
    if not spec.no_weight_decay:
        return [(keys, {})]
    owner = {k: node.op for k, (node, _l, _s) in graph.param_keys().items()}
    decay, no_decay = [], []
    for k in keys:
        skip = ("bias" in spec.no_weight_decay and k.rsplit(".", 1)[-1] == "bias") or \
            ("norm" in spec.no_weight_decay and owner.get(k) in NORM_OPS)
        (no_decay if skip else decay).append(k)
    return [(decay, {}), (no_decay, {"weight_decay": 0.0})]


def trainable_keys(graph: Graph) -> list[str]:
    """The parameters that get a gradient (autodiff.grad's keys), in state_dict order."""
    return [k for k, (node, local, _s) in graph.param_keys().items()
            if local in autodiff.trainable(node)]


# ---- checkpoints ------------------------------------------------------------------------------


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def save_checkpoint(path: str, tr: Trainer, state: dict[str, Any]) -> None:
    meta = {"format": FORMAT, "state": state, "rng": tr.rng.bit_generator.state}
    arrays = {f"param/{k}": v for k, v in tr.params.items()}
    arrays.update(tr.opt.state_arrays())
    arrays.update(tr.sched.state_arrays())
    arrays["meta"] = np.array(json.dumps(meta))
    write_atomic(path, _npz_bytes(arrays))


def load_checkpoint(path: str, tr: Trainer) -> dict[str, Any]:
    """The whole checkpoint, checked before anything is loaded from it; refused otherwise."""
    if not os.path.isfile(path):
        raise TrainError("E0621", f"no checkpoint to resume from: {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        meta = json.loads(str(arrays.pop("meta")))
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is refused alike
        raise TrainError("E0620", f"checkpoint {path} is corrupt or not a dslc checkpoint "
                         f"({exc}); nothing was loaded") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or \
            any(k not in meta for k in ("state", "rng")):
        raise TrainError("E0620", f"checkpoint {path} is not a {FORMAT} checkpoint; nothing "
                         "was loaded")
    params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
    want = {k: v.shape for k, v in tr.params.items()}
    if {k: v.shape for k, v in params.items()} != want:
        raise TrainError("E0620", f"checkpoint {path} does not fit this program (its "
                         "parameters differ); nothing was loaded")
    try:
        opt = make_optimizer(tr.opt.name, {}, [(g.keys, g.hp) for g in tr.opt.groups])
        sched = make_schedule((tr.sched.kind, tr.sched.args), opt)
        sched.load_state_arrays(arrays)
        opt.load_state_arrays(arrays)  # after the schedule: the saved rates are the rates
        rng = np.random.default_rng()
        rng.bit_generator.state = meta["rng"]
    except Exception as exc:  # noqa: BLE001 - a mismatched checkpoint ends the run
        raise TrainError("E0620", f"checkpoint {path} does not fit this program ({exc}); "
                         "nothing was loaded") from None
    tr.params.update({k: np.array(v) for k, v in params.items()})
    tr.opt, tr.sched, tr.rng = opt, sched, rng
    return meta["state"]


# ---- the run ------------------------------------------------------------------------------


def train(graph: Graph, spec: TrainSpec, data_path: str, out: str,
          params: dict[str, np.ndarray], epochs: int | None = None, steps: int | None = None,
          seed: int | None = None, resume: str | None = None,
          stop_after_steps: int | None = None,
          say: Callable[[str], None] = print, float64: bool = False) -> dict[str, np.ndarray]:
    """Run the train section on NumPy from `params` (changed in place: the final parameters,
    also written to OUT/params.npz); raises TrainError before training on bad input.
    `float64` widens the float batches after their checks (with float64 `params`: training in
    float64, to compare with another implementation without float32's rounding)."""
    seed = spec.seed if seed is None else seed
    data, n = load_data(data_path, spec)
    n_val = int(n * spec.validation)
    n_train = n - n_val
    batch_size = n_train if spec.full_graph else spec.batch
    if n_train < batch_size or n_train == 0:
        raise TrainError("E0616", f"{data_path}: {n_train} training samples, fewer than one "
                         f"batch ({batch_size}); the last incomplete batch of an epoch is "
                         "dropped")
    steps_per_epoch = n_train // batch_size
    epochs = spec.epochs if epochs is None else epochs
    steps = steps if steps is not None else spec.steps
    total_steps = steps if steps is not None else epochs * steps_per_epoch
    eval_indices = np.arange(n_train, n) if n_val else np.arange(n_train)
    prefix = "val_" if n_val else ""

    opt = make_optimizer(spec.optimizer, spec.optimizer_args,
                         param_groups(graph, params, spec))
    tr = Trainer(graph, spec, params, opt, make_schedule(spec.schedule, opt),
                 np.random.default_rng(seed), float64)
    state: dict[str, Any] = {"step": 0, "epoch": 0, "batch": 0, "loss_sum": 0.0,
                             "best": None, "bad_epochs": 0}
    ckpt_path = os.path.join(out, CHECKPOINT)
    metrics_path = os.path.join(out, "metrics.jsonl")
    old_metrics: list[dict] = []
    if resume:
        state.update(load_checkpoint(os.path.join(resume, CHECKPOINT), tr))
        resumed = os.path.join(resume, "metrics.jsonl")
        if os.path.isfile(resumed):
            with open(resumed) as f:
                old_metrics = [json.loads(line) for line in f if line.strip()]
            old_metrics = [m for m in old_metrics if m["step"] <= state["step"]]
    os.makedirs(out, exist_ok=True)
    write_atomic(metrics_path, "".join(json.dumps(m) + "\n" for m in old_metrics).encode())
    shown_every = max(1, total_steps // steps_per_epoch // 20)

    def log(record: dict) -> None:
        with open(metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if record["epoch"] % shown_every and record["step"] < total_steps:
            return
        say(" ".join(f"{k} {v:.6g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in record.items()))

    def end_of_epoch(batches: int, complete: bool) -> bool:
        record = {"epoch": state["epoch"] + 1, "step": state["step"],
                  "loss": state["loss_sum"] / max(batches, 1)}
        scores = tr.evaluate(data, eval_indices, batch_size)
        record.update({prefix + k: v for k, v in scores.items() if prefix or k != "loss"})
        if not prefix:
            record["eval_loss"] = scores["loss"]
        stop = False
        if spec.early_stop and complete:
            stop = early_stopping(spec.early_stop, record, state, tr.params, out, say)
        log(record)
        if spec.schedule[0] == "plateau" and complete:
            tr.sched.epoch_end(tr.opt, record[spec.schedule[1]["metric"]])
        return stop

    stopped = False
    while state["step"] < total_steps and not stopped:
        order = epoch_order(seed, state["epoch"], n_train, spec.shuffle)
        for b in range(state["batch"], steps_per_epoch):
            indices = order[b * batch_size:(b + 1) * batch_size]
            nodes = indices if spec.full_graph else None
            loss = tr.step(tr.batch(data, indices), nodes)
            state["step"] += 1
            state["batch"] = b + 1
            state["loss_sum"] += loss
            last = state["step"] >= total_steps
            if state["batch"] == steps_per_epoch or last:
                stopped = end_of_epoch(state["batch"], state["batch"] == steps_per_epoch)
            if state["batch"] == steps_per_epoch:
                state.update(epoch=state["epoch"] + 1, batch=0, loss_sum=0.0)
            every = spec.checkpoint_every
            if (every and state["step"] % every == 0) or \
                    (every is None and state["batch"] == 0) or last or stopped or \
                    state["step"] == stop_after_steps:
                save_checkpoint(ckpt_path, tr, state)
            if state["step"] == stop_after_steps and not (last or stopped):
                say(f"stopped after step {state['step']} (--stop-after-steps)")
                return tr.params
            if last or stopped:
                break
    write_atomic(os.path.join(out, "params.npz"), _npz_bytes(tr.params))
    return tr.params


def early_stopping(rule: dict[str, Any], record: dict, state: dict, params: dict, out: str,
                   say: Callable[[str], None]) -> bool:
    """The generated program's early_stopping (best parameters to OUT/best_params.npz)."""
    value = record[rule["metric"]]
    best = state["best"]
    sign = 1.0 if rule["mode"] == "min" else -1.0
    if best is None or sign * (best - value) > rule["min_delta"]:
        state["best"], state["bad_epochs"] = value, 0
        write_atomic(os.path.join(out, "best_params.npz"), _npz_bytes(params))
        return False
    state["bad_epochs"] += 1
    if state["bad_epochs"] >= rule["patience"]:
        say(f"early stop: {rule['metric']} has not improved for {state['bad_epochs']} epochs "
            f"(best {best:.6g})")
        return True
    return False

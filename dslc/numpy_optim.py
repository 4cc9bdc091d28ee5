"""NumPy back end, training: the train section's optimisers and schedules (dslc/train_check.py
names them) as update rules on NumPy arrays, step for step what torch.optim computes.

Each optimiser is written as note 002's rule, and its docstring says where torch.optim (which
the generated program uses, and which this file matches to rounding) differs from the notes.
Parameters live in a dict {state_dict key: array}; a gradient of None (the loss does not reach
the parameter) skips it, as torch skips a parameter whose `.grad` is None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dslc.train_check import OPTIMIZERS, lr_factor

Arrays = dict[str, np.ndarray]


@dataclass
class Group:
    """A parameter group: the keys it holds and its hyperparameters (torch's param_groups)."""

    keys: list[str]
    hp: dict[str, Any]
    lr: float = 0.0  # the current rate (the schedule's factor times hp["lr"])


@dataclass
class Optimizer:
    """One of the train section's optimisers over some parameter groups.

    `state[key]` holds the per-parameter buffers (momentum, moments, accumulators) and the
    parameter's step count, under torch's state names (momentum_buffer, exp_avg, ...)."""

    name: str
    groups: list[Group]
    state: dict[str, dict[str, Any]] = field(default_factory=dict)

    def step(self, params: Arrays, grads: dict[str, np.ndarray | None]) -> None:
        """One update of every parameter that has a gradient, in place."""
        rule = RULES[self.name]
        for group in self.groups:
            for key in group.keys:
                g = grads.get(key)
                if g is None:
                    continue
                st = self.state.setdefault(key, {})
                rule(params[key], np.asarray(g, dtype=params[key].dtype), st, group.hp,
                     group.lr)

    # ---- saving and restoring (checkpoints) ------------------------------------------------

    def state_arrays(self) -> Arrays:
        """Every buffer as `optim/KEY/NAME` arrays and every group's rate as `optim_lr/I`."""
        out: Arrays = {}
        for key, st in self.state.items():
            for name, v in st.items():
                out[f"optim/{key}/{name}"] = np.asarray(v)
        for i, g in enumerate(self.groups):
            out[f"optim_lr/{i}"] = np.asarray(g.lr, dtype=np.float64)
        return out

    def load_state_arrays(self, arrays: Arrays) -> None:
        state: dict[str, dict[str, Any]] = {}
        lrs: dict[int, float] = {}
        for name, v in arrays.items():
            if name.startswith("optim/"):
                key, slot = name[len("optim/"):].rsplit("/", 1)
                # Step counts are Python numbers (as torch's float `step`), buffers arrays.
                state.setdefault(key, {})[slot] = float(v) if slot == "step" else np.array(v)
            elif name.startswith("optim_lr/"):
                lrs[int(name.split("/")[1])] = float(v)
        if sorted(lrs) != list(range(len(self.groups))):
            raise ValueError("the optimiser state has another number of parameter groups")
        self.state = state
        for i, g in enumerate(self.groups):
            g.lr = lrs[i]


def make_optimizer(name: str, args: dict[str, Any], groups: list[tuple[list[str], dict]]
                   ) -> Optimizer:
    """`groups`: (keys, overrides) pairs, e.g. ([biases], {"weight_decay": 0.0})."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}")
    defaults = dict(OPTIMIZERS[name][1])
    defaults.update(args)
    out = []
    for keys, over in groups:
        hp = dict(defaults, **over)
        out.append(Group(list(keys), hp, float(hp["lr"])))
    return Optimizer(name, out)


# ---- the update rules ------------------------------------------------------------------------


def _decayed(p: np.ndarray, g: np.ndarray, wd: float) -> np.ndarray:
    """L2 weight decay as torch adds it: to the gradient (g + wd * p)."""
    return g + wd * p if wd else g


def sgd(p: np.ndarray, g: np.ndarray, st: dict, hp: dict, lr: float) -> None:
    """Momentum (002): v_t = gamma v_{t-1} + eta grad, theta -= v_t; Nesterov (NAG):
    v_t = gamma v_{t-1} + eta grad(theta - gamma v_{t-1}).

    torch (and this) keep the rate out of the buffer: b_t = mu b_{t-1} + (1 - dampening) g,
    theta -= lr b_t, with b_1 = g (no dampening on the first step). With a constant rate that
    is the notes' rule (v = lr b); a changing rate scales only the current step here. Nesterov
    is the reformulation theta -= lr (g + mu b_t), which needs no gradient at a look-ahead
    point."""
    g = _decayed(p, g, hp["weight_decay"])
    mu = hp["momentum"]
    if mu:
        buf = st.get("momentum_buffer")
        if buf is None:
            buf = g.copy()
        else:
            buf = buf * mu + (1 - hp["dampening"]) * g
        st["momentum_buffer"] = buf
        g = g + mu * buf if hp["nesterov"] else buf
    p -= lr * g


def adagrad(p: np.ndarray, g: np.ndarray, st: dict, hp: dict, lr: float) -> None:
    """Adagrad (002): theta -= eta g / sqrt(G_t + eps), G_t the sum of squared gradients.

    torch puts eps outside the root: theta -= clr g / (sqrt(G_t) + eps), eps = 1e-10, and
    decays the rate: clr = lr / (1 + (t - 1) lr_decay); G_0 = initial_accumulator_value."""
    step = st.get("step", 0.0) + 1
    st["step"] = step
    g = _decayed(p, g, hp["weight_decay"])
    clr = lr / (1 + (step - 1) * hp["lr_decay"])
    acc = st.get("sum")
    if acc is None:
        acc = np.full_like(p, hp["initial_accumulator_value"])
    acc = acc + g * g
    st["sum"] = acc
    p -= clr * (g / (np.sqrt(acc) + hp["eps"]))


def rmsprop(p: np.ndarray, g: np.ndarray, st: dict, hp: dict, lr: float) -> None:
    """RMSProp (002: Adagrad's sum replaced by a decaying mean of squared gradients):
    E[g^2]_t = alpha E[g^2]_{t-1} + (1 - alpha) g^2, theta -= eta g / (sqrt(E[g^2]_t) + eps).

    As torch: eps outside the root; `centered` subtracts the squared mean gradient inside it;
    `momentum` keeps a buffer b = mu b + g / denominator and steps theta -= lr b."""
    g = _decayed(p, g, hp["weight_decay"])
    alpha = hp["alpha"]
    sq = st.get("square_avg")
    sq = np.zeros_like(p) if sq is None else sq
    sq = sq * alpha + (1 - alpha) * (g * g)
    st["square_avg"] = sq
    st["step"] = st.get("step", 0.0) + 1
    if hp["centered"]:
        ga = st.get("grad_avg")
        ga = np.zeros_like(p) if ga is None else ga
        ga = ga + (1 - alpha) * (g - ga)
        st["grad_avg"] = ga
        avg = np.sqrt(sq - ga * ga)
    else:
        avg = np.sqrt(sq)
    avg = avg + hp["eps"]
    if hp["momentum"] > 0:
        buf = st.get("momentum_buffer")
        buf = np.zeros_like(p) if buf is None else buf
        buf = buf * hp["momentum"] + g / avg
        st["momentum_buffer"] = buf
        p -= lr * buf
    else:
        p -= lr * (g / avg)


def adadelta(p: np.ndarray, g: np.ndarray, st: dict, hp: dict, lr: float) -> None:
    """Adadelta (002): theta -= RMS[dtheta]_{t-1} / RMS[g]_t g, RMS[y] = sqrt(E[y^2] + eps),
    both means decaying with rho; the notes' rule has no learning rate.

    torch multiplies the step by lr (default 1.0, the notes' rule) and adds weight decay to
    the gradient."""
    g = _decayed(p, g, hp["weight_decay"])
    rho, eps = hp["rho"], hp["eps"]
    sq = st.get("square_avg")
    sq = np.zeros_like(p) if sq is None else sq
    acc = st.get("acc_delta")
    acc = np.zeros_like(p) if acc is None else acc
    sq = sq * rho + (1 - rho) * (g * g)
    std = np.sqrt(sq + eps)
    delta = np.sqrt(acc + eps) / std * g
    acc = acc * rho + (1 - rho) * (delta * delta)
    st["square_avg"], st["acc_delta"] = sq, acc
    st["step"] = st.get("step", 0.0) + 1
    p -= lr * delta


def adam(p: np.ndarray, g: np.ndarray, st: dict, hp: dict, lr: float,
         decoupled: bool = False) -> None:
    """Adam (002): m_t = b1 m + (1 - b1) g, v_t = b2 v + (1 - b2) g^2, m' = m_t / (1 - b1^t),
    v' = v_t / (1 - b2^t), theta -= eta m' / sqrt(v' + eps).

    torch (the Adam paper too) puts eps outside the root: theta -= lr m' / (sqrt(v') + eps),
    computed as lr / (1 - b1^t) * m_t / (sqrt(v_t) / sqrt(1 - b2^t) + eps). Weight decay is
    added to the gradient (L2); AdamW (`decoupled`) instead shrinks theta by (1 - lr wd)
    before the step. `amsgrad` uses the running maximum of v_t."""
    b1, b2 = hp["betas"]
    step = st.get("step", 0.0) + 1
    st["step"] = step
    if decoupled:
        p *= 1 - lr * hp["weight_decay"]
    else:
        g = _decayed(p, g, hp["weight_decay"])
    m = st.get("exp_avg")
    m = np.zeros_like(p) if m is None else m
    v = st.get("exp_avg_sq")
    v = np.zeros_like(p) if v is None else v
    m = m + (1 - b1) * (g - m)  # torch's lerp: the same value to rounding
    v = v * b2 + (1 - b2) * (g * g)
    st["exp_avg"], st["exp_avg_sq"] = m, v
    if hp["amsgrad"]:
        vmax = st.get("max_exp_avg_sq")
        vmax = v if vmax is None else np.maximum(vmax, v)
        st["max_exp_avg_sq"] = vmax
        v = vmax
    step_size = lr / (1 - b1 ** step)
    denom = np.sqrt(v) / math.sqrt(1 - b2 ** step) + hp["eps"]
    p -= step_size * (m / denom)


def adamw(p: np.ndarray, g: np.ndarray, st: dict, hp: dict, lr: float) -> None:
    """AdamW: Adam with decoupled weight decay (theta *= 1 - lr wd, then Adam's step)."""
    adam(p, g, st, hp, lr, decoupled=True)


RULES = {"sgd": sgd, "adagrad": adagrad, "rmsprop": rmsprop, "adadelta": adadelta,
         "adam": adam, "adamw": adamw}


# ---- schedules ------------------------------------------------------------------------------


@dataclass
class Schedule:
    """The train section's schedule over an optimiser's groups: after each optimisation step
    `step()` sets every group's rate to hp lr times train_check.lr_factor (torch's LambdaLR);
    `plateau` instead changes the rates once an epoch in `epoch_end(value)`, as torch's
    ReduceLROnPlateau with threshold_mode "abs", no cooldown and min_lr 0."""

    kind: str
    args: dict[str, Any]
    steps: int = 0  # optimisation steps taken
    best: float | None = None
    bad_epochs: int = 0

    def apply(self, opt: Optimizer) -> None:
        if self.kind == "plateau":
            return
        for g in opt.groups:
            base = float(g.hp["lr"])
            g.lr = base * lr_factor((self.kind, self.args), self.steps, base)

    def step(self, opt: Optimizer) -> None:
        self.steps += 1
        self.apply(opt)

    def epoch_end(self, opt: Optimizer, value: float) -> None:
        if self.kind != "plateau":
            return
        a = self.args
        sign = 1.0 if a["mode"] == "min" else -1.0
        if self.best is None or sign * (self.best - value) > a["min_delta"]:
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs > a["patience"]:
            for g in opt.groups:
                new = g.lr * a["factor"]
                if g.lr - new > 1e-8:  # ReduceLROnPlateau's eps
                    g.lr = new
            self.bad_epochs = 0

    def state_arrays(self) -> Arrays:
        return {"sched/steps": np.asarray(self.steps),
                "sched/best": np.asarray(np.nan if self.best is None else self.best),
                "sched/bad_epochs": np.asarray(self.bad_epochs)}

    def load_state_arrays(self, arrays: Arrays) -> None:
        self.steps = int(arrays["sched/steps"])
        best = float(arrays["sched/best"])
        self.best = None if math.isnan(best) else best
        self.bad_epochs = int(arrays["sched/bad_epochs"])


def make_schedule(schedule: tuple[str, dict[str, Any]], opt: Optimizer) -> Schedule:
    """The schedule, with the optimiser's rates set for its first step."""
    s = Schedule(schedule[0], dict(schedule[1]))
    s.apply(opt)
    return s

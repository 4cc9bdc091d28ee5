"""The NumPy optimisers and schedules (dslc/numpy_optim.py) equal torch.optim step for step
(float64, 1e-10 relative), with parameter groups, and their state survives a save/restore."""

from __future__ import annotations

import numpy as np
import pytest

from dslc.numpy_optim import make_optimizer, make_schedule
from dslc.train_check import OPTIMIZERS

torch = pytest.importorskip("torch")

K = 6
SHAPES = {"w": (3, 4), "b": (4,), "v": (2, 2, 3)}

HPARAMS = {
    "sgd": [{"lr": 0.1}, {"lr": 0.05, "momentum": 0.9},
            {"lr": 0.05, "momentum": 0.8, "dampening": 0.3, "weight_decay": 0.01},
            {"lr": 0.02, "momentum": 0.9, "nesterov": True, "weight_decay": 0.001}],
    "adagrad": [{"lr": 0.1}, {"lr": 0.05, "lr_decay": 0.1, "weight_decay": 0.01,
                              "initial_accumulator_value": 0.2, "eps": 1e-6}],
    "rmsprop": [{"lr": 0.01}, {"lr": 0.01, "alpha": 0.9, "momentum": 0.5, "centered": True},
                {"lr": 0.02, "weight_decay": 0.1, "eps": 1e-4, "momentum": 0.3}],
    "adadelta": [{"lr": 1.0}, {"lr": 0.5, "rho": 0.8, "eps": 1e-4, "weight_decay": 0.05}],
    "adam": [{"lr": 0.01}, {"lr": 0.003, "betas": (0.8, 0.9), "eps": 1e-6,
                            "weight_decay": 0.01},
             {"lr": 0.01, "amsgrad": True}],
    "adamw": [{"lr": 0.01}, {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True,
                             "betas": (0.5, 0.7)}],
}
CASES = [(name, i) for name, sets in HPARAMS.items() for i in range(len(sets))]


def _params(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s) for k, s in SHAPES.items()}


def _grads(seed: int, step: int) -> list[dict[str, np.ndarray | None]]:
    rng = np.random.default_rng([seed, step])
    g: dict[str, np.ndarray | None] = {k: rng.standard_normal(s) for k, s in SHAPES.items()}
    if step == 2:
        g["v"] = None  # a parameter the loss did not reach this step: skipped, as in torch
    return g


def _torch_run(name, hp, groups, params, steps, sched=None):
    tp = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    cls = getattr(torch.optim, OPTIMIZERS[name][0])
    opt = cls([{"params": [tp[k] for k in keys], **over} for keys, over in groups],
              **dict(OPTIMIZERS[name][1], **hp))
    scheduler = sched(opt) if sched else None
    for i in range(steps):
        for k, g in _grads(0, i).items():
            tp[k].grad = None if g is None else torch.tensor(g)
        opt.step()
        if scheduler is not None:
            scheduler.step()
    return {k: v.detach().numpy() for k, v in tp.items()}


def _close(a: dict, b: dict, rtol: float = 1e-10) -> None:
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("name,i", CASES, ids=[f"{n}{i}" for n, i in CASES])
def test_optimizer_equals_torch(name, i):
    hp = HPARAMS[name][i]
    groups = [(["w", "v"], {}), (["b"], {"weight_decay": 0.0})]
    params = _params(1)
    want = _torch_run(name, hp, groups, params, K)
    opt = make_optimizer(name, hp, groups)
    sched = make_schedule(("constant", {}), opt)
    got = {k: v.copy() for k, v in params.items()}
    for step in range(K):
        opt.step(got, _grads(0, step))
        sched.step(opt)
    _close(got, want)
    assert not np.allclose(got["w"], params["w"])  # it moved


@pytest.mark.parametrize("name,i", [("sgd", 2), ("adam", 1), ("rmsprop", 1), ("adagrad", 1),
                                    ("adadelta", 1), ("adamw", 1)])
def test_state_round_trip(name, i):
    hp = HPARAMS[name][i]
    groups = [(list(SHAPES), {})]
    straight = make_optimizer(name, hp, groups)
    p1 = _params(2)
    for step in range(K):
        straight.step(p1, _grads(0, step))
    first = make_optimizer(name, hp, groups)
    p2 = _params(2)
    for step in range(3):
        first.step(p2, _grads(0, step))
    saved = {k: np.array(v) for k, v in first.state_arrays().items()}
    second = make_optimizer(name, hp, groups)
    second.load_state_arrays(saved)
    for step in range(3, K):
        second.step(p2, _grads(0, step))
    for k in p1:
        np.testing.assert_array_equal(p1[k], p2[k])


SCHEDULES = [("step", {"step_size": 2, "gamma": 0.5}),
             ("multistep", {"milestones": (1, 4), "gamma": 0.3}),
             ("exponential", {"gamma": 0.9}),
             ("cosine", {"t_max": 4, "eta_min": 0.001}),
             ("cosine_restarts", {"t_0": 2, "t_mult": 2, "eta_min": 0.0}),
             ("warmup", {"total_iters": 3, "then": ("exponential", {"gamma": 0.8})}),
             ("noam", {"d_model": 16, "warmup": 3})]


@pytest.mark.parametrize("sched", SCHEDULES, ids=[s[0] for s in SCHEDULES])
def test_schedule_equals_lambda_lr(sched):
    from dslc.train_check import lr_factor

    hp = {"lr": 0.1, "momentum": 0.9}
    groups = [(list(SHAPES), {})]
    params = _params(3)
    want = _torch_run("sgd", hp, groups, params, K, lambda o: torch.optim.lr_scheduler.LambdaLR(
        o, lambda i: lr_factor(sched, i, 0.1)))
    opt = make_optimizer("sgd", hp, groups)
    s = make_schedule(sched, opt)
    rates = []
    for step in range(K):
        rates.append(opt.groups[0].lr)
        opt.step(params, _grads(0, step))
        s.step(opt)
    _close(params, want)
    assert len(set(rates)) > 1


def test_plateau_equals_reduce_lr_on_plateau():
    values = [1.0, 0.9, 0.95, 0.91, 0.9, 0.92, 0.5, 0.6, 0.6, 0.6]
    args = {"factor": 0.5, "patience": 1, "metric": "loss", "min_delta": 0.01, "mode": "min"}
    tp = torch.zeros(1, requires_grad=True)
    topt = torch.optim.SGD([tp], lr=0.1)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, mode="min", factor=0.5,
                                                         patience=1, threshold=0.01,
                                                         threshold_mode="abs")
    opt = make_optimizer("sgd", {"lr": 0.1}, [(["p"], {})])
    s = make_schedule(("plateau", args), opt)
    got, want = [], []
    for v in values:
        tsched.step(v)
        s.epoch_end(opt, v)
        want.append(topt.param_groups[0]["lr"])
        got.append(opt.groups[0].lr)
    assert got == want
    assert got[-1] < 0.1

"""The generated modules from their OWN initialisation (not the NumPy side's weights): every
zoo model trains (every parameter receives a gradient, the loss falls), and each parameter is
drawn from the distribution the NumPy side's init_params uses."""

from __future__ import annotations

import numpy as np
import pytest

from tests.specs.test_zoo import CASES, HPARAMS, IDS, bind_for, load

torch = pytest.importorskip("torch")

STEPS = 4


def _own_module(prog, seed: int = 0):
    torch.manual_seed(seed)
    return prog.to_torch()()


def _float_outputs(out) -> list:
    outs = out if isinstance(out, tuple) else (out,)
    return [o for o in outs if o.is_floating_point() and o.requires_grad]


@pytest.mark.parametrize("file,model", CASES, ids=IDS)
def test_trains_from_its_own_initialisation(file, model):
    prog = load(file, model, tuple(HPARAMS.get(model, {}).items()))
    module = _own_module(prog)
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        # A model without trainable parameters (fixed kernels only): the NumPy side agrees.
        assert not any(spec.persistent and not spec.buffer and spec.init != "const"
                       for _, _, spec in prog.graph.param_keys().values())
        return
    inputs = prog.random_inputs(0, bind_for(prog))
    args = [torch.from_numpy(np.array(inputs[name])) for name, _ in prog.graph.inputs]
    # Eval mode: dropout off, so the loss of a fixed batch is a deterministic function of the
    # parameters; batch norm still passes gradients to its weight and bias.
    module.eval()
    gen = torch.Generator().manual_seed(1)
    outs = _float_outputs(module(*args))
    assert outs, "no differentiable output"
    targets = [torch.randn(o.shape, generator=gen, dtype=o.dtype) for o in outs]
    opt = torch.optim.Adam(params, lr=1e-3)
    losses = []
    for step in range(STEPS):
        opt.zero_grad()
        outs = _float_outputs(module(*args))
        loss = sum(torch.nn.functional.mse_loss(o, t) for o, t in zip(outs, targets))
        loss.backward()
        if step == 0:
            names = dict(module.named_parameters())
            dead = [k for k, p in names.items()
                    if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
            assert not dead, f"parameters without a gradient: {dead}"
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0], losses


@pytest.mark.parametrize("file,model", CASES, ids=IDS)
def test_own_initialisation_has_the_numpy_side_distribution(file, model):
    from scipy.stats import ks_2samp

    prog = load(file, model, tuple(HPARAMS.get(model, {}).items()))
    own = _own_module(prog).state_dict()
    ref = prog.init_params(0)
    assert set(own) == set(ref)
    for key, (_node, _local, spec) in prog.graph.param_keys().items():
        # The first 20,000 draws of each: enough for the comparison, cheap for VGG-16's 100M.
        t = own[key].detach().reshape(-1)[:20000].double().numpy()
        a = np.asarray(ref[key]).reshape(-1)[:20000].astype(np.float64)
        assert own[key].shape == ref[key].shape, key
        if spec.init in ("zeros", "ones") or spec.init.startswith("constant:"):
            assert np.array_equal(t, a), key
        elif a.size >= 64:
            # Two draws of the same distribution (deterministic: both sides are seeded).
            # Hundreds of keys are compared: a threshold of 1e-3 would fail one by chance; a wrong
            # distribution gives p ~ 1e-50 at 20,000 draws.
            assert ks_2samp(t, a).pvalue > 1e-7, (key, spec.init, t.std(), a.std())
        else:
            assert np.abs(t).max() <= max(4 * a.std(), np.abs(a).max() * 1.5), key

"""Shared test helpers: run a program on NumPy and as generated PyTorch, and compare."""

from __future__ import annotations

import numpy as np


def torch_outputs(prog, inputs, params, train=False):
    """Run the generated module with the NumPy side's parameters and inputs."""
    import torch

    cls = prog.to_torch()
    # Built on the meta device (no initialisation work), then given the NumPy side's tensors;
    # spec constants are not in the state_dict, so a model with constants is built for real.
    has_consts = any(n.op == "const" for n in prog.graph.nodes.values())
    with torch.device("cpu" if has_consts else "meta"):
        m = cls()
    m.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in params.items()},
                      strict=True, assign=True)
    m.train(train)
    with torch.no_grad():
        args = prog.torch_arg_names()
        out = m(**{args[k]: torch.from_numpy(np.array(v)) for k, v in inputs.items()})
    if not isinstance(out, tuple):
        out = (out,)
    names = [n for n, _ in prog.graph.outputs]
    return {n: o.detach().numpy() for n, o in zip(names, out)}, m


def assert_close(a: np.ndarray, b: np.ndarray, rtol=1e-4, atol=1e-5, what=""):
    """Equal within `rtol` relative to the largest magnitude (float32 arithmetic)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, f"{what}: shapes {a.shape} vs {b.shape}"
    scale = max(np.abs(b).max() if b.size else 0.0, 1.0)
    err = np.abs(a - b).max() if a.size else 0.0
    assert err <= atol + rtol * scale, f"{what}: max abs error {err:g} (scale {scale:g})"


def compare_numpy_torch(prog, bind=None, seed=0, train=False, rtol=1e-4, atol=1e-5):
    """The core proof of an op or a spec: NumPy result == generated PyTorch result."""
    params = prog.init_params(seed)
    inputs = prog.random_inputs(seed, bind)
    ref_params = {k: v.copy() for k, v in params.items()}
    np_out = prog.run(inputs, params, train=train, seed=seed, bind=bind)
    t_out, module = torch_outputs(prog, inputs, ref_params, train=train)
    for name in np_out:
        assert_close(np_out[name], t_out[name], rtol, atol, what=name)
    return np_out, t_out, module

"""Generated zoo modules are device- and dtype-agnostic and compile as one graph: run after
`.to('meta')` with meta inputs, after `.double()` with float64 inputs (equal to NumPy), and
under `torch.compile(fullgraph=True)`."""

from pathlib import Path

import numpy as np
import pytest

import dslc
from tests.helpers import assert_close

torch = pytest.importorskip("torch")
SPECS = Path(__file__).resolve().parents[2] / "specs"

# A spread of the zoo: convolutions, batch norm, scans, fast RNNs, constants, spatial ops.
CASES = [
    ("lenet5.dl", None, {}),
    ("resnet18.dl", None, {"size": 64}),
    ("edge_detector.dl", None, {}),
    ("spatial_transformer.dl", None, {}),
    ("elman_rnn.dl", None, {}),
    ("lstm.dl", None, {}),
    ("vae.dl", None, {}),
]
BIND = {"B": 2, "T": 4, "S": 3, "H": 16, "W": 16}


def _load(name, model, hp):
    path = SPECS / name
    if not path.exists():
        pytest.fail(f"specs/{name} is missing")
    return dslc.load(path, model=model, hparams=hp or None)


@pytest.mark.parametrize("name,model,hp", CASES, ids=[c[0] for c in CASES])
def test_meta_double_and_compile(name, model, hp):
    prog = _load(name, model, hp)
    params = prog.init_params(0)
    inputs = prog.random_inputs(0, BIND)
    ref = prog.run(inputs, {k: v.copy() for k, v in params.items()})
    args = prog.torch_arg_names()
    module = prog.to_torch()()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in params.items()}, strict=True)
    module.eval()

    def tensors(dtype=None, device=None):
        out = {}
        for k, v in inputs.items():
            t = torch.from_numpy(v)
            if dtype is not None and t.is_floating_point():
                t = t.to(dtype)
            out[args[k]] = t.to(device) if device else t
        return out

    def as_tuple(o):
        return o if isinstance(o, tuple) else (o,)

    with torch.no_grad():
        double = as_tuple(module.double()(**tensors(torch.float64)))
        for (key, want), got in zip(ref.items(), double):
            assert got.dtype in (torch.float64, torch.int64), key
            assert_close(got.numpy(), want, what=key)
        module.float()
        compiled = torch.compile(module, fullgraph=True, backend="eager", dynamic=False)
        # Dynamo traces nn.RNN/LSTM/GRU (the cuDNN fast paths) only with allow_rnn.
        with torch._dynamo.config.patch(allow_rnn=True):
            outs = as_tuple(compiled(**tensors()))
        for (key, want), got in zip(ref.items(), outs):
            assert_close(got.numpy(), want, what=f"compiled {key}")
        meta = as_tuple(module.to("meta")(**tensors(device="meta")))
        for (key, want), got in zip(ref.items(), meta):
            assert got.device.type == "meta" and tuple(got.shape) == want.shape, key
    np.testing.assert_equal(len(meta), len(ref))

"""PyTorch code generation, in-place forms: `F.relu(x, inplace=True)` and `a += b` appear only
where the overwritten value is a fresh result nothing else reads (no graph input or output, no
result its producer's backward keeps), and the gradients through them, in training mode too,
equal the NumPy side's."""

from pathlib import Path

import numpy as np
import pytest

import dslc

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]

SRC = """
model net(d: int = 8) {
  input x: f32[B, d]
  a = x -> relu
  b = x -> linear(d) as fc1 -> relu
  s = b -> linear(d) as fc2 -> sigmoid -> relu
  u = s -> linear(d) as fc3
  v = u -> relu
  w = (u + v) + a
  h = w -> linear(d) as fc4
  output h, y = h -> relu, z = (w -> linear(d) as fc5) + x
}
"""


@pytest.fixture(scope="module")
def prog():
    return dslc.load("net.dl", text=SRC)


def forward_lines(src: str) -> list[str]:
    body = src.split("def forward(self, x):\n", 1)[1]
    return [ln.strip() for ln in body.splitlines() if ln.strip() and not ln.strip()[0] == "#"]


def test_in_place_only_where_nothing_else_sees_the_value(prog):
    assert forward_lines(prog.to_torch_source()) == [
        "a = torch.relu(x)",  # a graph input is the caller's tensor
        "b = self.fc1(x)",
        "b = F.relu(b, inplace=True)",  # a linear's result read once
        "s = self.fc2(b)",
        "s = torch.sigmoid(s)",
        "s = torch.relu(s)",  # sigmoid's backward reads its result
        "u = self.fc3(s)",
        "v = torch.relu(u)",  # u is read again by the add
        "w = u + v",  # u again: read twice
        "w += a",  # the first sum, read once
        "h = self.fc4(w)",
        "y = torch.relu(h)",  # h is an output of the model
        "z = self.fc5(w)",
        "z += x",  # the second operand may be an input: only z changes
        "return (h, y, z)",
    ]


def _torch_grads(prog, params, inputs, cot, train: bool):
    m = prog.to_torch()()
    m.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in params.items()})
    m = m.double().train(train)
    args = [torch.from_numpy(inputs[n]).double().requires_grad_() for n, _ in prog.graph.inputs]
    before = [a.detach().clone() for a in args]
    out = m(*args)
    out = out if isinstance(out, tuple) else (out,)
    names = [n for n, _ in prog.graph.outputs]
    total = sum((o * torch.from_numpy(cot[n])).sum() for n, o in zip(names, out))
    total.backward()  # autograd refuses if a value its backward needs was overwritten
    for a, b in zip(args, before):
        assert torch.equal(a.detach(), b), "the module changed its input"
    grads = {k: p.grad.numpy() for k, p in m.named_parameters()}
    grads.update({n: a.grad.numpy() for (n, _), a in zip(prog.graph.inputs, args)})
    return grads


def _check_grads(prog, bind, train: bool):
    inputs = prog.random_inputs(0, bind)
    params = prog.init_params(0)
    outs = prog.run(inputs, {k: v.copy() for k, v in params.items()}, bind=bind, train=train)
    rng = np.random.default_rng(1)
    cot = {k: rng.standard_normal(v.shape) for k, v in outs.items()}
    ours = prog.grad(inputs, {k: v.copy() for k, v in params.items()}, loss=cot, bind=bind,
                     train=train, wrt_inputs=True, float64=True)
    theirs = _torch_grads(prog, params, inputs, cot, train)
    assert sorted(ours) == sorted(theirs)
    for key, want in theirs.items():
        scale = max(float(np.abs(want).max()), 1.0)
        err = float(np.abs(ours[key] - want).max())
        assert err <= 1e-8 * scale, f"{key}: max abs error {err:g} (scale {scale:g})"


def test_gradients_through_in_place_forms_equal_numpys(prog):
    _check_grads(prog, {"B": 4}, train=False)


def test_resnet_trains_through_in_place_forms_with_batch_statistics():
    # Training mode: batch norm's backward reads its input and batch statistics, never the
    # result that relu then overwrites.
    prog = dslc.load(ROOT / "specs" / "resnet18.dl", hparams={"classes": 10, "size": 32})
    src = prog.to_torch_source()
    assert "F.relu(h_2, inplace=True)" in src and "h_2 += h" in src
    _check_grads(prog, {"B": 2}, train=True)

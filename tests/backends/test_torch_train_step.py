"""The generated training program's step (dslc/backends/torch_train.py, `train_step`) does the
work of a hand-written PyTorch loop and no more: the same aten operations, and no read of a
device value (a sync) per step. Counted with a dispatch mode, so no timing is involved."""

from __future__ import annotations

import collections
import copy

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tests.backends.test_torch_train import NET, net_data, program


class Count(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func)] += 1
        return func(*args, **(kwargs or {}))


def test_train_step_dispatches_what_a_hand_written_loop_does(tmp_path):
    mod = program(tmp_path, NET)
    torch.manual_seed(0)
    model = mod.Model()
    hand = copy.deepcopy(model)
    optimizer = mod.make_optimizer(mod.param_groups(model))
    scheduler = mod.make_scheduler(optimizer)
    hand_opt = torch.optim.SGD(hand.parameters(), lr=0.1, momentum=0.9)
    rng = np.random.default_rng(0)
    batch = {"x": torch.from_numpy(rng.standard_normal((8, 4)).astype(np.float32)),
             "label": torch.from_numpy(rng.integers(0, 3, 8))}
    for _ in range(2):  # the second step: the momentum buffers exist on both sides
        with Count() as gen:
            loss = mod.train_step(model, model, mod.Loss(), optimizer, scheduler, batch)
        with Count() as ref:
            hand_loss = torch.nn.functional.cross_entropy(hand(batch["x"]), batch["label"])
            hand_opt.zero_grad(set_to_none=True)
            hand_loss.backward()
            hand_opt.step()
        assert gen.ops - ref.ops == collections.Counter({"aten.detach.default": 1})
        assert ref.ops - gen.ops == collections.Counter()
        assert "aten._local_scalar_dense.default" not in gen.ops  # no .item()
        assert torch.equal(loss, hand_loss.detach())
    for (name, a), b in zip(model.state_dict().items(), hand.state_dict().values()):
        assert torch.equal(a, b), name


def test_reading_the_loss_does_not_grow_with_the_steps(tmp_path):
    """`.item()` (aten._local_scalar_dense) waits for the device: the loop reads the loss at
    an epoch's end, for a progress line and for the evaluation, never at every step."""
    mod = program(tmp_path, NET)
    data = net_data(tmp_path / "d.npz", 120)  # 90 training samples: 11 steps an epoch
    reads = {}
    for steps in (2, 6):
        with Count() as c:
            assert mod.main(["--data", str(data), "--out", str(tmp_path / f"r{steps}"),
                             "--steps", str(steps), "--progress", "none"]) == 0
        reads[steps] = c.ops["aten._local_scalar_dense.default"]
    assert reads[2] == reads[6] > 0

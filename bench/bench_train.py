"""One training step of the generated training program (`dslc compile --train`: its
`train_step`, the loop's body) against a hand-written PyTorch loop for the same model, same
process, same weights, batch and optimiser settings: ResNet-18 (batch 16) and the 6-layer
Transformer encoder. Target: ratio generated/hand-written <= 1.05.

    .venv/bin/python bench/bench_train.py [--only CASE] [--size 224] [--seq 64] [--blocks 4]
        [--runs 1] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import dslc  # noqa: E402
from bench.harness import timed  # noqa: E402

# The sections the benchmark trains with (the zoo's files may carry their own): what a user
# would write for these models; the reference loop uses the same optimiser and settings.
RESNET_TRAIN = """
train bench for resnet18 {
  target label: i64[B]
  loss = cross_entropy(logits, label)
  optimizer = sgd(lr=0.1, momentum=0.9, weight_decay=0.0001)
  batch = 16
  epochs = 1
}
"""
TRANSFORMER_TRAIN = """
train bench for transformer_encoder {
  target t: f32[B, T, d]
  loss = mse_loss(y, t)
  optimizer = adam(lr=0.0001)
  batch = 16
  epochs = 1
}
"""


def generated_program(spec: str, section: str, hparams: dict, tmp: Path) -> types.ModuleType:
    """The training program of `section` appended to specs/`spec`, loaded as a module (the
    file is copied beside the zoo's blocks so that its imports resolve)."""
    from dslc.backends.torch_train import generate_train
    from dslc.sources import load_program
    from dslc.train_check import check_train

    shutil.copytree(ROOT / "specs" / "blocks", tmp / "blocks", dirs_exist_ok=True)
    path = tmp / f"{spec}.dl"
    path.write_text((ROOT / "specs" / f"{spec}.dl").read_text() + section)
    prog = dslc.load(path, hparams=hparams)
    src = generate_train(prog.graph, check_train(load_program(path), prog.source, "bench"),
                         str(path))
    mod = types.ModuleType(f"train_{spec}")
    exec(compile(src, str(tmp / f"train_{spec}.py"), "exec"), mod.__dict__)  # noqa: S102
    return mod


class OpCounter:
    """Counts the aten operations dispatched inside `with` (forward, backward and optimiser)."""

    def __enter__(self):
        import collections

        from torch.utils._python_dispatch import TorchDispatchMode

        counter = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                counter.ops[str(func)] += 1
                return func(*args, **(kwargs or {}))

        self.ops = collections.Counter()
        self.mode = Mode()
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        self.mode.__exit__(*exc)


def resnet_case(size: int, tmp: Path):
    import torch
    import torch.nn.functional as F

    from tests.specs.test_torchvision_layouts import ResNet18

    mod = generated_program("resnet18", RESNET_TRAIN, {"size": size}, tmp)
    ref = ResNet18()
    batch = {"x": torch.randn(16, 3, size, size), "label": torch.randint(0, 1000, (16,))}

    def ref_opt(params):
        return torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.0001)

    def ref_loss(model, b):
        return F.cross_entropy(model(b["x"]), b["label"])

    return mod, ref, batch, ref_opt, ref_loss, (batch["x"],)


def transformer_case(seq: int, tmp: Path):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    mod = generated_program("transformer_encoder", TRANSFORMER_TRAIN, {}, tmp)
    layer = nn.TransformerEncoderLayer(512, 8, 2048, 0.1, batch_first=True)
    ref = nn.TransformerEncoder(layer, 6, enable_nested_tensor=False)
    batch = {"x": torch.randn(16, seq, 512), "t": torch.randn(16, seq, 512)}

    def ref_opt(params):
        return torch.optim.Adam(params, lr=0.0001)

    def ref_loss(model, b):
        return F.mse_loss(model(b["x"]), b["t"])

    return mod, ref, batch, ref_opt, ref_loss, (batch["x"],)


def compare(name: str, case, blocks: int, runs: int) -> dict:
    import torch

    from tests.helpers import assert_close

    mod, ref, batch, ref_opt, ref_loss, probe = case
    torch.manual_seed(0)
    model = mod.Model()
    # The same weights on both sides, loaded strictly: the same layers under the same names.
    ref.load_state_dict(model.state_dict(), strict=True)
    model.eval()
    ref.eval()
    with torch.no_grad():
        out = model(*probe)
        assert_close((out[0] if isinstance(out, tuple) else out).numpy(),
                     ref(*probe).numpy(), what=name)
    model.train()
    ref.train()
    loss_fn = mod.Loss()
    optimizer = mod.make_optimizer(mod.param_groups(model))
    scheduler = mod.make_scheduler(optimizer)
    opt = ref_opt(ref.parameters())
    # The hand-written loop also on a copy of the generated module: what the loop alone costs.
    same = mod.Model()
    same.load_state_dict(model.state_dict(), strict=True)
    same.train()
    same_opt = ref_opt(same.parameters())
    loss_sum = torch.zeros((), dtype=torch.float64)

    def generated():
        # The loop's body in main(): the step, then the epoch's loss sum (kept on the device).
        nonlocal loss_sum
        loss_sum += mod.train_step(model, model, loss_fn, optimizer, scheduler, batch)

    def hand_loop(net, optim):
        def step():
            # A careful user's loop: forward, loss, zero_grad, backward, step.
            loss = ref_loss(net, batch)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
        return step

    sides = {"generated": generated, "hand": hand_loop(ref, opt),
             "hand_on_generated_module": hand_loop(same, same_opt)}
    wall = {k: [] for k in sides}
    cpu = {k: [] for k in sides}
    # Warm-up (first-call allocations, optimiser state), counting the aten operations each
    # side dispatches: the same work is the same list of operations.
    ops = {}
    for key, fn in sides.items():
        with OpCounter() as counter:
            fn()
        ops[key] = counter.ops
    extra = ops["generated"] - ops["hand_on_generated_module"]
    missing = ops["hand_on_generated_module"] - ops["generated"]
    print(f"  aten ops a step: generated {sum(ops['generated'].values())}, hand-written loop "
          f"on the same module {sum(ops['hand_on_generated_module'].values())}, on the "
          f"hand-written model {sum(ops['hand'].values())}; generated - hand-written: "
          f"{dict(extra) or 'none'}, hand-written - generated: {dict(missing) or 'none'}")
    order = list(sides)
    for _ in range(blocks):  # alternating blocks: all see the same drift of a shared machine
        for key in order:
            wall[key] += timed(sides[key], runs, cpu[key])
        order = order[1:] + order[:1]  # and each side in turn comes first
    g, r, s = (statistics.median(wall[k]) for k in sides)
    gc, rc, sc = (statistics.median(cpu[k]) for k in sides)
    return {"case": name, "generated_ms": g, "hand_ms": r, "ratio": g / r,
            "min_ratio": min(wall["generated"]) / min(wall["hand"]), "cpu_ratio": gc / rc,
            "loop_ratio": g / s, "loop_cpu_ratio": gc / sc}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224, help="ResNet-18's image size")
    ap.add_argument("--seq", type=int, default=64, help="the Transformer's sequence length")
    ap.add_argument("--blocks", type=int, default=3,
                    help="a multiple of 3: each side comes first as often")
    ap.add_argument("--runs", type=int, default=1, help="timed steps a side in a block")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ap.add_argument("--only", choices=("resnet18", "transformer_encoder"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), load average "
          f"{os.getloadavg()[0]:.1f}; {args.blocks} blocks x {args.runs} steps a side")
    print(f"{'case':<28} {'generated ms':>13} {'hand ms':>9} {'ratio':>6} {'min':>6} "
          f"{'cpu':>6} {'loop':>6} {'loop cpu':>8}")
    cases = {"resnet18": lambda tmp: resnet_case(args.size, tmp),
             "transformer_encoder": lambda tmp: transformer_case(args.seq, tmp)}
    for name, make in cases.items():
        if args.only and name != args.only:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            label = (f"{name} b16 {args.size}x{args.size}" if name == "resnet18"
                     else f"{name} b16 T={args.seq}")
            row = compare(label, make(Path(tmp)), args.blocks, args.runs)
        print(f"{row['case']:<28} {row['generated_ms']:>13.1f} {row['hand_ms']:>9.1f} "
              f"{row['ratio']:>6.3f} {row['min_ratio']:>6.3f} {row['cpu_ratio']:>6.3f} "
              f"{row['loop_ratio']:>6.3f} {row['loop_cpu_ratio']:>8.3f}", flush=True)


if __name__ == "__main__":
    main()

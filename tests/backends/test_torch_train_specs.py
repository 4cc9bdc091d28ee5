"""Train sections of zoo specs (specs/*.dl) run as generated programs, shrunk with --set: the
Transformer's (warm-up schedule, label smoothing, padding ignored)."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import dslc
from dslc.cli import main
from dslc.train_check import lr_factor

ROOT = Path(__file__).resolve().parents[2]
SMALL_TRANSFORMER = ["--set", "d=16", "--set", "heads=2", "--set", "ff=32", "--set", "n=1",
                     "--set", "src_vocab=20", "--set", "tgt_vocab=20", "--set", "p=0.0"]


def compiled(tmp_path: Path, spec: str, extra: list[str]) -> types.ModuleType:
    out = tmp_path / "train.py"
    assert main(["compile", str(ROOT / "specs" / spec), *extra, "--train", "-o", str(out)]) == 0
    mod = types.ModuleType("generated_" + spec.replace(".", "_"))
    exec(compile(out.read_text(), str(out), "exec"), mod.__dict__)  # noqa: S102
    return mod


def test_transformer_trains_with_the_papers_schedule_and_smoothing(tmp_path):
    mod = compiled(tmp_path, "transformer.dl", SMALL_TRANSFORMER)
    rng = np.random.default_rng(0)
    src = rng.integers(1, 20, (64, 5)).astype(np.int64)
    nxt = rng.integers(1, 20, (64, 4)).astype(np.int64)
    nxt[::3, -1] = 0  # padding: ignored by the loss
    tgt = np.concatenate([np.ones((64, 1), np.int64), nxt[:, :-1]], axis=1)
    np.savez(tmp_path / "d.npz", src=src, tgt=tgt, next=nxt)
    run = tmp_path / "run"
    assert mod.main(["--data", str(tmp_path / "d.npz"), "--out", str(run), "--steps", "3"]) == 0
    # The first epoch is one step on every sample: its loss is the section's loss of the
    # initial model, written out in torch.
    torch.manual_seed(0)
    model = mod.Transformer()
    logits = model(torch.from_numpy(src), torch.from_numpy(tgt))
    want = F.cross_entropy(logits.transpose(1, 2), torch.from_numpy(nxt), label_smoothing=0.1,
                           ignore_index=0).item()
    records = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert abs(records[0]["loss"] - want) < 1e-5
    # After 3 steps the rate is the warm-up's 512^-0.5 * min(4^-0.5, 4 * 4000^-1.5).
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    lr = ckpt["optimizer"]["param_groups"][0]["lr"]
    assert abs(lr - 512 ** -0.5 * min(4 ** -0.5, 4 * 4000 ** -1.5)) < 1e-15
    assert lr == lr_factor(("noam", {"d_model": 512, "warmup": 4000}), 3, 1.0)
    with np.load(run / "params.npz") as f:
        keys = sorted(f.files)
    prog = dslc.load(ROOT / "specs" / "transformer.dl",
                     hparams={"d": 16, "heads": 2, "ff": 32, "n": 1, "src_vocab": 20,
                              "tgt_vocab": 20, "p": 0.0})
    assert keys == sorted(prog.init_params(0))


SMALL_GAT = ["--set", "features=6", "--set", "hidden=4", "--set", "heads=2", "--set",
             "classes=3"]


def two_communities(n: int = 40, seed: int = 0) -> dict[str, np.ndarray]:
    """Three groups of nodes, dense inside, sparse between; features hint at the group."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 3, n).astype(np.int64)
    same = label[:, None] == label[None, :]
    adj = np.triu(rng.random((n, n)) < np.where(same, 0.3, 0.02), 1)
    src, dst = np.nonzero(adj | adj.T)
    x = (rng.standard_normal((n, 6)) + np.eye(3, 6)[label]).astype(np.float32)
    return {"x": x, "edge_index": np.stack([src, dst]).astype(np.int64), "label": label}


def test_gat_trains_the_whole_graph_as_a_hand_written_loop(tmp_path):
    """`batch = full`: one step a epoch on the training nodes (the first 80%), dropout on,
    Adam with weight decay - the same as torch_geometric's example loop, written out."""
    mod = compiled(tmp_path, "gat.dl", SMALL_GAT)
    d = two_communities()
    np.savez(tmp_path / "g.npz", **d)
    run = tmp_path / "run"
    assert mod.main(["--data", str(tmp_path / "g.npz"), "--out", str(run), "--epochs", "6"]) == 0
    torch.manual_seed(0)
    model = mod.Gat()
    torch.manual_seed(0)  # the program's dropout stream (seed + rank)
    opt = torch.optim.Adam(model.parameters(), lr=0.005, weight_decay=0.0005)
    x, ei, label = (torch.from_numpy(d[k]) for k in ("x", "edge_index", "label"))
    train = torch.arange(32)  # 40 nodes, validation = 0.2: the last 8 are held out
    losses = []
    for _ in range(6):
        model.train()
        loss = F.cross_entropy(model(x, ei)[train], label[train])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with np.load(run / "params.npz") as f:
        got = {k: f[k] for k in f.files}
    for k, v in model.state_dict().items():
        np.testing.assert_allclose(got[k], v.detach().numpy(), rtol=0, atol=1e-6, err_msg=k)
    records = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(1, 7))
    np.testing.assert_allclose([r["loss"] for r in records], losses, rtol=1e-6)
    assert {"val_loss", "val_accuracy"} <= set(records[-1])

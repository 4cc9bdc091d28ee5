"""The graph zoo (ZOO.md, Graph): published counts, whole models against torch_geometric with
copied weights, and nn4g / dcnn / dgc against the notes' formulas computed by hand. (Every spec
also goes through check, NumPy vs PyTorch and render in tests/specs/test_zoo.py.)"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest

import dslc
from tests.helpers import assert_close, torch_outputs

torch = pytest.importorskip("torch")
import torch_geometric.nn as pyg  # noqa: E402 - a test dependency (the [test] extra)

SPECS = Path(__file__).resolve().parents[2] / "specs"
GRAPH_SPECS = ["nn4g", "dcnn", "dgc", "monet", "graphsage_mean", "graphsage_pool",
               "graphsage_lstm", "gat", "gin", "chebnet", "gcn", "graph_classifier",
               "dropedge_gcn"]


@cache
def load(name: str, hparams: tuple = ()) -> dslc.Program:
    return dslc.load(SPECS / f"{name}.dl", hparams=dict(hparams) or None)


def t(a):
    return torch.from_numpy(np.asarray(a))


def graph(n: int, e: int, seed: int) -> np.ndarray:
    """Random edges with the last node isolated, plus self-loops and a repeated edge."""
    rng = np.random.default_rng(seed)
    ei = rng.integers(0, n - 1, size=(2, e))
    return np.concatenate([ei, [[0, 2, 1, 1], [0, 2, 3, 3]]], axis=1).astype(np.int64)


@pytest.mark.parametrize("name", GRAPH_SPECS)
def test_spec_exists_and_runs_on_a_random_graph(name):
    prog = load(name)
    ins = prog.random_inputs(seed=2, bind={"N": 12, "E": 30})
    out = prog.run(ins, prog.init_params(2))
    t_out, _ = torch_outputs(prog, ins, prog.init_params(2))
    for k in out:
        assert np.isfinite(out[k]).all(), k
        assert_close(out[k], t_out[k], what=k)


@pytest.mark.parametrize("name,params", [("gcn", 23_063), ("gat", 92_373)])
def test_published_parameter_counts(name, params):
    assert load(name).summary({"N": 2708, "E": 10556})["params"] == params


def test_macs_count_per_node_and_per_edge():
    """The summary's MACs are linear in N and E: one more node or edge costs a fixed amount."""
    prog = load("gcn")

    def macs(n, e):
        return prog.summary({"N": n, "E": e})["macs"]

    per_node = macs(101, 50) - macs(100, 50)
    per_edge = macs(100, 51) - macs(100, 50)
    assert per_edge == 16 + 7  # one message per layer, of the layer's width
    assert per_node == 1433 * 16 + 16 * 7 + 16 + 7  # the dense parts plus the self-loop
    assert macs(2708, 10556) == 2708 * per_node + 10556 * per_edge


def gcn_reference(params):
    convs = [pyg.GCNConv(1433, 16), pyg.GCNConv(16, 7)]
    for i, c in enumerate(convs, 1):
        c.load_state_dict({"lin.weight": t(params[f"conv{i}.weight"]),
                           "bias": t(params[f"conv{i}.bias"])})

    def forward(x, ei):
        return convs[1](convs[0](x, ei).relu(), ei)
    return forward, sum(p.numel() for c in convs for p in c.parameters())


def test_gcn_equals_torch_geometric():
    prog = load("gcn")
    params = prog.init_params(0)
    rng = np.random.default_rng(0)
    ins = {"x": rng.standard_normal((30, 1433)).astype(np.float32), "edge_index": graph(30, 90, 0)}
    ref, n = gcn_reference(params)
    assert n == 23_063
    with torch.no_grad():
        want = ref(t(ins["x"]), t(ins["edge_index"])).numpy()
    assert_close(prog.run(ins, params)["logits"], want, what="numpy")
    assert_close(torch_outputs(prog, ins, params)[0]["logits"], want, what="torch")


def test_dropedge_gcn_is_the_gcn_at_inference():
    drop, gcn = load("dropedge_gcn"), load("gcn")
    params = gcn.init_params(1)
    rng = np.random.default_rng(1)
    ins = {"x": rng.standard_normal((20, 1433)).astype(np.float32), "edge_index": graph(20, 60, 1)}
    want = gcn.run(ins, dict(params))["logits"]
    assert_close(drop.run(ins, dict(params))["logits"], want, what="eval")
    trained = drop.run(ins, dict(params), train=True, seed=5)["logits"]
    assert np.abs(trained - want).max() > 1e-3  # edges do drop in training


def test_gat_equals_torch_geometric():
    prog = load("gat")
    params = prog.init_params(0)
    rng = np.random.default_rng(0)
    ins = {"x": rng.standard_normal((25, 1433)).astype(np.float32), "edge_index": graph(25, 80, 3)}
    c1, c2 = pyg.GATConv(1433, 8, heads=8), pyg.GATConv(64, 7, heads=1)
    for i, c in enumerate((c1, c2), 1):
        c.load_state_dict({"lin.weight": t(params[f"conv{i}.weight"]),
                           "att_src": t(params[f"conv{i}.att_src"]),
                           "att_dst": t(params[f"conv{i}.att_dst"]),
                           "bias": t(params[f"conv{i}.bias"])})
    assert sum(p.numel() for c in (c1, c2) for p in c.parameters()) == 92_373
    x, ei = t(ins["x"]), t(ins["edge_index"])
    with torch.no_grad():
        want = c2(torch.nn.functional.elu(c1(x, ei)), ei).numpy()
    assert_close(prog.run(ins, params)["logits"], want, what="numpy")
    assert_close(torch_outputs(prog, ins, params)[0]["logits"], want, what="torch")


def test_graph_classifier_equals_gin_and_global_add_pool():
    from torch_geometric.nn import global_add_pool

    prog = load("graph_classifier")
    params = prog.init_params(0)
    rng = np.random.default_rng(0)
    n = 14
    ins = {"x": rng.standard_normal((n, 8)).astype(np.float32), "edge_index": graph(n, 30, 4),
           "batch": np.sort(rng.integers(0, 4, n)).astype(np.int64)}
    convs = []
    for i in range(3):
        mlp = torch.nn.Sequential(torch.nn.Linear(8 if i == 0 else 32, 32), torch.nn.ReLU(),
                                  torch.nn.Linear(32, 32), torch.nn.ReLU())
        conv = pyg.GINConv(mlp)  # resets its MLP: the weights are copied after
        p = f"conv.{i}."
        conv.nn.load_state_dict({"0.weight": t(params[p + "mlp1.weight"]),
                             "0.bias": t(params[p + "mlp1.bias"]),
                             "2.weight": t(params[p + "mlp2.weight"]),
                             "2.bias": t(params[p + "mlp2.bias"])})
        convs.append(conv)
    head = torch.nn.Linear(32, 2)
    head.load_state_dict({"weight": t(params["head.weight"]), "bias": t(params["head.bias"])})
    h, ei = t(ins["x"]), t(ins["edge_index"])
    with torch.no_grad():
        for c in convs:
            h = c(h, ei)
        want = head(global_add_pool(h, t(ins["batch"]), size=4)).numpy()
    assert_close(prog.run(ins, params)["logits"], want, what="numpy")
    assert_close(torch_outputs(prog, ins, params)[0]["logits"], want, what="torch")


# ---- the notes' formulas by hand (000, 002) ----------------------------------------------

EI = np.array([[0, 1, 2, 2, 3, 1], [1, 0, 1, 3, 2, 2]], np.int64)  # 5 nodes, node 4 isolated
X = np.arange(10, dtype=np.float32).reshape(5, 2) / 10


def adj(ei, n):
    a = np.zeros((n, n))
    np.add.at(a, (ei[1], ei[0]), 1)
    return a


def small(name, **hp):
    return load(name, tuple(sorted(hp.items())))


def test_nn4g_by_hand():
    prog = small("nn4g", features=2, hidden=3, layers=2, classes=2)
    p = prog.init_params(0)
    a = adj(EI, 5)
    x = X.astype(np.float64)
    h = x @ p["embed0.weight"].T + p["embed0.bias"]

    def read(h, key):
        return h.mean(0, keepdims=True) @ p[f"{key}.weight"].T + p[f"{key}.bias"]

    y = read(h, "read0.read")
    for k in range(2):
        q = f"layer.{k}."
        h = np.maximum(x @ p[q + "conv.embed.weight"].T + p[q + "conv.embed.bias"]
                       + (a @ h) @ p[q + "conv.nbr.weight"].T, 0)
        y = y + read(h, q + "out.read")
    ins = {"x": X, "edge_index": EI}
    assert_close(prog.run(ins, p)["y"], y, what="numpy")
    assert_close(torch_outputs(prog, ins, p)[0]["y"], y, what="torch")


@pytest.mark.parametrize("name", ["dcnn", "dgc"])
def test_diffusion_models_by_hand(name):
    prog = small(name, features=2, hops=3, hidden=3, classes=2)
    p = prog.init_params(0)
    a = adj(EI, 5)
    pm = a / np.maximum(a.sum(1), 1)[:, None]  # transition matrix D^-1 A
    x = X.astype(np.float64)
    hops = [np.linalg.matrix_power(pm, k) @ x for k in (1, 2, 3)]
    hk = [np.tanh(h @ p["diffuse.weight"].T + p["diffuse.bias"]) for h in hops]
    if name == "dcnn":
        z = np.concatenate(hk, axis=1)  # stacked: [N, hops * hidden]
    else:
        z = sum(hk)  # summed
    want = z @ p["out.weight"].T + p["out.bias"]
    ins = {"x": X, "edge_index": EI}
    assert_close(prog.run(ins, p)["logits"], want, what="numpy")
    assert_close(torch_outputs(prog, ins, p)[0]["logits"], want, what="torch")


def test_graph_inputs_are_drawn_distinctly():
    dot = load("gcn").to_dot()
    assert "#e2ecd5" in dot  # the graph family's colour on the message-passing layers

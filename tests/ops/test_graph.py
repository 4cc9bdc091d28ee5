"""Graph ops (dslc/ops/graph.py) against torch_geometric's layers with copied weights, hand
computations, and bad graphs; on random graphs with isolated nodes, self-loops and repeated
edges. (The registry tests already run every op's Examples through NumPy and PyTorch.)"""

from __future__ import annotations

import numpy as np
import pytest

import dslc
from dslc import interp
from dslc.diagnostics import DslcError
from tests.helpers import assert_close, torch_outputs

torch = pytest.importorskip("torch")
import torch_geometric.nn as pyg  # noqa: E402 - a test dependency (the [test] extra)

N, F = 9, 6


def graph(seed: int = 0, n: int = N, e: int = 24) -> np.ndarray:
    """Random edges among nodes 0..n-2 (node n-1 isolated) plus explicit self-loops and a
    repeated edge."""
    rng = np.random.default_rng(seed)
    ei = rng.integers(0, n - 1, size=(2, e))
    extra = np.array([[0, 3, 3, 1, 1], [0, 3, 3, 2, 2]])  # loops (one repeated), a repeat
    return np.concatenate([ei, extra], axis=1).astype(np.int64)


def layer_prog(call: str, inputs: str = "", features: int = F) -> dslc.Program:
    text = ("model t {\n"
            f"  input x: f32[N, {features}]\n"
            "  input edge_index: i64[2, E]\n"
            f"{inputs}"
            f"  output y = x -> {call} as conv\n"
            "}\n")
    return dslc.load("t.dl", text=text)


def run_all(prog, inputs, params):
    """NumPy and generated-PyTorch results for the same inputs and parameters."""
    np_out = prog.run(inputs, {k: v.copy() for k, v in params.items()})["y"]
    t_out, _ = torch_outputs(prog, inputs, params)
    return np_out, t_out["y"]


def inputs_for(seed=0, **extra):
    rng = np.random.default_rng(seed + 100)
    out = {"x": rng.standard_normal((N, F)).astype(np.float32), "edge_index": graph(seed)}
    out.update(extra)
    return out


def t(a):
    return torch.from_numpy(np.asarray(a))


def check_against(prog, inputs, params, ref_module, ref_args):
    np_out, t_out = run_all(prog, inputs, params)
    with torch.no_grad():
        want = ref_module(*ref_args).numpy()
    assert_close(np_out, want, what="numpy vs torch_geometric")
    assert_close(t_out, want, what="generated torch vs torch_geometric")
    return want


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gcn_conv_equals_gcnconv(seed):
    prog = layer_prog("gcn_conv(edge_index, 4)")
    params = prog.init_params(seed)
    ref = pyg.GCNConv(F, 4)
    ref.load_state_dict({"lin.weight": t(params["conv.weight"]), "bias": t(params["conv.bias"])})
    ins = inputs_for(seed)
    out = check_against(prog, ins, params, ref, (t(ins["x"]), t(ins["edge_index"])))
    # The isolated node sees only itself: its row is x W^T + b.
    lone = ins["x"][-1] @ params["conv.weight"].T + params["conv.bias"]
    assert_close(out[-1], lone, what="isolated node")


def test_gcn_conv_with_edge_weights_equals_gcnconv():
    prog = layer_prog("gcn_conv(edge_index, w, 4)", "  input w: f32[E]\n")
    params = prog.init_params(3)
    ref = pyg.GCNConv(F, 4)
    ref.load_state_dict({"lin.weight": t(params["conv.weight"]), "bias": t(params["conv.bias"])})
    ins = inputs_for(3)
    ins["w"] = np.random.default_rng(5).random(ins["edge_index"].shape[1]).astype(np.float32)
    check_against(prog, ins, params, ref, (t(ins["x"]), t(ins["edge_index"]), t(ins["w"])))


@pytest.mark.parametrize("K", [1, 2, 4])
@pytest.mark.parametrize("norm", ["sym", "rw", None])
def test_cheb_conv_equals_chebconv(K, norm):
    name = norm or "none"
    lam = ", lambda_max=2.5" if norm != "sym" else ""
    prog = layer_prog(f'cheb_conv(edge_index, 4, {K}, normalization="{name}"{lam})')
    params = prog.init_params(K)
    ref = pyg.ChebConv(F, 4, K=K, normalization=norm)
    state = {f"lins.{k}.weight": t(params["conv.weight"][k]) for k in range(K)}
    state["bias"] = t(params["conv.bias"])
    ref.load_state_dict(state)
    ins = inputs_for(K)
    args = (t(ins["x"]), t(ins["edge_index"]))
    if norm != "sym":
        lam = torch.tensor(2.5)
        with torch.no_grad():
            want = ref(*args, lambda_max=lam).numpy()
        np_out, t_out = run_all(prog, ins, params)
        assert_close(np_out, want, what="numpy")
        assert_close(t_out, want, what="torch")
    else:
        check_against(prog, ins, params, ref, args)


@pytest.mark.parametrize("heads,concat", [(3, True), (2, False), (1, True)])
def test_gat_conv_equals_gatconv(heads, concat):
    prog = layer_prog(f"gat_conv(edge_index, 4, heads={heads}, concat={str(concat).lower()})")
    params = prog.init_params(heads)
    ref = pyg.GATConv(F, 4, heads=heads, concat=concat)
    ref.load_state_dict({"lin.weight": t(params["conv.weight"]),
                         "att_src": t(params["conv.att_src"]),
                         "att_dst": t(params["conv.att_dst"]),
                         "bias": t(params["conv.bias"])})
    ins = inputs_for(heads)
    check_against(prog, ins, params, ref.eval(), (t(ins["x"]), t(ins["edge_index"])))


@pytest.mark.parametrize("train_eps", [False, True])
def test_gin_equals_ginconv(train_eps):
    text = ("model t {\n  input x: f32[N, 6]\n  input edge_index: i64[2, E]\n"
            f"  h = x -> gin_aggregate(edge_index, eps=0.25, train_eps={str(train_eps).lower()})"
            " as gin\n"
            "  output y = h -> linear(5) as mlp1 -> relu -> linear(3) as mlp2\n}\n")
    prog = dslc.load("t.dl", text=text)
    params = prog.init_params(1)
    mlp = torch.nn.Sequential(torch.nn.Linear(F, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    ref = pyg.GINConv(mlp, eps=0.25, train_eps=train_eps)
    state = {"nn.0.weight": params["mlp1.weight"], "nn.0.bias": params["mlp1.bias"],
             "nn.2.weight": params["mlp2.weight"], "nn.2.bias": params["mlp2.bias"],
             "eps": np.float32([0.25])}
    if train_eps:
        assert params["gin.eps"].tolist() == [0.25]
        params["gin.eps"][:] = 0.7  # a learned value, not the initial one
        state["eps"] = params["gin.eps"]
    else:
        assert "gin.eps" not in params  # fixed: a constant, not a parameter
    ref.load_state_dict({k: t(v) for k, v in state.items()})
    ins = inputs_for(1)
    check_against(prog, ins, params, ref, (t(ins["x"]), t(ins["edge_index"])))
    n_params = sum(p.numel() for p in ref.parameters())
    assert prog.summary({"N": N, "E": 29})["params"] == n_params


@pytest.mark.parametrize("aggr,project", [("mean", False), ("max", False), ("max", True)])
def test_sage_conv_equals_sageconv(aggr, project):
    prog = layer_prog(f'sage_conv(edge_index, 4, aggr="{aggr}", project={str(project).lower()})')
    params = prog.init_params(2)
    ref = pyg.SAGEConv(F, 4, aggr=aggr, project=project)
    names = {"lin_l_weight": "lin_l.weight", "lin_l_bias": "lin_l.bias",
             "lin_r_weight": "lin_r.weight", "lin_weight": "lin.weight", "lin_bias": "lin.bias"}
    ref.load_state_dict({names[k.split(".", 1)[1]]: t(v) for k, v in params.items()})
    ins = inputs_for(2)
    check_against(prog, ins, params, ref, (t(ins["x"]), t(ins["edge_index"])))
    assert prog.summary({"N": N, "E": 29})["params"] == sum(p.numel() for p in ref.parameters())


def test_sage_lstm_aggregator_numpy_equals_torch_and_hand_lstm():
    prog = layer_prog('sage_conv(edge_index, 3, aggr="lstm")', features=2)
    params = prog.init_params(4)
    rng = np.random.default_rng(4)
    ins = {"x": rng.standard_normal((N, 2)).astype(np.float32), "edge_index": graph(4)}
    np_out, t_out = run_all(prog, ins, params)
    assert_close(np_out, t_out, what="lstm numpy vs torch")
    # By hand: torch's LSTM over node i's neighbours, in edge order, for one node.
    ei = ins["edge_index"]
    i = int(np.bincount(ei[1]).argmax())
    seq = ins["x"][ei[0][ei[1] == i]]
    lstm = torch.nn.LSTM(2, 2, batch_first=True)
    lstm.load_state_dict({f"{k}_l0": t(params[f"conv.{k}"])
                          for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
    with torch.no_grad():
        _, (h, _) = lstm(t(seq)[None])
    want = (h[0, 0].numpy() @ params["conv.lin_l_weight"].T + params["conv.lin_l_bias"]
            + ins["x"][i] @ params["conv.lin_r_weight"].T)
    assert_close(np_out[i], want, what="node with most neighbours")
    lone = params["conv.lin_l_bias"] + ins["x"][-1] @ params["conv.lin_r_weight"].T
    assert_close(np_out[-1], lone, what="isolated node aggregates nothing")


def test_gmm_conv_equals_gmmconv():
    prog = layer_prog("gmm_conv(edge_index, pseudo, 4, 3)", "  input pseudo: f32[E, 2]\n")
    params = prog.init_params(5)
    params["conv.sigma"] = (0.5 + np.random.default_rng(5).random((3, 2))).astype(np.float32)
    ref = pyg.GMMConv(F, 4, dim=2, kernel_size=3)
    ref.load_state_dict({"g": t(params["conv.g"]), "mu": t(params["conv.mu"]),
                         "sigma": t(params["conv.sigma"]),
                         "root.weight": t(params["conv.root_weight"]),
                         "bias": t(params["conv.bias"])})
    ins = inputs_for(5)
    ins["pseudo"] = np.random.default_rng(6).random((ins["edge_index"].shape[1], 2)).astype(
        np.float32)
    check_against(prog, ins, params, ref,
                  (t(ins["x"]), t(ins["edge_index"]), t(ins["pseudo"])))


# ---- primitives by hand ----------------------------------------------------------------


def dense_adj(ei: np.ndarray, n: int) -> np.ndarray:
    """A[i, j] = number of edges j -> i."""
    a = np.zeros((n, n))
    np.add.at(a, (ei[1], ei[0]), 1)
    return a


PRIMS = """model t {
  input x: f32[N, 3]
  input edge_index: i64[2, E]
  input s: f32[E, 2]
  output src = gather(x, edge_index)
  output tgt = gather(x, edge_index, side="target")
  output total = scatter(s, edge_index, x)
  output avg = scatter(s, edge_index, x, reduce="mean")
  output top = scatter(s, edge_index, x, reduce="max")
  output attn = edge_softmax(s, edge_index, x)
  output deg = degree(edge_index, x)
  output loops = add_self_loops(edge_index, x)
  output hops = diffusion(x, edge_index, 3)
  output ax = propagate(x, edge_index)
  ei2, w = gcn_norm(edge_index, x)
  output ahat = propagate(x, ei2, w)
  ei3, lw = laplacian(edge_index, x, "none")
  output lx = propagate(x, ei3, lw)
  ei4, sw = laplacian(edge_index, x, scaled=true)
  output cheb = chebyshev(x, ei4, sw, 3)
}
"""


def test_primitives_by_hand_and_against_torch():
    prog = dslc.load("t.dl", text=PRIMS)
    rng = np.random.default_rng(0)
    ei = graph(0)
    e = ei.shape[1]
    ins = {"x": rng.standard_normal((N, 3)).astype(np.float32), "edge_index": ei,
           "s": rng.standard_normal((e, 2)).astype(np.float32)}
    out = prog.run(ins, {})
    t_out, _ = torch_outputs(prog, ins, {})
    for k in out:
        assert_close(out[k], t_out[k], what=k)
    x, s = ins["x"].astype(np.float64), ins["s"]
    assert_close(out["src"], x[ei[0]])
    assert_close(out["tgt"], x[ei[1]])
    a = dense_adj(ei, N)
    deg = a.sum(1)
    np.testing.assert_array_equal(out["deg"], deg)
    for i in range(N):
        rows = s[ei[1] == i]
        if len(rows) == 0:  # the isolated node: every reduction gives 0
            assert not out["total"][i].any() and not out["top"][i].any()
            continue
        assert_close(out["total"][i], rows.sum(0), what="sum")
        assert_close(out["avg"][i], rows.mean(0), what="mean")
        assert_close(out["top"][i], rows.max(0), what="max")
        ex = np.exp(rows - rows.max(0))
        assert_close(out["attn"][ei[1] == i], ex / ex.sum(0), what="softmax")
    assert out["loops"].shape == (2, e + N)
    np.testing.assert_array_equal(out["loops"][:, e:], np.stack([np.arange(N)] * 2))
    assert_close(out["ax"], a @ x, what="A x")
    # GCN's renormalised adjacency: old self-loops count once, as A + I with diag set to 1.
    a_loops = a.copy()
    np.fill_diagonal(a_loops, 1)
    d = a_loops.sum(1) ** -0.5
    assert_close(out["ahat"], (d[:, None] * a_loops * d[None]) @ x, what="D^-1/2 (A+I) D^-1/2")
    # Laplacians (torch_geometric's degree counts out-edges, self-loops removed).
    a0 = a.copy()
    np.fill_diagonal(a0, 0)
    dout = a0.sum(0)
    assert_close(out["lx"], (np.diag(dout) - a0) @ x, what="(D - A) x")
    dinv = np.where(dout > 0, dout, np.inf) ** -0.5
    lsym = np.eye(N) - dinv[:, None] * a0 * dinv[None]
    lhat = 2 * lsym / 2.0 - np.eye(N)
    want = np.stack([x, lhat @ x, 2 * lhat @ (lhat @ x) - x])
    assert_close(out["cheb"], want, what="Chebyshev terms")
    # Diffusion: powers of the transition matrix P = D^-1 A.
    p = a / np.maximum(deg, 1)[:, None]
    want = np.stack([x_k for x_k in (p @ x, p @ p @ x, p @ p @ p @ x)], axis=1)
    assert_close(out["hops"], want, what="P^k x")


READOUT = """model t {
  input x: f32[N, 2]
  input batch: i64[N]
  input graph_feats: f32[B, 1]
  output total = readout(x, batch)
  output avg = readout(x, batch, "mean")
  output top = readout(x, batch, "max")
  output fixed = readout(x, batch, graphs=4)
}
"""


def test_readout_per_graph_and_symbolic_graph_count():
    prog = dslc.load("t.dl", text=READOUT)
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    batch = np.array([0, 0, 1, 2, 2, 2])
    ins = {"x": x, "batch": batch, "graph_feats": np.zeros((3, 1), np.float32)}
    out = prog.run(ins, {})
    t_out, _ = torch_outputs(prog, ins, {})
    for k in out:
        assert_close(out[k], t_out[k], what=k)
    assert out["total"].tolist() == [[2, 4], [4, 5], [24, 27]]
    assert out["avg"].tolist() == [[1, 2], [4, 5], [8, 9]]
    assert out["top"].tolist() == [[2, 3], [4, 5], [10, 11]]
    assert out["fixed"].shape == (4, 2) and not out["fixed"][3].any()  # an empty graph: 0
    # random inputs draw batch entries inside the graph count
    r = prog.random_inputs(seed=1, bind={"N": 40, "B": 3})
    assert r["batch"].min() >= 0 and r["batch"].max() < 3


def test_readout_graph_count_from_the_batch_vector():
    text = ("model t {\n  input x: f32[N, 2]\n  input batch: i64[N]\n"
            "  output g = readout(x, batch, \"sum\")\n}\n")
    prog = dslc.load("t.dl", text=text)
    ins = {"x": np.ones((5, 2), np.float32), "batch": np.array([0, 1, 1, 2, 2])}
    out = prog.run(ins, {})
    t_out, _ = torch_outputs(prog, ins, {})
    assert out["g"].tolist() == [[1, 1], [2, 2], [2, 2]]
    np.testing.assert_array_equal(out["g"], t_out["g"])


def test_edge_dropout_only_in_training():
    text = ("model t {\n  input x: f32[N, 3]\n  input edge_index: i64[2, E]\n"
            "  output w = edge_dropout(edge_index, x, 0.5)\n}\n")
    prog = dslc.load("t.dl", text=text)
    ins = inputs_for(0)
    ins["x"] = ins["x"][:, :3].copy()
    e = ins["edge_index"].shape[1]
    assert prog.run(ins, {})["w"].tolist() == [1.0] * e
    w = prog.run(ins, {}, train=True, seed=3)["w"]
    assert set(np.unique(w)) <= {0.0, 1.0} and 0 < w.sum() < e  # dropped, not rescaled
    t_eval, _ = torch_outputs(prog, ins, {})
    assert t_eval["w"].tolist() == [1.0] * e
    t_train, _ = torch_outputs(prog, ins, {}, train=True)
    assert set(np.unique(t_train["w"])) <= {0.0, 1.0}


# ---- random graphs and bad graphs --------------------------------------------------------


def test_random_inputs_are_valid_graphs():
    prog = layer_prog("gcn_conv(edge_index, 4)")
    for seed in range(5):
        r = prog.random_inputs(seed, {"N": 6, "E": 40})
        assert r["edge_index"].dtype == np.int64
        assert r["edge_index"].min() >= 0 and r["edge_index"].max() < 6
        prog.run(r, prog.init_params())


def test_edge_index_out_of_range_is_a_clear_error():
    prog = layer_prog("gcn_conv(edge_index, 4)")
    ins = inputs_for(0)
    ins["edge_index"] = ins["edge_index"].copy()
    ins["edge_index"][1, 3] = N + 2
    with pytest.raises(DslcError) as exc:
        prog.run(ins, prog.init_params())
    d = exc.value.diagnostics[0]
    assert d.code == "E0507"
    assert f"node index {N + 2}" in d.message and f"outside the {N} nodes" in d.message
    assert d.expected == f"0 <= index < {N}"
    ins["edge_index"][1, 3] = -1
    with pytest.raises(DslcError, match="node index -1"):
        prog.run(ins, prog.init_params())


def test_edge_index_of_wrong_dtype_or_shape_is_a_clear_error():
    prog = layer_prog("gcn_conv(edge_index, 4)")
    ins = inputs_for(0)
    ins["edge_index"] = ins["edge_index"].astype(np.float32)
    with pytest.raises(DslcError) as exc:
        prog.run(ins, prog.init_params())
    assert exc.value.diagnostics[0].code == "E0502"
    ins["edge_index"] = graph(0)[:1]
    with pytest.raises(DslcError) as exc:
        prog.run(ins, prog.init_params())
    assert exc.value.diagnostics[0].code == "E0503"


@pytest.mark.parametrize("text,code,words", [
    ("input x: f32[N, 4]\n input edge_index: f32[2, E]\n output y = gather(x, edge_index)",
     "E0302", "integer node indices"),
    ("input x: f32[N, 4]\n input edge_index: i64[3, E]\n output y = gather(x, edge_index)",
     "E0301", "[2, E]"),
    ("input x: f32[N, 4]\n input edge_index: i64[2, E]\n input s: f32[T, 2]\n"
     " output y = scatter(s, edge_index, x)", "E0301", "one row per edge"),
    ("input x: f32[N, 4]\n input batch: i64[M]\n output y = readout(x, batch)",
     "E0301", "one entry per node"),
    ("input x: f32[N, F]\n input edge_index: i64[2, E]\n output y = gcn_conv(x, edge_index, 4)",
     "E0304", "input features"),
])
def test_bad_graph_types_are_caught_when_checked(text, code, words):
    with pytest.raises(DslcError) as exc:
        dslc.load("t.dl", text="model t {\n " + text + "\n}\n")
    d = exc.value.diagnostics[0]
    assert d.code == code, d
    assert words in d.message + (d.expected or ""), d


def test_segments_are_reused_for_one_edge_index():
    from dslc.ops import graph_common as G

    ei = graph(0)
    assert G.segments(ei, 1, N) is G.segments(ei, 1, N)
    assert G.segments(ei.copy(), 1, N) is not G.segments(ei, 1, N)
    assert G.looped(ei, N) is G.looped(ei, N)


def test_index_bounds_feed_random_inputs():
    prog = layer_prog("gcn_conv(edge_index, 4)")
    nid = dict(prog.graph.inputs)["edge_index"]
    assert interp.input_int_high(prog.graph, nid, {"N": 17, "E": 3}) == 17

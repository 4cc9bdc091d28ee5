"""Tests of dslc.summary: parameter and MAC counts, memory, JSON fields, the text table."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import dslc
from dslc.ops.registry import OPS
from dslc.summary import fmt_bytes, fmt_count, fmt_short, format_table, summarize

TWO_LINEAR = """
model two(hidden: int = 16) {
  input x: f32[B, 4]
  h = x -> linear(hidden) -> relu
  output y = h -> linear(3)
}
"""

RESNET = """
block res(d: int) {
  input x
  h = x -> linear(d) -> relu
  h = h -> linear(d, bias=false)
  output y = relu(h + x)
}
model resnet(d: int = 16) {
  input x: f32[B, T, 8]
  h = x -> linear(d) as stem -> relu
  stack: repeat 2 {
    h = res(h, d)
  }
  const shift: f32[2, 2] = [[1, 2], [3, 4]]
  out = h -> linear(2) as head
  out = out @ shift
  output out, h
}
"""

SPECS = {"two": TWO_LINEAR, "resnet": RESNET}


def load(name: str):
    return dslc.load(f"{name}.dl", text=SPECS[name])


def test_linear_param_count_matches_torch():
    s = summarize(load("two").graph, {})
    assert s["params"] == 4 * 16 + 16 + 16 * 3 + 3
    assert isinstance(s["params"], int)
    assert s["buffers"] == 0
    assert [layer["params"] for layer in s["layers"]] == [4 * 16 + 16, 0, 16 * 3 + 3]


def test_param_count_equals_torch_module():
    pytest.importorskip("torch")
    for name in SPECS:
        prog = load(name)
        s = prog.summary()
        m = prog.to_torch()()
        assert s["params"] == sum(p.numel() for p in m.parameters()), name
        assert s["buffers"] == sum(b.numel() for b in m.buffers()), name
        assert s["memory"]["param_bytes"] == sum(
            p.numel() * p.element_size() for p in m.parameters())


def test_macs_symbolic_when_unbound_and_int_when_bound():
    g = load("two").graph
    s = summarize(g, {})
    # linear MACs = output elements x input features: B*16*4 + B*3*16 = 112*B.
    assert s["macs"] == "112*B"
    assert s["layers"][0]["macs"] == "64*B"
    assert s["unbound"] == ["B"]
    s8 = summarize(g, {"B": 8})
    assert s8["macs"] == 112 * 8 and isinstance(s8["macs"], int)
    assert s8["layers"][2]["macs"] == 48 * 8
    assert s8["unbound"] == []
    assert s8["inputs"][0]["shape"] == [8, 4]


def test_partly_bound_stays_symbolic():
    g = load("resnet").graph
    s = summarize(g, {"B": 2})
    assert isinstance(s["macs"], str) and "T" in s["macs"] and "B" not in s["macs"]
    assert s["unbound"] == ["T"]
    assert s["inputs"][0]["shape"] == [2, "T", 8]
    full = summarize(g, {"B": 2, "T": 5})
    # stem 8->16, 2 blocks of 2 linear 16->16, head 16->2, then [.., 2] @ [2, 2]; per token.
    per_token = 16 * 8 + 2 * 2 * 16 * 16 + 2 * 16 + 2 * 2
    assert full["macs"] == per_token * 2 * 5


def test_buffers_and_memory():
    s = summarize(load("resnet").graph, {"B": 2, "T": 5})
    # Params: stem 8*16+16, per block 16*16+16 and 16*16 (no bias), head 16*2+2.
    params = (8 * 16 + 16) + 2 * (16 * 16 + 16 + 16 * 16) + (16 * 2 + 2)
    assert s["params"] == params
    assert s["buffers"] == 4  # the const is a buffer, not a parameter
    assert s["memory"]["param_bytes"] == 4 * params
    assert s["memory"]["buffer_bytes"] == 16
    # Activations: every value of the forward pass (input included, constants excluded).
    n_values = sum(len(n.types) for n in load("resnet").graph.nodes.values()
                   if n.op != "const")
    assert n_values == 1 + 2 + 2 * 5 + 2
    tokens = 2 * 5
    act = tokens * (8 + 16 * 2 + 2 * 5 * 16 + 2 + 2)
    assert s["memory"]["activation_bytes"] == 4 * act
    unbound = summarize(load("resnet").graph, {})
    assert unbound["memory"]["activation_bytes"] == f"{4 * act // tokens}*B*T"


def test_batch_norm_buffers():
    prog = dslc.load("bn.dl", text="""
model bn {
  input x: f32[B, 6]
  output y = x -> linear(6) -> batch_norm
}
""")
    s = prog.summary()
    assert s["params"] == 6 * 6 + 6 + 2 * 6  # linear + weight, bias
    assert s["buffers"] == 2 * 6 + 1  # running_mean, running_var, num_batches_tracked
    assert s["memory"]["buffer_bytes"] == 2 * 6 * 4 + 8  # the counter is i64


def test_shared_key_counted_once():
    prog = dslc.load("tied.dl", text="""
model tied {
  input x: f32[B, 16]
  h = x -> linear(16) -> relu
  output y = h -> linear(16)
}
""")
    g = prog.graph
    first, second = [n for n in g.order() if n.op == "linear"]
    before = summarize(g, {})["params"]
    assert before == 2 * (16 * 16 + 16)
    second.module = first.module  # the second layer reuses the first one's weights
    s = summarize(g, {})
    assert s["params"] == 16 * 16 + 16
    assert [layer["params"] for layer in s["layers"]] == [16 * 16 + 16, 0, 0]
    assert s["memory"]["param_bytes"] == 4 * (16 * 16 + 16)


def test_json_fields_and_types():
    s = summarize(load("resnet").graph, {"B": 3})
    assert set(s) >= {"model", "inputs", "outputs", "params", "buffers", "macs", "memory",
                      "layers"}
    assert s["model"] == "resnet"
    assert [i["name"] for i in s["inputs"]] == ["x"]
    assert [o["name"] for o in s["outputs"]] == ["out", "h"]
    for item in s["inputs"] + s["outputs"]:
        assert set(item) == {"name", "dtype", "shape"}
        assert item["dtype"] == "f32"
        assert all(isinstance(d, (int, str)) for d in item["shape"])
    assert s["outputs"][0]["shape"] == [3, "T", 2]
    assert set(s["memory"]) == {"activation_bytes", "param_bytes", "buffer_bytes",
                                "inference_peak_bytes", "training_peak_bytes",
                                "training_peak_checkpoint_bytes"}
    assert s["memory"]["inference_peak_bytes"] == "576*T"  # 3 * 192*B*T (the golden)
    bound = summarize(load("resnet").graph, {"B": 3, "T": 5})["memory"]
    assert isinstance(bound["inference_peak_bytes"], int)
    assert 0 < bound["inference_peak_bytes"] < bound["activation_bytes"]
    for layer in s["layers"]:
        assert {"name", "op", "shape", "params", "macs"} <= set(layer)
        assert isinstance(layer["params"], int)
        assert isinstance(layer["macs"], (int, str))
        assert layer["op"] in OPS
    # Execution order, inputs excluded; module paths name layers with parameters.
    names = [layer["name"] for layer in s["layers"]]
    assert names[:2] == ["stem", "h"]
    assert names.index("stack.0.fc1") < names.index("stack.1.fc1") < names.index("head")
    assert "x" not in names
    assert json.loads(json.dumps(s)) == s


def test_table_golden(golden):
    for name in sorted(SPECS):
        g = load(name).graph
        golden(f"summary/{name}.txt", format_table(summarize(g, {})))
        golden(f"summary/{name}.bound.txt", format_table(summarize(g, {"B": 32, "T": 10})))
        golden(f"summary/{name}.json",
               json.dumps(summarize(g, {"B": 32}), indent=2, ensure_ascii=False) + "\n")


def test_table_contents():
    text = format_table(summarize(load("two").graph, {}))
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("Layer"))
    assert header.split() == ["Layer", "Op", "Output", "shape", "Params", "MACs"]
    assert "Trainable params:  131" in text
    assert "112*B" in text and "Unbound dims: B" in text
    bound = format_table(summarize(load("two").graph, {"B": 1000}))
    assert "MACs:              112,000  (112 K)" in bound
    assert "Unbound" not in bound
    # Fixed width: the rule under the header is exactly as wide as the widest row.
    rule = next(line for line in lines if set(line) == {"-"})
    rows = lines[lines.index(rule) + 1:next(i for i, line in enumerate(lines)
                                            if set(line) == {"="})]
    assert max(len(r) for r in rows + [header]) == len(rule)


def test_table_is_deterministic():
    a = format_table(summarize(load("resnet").graph, {"T": 7}))
    b = format_table(summarize(load("resnet").graph, {"T": 7}))
    assert a == b


def test_number_formats():
    assert fmt_count(1234567) == "1,234,567"
    assert fmt_count("12*B") == "12*B"
    assert fmt_short(1234567) == "1.23 M"
    assert fmt_short(999) == "999"
    assert fmt_bytes(2048) == "2,048 bytes (2 KiB)"
    assert fmt_bytes("4*B") == "4*B bytes"


def test_cli_summary(tmp_path, capsys):
    from dslc.cli import main

    spec = tmp_path / "two.dl"
    spec.write_text(TWO_LINEAR, encoding="utf-8")
    assert main(["summary", str(spec), "--json", "--bind", "B=2"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["params"] == 131 and s["macs"] == 224
    assert main(["summary", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "Model: two" in out and "112*B" in out


DIAMOND = """
model diamond {
  input x: f32[R, 1024]
  a = tanh(x)
  b = relu(a)
  c = tanh(a)
  output d = b + c
}
"""


def test_inference_peak_is_what_a_run_holds():
    prog = dslc.load("diamond.dl", text=DIAMOND)
    rows = 256
    value = rows * 1024 * 4  # 1 MiB
    s = prog.summary({"R": rows})
    # x+a, then a+b, then a+b+c (a's last reader is c), then b+c+d: three values at most.
    assert s["memory"]["inference_peak_bytes"] == 3 * value
    assert s["memory"]["activation_bytes"] == 5 * value
    assert "Inference peak:    3,145,728 bytes (3 MiB)" in format_table(s)
    x = np.random.default_rng(0).standard_normal((rows, 1024), dtype=np.float32)
    prog.run({"x": x}, {})
    tracemalloc.start()  # x was allocated before: the run's own values only
    try:
        prog.run({"x": x}, {})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 3 * value <= peak < 3 * value + 256 * 1024


MIXED = """
model mixed {
  input x: f32[B, T]
  input y: f32[B, 4]
  output a = tanh(x)
  output b = tanh(y)
}
"""


def test_inference_peak_unbound():
    two = dslc.load("two.dl", text=TWO_LINEAR).summary()
    assert two["memory"]["inference_peak_bytes"] == "128*B"  # x + linear's 16 + relu's 16
    assert two["memory"]["inference_peak_bytes"] != two["memory"]["activation_bytes"]
    # Widths x, x+y, x+y+a, y+a, y+a+b: 4BT, 4BT+16B, 8BT+16B, 4BT+16B, 4BT+32B. Which of
    # 8BT+16B and 4BT+32B is the widest depends on T.
    mixed = dslc.load("mixed.dl", text=MIXED)
    assert mixed.summary()["memory"]["inference_peak_bytes"] is None
    assert "depends on the sizes of the unbound dims" in format_table(mixed.summary())
    assert mixed.summary({"T": 2})["memory"]["inference_peak_bytes"] == "40*B"
    assert mixed.summary({"T": 8})["memory"]["inference_peak_bytes"] == "80*B"
    assert mixed.summary({"T": 8, "B": 2})["memory"]["inference_peak_bytes"] == 160


def test_block_subtotals_equal_their_parameter_keys_and_sum_to_the_total():
    import dslc

    prog = dslc.load(Path(__file__).resolve().parents[1] / "specs" / "resnet18.dl")
    s = prog.summary({"B": 1})
    params = prog.init_params(0)
    blocks = {b["path"]: b for b in s["blocks"]}
    state = prog.to_torch()().state_dict()  # torch's own count of each block's parameters
    for path in ("layer1", "layer2", "layer2.0", "layer2.0.downsample", "layer4.1"):
        want = sum(v.numel() for k, v in state.items()
                   if k.startswith(path + ".") and "running" not in k and "num_batches" not in k)
        assert blocks[path]["params"] == want, path
        assert sum(params[k].size for k in params if k.startswith(path + ".")
                   and "running" not in k and "num_batches" not in k) == want
    assert blocks["layer2"]["kind"] == "repeat" and blocks["layer2"]["depth"] == 1
    assert blocks["layer2.0.downsample"]["depth"] == 3
    top = [b for b in s["blocks"] if b["depth"] == 1]
    outside = sum(layer["params"] for layer in s["layers"] if not layer["frames"])
    assert sum(b["params"] for b in top) + outside == s["params"]
    assert sum(b["macs"] for b in top) + sum(
        layer["macs"] for layer in s["layers"] if not layer["frames"]) == s["macs"]


def test_summary_depth_folds_blocks_into_rows(capsys):
    from dslc import cli

    spec = str(Path(__file__).resolve().parents[1] / "specs" / "resnet18.dl")
    assert cli.main(["summary", spec, "--bind", "B=1", "--depth", "1"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith("layer")]
    assert [r[0] for r in rows] == ["layer1", "layer2", "layer3", "layer4"]
    assert rows[1][1:3] == ["repeat", "layer2"] and rows[1][-2] == "525,568"
    assert cli.main(["summary", spec, "--depth", "2"]) == 0
    out = capsys.readouterr().out
    assert "layer2.1  iteration" in out and "layer2.0.downsample" not in out
    with pytest.raises(SystemExit) as exc:  # a usage error, as argparse reports them
        cli.main(["summary", spec, "--depth", "0"])
    assert exc.value.code == 2

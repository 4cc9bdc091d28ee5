"""The generated modules called the way the PyTorch ecosystem calls a module: positionally,
inside nn.Sequential, traced, exported (torch.export, ONNX through the dynamo exporter and
onnxruntime), summarised by torchinfo, compiled as one graph, moved to float64 and to the meta
device. Each result equals the NumPy interpreter's."""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path

import numpy as np
import pytest

import dslc
from tests.helpers import assert_close

torch = pytest.importorskip("torch")
nn = torch.nn

SPECS = Path(__file__).resolve().parents[2] / "specs"

# spec -> (hyperparameters, bound dims): small sizes where the spec allows them.
ZOO = {
    "lenet5": ({}, {"B": 2}),
    "resnet18": ({"size": 64}, {"B": 2}),
    "vgg16": ({}, {"B": 1}),
    "lstm": ({}, {"B": 2, "T": 5}),
    "gru": ({}, {"B": 2, "T": 5}),
    "seq2seq": ({}, {"B": 2, "S": 5, "T": 4}),
    "transformer_encoder": ({}, {"B": 2, "T": 6}),
    "gpt_tiny": ({}, {"B": 2, "T": 6}),
    "vit_tiny": ({}, {"B": 2}),
    "gcn": ({}, {"N": 7, "E": 12}),
    "gat": ({}, {"N": 7, "E": 12}),
    "vae": ({}, {"B": 2}),
}
NAMES = sorted(ZOO)


@cache
def case(name: str):
    """(program, module with the NumPy side's parameters in eval mode, positional args, the
    NumPy outputs in order)."""
    hp, bind = ZOO[name]
    prog = dslc.load(SPECS / f"{name}.dl", hparams=hp or None)
    params = prog.init_params(0)
    inputs = prog.random_inputs(0, bind)
    ref = prog.run(inputs, {k: v.copy() for k, v in params.items()}, bind=bind)
    module = prog.to_torch()()
    module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in params.items()})
    module.eval()
    args = tuple(torch.from_numpy(np.array(inputs[n])) for n, _ in prog.graph.inputs)
    return prog, module, args, [ref[n] for n, _ in prog.graph.outputs]


def as_list(out) -> list:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def check(outs, ref, what: str) -> None:
    outs = as_list(outs)
    assert len(outs) == len(ref), what
    for got, want in zip(outs, ref):
        got = got.detach().numpy() if hasattr(got, "detach") else np.asarray(got)
        assert_close(got, want, what=what)


@pytest.mark.parametrize("name", NAMES)
def test_called_positionally_and_by_keyword(name):
    prog, module, args, ref = case(name)
    with torch.no_grad():
        check(module(*args), ref, "positional")
        names = prog.torch_arg_names()
        kwargs = {names[n]: a for (n, _), a in zip(prog.graph.inputs, args)}
        check(module(**kwargs), ref, "keywords")


@pytest.mark.parametrize("name", [n for n in NAMES if n not in ("seq2seq", "gcn", "gat")])
def test_composed_in_sequential(name):
    prog, module, args, ref = case(name)
    assert len(args) == 1
    with torch.no_grad():
        check(nn.Sequential(module, nn.Identity())(*args), ref, "Sequential")


@pytest.mark.parametrize("name", NAMES)
def test_jit_trace(name):
    _, module, args, ref = case(name)
    with torch.no_grad():
        traced = torch.jit.trace(module, args, check_trace=False)
        check(traced(*args), ref, "traced")


@pytest.mark.parametrize("name", NAMES)
def test_torch_export(name):
    _, module, args, ref = case(name)
    exported = torch.export.export(module, args)
    with torch.no_grad():
        check(exported.module()(*args), ref, "torch.export")


@pytest.mark.parametrize("name", NAMES)
def test_onnx_export_runs_in_onnxruntime(name):
    ort = pytest.importorskip("onnxruntime")
    _, module, args, ref = case(name)
    buf = io.BytesIO()
    torch.onnx.export(module, args, buf, dynamo=True, verbose=False)
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    feeds = {i.name: a.numpy() for i, a in zip(sess.get_inputs(), args)}
    check(sess.run(None, feeds), ref, "onnxruntime")


@pytest.mark.parametrize("name", NAMES)
def test_torchinfo_counts_equal_dslc_summary(name):
    torchinfo = pytest.importorskip("torchinfo")
    prog, module, args, _ = case(name)
    stats = torchinfo.summary(module, input_data=list(args), verbose=0)
    assert stats.total_params == prog.summary(ZOO[name][1])["params"]


@pytest.mark.parametrize("name", NAMES)
def test_compile_fullgraph(name):
    _, module, args, ref = case(name)
    compiled = torch.compile(module, fullgraph=True, backend="eager", dynamic=False)
    with torch.no_grad(), torch._dynamo.config.patch(allow_rnn=True):
        check(compiled(*args), ref, "compiled")


@pytest.mark.parametrize("name", NAMES)
def test_float64_and_meta(name):
    prog, _, args, ref = case(name)
    module = prog.to_torch()()
    module.load_state_dict(case(name)[1].state_dict())
    module.eval()
    with torch.no_grad():
        doubles = [a.double() if a.is_floating_point() else a for a in args]
        check(module.to(torch.float64)(*doubles), ref, "float64")
        metas = [a.to("meta") for a in doubles]
        outs = as_list(module.to("meta")(*metas))
    assert [tuple(o.shape) for o in outs] == [r.shape for r in ref]
    assert all(o.device.type == "meta" for o in outs)

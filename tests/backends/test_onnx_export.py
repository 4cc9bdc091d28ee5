"""ONNX export (dslc/backends/onnx_export.py): every zoo model, run by onnxruntime with its
runtime dims left symbolic, equals `dslc run` at two sizes; the model passes the full checker;
ONNX shape inference agrees with dslc's checker; bad input gives located diagnostics."""

from __future__ import annotations

import functools
import glob
import re
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import dslc  # noqa: E402
from dslc.backends.onnx_export import build_model  # noqa: E402
from dslc.cli import main  # noqa: E402
from dslc.diagnostics import DslcError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"

# Two sizes per runtime dim: small (the test runs on 2 cores) and different from each other.
SIZES = ({"B": 2, "T": 3, "N": 5, "E": 9, "S": 3, "H": 8, "W": 8},
         {"B": 3, "T": 5, "N": 7, "E": 13, "S": 4, "H": 10, "W": 10})
BIG = ("vgg16", "alexnet")
# gan.dl holds two models.
CASES = [(Path(p).stem, None) for p in sorted(glob.glob(str(SPECS / "*.dl")))
         if Path(p).stem != "gan"] + [("gan", "generator"), ("gan", "discriminator")]


def _load(stem: str, model: str | None, opt: int = 1):
    return dslc.load(SPECS / f"{stem}.dl", model=model, opt_level=opt)


@functools.cache
def _built(stem: str, model: str | None):
    """(program, parameters, serialized ONNX model) of a zoo model at -O1, seed 0: built once
    for the tests that read it (not kept for the big CNNs)."""
    prog = _load(stem, model)
    params = prog.init_params(0)
    return prog, params, build_model(prog.graph, prog.fold_params(params)).SerializeToString()


def _symbols(prog) -> list[str]:
    names: set[str] = set()
    for _, nid in prog.graph.inputs:
        for d in prog.graph.nodes[nid].types[0].shape:
            names |= {s.name for s in d.free_symbols}
    return sorted(names)


def _session(model) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    data = model if isinstance(model, bytes) else model.SerializeToString()
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def _compare(prog, sess, params, bind, seed=0):
    inputs = prog.random_inputs(seed, bind)
    want = prog.run(inputs, {k: v.copy() for k, v in params.items()}, bind=bind)
    got = sess.run(None, inputs)
    names = [o.name for o in sess.get_outputs()]
    assert names == list(want), "outputs in the spec's order, with its names"
    for name, g in zip(names, got):
        w = want[name]
        assert g.shape == w.shape, f"{name}: shape {g.shape} != {w.shape}"
        assert g.dtype == w.dtype, f"{name}: dtype {g.dtype} != {w.dtype}"
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg=name)


def _read_names(nodes) -> set[str]:
    """Every value a node reads, in Loop bodies too."""
    out: set[str] = set()
    for n in nodes:
        out.update(n.input)
        for attr in n.attribute:
            if attr.g.node:
                out |= _read_names(attr.g.node)
    return out


@pytest.mark.parametrize("stem,model", CASES, ids=[f"{s}-{m}" if m else s for s, m in CASES])
def test_zoo_model_equals_dslc_run(stem, model):
    if stem in BIG:  # VGG-16's model is 553 MB: serialized once, not kept
        prog = _load(stem, model)
        params = prog.init_params(0)
        onnx_model = build_model(prog.graph, prog.fold_params(params))
        data = onnx_model.SerializeToString()
    else:
        prog, params, data = _built(stem, model)
        onnx_model = onnx.load_from_string(data)
    onnx.checker.check_model(data, full_check=True)
    syms = _symbols(prog)
    for name in syms:  # runtime dims stay symbolic, with their names
        assert any(d.dim_param == name for i in onnx_model.graph.input
                   for d in i.type.tensor_type.shape.dim), name
    read = _read_names(onnx_model.graph.node) | {o.name for o in onnx_model.graph.output}
    unread = [i.name for i in onnx_model.graph.initializer if i.name not in read]
    assert not unread, f"initializers no node reads: {unread}"
    sess = _session(data)
    for sizes in SIZES:
        bind = {s: sizes[s] for s in syms}
        if stem in BIG:
            bind["B"] -= 1  # batches of 1 and 2 (the NumPy run of a 224x224 CNN is slow)
        _compare(prog, sess, params, bind)


def _dims(vi) -> list:
    out = []
    for d in vi.type.tensor_type.shape.dim:
        out.append(d.dim_value if d.HasField("dim_value") else
                   d.dim_param if d.HasField("dim_param") else None)
    return out


@pytest.mark.parametrize("stem,model", [c for c in CASES if c[0] not in ("vgg16", "alexnet")],
                         ids=[f"{s}-{m}" if m else s for s, m in CASES
                              if s not in ("vgg16", "alexnet")])
def test_onnx_shape_inference_agrees_with_dslc(stem, model):
    """The exported value_info and outputs are dslc's types (fixed dims as numbers, runtime
    dims named, derived ones unnamed); ONNX's own inference, run on the model stripped of them,
    must find the same: every dim it infers equals dslc's, and every value gets a shape except
    a Loop's final states (ONNX infers only their dtype) and its step axis."""
    m = onnx.load_from_string(_built(stem, model)[2])
    want = {}
    for vi in list(m.graph.value_info) + list(m.graph.output):
        want[vi.name] = onnx.ValueInfoProto()
        want[vi.name].CopyFrom(vi)
    loop_states = {o for n in m.graph.node if n.op_type == "Loop"
                   for o in n.output[:len(n.input) - 2]}
    del m.graph.value_info[:]
    for out in m.graph.output:
        out.type.tensor_type.ClearField("shape")
    inferred = onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True,
                                                 data_prop=True)
    got = {vi.name: vi for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    assert want, "value_info for the IR values"
    known = unknown = 0
    for name, vi in want.items():
        assert name in got, f"{name}: no type inferred"
        g = got[name]
        assert g.type.tensor_type.elem_type == vi.type.tensor_type.elem_type, name
        if not g.type.tensor_type.HasField("shape"):
            assert name in loop_states, f"{name}: no shape inferred"
            continue
        w, i = _dims(vi), _dims(g)
        assert len(w) == len(i), f"{name}: rank {len(i)} inferred, dslc says {len(w)}"
        for a, b in zip(w, i):
            if a is None:  # a derived dim (B*T): unnamed in the export
                continue
            if b is None or (isinstance(b, str) and b.startswith("unk__")):
                unknown += 1  # ONNX could not tell (a Loop's step count): no disagreement
                continue
            assert a == b, f"{name}: ONNX infers {i}, dslc {w}"
            known += 1
    assert known > 0
    # Inference finds almost every dim: only the step axis after a Loop stays open.
    assert unknown <= max(2, known // 10), (unknown, known)


# One model per family of lowerings, exported at every opset the command allows.
OPSET_MODELS = ("bert_tiny", "gru", "char_lm", "graphsage_mean", "lenet5", "spatial_transformer",
                "monet")


@pytest.mark.parametrize("opset", range(17, 24))
def test_every_allowed_opset_runs(opset):
    for stem in OPSET_MODELS:
        prog = _load(stem, None)
        params = prog.init_params(1)
        m = build_model(prog.graph, prog.fold_params(params), opset=opset)
        assert m.opset_import[0].version == opset
        onnx.checker.check_model(m, full_check=True)
        syms = _symbols(prog)
        _compare(prog, _session(m), params, {s: SIZES[1][s] for s in syms}, seed=3)


def test_opset_too_old_for_an_op_names_the_op_and_the_opset():
    prog = _load("gat", None)
    with pytest.raises(DslcError) as exc:
        build_model(prog.graph, prog.init_params(0), opset=17)
    d = exc.value.diagnostics[0]
    assert d.code == "E0803"
    assert "gat_conv" in d.message and "opset 18" in d.message
    assert Path(d.span.file).name == "gat.dl" and d.span.line > 0


# ---- the command ----------------------------------------------------------------------------


def _spec(tmp_path, name: str, text: str) -> str:
    path = tmp_path / f"{name}.dl"
    path.write_text(text)
    return str(path)


def _run_cli(*argv) -> int:
    return main(["export", *map(str, argv)])


def test_cli_writes_a_model_that_equals_dslc_run(tmp_path):
    out = tmp_path / "resnet.onnx"
    assert _run_cli(SPECS / "resnet18.dl", "--set", "size=32", "-O2", "--seed", "4",
                    "-o", out) == 0
    m = onnx.load(str(out))
    onnx.checker.check_model(m, full_check=True)
    ops = {n.op_type for n in m.graph.node}
    assert "BatchNormalization" not in ops, "-O2 folds the batch norms into the convs"
    prog = dslc.load(SPECS / "resnet18.dl", opt_level=2, hparams={"size": 32})
    _compare(prog, _session(m), prog.init_params(4), {"B": 2})
    # Initializers carry the state_dict keys (folded ones: the conv's own keys).
    inits = {i.name for i in m.graph.initializer}
    assert "conv1.weight" in inits and "layer1.0.conv1.weight" in inits
    # Node names follow the frames; doc strings carry the spec location.
    names = [n.name for n in m.graph.node]
    assert any(n.startswith("layer1.0/") for n in names), names[:20]
    assert all(re.match(r"(resnet18|cnn)\.dl:\d+:\d+ \w+", n.doc_string) for n in m.graph.node
               if n.doc_string), [n.doc_string for n in m.graph.node][:5]
    assert all(re.search(r"@(resnet18|cnn)\.dl:\d+:\d+", n.name) for n in m.graph.node
               if n.doc_string), names[:5]
    assert len(set(names)) == len(names), "node names are unique"


def test_cli_params_file_and_bind(tmp_path):
    params = tmp_path / "p.npz"
    inputs = tmp_path / "in.npz"
    ran = tmp_path / "out.npz"
    assert main(["run", str(SPECS / "lstm.dl"), "--seed", "7", "--bind", "B=2", "--bind",
                 "T=4", "--save-params", str(params), "--save-inputs", str(inputs),
                 "-o", str(ran)]) == 0
    out = tmp_path / "lstm.onnx"
    assert _run_cli(SPECS / "lstm.dl", "--params", params, "--bind", "B=2", "-o", out) == 0
    m = onnx.load(str(out))
    x = m.graph.input[0].type.tensor_type.shape.dim
    assert x[0].dim_value == 2 and x[1].dim_param == "T", "B bound, T left symbolic"
    sess = _session(m)
    with np.load(inputs) as z:
        feed = {k: z[k] for k in z.files}
    with np.load(ran) as z:
        want = {k: z[k] for k in z.files}
    for name, got in zip([o.name for o in sess.get_outputs()], sess.run(None, feed)):
        np.testing.assert_allclose(got, want[name], rtol=1e-4, atol=1e-5)
    # The initializers are the parameter file's arrays, under its keys.
    with np.load(params) as z:
        stored = {i.name: onnx.numpy_helper.to_array(i) for i in m.graph.initializer}
        for key in z.files:
            np.testing.assert_array_equal(stored[key], z[key])


def test_cli_o0_keeps_every_layer(tmp_path):
    out = tmp_path / "m.onnx"
    assert _run_cli(SPECS / "resnet18.dl", "--set", "size=32", "-O0", "-o", out) == 0
    assert "BatchNormalization" in {n.op_type for n in onnx.load(str(out)).graph.node}


def test_derived_input_dim_is_read_from_the_input(tmp_path):
    spec = _spec(tmp_path, "pairs", "model pairs() {\n  input x: f32[2 * B, 4]\n"
                 "  output y = x -> reshape([x.shape[0], 2, 2]) -> relu\n}\n")
    prog = dslc.load(spec)
    params = prog.init_params(0)
    m = build_model(prog.graph, params)
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == ""  # 2*B: unnamed
    for b in (1, 3):
        _compare(prog, _session(m), params, {"B": b})


# ---- bad input: located diagnostics and no file ---------------------------------------------


def _fails(capsys, code: str, *argv, out=None) -> str:
    rc = _run_cli(*argv)
    err = capsys.readouterr().err
    assert rc == 1, err
    assert f"error[{code}]" in err, err
    assert "Traceback" not in err
    if out is not None:
        assert not Path(out).exists() or Path(out).read_bytes() == b"keep", "file untouched"
    return err


def test_op_without_lowering_is_located(tmp_path, capsys, monkeypatch):
    """As for an op another branch adds to the language before the table knows it."""
    import dslc.backends.onnx_export as ex

    real = ex.lowerings
    monkeypatch.setattr(ex, "lowerings",
                        lambda: {k: v for k, v in real().items() if k != "mse_loss"})
    spec = _spec(tmp_path, "loss", "model loss() {\n  input x: f32[B, 4]\n  input t: f32[B, 4]\n"
                 "  output l = mse_loss(x, t)\n}\n")
    out = tmp_path / "m.onnx"
    out.write_bytes(b"keep")
    err = _fails(capsys, "E0802", spec, "-o", out, out=out)
    assert "loss.dl:4:14" in err and "mse_loss" in err


def test_unregistered_lowering_table_entry_is_located(tmp_path, monkeypatch):
    """An op added to the language without an ONNX lowering (as other branches add ops)."""
    import dslc.backends.onnx_export as ex

    real = ex.lowerings

    def without_relu():
        table = real()
        del table["relu"]
        return table

    monkeypatch.setattr(ex, "lowerings", without_relu)
    prog = _load("mlp", None)
    with pytest.raises(DslcError) as exc:
        build_model(prog.graph, prog.init_params(0))
    d = exc.value.diagnostics[0]
    assert d.code == "E0802" and "`relu`" in d.message and d.span.line > 0


def test_opset_too_old_on_the_command_line(tmp_path, capsys):
    out = tmp_path / "gat.onnx"
    err = _fails(capsys, "E0803", SPECS / "gat.dl", "--opset", "17", "-o", out, out=out)
    assert "gat.dl:" in err and "--opset 18" in err


@pytest.mark.parametrize("opset", [12, 16, 24])
def test_unsupported_opset(tmp_path, capsys, opset):
    out = tmp_path / "m.onnx"
    _fails(capsys, "E0806", SPECS / "mlp.dl", "--opset", str(opset), "-o", out, out=out)


def test_configuration_without_lowering(tmp_path, capsys):
    spec = _spec(tmp_path, "lrn", "model lrn() {\n  input x: f32[B, C, 5]\n"
                 "  output y = x -> local_response_norm(4)\n}\n")
    out = tmp_path / "m.onnx"
    err = _fails(capsys, "E0804", spec, "-o", out, out=out)
    assert "lrn.dl:3:19" in err and "even window" in err
    assert _run_cli(spec, "--bind", "C=6", "-o", out) == 0  # a fixed channel count: exported


def test_dim_that_no_input_holds(tmp_path, capsys):
    spec = _spec(tmp_path, "half", "model half() {\n  input x: f32[2 * B, 4]\n"
                 "  output y = zeros(x, [B, 4])\n}\n")
    out = tmp_path / "m.onnx"
    err = _fails(capsys, "E0805", spec, "-o", out, out=out)
    assert "half.dl:3" in err and "--bind B=" in err
    assert _run_cli(spec, "--bind", "B=3", "-o", out) == 0  # bound, it is a number


def test_unwritable_output(tmp_path, capsys):
    _fails(capsys, "E0603", SPECS / "mlp.dl", "-o", tmp_path / "no" / "such" / "m.onnx")
    assert not list(tmp_path.rglob("*.onnx"))


def test_params_that_do_not_fit(tmp_path, capsys):
    bad = tmp_path / "p.npz"
    np.savez(bad, **{"fc1.weight": np.zeros((2, 2), np.float32)})
    out = tmp_path / "m.onnx"
    _fails(capsys, "E0510", SPECS / "mlp.dl", "--params", bad, "-o", out, out=out)


def test_without_onnx_installed(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` raises ImportError
    out = tmp_path / "m.onnx"
    err = _fails(capsys, "E0801", SPECS / "mlp.dl", "-o", out, out=out)
    assert "pip install dslc[onnx]" in err
    assert main(["check", str(SPECS / "mlp.dl")]) == 0  # everything else works


def test_compiler_does_not_import_torch_to_export(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from dslc.cli import main; "
            f"rc = main(['export', {str(SPECS / 'lstm.dl')!r}, '-o', "
            f"{str(tmp_path / 'm.onnx')!r}]); "
            "assert rc == 0; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# ---- every op's registry examples ----------------------------------------------------------


def _example_cases():
    from dslc.backends.onnx_export import lowerings
    from dslc.ops.registry import ALL_OPS

    table = lowerings()
    return [pytest.param(op.name, i, op.name in table, id=f"{op.name}-{i}")
            for op in ALL_OPS for i, ex in enumerate(op.examples) if not ex.train]


@pytest.mark.parametrize("name,index,lowered", _example_cases())
def test_op_example_equals_numpy_kernel(name, index, lowered):
    """Each op's registry examples (the ones the NumPy-vs-PyTorch tests use), as one-op
    models: onnxruntime equals the NumPy kernel, or the op is a located E0802."""
    from tests.ops.test_registry import case

    c = case(name, index)
    if not lowered:
        with pytest.raises(DslcError) as exc:
            build_model(c.graph, c.params0)
        assert exc.value.diagnostics[0].code == "E0802"
        return
    m = build_model(c.graph, c.params0)
    onnx.checker.check_model(m, full_check=True)
    if not c.deterministic or name == "randn_like":
        return  # sampling: ONNX draws its own numbers (RandomNormalLike)
    got = _session(m).run(None, c.inputs)
    for (out_name, want), g in zip(c.outputs.items(), got):
        assert g.shape == want.shape and g.dtype == want.dtype, out_name
        np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-5, err_msg=out_name)


def test_export_is_deterministic_and_records_its_origin():
    prog = _load("gpt_tiny", None)
    params = prog.init_params(0)
    a = build_model(prog.graph, params).SerializeToString()
    b = build_model(prog.graph, params).SerializeToString()
    assert a == b
    m = onnx.load_from_string(a)
    props = {p.key: p.value for p in m.metadata_props}
    assert props["dslc.model"] == "gpt_tiny"
    assert props["dslc.spec"] == "gpt_tiny.dl"


def test_docs_list_every_lowering():
    from dslc.backends.onnx_export import lowerings

    doc = (ROOT / "docs" / "onnx.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| ([a-z0-9_, /]+) \|", doc, re.M)
    listed: set[str] = set()
    for row in rows:
        for item in row.split(","):
            item = item.strip()
            m = re.fullmatch(r"([a-z_]+?)(\d)d/(\d)d", item)  # max_pool1d/2d
            listed |= {f"{m[1]}{m[2]}d", f"{m[1]}{m[3]}d"} if m else {item}
    missing = sorted(set(lowerings()) - listed)
    assert not missing, f"docs/onnx.md does not list: {missing}"


# ---- recurrences and outputs beyond the zoo -------------------------------------------------

EDGE_SPECS = {
    # fast paths with initial states, lengths, two bidirectional layers
    "lstm_lengths": """model m() {
  input x: f32[B, T, 3]
  input h0: f32[4, B, 5]
  input c0: f32[4, B, 5]
  input lengths: i64[B]
  y, h, c = lstm(x, h0, c0, lengths, 5, num_layers=2, bidirectional=true)
  output y, h, c
}""",
    "gru_lengths": """model m() {
  input x: f32[B, T, 3]
  input h0: f32[2, B, 4]
  input lengths: i64[B]
  y, h = gru(x, h0, lengths, 4, bidirectional=true)
  output y, h
}""",
    "rnn_relu": """model m() {
  input x: f32[B, T, 3]
  y, h = rnn(x, 4, num_layers=3, nonlinearity="relu", bias=false)
  output y, h
}""",
    # scans: reverse, along 0, a static input, a cell returning only its state
    "scan_reverse_static": """block cell(width: int) {
  input x
  input h
  input m
  output h2 = tanh((x -> linear(width) as ih) + (h -> linear(width) as hh) + m)
}
model m() {
  input x: f32[B, T, 3]
  input h0: f32[B, 4]
  input bias: f32[B, 4]
  hs, h = scan cell(bias, 4) over x from h0 reverse
  output hs, h
}""",
    "scan_along0": """block cell(width: int) {
  input x
  input h
  h2 = tanh((x -> linear(width) as ih) + (h -> linear(width) as hh))
  output h2, y = h2 * 2.0
}
model m() {
  input x: f32[T, B, 3]
  input h0: f32[B, 4]
  ys, h = scan cell(4) over x from h0 along 0
  output ys, h
}""",
    # a readout whose graph count no input holds: max(batch) + 1 at run time
    "readout_count": """model m() {
  input x: f32[N, 3]
  input batch: i64[N]
  output g = readout(x, batch, "max", graphs="G")
}""",
    # outputs that are inputs, pass-throughs, or one value twice
    "outputs": """model m() {
  input x: f32[B, 3]
  y = x -> dropout(0.5)
  z = x -> relu
  output x, y, z, w = z
}""",
}


@pytest.mark.parametrize("name", sorted(EDGE_SPECS))
def test_edge_model_equals_dslc_run(name):
    prog = dslc.load(f"{name}.dl", text=EDGE_SPECS[name])
    params = prog.init_params(2)
    m = build_model(prog.graph, params)
    onnx.checker.check_model(m, full_check=True)
    sess = _session(m)
    for sizes in SIZES:
        bind = {s: sizes[s] for s in _symbols(prog)}
        inputs = prog.random_inputs(5, bind)
        if "lengths" in inputs:  # lengths in 1..T, the longest = T as torch's packing needs
            t = bind["T"]
            inputs["lengths"] = np.array([t] + [1 + i % t for i in range(bind["B"] - 1)])
        want = prog.run(inputs, {k: v.copy() for k, v in params.items()}, bind=bind)
        got = sess.run(None, inputs)
        assert [o.name for o in sess.get_outputs()] == list(want)
        for (key, w), g in zip(want.items(), got):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, err_msg=key)


def test_model_over_the_protobuf_limit(tmp_path, capsys, monkeypatch):
    import dslc.backends.onnx_export as ex

    monkeypatch.setattr(ex, "MAX_MODEL_BYTES", 1000)  # the real limit is 2 GiB
    out = tmp_path / "m.onnx"
    err = _fails(capsys, "E0807", SPECS / "mlp.dl", "-o", out, out=out)
    assert "--set" in err


@pytest.mark.parametrize("dtype,rtol", [("f64", 1e-6), ("f16", 2e-2)])
def test_other_float_precisions(dtype, rtol):
    """Parameters stay f32 in the file (state_dict values) and are cast to the input's
    precision where they meet it; outputs have the spec's dtype. (onnxruntime's CPU provider
    has no float64 Conv or LSTM: the float64 model has attention instead.)"""
    conv = "conv2d(4, 3, padding=1) -> " if dtype == "f16" else ""
    seq = ("y, hn, cn = lstm(s, 6)" if dtype == "f16"
           else "y = s -> layer_norm -> multihead_attention(2, causal=true)")
    text = f"""model p() {{
  input x: {dtype}[B, 3, 8, 8]
  input s: {dtype}[B, T, 4]
  h = x -> {conv}batch_norm -> relu -> flatten -> linear(5)
  {seq}
  output h, y
}}"""
    prog = dslc.load("p.dl", text=text)
    params = prog.init_params(0)
    m = build_model(prog.graph, params)
    onnx.checker.check_model(m, full_check=True)
    sess = _session(m)
    inputs = prog.random_inputs(0, {"B": 2, "T": 3})
    want = prog.run(inputs, params, bind={"B": 2, "T": 3})
    for (name, w), g in zip(want.items(), sess.run(None, inputs)):
        assert str(g.dtype) == {"f64": "float64", "f16": "float16"}[dtype], name
        np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=rtol,
                                   atol=rtol, err_msg=name)

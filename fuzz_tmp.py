import numpy as np, dslc, sys
from dslc.backends.onnx_export import build_model
from dslc.diagnostics import DslcError
from tests.backends.test_onnx_export import _session
rng = np.random.default_rng(int(sys.argv[1]))
fails = ok = 0
for trial in range(150):
    nd = int(rng.integers(1, 4)); op = rng.choice(["max", "avg", "lp"])
    k = [int(v) for v in rng.integers(1, 4, nd)]; s = [int(v) for v in rng.integers(1, 4, nd)]
    sizes = [int(v) for v in rng.integers(3, 9, nd)]
    args = [f"kernel={tuple(k)}", f"stride={tuple(s)}", f"ceil_mode={'true' if rng.random()<0.5 else 'false'}"]
    if op == "lp":
        args = [f"{float(rng.choice([1.0, 2.0, 3.0]))}"] + args
    else:
        form = rng.integers(0, 3)
        if form == 1: args.append(f"padding={tuple(int(min(v, kk//2)) for v, kk in zip(rng.integers(0, 2, nd), k))}")
        if form == 2: args.append(f"padding={tuple(int(v) for v in rng.integers(0, 3, 2*nd))}")
        if op == "max" and rng.random() < 0.5: args.append(f"dilation={tuple(int(v) for v in rng.integers(1, 3, nd))}")
        if op == "avg" and rng.random() < 0.5: args.append("count_include_pad=false")
        if op == "avg" and nd > 1 and rng.random() < 0.3: args.append("divisor_override=3")
    dims = ", ".join(["B", "2"] + [("H" if rng.random() < 0.3 else str(v)) for v in sizes])
    call = f"{op}_pool{nd}d({', '.join(args)})"
    text = f"model m() {{\n  input x: f32[{dims}]\n  output y = x -> {call}\n}}\n"
    try:
        prog = dslc.load("t.dl", text=text)
    except DslcError:
        continue
    bind = {"B": 2, "H": int(rng.integers(4, 9))}
    bind = {k2: v for k2, v in bind.items() if k2 in dims}
    try:
        inputs = prog.random_inputs(0, bind)
        if op == "lp": inputs = {k2: np.abs(v) + 0.1 for k2, v in inputs.items()}
        want = prog.run(inputs, {}, bind=bind)["y"]
    except DslcError:
        continue
    try:
        m = build_model(prog.graph, {})
        import onnx; onnx.checker.check_model(m, full_check=True)
        got = _session(m).run(None, inputs)[0]
        if got.shape != want.shape or not np.allclose(got, want, rtol=1e-4, atol=1e-5, equal_nan=True):
            fails += 1; print("MISMATCH", call, dims, bind, got.shape, want.shape)
        else:
            ok += 1
            decl = [int(d) if d.is_Integer else None for d in prog.graph.type_of(prog.graph.outputs[0][1]).shape]
            if any(a is not None and a != b for a, b in zip(decl, got.shape)): print("DECL", call, dims, bind, decl, got.shape)
    except DslcError as e:
        print("DIAG", call, dims, e.diagnostics[0].message[:80])
    except Exception as e:
        fails += 1; print("ERR", call, dims, bind, str(e)[:150])
print("ok", ok, "fails", fails)

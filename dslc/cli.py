"""The `dslc` command line: check, summary, compile, train, plot, run, render, export (a stable
interface)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from dslc.atomic import write_atomic
from dslc.diagnostics import Diagnostic, DslcError, Span, render_all
from dslc.npz import read_npz

EXIT_OK, EXIT_DIAG, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    pass


def _parse_kv(items: list[str] | None, what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise UsageError(f"{what} expects NAME=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        k = k.strip()
        if not k.isidentifier():
            raise UsageError(f"{what}: {k!r} is not a name")
        out[k] = _parse_value(v.strip(), what == "--bind")
    return out


def _parse_value(v: str, int_only: bool):
    try:
        n = int(v)
    except ValueError:
        n = None
    if int_only:
        if n is None or n < 1:
            raise UsageError(f"--bind values must be positive integers, got {v!r}")
        return n
    if n is not None:
        return n
    if v.startswith("(") and v.endswith(")"):  # --set kernel=(3,5)
        return tuple(_parse_value(x.strip(), False) for x in v[1:-1].split(",") if x.strip())
    low = v.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return float(v)
    except ValueError:
        return v


def _load(args, path: str | None = None, after: str | None = None,
          show_warnings: bool = True):
    """Load the spec; its warnings go to stderr, or fail the command under --Werror."""
    import dslc

    passes = getattr(args, "passes", None)
    prog = dslc.load(path or args.file, model=getattr(args, "model", None),
                     opt_level=getattr(args, "opt", 1),
                     hparams=_parse_kv(getattr(args, "set", None), "--set"),
                     passes=[p.strip() for p in passes.split(",") if p.strip()]
                     if passes is not None else None, after=after)
    if prog.warnings and getattr(args, "werror", False):
        raise DslcError(_as_errors(prog.warnings))
    if prog.warnings and show_warnings:
        print(render_all(prog.warnings), file=sys.stderr)
    return prog


def _as_errors(warnings: list[Diagnostic]) -> list[Diagnostic]:
    """--Werror: the same diagnostics, as errors (the W code says which warning it was)."""
    return [dataclasses.replace(w, severity="error") for w in warnings]


def _bindings(args, prog) -> dict[str, int]:
    binds = _parse_kv(getattr(args, "bind", None), "--bind")
    used = _used_symbols(prog.graph)
    for k in sorted(binds):
        if k not in used:
            print(f"warning: --bind {k}: model '{prog.name}' has no dim named {k}; ignored",
                  file=sys.stderr)
    return {k: v for k, v in binds.items() if k in used}


def _used_symbols(graph) -> set[str]:
    names: set[str] = set()
    for node in graph.nodes.values():
        for t in node.types:
            for d in t.shape:
                names |= {s.name for s in d.free_symbols}
    return names


# ---- commands ----------------------------------------------------------------------------


def cmd_check(args) -> int:
    diags: list[Diagnostic] = []
    ok = []
    for f in args.file:
        try:
            prog = _load(args, f, show_warnings=False)
            ok.append((f, prog.name))
            diags += prog.warnings
        except DslcError as exc:
            diags += exc.diagnostics
    failed = any(d.severity == "error" for d in diags)
    if args.format == "json":
        print(json.dumps({"ok": not failed,
                          "checked": [{"file": f, "model": m} for f, m in ok],
                          "diagnostics": [d.to_json() for d in diags]}, indent=2))
    else:
        for f, m in ok:
            print(f"{f}: ok (model {m})")
        if diags:
            print(render_all(diags), file=sys.stderr)
    return EXIT_DIAG if failed else EXIT_OK


def cmd_summary(args) -> int:
    from dslc.summary import format_table

    prog = _load(args)
    s = prog.summary(_bindings(args, prog))
    if args.json:
        s["train"] = _train_summary(prog)
        print(json.dumps(s, indent=2))
    else:
        print(format_table(s, args.depth))
    return EXIT_OK


def _train_summary(prog) -> dict | None:
    """The default train section of the file for this model, for `summary --json` (None when
    there is none or no default; the sections were checked when the file was loaded)."""
    from dslc.sources import load_program
    from dslc.train_check import pick_train, train_summary
    from dslc.train_multi import check_multi_train, multi_train_summary
    from dslc.train_sections import check_train

    try:
        program = load_program(prog.path)
        tdef = pick_train(program, prog.source.model, None)
        if tdef.is_multi:
            return multi_train_summary(check_multi_train(program, tdef, prog.source))
        return train_summary(check_train(program, prog.source, tdef=tdef))
    except DslcError:
        return None


def _train_source(args, prog) -> str:
    from dslc.backends.torch_train import generate_train
    from dslc.passes import INFERENCE_ONLY
    from dslc.sources import load_program
    from dslc.train_sections import check_train

    program = load_program(prog.path)
    multi = _multi_train_source(program, prog, args.train or None)
    if multi is not None:
        return multi
    spec = check_train(program, prog.source, args.train or None)
    if prog.folds or INFERENCE_ONLY & set(prog.passes):
        # -O2 folds batch norms and drops dropout: inference only. Train the model as written.
        return generate_train(prog.source, spec, prog.path)
    return generate_train(prog.graph, spec, prog.path, folds=prog.folds)


def _multi_train_source(program, prog, name: str | None) -> str | None:
    """The program of a multi-model section (a GAN: dslc/train_multi.py), or None when the
    chosen section trains one model."""
    from dslc.backends.torch_train_multi import generate_multi_train
    from dslc.train_check import pick_train
    from dslc.train_multi import check_multi_train

    tdef = pick_train(program, prog.source.model, name)
    if not tdef.is_multi:
        return None
    return generate_multi_train(check_multi_train(program, tdef, prog.source), prog.path)


def cmd_compile(args) -> int:
    prog = _load(args)
    src = _train_source(args, prog) if args.train is not None else prog.to_torch_source()
    if args.output:
        write_atomic(args.output, src.encode("utf-8"))
    else:
        sys.stdout.write(src)
    return EXIT_OK


def _default_backend() -> str:
    """torch when it is installed (the generated program), else the NumPy interpreter."""
    import importlib.util

    try:
        found = importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # a blocked or half-installed torch
        found = False
    return "torch" if found else "numpy"


def cmd_train(args) -> int:
    """Write RUN/train.py (as `compile --train`) and run it: one process, or torchrun; or
    with `--backend numpy`, train on the NumPy interpreter in this process."""
    import subprocess

    backend = args.backend or _default_backend()
    if backend == "numpy":
        return _train_numpy(args)
    prog = _load(args)
    src = _train_source(args, prog)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    script = out / "train.py"
    write_atomic(str(script), src.encode("utf-8"))
    rest = ["--data", args.data, "--out", str(out)]
    for flag in ("epochs", "steps", "seed", "resume", "stop_after_steps"):
        value = getattr(args, flag)
        if value is not None:
            rest += ["--" + flag.replace("_", "-"), str(value)]
    if args.compile:
        rest.append("--compile")
    if not args.init and not args.resume:
        init = _seeded_init(args, prog, out)
        if init is not None:
            rest += ["--init", init]
    if args.init:
        rest += ["--init", args.init]
    if args.progress:
        rest += ["--progress", args.progress]
    if args.nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={args.nproc}", str(script), *rest]
    else:
        cmd = [sys.executable, str(script), *rest]
    return subprocess.run(cmd, check=False).returncode


def _seeded_init(args, prog, out: Path) -> str | None:
    """RUN/init.npz: dslc's seeded initialisation (the NumPy back end's start), so that both
    back ends begin from the same parameters for the same --seed (issue 15's contract; the
    layers' distributions are torch.nn's either way). None for a multi-model section, whose
    program seeds each model itself."""
    from dslc.interp import init_params
    from dslc.sources import load_program
    from dslc.train_check import pick_train
    from dslc.train_sections import check_train

    program = load_program(prog.path)
    if pick_train(program, prog.source.model, args.train or None).is_multi:
        return None
    spec = check_train(program, prog.source, args.train or None)
    seed = spec.seed if args.seed is None else args.seed
    path = out / "init.npz"
    write_atomic(str(path), _npz_bytes(init_params(prog.source, seed)))
    return str(path)


def _train_numpy(args) -> int:
    """`dslc train --backend numpy`: the same contract as the generated program, no torch."""
    from dslc.numpy_train import TrainError

    if args.nproc > 1:
        raise UsageError("--nproc needs --backend torch (torchrun); the NumPy back end runs "
                         "in one process")
    if args.compile:
        raise UsageError("--compile needs --backend torch")
    prog = _load(args)
    params = _read_npz(args.init, "parameters") if args.init else None
    try:
        prog.train(args.data, args.out, params=params, train=args.train, epochs=args.epochs,
                   steps=args.steps, seed=args.seed, resume=args.resume,
                   stop_after_steps=args.stop_after_steps,
                   say=lambda line: print(line, flush=True))
    except TrainError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_DIAG
    return EXIT_OK


def cmd_plot(args) -> int:
    from dslc.plot import plot_run

    target = plot_run(args.run, args.output)
    print(f"wrote {target}")
    return EXIT_OK


def _read_npz(path: str, what: str) -> dict[str, np.ndarray]:
    return read_npz(path, what)  # dslc/npz.py names the real cause of an unreadable file


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def cmd_run(args) -> int:
    from dslc.heap import keep_freed_memory

    # The CLI owns its process, so it may tune the allocator; the library never does (a user's
    # process keeps its own settings).
    keep_freed_memory()
    prog = _load(args)
    binds = _bindings(args, prog)
    if args.inputs:
        inputs = _read_npz(args.inputs, "inputs")
    else:
        inputs = prog.random_inputs(args.seed, binds)
    if args.params:
        params = _read_npz(args.params, "parameters")
    else:
        params = prog.init_params(args.seed)
    initial = {k: v.copy() for k, v in params.items()} if args.save_params else None
    outputs = prog.run(inputs, params, train=args.train, seed=args.seed, bind=binds)
    # Compute everything first, then write: an error never leaves a partial set of files.
    if args.save_inputs:
        write_atomic(args.save_inputs, _npz_bytes(inputs))
    if args.save_params:
        write_atomic(args.save_params, _npz_bytes(initial))
    write_atomic(args.output, _npz_bytes(outputs))
    for name, arr in outputs.items():
        print(f"{name}: {arr.dtype}{list(arr.shape)}")
    return EXIT_OK


def cmd_grad(args) -> int:
    """Gradients of a scalar output (or of the outputs against --cotangents) on NumPy."""
    from dslc import autodiff, gradcheck

    prog = _load(args)
    binds = _bindings(args, prog)
    inputs = (_read_npz(args.inputs, "inputs") if args.inputs
              else prog.random_inputs(args.seed, binds))
    params = (_read_npz(args.params, "parameters") if args.params
              else prog.init_params(args.seed))
    loss = _read_npz(args.cotangents, "cotangents") if args.cotangents else args.loss
    graph = prog.source  # the model as written: no inference folds, the init_params keys
    if loss is None:
        loss = autodiff.default_loss(graph)
    grads, _ = autodiff.grad(graph, inputs, {k: v.copy() for k, v in params.items()}, loss,
                             train=args.train, seed=args.seed, bindings=binds,
                             wrt_inputs=args.wrt_inputs,
                             checkpoint_blocks=args.checkpoint_blocks)
    rows = []
    if args.check:
        _, rows = gradcheck.check(graph, inputs, params, loss, train=args.train,
                                  seed=args.seed, bindings=binds, points=args.points)
    write_atomic(args.output, _npz_bytes(grads))
    print(f"loss: {loss if isinstance(loss, str) else 'cotangents ' + args.cotangents}")
    for key, g in grads.items():
        print(f"{key}: {g.dtype}{list(g.shape)} |g| = {float(np.sqrt(np.sum(g * g))):.6g}")
    if args.check:
        print(gradcheck.format_rows(rows, args.tol))
        if any(r.worst > args.tol for r in rows):
            print(f"dslc grad: gradient check failed: relative error above {args.tol:g}",
                  file=sys.stderr)
            return EXIT_DIAG
    return EXIT_OK


def cmd_export(args) -> int:
    from dslc.backends.onnx_export import check_opset, export_bytes, require_onnx

    require_onnx()  # before the work: a missing package is the first thing to say
    prog = _load(args)
    check_opset(args.opset, Span(args.file, 0, 0, 0, 0))
    binds = _bindings(args, prog)
    params = _read_npz(args.params, "parameters") if args.params else None
    data = export_bytes(prog, params, opset=args.opset, bindings=binds, seed=args.seed)
    write_atomic(args.output, data)
    return EXIT_OK


def cmd_ir(args) -> int:
    from dslc.ir_text import format_ir

    prog = _load(args, after=args.after)
    if args.after and args.after not in prog.passes:
        raise UsageError(f"--after {args.after}: that pass is not in the pipeline "
                         f"({', '.join(prog.passes) or 'no passes at -O0'})")
    out = [format_ir(prog.graph).rstrip("\n")]
    out.append("")
    out.append(f"# passes: {', '.join(prog.passes) or 'none'}")
    for c in prog.changes:
        out.append(f"# {c.pass_name}: {c.message} ({Path(c.span.file).name}:{c.span.line}:"
                   f"{c.span.column})")
    if not prog.changes:
        out.append("# no changes")
    print("\n".join(out))
    return EXIT_OK


def cmd_render(args) -> int:
    from dslc.render import render_bytes

    out = Path(args.output)
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in ("svg", "png", "pdf", "dot"):
        raise UsageError(f"render: unknown output format '.{fmt}' (use .svg, .png, .pdf or .dot)")
    prog = _load(args)
    data = render_bytes(prog.graph, fmt, expand=args.expand)
    write_atomic(out, data)
    return EXIT_OK


def cmd_import(args) -> int:
    from dslc.onnx_import import default_params_path, import_model, write_outputs

    params_out = args.params_out or default_params_path(args.output)
    if params_out is None:
        raise UsageError("import: give -o model.dl (the parameters go beside it) or "
                         "--params-out P.npz")
    result = import_model(args.file, model_name=args.model)
    write_outputs(result, args.output, params_out)
    if args.output:
        print(f"{args.output}: model {result.model}, {len(result.params)} parameter "
              f"tensors -> {params_out}", file=sys.stderr)
    return EXIT_OK


# ---- argument parsing --------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dslc", description="Compiler for the dslc neural-network "
                                "language: check, summarise, run on NumPy, emit PyTorch, draw.")
    p.add_argument("--version", action="version", version="dslc 0.1.0")
    sub = p.add_subparsers(dest="command", required=True)

    def werror(sp):
        sp.add_argument("--Werror", dest="werror", action="store_true",
                        help="treat warnings (W00xx) as errors: exit 1")

    def common(sp, bind=True):
        sp.add_argument("--model", help="which model of the file (default: the only one, or "
                        "the one named like the file)")
        sp.add_argument("-O", dest="opt", type=int, choices=(0, 1, 2), default=1,
                        help="optimisation level: -O0 none, -O1 safe clean-ups (default), "
                        "-O2 inference folding")
        sp.add_argument("--passes", metavar="A,B,C",
                        help="run exactly these passes, in this order (see `dslc ir`)")
        sp.add_argument("--set", action="append", metavar="NAME=VALUE",
                        help="set a model hyperparameter (repeatable)")
        werror(sp)
        if bind:
            sp.add_argument("--bind", action="append", metavar="DIM=SIZE",
                            help="bind a symbolic dim, e.g. B=8 (repeatable; unused ones "
                            "are ignored with a warning)")

    c = sub.add_parser("check", help="parse and check specs; exit 1 with diagnostics")
    c.add_argument("file", nargs="+")
    c.add_argument("--model")
    c.add_argument("--set", action="append", metavar="NAME=VALUE")
    c.add_argument("--format", choices=("text", "json"), default="text")
    werror(c)
    c.set_defaults(func=cmd_check)

    s = sub.add_parser("summary", help="per-layer table of shapes, parameters and MACs")
    s.add_argument("file")
    common(s)
    s.add_argument("--json", action="store_true")
    s.add_argument("--depth", type=_positive_int, default=None, metavar="N",
                   help="one row per block, repeat or iteration N levels down, with its sums")
    s.set_defaults(func=cmd_summary)

    k = sub.add_parser("compile", help="generate PyTorch source")
    k.add_argument("file")
    common(k, bind=False)
    k.add_argument("-o", "--output")
    k.add_argument("--train", nargs="?", const="", metavar="NAME",
                   help="the training program of the file's train section (NAME picks one)")
    k.set_defaults(func=cmd_compile)

    t = sub.add_parser("train", help="compile the train section to RUN/train.py and run it")
    t.add_argument("file")
    common(t, bind=False)
    t.add_argument("--train", dest="train", metavar="NAME", help="which train section")
    t.add_argument("--data", required=True, metavar="D.npz")
    t.add_argument("--out", required=True, metavar="RUN/")
    t.add_argument("--epochs", type=int)
    t.add_argument("--steps", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--nproc", type=int, default=1, help="processes (torchrun) on this machine")
    t.add_argument("--resume", metavar="RUN/")
    t.add_argument("--stop-after-steps", type=int, metavar="K")
    t.add_argument("--compile", action="store_true", help="torch.compile the model")
    t.add_argument("--backend", choices=("torch", "numpy"), help="the generated PyTorch "
                   "program (default when torch is installed) or the NumPy interpreter")
    t.add_argument("--init", metavar="P.npz", help="start from these parameters and buffers "
                   "(state_dict keys, e.g. a run's params.npz)")
    t.add_argument("--progress", choices=("auto", "bar", "log", "none"),
                   help="progress on stderr: a bar on a terminal, else plain lines (auto, the "
                   "default, or $DSLC_PROGRESS); bar, log or none force one")
    t.set_defaults(func=cmd_train)

    pl = sub.add_parser("plot", help="draw a training run's loss and metric curves "
                        "(RUN/metrics.jsonl) to a PNG (needs dslc[plot])")
    pl.add_argument("run", metavar="RUN/", help="the run folder (or its metrics.jsonl)")
    pl.add_argument("-o", "--output", metavar="CURVES.png",
                    help="the PNG (default: RUN/curves.png)")
    pl.set_defaults(func=cmd_plot)

    r = sub.add_parser("run", help="run the model on NumPy")
    r.add_argument("file")
    common(r)
    r.add_argument("--inputs", help="inputs .npz (default: random from --seed)")
    r.add_argument("--params", help="parameters .npz (default: initialised from --seed)")
    r.add_argument("--seed", type=int, default=0)
    mode = r.add_mutually_exclusive_group()
    mode.add_argument("--train", action="store_true", help="training mode (dropout, batch "
                      "statistics)")
    mode.add_argument("--eval", action="store_true", help="inference mode (the default)")
    r.add_argument("--save-inputs", metavar="IN.npz")
    r.add_argument("--save-params", metavar="P.npz")
    r.add_argument("-o", "--output", required=True, metavar="OUT.npz")
    r.set_defaults(func=cmd_run)

    g = sub.add_parser("grad", help="gradients of a scalar output on NumPy (reverse mode); "
                       "--check compares with finite differences")
    g.add_argument("file")
    common(g)
    g.add_argument("--inputs", help="inputs .npz (default: random from --seed)")
    g.add_argument("--params", help="parameters .npz (default: initialised from --seed)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--loss", metavar="OUTPUT", help="the scalar output to differentiate "
                   "(default: the model's only scalar float output)")
    g.add_argument("--cotangents", metavar="C.npz", help="instead of --loss: differentiate "
                   "sum(output * cotangent) with one array per output named in the file")
    g.add_argument("--train", action="store_true", help="training mode (dropout, batch "
                   "statistics)")
    g.add_argument("--wrt-inputs", action="store_true", help="also the gradients of the "
                   "float inputs, under their names")
    g.add_argument("--check", action="store_true", help="compare with central finite "
                   "differences in float64 on random coordinates; exit 1 above --tol")
    g.add_argument("--checkpoint-blocks", action="store_true", help="keep only each block's "
                   "inputs in the forward and recompute the block in the backward walk: the "
                   "same gradients in less memory (see `dslc summary`), for one more forward")
    g.add_argument("--points", type=int, default=5, help="coordinates per parameter that "
                   "--check compares (default 5)")
    g.add_argument("--tol", type=float, default=1e-4, help="--check's largest accepted "
                   "relative error (default 1e-4)")
    g.add_argument("-o", "--output", required=True, metavar="GRADS.npz")
    g.set_defaults(func=cmd_grad)

    i = sub.add_parser("ir", help="print the optimised IR and what each pass changed")
    i.add_argument("file")
    common(i, bind=False)
    i.add_argument("--after", metavar="PASS", help="stop after this pass")
    i.set_defaults(func=cmd_ir)

    d = sub.add_parser("render", help="draw the model with Graphviz")
    d.add_argument("file")
    common(d, bind=False)
    d.add_argument("-o", "--output", required=True, metavar="OUT.{svg,png,pdf,dot}")
    d.add_argument("--expand", action="store_true", help="draw every repeat iteration")
    d.set_defaults(func=cmd_render)

    x = sub.add_parser("export", help="write the model as ONNX (needs dslc[onnx])")
    x.add_argument("file")
    common(x)
    x.add_argument("--opset", type=int, default=18, help="ONNX opset, 17 to 23 (default 18)")
    x.add_argument("--params", help="parameters .npz (default: initialised from --seed)")
    x.add_argument("--seed", type=int, default=0)
    x.add_argument("-o", "--output", required=True, metavar="MODEL.onnx")
    x.set_defaults(func=cmd_export)

    m = sub.add_parser("import", help="turn an ONNX model into a .dl spec and a parameter "
                       ".npz (needs `pip install dslc[onnx]`)")
    m.add_argument("file", metavar="MODEL.onnx")
    m.add_argument("-o", "--output", metavar="MODEL.dl", help="the spec (default: stdout)")
    m.add_argument("--params-out", metavar="P.npz", help="the parameters (default: beside "
                   "the spec, MODEL.npz)")
    m.add_argument("--model", help="the model's name in the spec (default: the file's name)")
    m.set_defaults(func=cmd_import)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    fmt = getattr(args, "format", "text")
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"dslc {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DslcError as exc:
        if fmt == "json":
            print(json.dumps({"ok": False, "diagnostics": [d.to_json()
                                                           for d in exc.diagnostics]}, indent=2))
        else:
            print(render_all(exc.diagnostics), file=sys.stderr)
        return EXIT_DIAG
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        if os.environ.get("DSLC_DEBUG"):
            raise
        print(f"dslc: internal error: {type(exc).__name__}: {exc}\n"
              "This is a bug in dslc; set DSLC_DEBUG=1 to see the traceback.", file=sys.stderr)
        return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

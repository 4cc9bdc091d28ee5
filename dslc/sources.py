"""Front of elaboration: reads a spec file and its imports into one table of definitions,
and picks the model to build."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dslc.diagnostics import Diagnostic, DslcError, Span, did_you_mean
from dslc.limits import MAX_IMPORT_DEPTH
from dslc.ops.registry import OPS
from dslc.syntax import ast
from dslc.syntax.parser import parse, read_source

# ---- the program: definitions from a file and its imports ----------------------------------


@dataclass
class Program:
    root: str
    definitions: dict[str, ast.Definition]
    modules: list[ast.Module]

    def models_in(self, file: str) -> list[ast.Definition]:
        return [d for d in self.definitions.values() if d.kind == "model" and d.span.file == file]


def load_program(path: str | Path, text: str | None = None) -> Program:
    path = Path(path)
    defs: dict[str, ast.Definition] = {}
    modules: list[ast.Module] = []
    seen: set[Path] = set()

    def visit(p: Path, stack: list[tuple[Path, Span | None]], text: str | None) -> None:
        key = p.resolve()
        if key in seen:
            return
        if len(stack) > MAX_IMPORT_DEPTH:
            raise DslcError(Diagnostic("E0213", "imports nested too deeply", stack[-1][1],
                                       expected=f"at most {MAX_IMPORT_DEPTH} levels"))
        if text is None:
            text = read_source(p)  # E0106 at the first bad byte, E0109 if unreadable
        mod = parse(text, str(p))
        seen.add(key)
        modules.append(mod)
        for imp in mod.imports:
            target = (p.parent / imp.path)
            rkey = target.resolve()
            chain = [s[0].resolve() for s in stack] + [key]
            if rkey in chain:
                cycle = " -> ".join(str(c.name) for c in chain[chain.index(rkey):]) + \
                    f" -> {target.name}"
                raise DslcError(Diagnostic("E0212", "import cycle", imp.span,
                                           found=cycle, hint="remove one of these imports"))
            if not target.is_file():
                raise DslcError(Diagnostic("E0211", f"cannot find imported file '{imp.path}'",
                                           imp.span, expected=f"a file at {target}",
                                           found="no such file"))
            visit(target, stack + [(p, imp.span)], None)
        for d in mod.definitions:
            if d.name in defs:
                other = defs[d.name]
                raise DslcError(Diagnostic(
                    "E0205", f"'{d.name}' is defined twice", d.name_span,
                    notes=[("first defined here", other.name_span)]))
            if d.name in OPS:
                raise DslcError(Diagnostic(
                    "E0205", f"'{d.name}' is the name of a built-in op", d.name_span,
                    hint="choose another name for this definition"))
            defs[d.name] = d

    try:
        visit(path, [], text)
    except RecursionError:
        raise DslcError(Diagnostic("E0213", "imports nested too deeply",
                                   Span(str(path), 1, 1, 1, 2))) from None
    return Program(str(path), defs, modules)


def pick_model(prog: Program, model: str | None) -> ast.Definition:
    models = prog.models_in(prog.root)
    all_models = [d for d in prog.definitions.values() if d.kind == "model"]
    if model is not None:
        d = prog.definitions.get(model)
        if d is None or d.kind != "model":
            hint = did_you_mean(model, [m.name for m in all_models])
            raise DslcError(Diagnostic(
                "E0401", f"no model named '{model}'", Span(prog.root, 1, 1, 1, 2),
                expected="one of: " + ", ".join(m.name for m in models) if models else "a model",
                found=model, hint=hint))
        return d
    if len(models) == 1:
        return models[0]
    if not models:
        raise DslcError(Diagnostic("E0402", "this file defines no model",
                                   Span(prog.root, 1, 1, 1, 2),
                                   hint="add `model name { ... }`; blocks alone cannot run"))
    stem = Path(prog.root).stem
    for m in models:
        if m.name == stem:
            return m
    raise DslcError(Diagnostic(
        "E0403", "this file defines several models; choose one with --model",
        Span(prog.root, 1, 1, 1, 2), expected="--model " + " | ".join(m.name for m in models)))

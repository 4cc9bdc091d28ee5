"""Fuzzer for the whole pipeline: generated and mutated specs through check, summary, compile,
run and render, in-process; any uncaught exception, hang or unparsable generated code fails.

    python bench/fuzz.py --count 100000 --seed 1 [--jobs 2] [--save DIR] [--budget 20]
    python bench/fuzz.py --seed 1 --case 1234 --show      # replay one case

Each case is made from its own `random.Random(f"{seed}:{index}")`, so a case is reproducible
from (seed, index) alone, whatever ran before it. Cases come from three generators:

- `mutate`: a spec of specs/ with 1-4 token edits (delete, duplicate, swap, random bytes,
  numbers at extremes, hostile names, stray keywords);
- `grammar`: a small model written from the op registry's examples (valid or nearly so),
  wrapped in blocks, repeats and ifs, with hostile names and extreme hyperparameters;
- `limits`: hostile sizes and depths (huge repeats, dims, nesting, long names).

A DslcError is the expected way to reject a case; anything else is a failure.
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import re
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the checkout, never an installed copy
    sys.path.insert(0, str(ROOT))

SPECS = ROOT / "specs"
STAGES = ("check", "summary", "compile", "run", "render")
# The NumPy run is skipped (not failed) above these sizes: fuzzing is about crashes, and a
# VGG-sized forward pass per case would leave time for few cases.
RUN_MAX_MACS = 20_000_000
RUN_MAX_PARAMS = 5_000_000

HOSTILE_NAMES = (
    "class", "lambda", "print", "torch", "self", "forward", "nn", "F", "def", "return",
    "__init__", "__class__", "__dict__", "_modules", "training", "state_dict", "None", "True",
    "exec", "eval", "__import__", "import_", "x_", "ℌ", "ﬁ", "fi", "é", "e\u0301", "数据",
    "Ω", "Ｘ", "a" * 300, "_", "__", "t", "block", "type", "object", "super", "len",
)
EXTREME_NUMBERS = ("0", "-1", "1", "2147483647", "2147483648", "9223372036854775807",
                   "18446744073709551616", "1000000000", "1000000000000", "1e308", "1e-308",
                   "1e400", "0.0", "-0.0", "3.5", "65536", "10000", "10001",
                   "999999999999999999999")
KEYWORDS = ("model", "block", "input", "output", "const", "repeat", "if", "else", "assert",
            "import", "scan", "over", "from", "steps", "along", "reverse", "as", "and", "or",
            "not", "true", "false")
PUNCT = ("(", ")", "[", "]", "{", "}", ",", ":", ";", "=", "->", "+", "-", "*", "/", "//",
         "%", "@", "**", ".", "<", "==", "\"", "#", "\n")
TOKEN = re.compile(r'"[^"\n]*"|#[^\n]*|\d[\w.]*|[^\W\d]\w*|->|//|\*\*|==|!=|<=|>=|\s+|.',
                   re.S)


# ---- case generation ---------------------------------------------------------------------


@dataclass
class Case:
    index: int
    kind: str
    path: str  # where the text claims to live (imports resolve from there)
    text: str


def spec_files() -> list[Path]:
    return sorted(SPECS.glob("*.dl"))


_SPEC_TEXTS: dict[str, str] = {}


def spec_text(p: Path) -> str:
    if str(p) not in _SPEC_TEXTS:
        _SPEC_TEXTS[str(p)] = p.read_text(encoding="utf-8")
    return _SPEC_TEXTS[str(p)]


def mutate_tokens(rng: random.Random, text: str, edits: int) -> str:
    toks = TOKEN.findall(text)
    for _ in range(edits):
        if not toks:
            toks = [""]
        i = rng.randrange(len(toks))
        kind = rng.randrange(9)
        if kind == 0:
            del toks[i]
        elif kind == 1:
            toks.insert(i, toks[i])
        elif kind == 2:
            j = rng.randrange(len(toks))
            toks[i], toks[j] = toks[j], toks[i]
        elif kind == 3:
            toks.insert(i, "".join(chr(rng.choice((rng.randrange(0, 128), rng.randrange(
                128, 0x3000)))) for _ in range(rng.randrange(1, 4))))
        elif kind == 4 or (kind == 5 and toks[i][:1].isdigit()):
            nums = [k for k, t in enumerate(toks) if t[:1].isdigit()]
            k = rng.choice(nums) if nums else i
            toks[k] = rng.choice(EXTREME_NUMBERS)
        elif kind == 5:
            names = [k for k, t in enumerate(toks) if t[:1].isalpha() and t not in KEYWORDS]
            k = rng.choice(names) if names else i
            old = toks[k]
            new = rng.choice(HOSTILE_NAMES)
            # Renaming every occurrence keeps the spec valid more often: a hostile name that
            # gets through elaboration exercises code generation.
            toks = [new if t == old else t for t in toks]
        elif kind == 6:
            toks.insert(i, rng.choice(KEYWORDS) + " ")
        elif kind == 7:
            toks.insert(i, rng.choice(PUNCT))
        else:
            j = min(len(toks), i + rng.randrange(1, 30))
            toks[i:i] = toks[i:j]  # duplicate a run (a statement, a call)
    return "".join(toks)


def _op_examples():
    from dslc.ops import docs
    from dslc.ops.registry import ALL_OPS

    out = []
    for op in ALL_OPS:
        for ex in op.examples:
            try:
                out.append(docs.usage(op, ex))
            except Exception:  # noqa: BLE001 - an op without a usable example is skipped
                pass
    return out


_EXAMPLES: list[str] = []


def grammar_case(rng: random.Random) -> str:
    """A model from one or two op examples, renamed, wrapped and parameterised at random."""
    global _EXAMPLES
    if not _EXAMPLES:
        _EXAMPLES = _op_examples()
    src = rng.choice(_EXAMPLES)
    lines = src.splitlines()
    inputs = [ln for ln in lines if ln.strip().startswith("input ")]
    body = [ln for ln in lines[1:-1] if ln not in inputs and not ln.strip().startswith("output")]
    outs = [ln for ln in lines if ln.strip().startswith("output")]
    # Hostile names for the values: every whole-word x, x0, y, y0 ... renamed consistently.
    names = sorted(set(re.findall(r"\b[xy]\d*\b", src)))
    rename = {n: (rng.choice(HOSTILE_NAMES) if rng.random() < 0.5 else n) for n in names}
    if len(set(rename.values())) < len(rename):
        rename = {n: n for n in names}

    def sub(s: str) -> str:
        return re.sub(r"\b[xy]\d*\b", lambda m: rename.get(m[0], m[0]), s)

    hp = rng.choice(("", "(k: int = 2)", f"(k: int = {rng.choice(EXTREME_NUMBERS)})",
                     "(k: int = 3, act: string = \"relu\")"))
    out = ["model example" + hp + " {"] + [sub(ln) for ln in inputs]
    stmts = [sub(ln) for ln in body]
    wrap = rng.randrange(5)
    if wrap == 1:
        stmts = ["  repeat 1 {"] + stmts + ["  }"]
    elif wrap == 2 and hp:
        stmts = ["  if k > 1 {"] + stmts + ["  } else {"] + stmts + ["  }"]
    elif wrap == 3:
        label = rng.choice(HOSTILE_NAMES[:20])
        stmts = [f"  {label}: repeat 2 as i {{"] + stmts + ["  }"]
    out += stmts + [sub(ln) for ln in outs] + ["}"]
    text = "\n".join(out) + "\n"
    if wrap == 4:
        # The statement inside a block with a hostile name, called once.
        bname = rng.choice(("class", "forward", "__init__", "Model", "nn", "self", "b"))
        ins = [ln.split(":")[0].replace("input", "").strip() for ln in inputs]
        outs_names = [n.strip() for ln in outs for n in ln.strip()[7:].split(",")]
        block = [f"block {bname} {{"] + [f"  input {n}" for n in ins] + stmts + \
            [f"  output {', '.join(outs_names)}", "}"]
        call = f"  {', '.join(outs_names)} = {bname}({', '.join(ins)})"
        text = "\n".join(block + out[:1 + len(inputs)] + [call] +
                         [sub(ln) for ln in outs] + ["}"]) + "\n"
    if rng.random() < 0.3:
        text = mutate_tokens(rng, text, rng.randrange(1, 3))
    return text


def window_case(rng: random.Random) -> str:
    """A conv, pool or local_response_norm whose padding, dilation, kernel or size is extreme:
    the NumPy kernels must not allocate or loop in proportion to them (ops/window.py)."""
    def big() -> str:
        return rng.choice(EXTREME_NUMBERS + ("1073741824", "536870912"))

    calls = (f"conv2d(3, 3, padding={big()}, dilation={big()})",
             f"conv1d(2, 2, stride={big()}, padding={big()}, dilation={big()})",
             f"conv2d(2, (1, 3), padding=({big()}, 1))",
             f"max_pool2d({big()}, padding={big()})",
             f"avg_pool1d({big()}, stride={big()}, padding={big()})",
             f"max_pool2d(3, stride={big()}, padding=1, ceil_mode=true)",
             f"local_response_norm({big()})")
    call = rng.choice(calls)
    shape = "2, 3, 5" if "1d(" in call else "2, 3, 5, 5"
    return f"model m {{ input x: f32[{shape}]\n output y = x -> {call} }}\n"


def limits_case(rng: random.Random) -> str:
    k = rng.randrange(11)
    if k == 10:
        return window_case(rng)
    n = rng.choice((10, 100, 1000, 10_000))
    if k == 0:
        count = rng.choice(EXTREME_NUMBERS[:8] + ("1000",))
        if count == "10000":  # a legal 10,000-layer model is slow, not wrong
            count = "2000"
        return f"model m {{ input x: f32[B, 4]\n repeat {count} " \
               "{ x = x -> linear(4) }\n output y = x }\n"
    if k == 1:
        return "model m { input x: f32[B, 4]\n output y = " + "(" * n + "x" + ")" * n + " }\n"
    if k == 2:
        return "model m { input x: f32[B, 4]\n" + "if true { " * n + "x = x -> relu" + \
            " }" * n + "\n output y = x }\n"
    if k == 3:
        n = min(n, 1000)  # 10,000 definitions parse in ~20 s: tested in tests/test_limits.py
        blocks = "".join(f"block b{i} {{ input x\n output y = x -> b{i + 1} }}\n"
                         for i in range(n)) + f"block b{n} {{ input x\n output y = x }}\n"
        return blocks + "model m { input x: f32[B, 4]\n output y = x -> b0 }\n"
    if k == 4:
        return "model m { input x: f32[B, 4]\n output y = x" + " -> relu" * n + " }\n"
    if k == 5:
        return "model m { input x: f32[B, 4]\n output y = " + "- " * n + "x }\n"
    if k == 6:
        d = rng.choice(EXTREME_NUMBERS)
        return f"model m {{ input x: f32[B, {d}]\n output y = x -> linear({d}) }}\n"
    if k == 7:
        return "model m { input x: f32[B, 4]\n output y = x + " + " + ".join(["x"] * n) + " }\n"
    if k == 8:
        name = rng.choice(("a", "é", "ℌ")) * rng.choice((1000, 100_000))
        return f"model m {{ input {name}: f32[B, 4]\n output y = {name} -> linear(2) }}\n"
    return "model m { input x: f32[B, 4]\n h = 1\n" + "".join(
        f" h = h * {rng.choice(EXTREME_NUMBERS)}\n" for _ in range(n // 100 + 1)) + \
        " output y = x -> linear(4) }\n"


def make_case(seed: int, index: int) -> Case:
    rng = random.Random(f"{seed}:{index}")
    r = rng.random()
    if r < 0.6:
        p = rng.choice(spec_files())
        text = mutate_tokens(rng, spec_text(p), rng.randrange(1, 5))
        return Case(index, "mutate", str(p), text)
    if r < 0.92:
        return Case(index, "grammar", str(SPECS / "fuzz_generated.dl"), grammar_case(rng))
    return Case(index, "limits", str(SPECS / "fuzz_limits.dl"), limits_case(rng))


# ---- running a case ----------------------------------------------------------------------


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def generated_code_ok(src: str) -> str | None:
    """None when the generated PyTorch parses; otherwise why not."""
    try:
        ast.parse(src)
    except SyntaxError as exc:
        return f"generated code does not parse: {exc}"
    return None


def run_case(case: Case, budget: float = 20.0) -> dict | None:
    """Run every stage; None when the case passed (or was rejected with a DslcError)."""
    import numpy as np

    import dslc
    from dslc.cli import _used_symbols
    from dslc.diagnostics import DslcError, render_all
    from dslc.render import to_dot

    stage = "check"
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, budget)
    try:
        try:
            prog = dslc.load(case.path, text=case.text)
        except DslcError as exc:
            render_all(exc.diagnostics)  # rendering a diagnostic must not crash either
            render_all(exc.diagnostics, "json")
            return None
        bind = {s: 2 for s in sorted(_used_symbols(prog.graph))}
        stage = "summary"
        try:
            s = prog.summary(bind)
            json.dumps(s)
        except DslcError:
            s = None
        stage = "compile"
        try:
            why = generated_code_ok(prog.to_torch_source())
            if why:
                return {"stage": stage, "error": why, "sig": "compile:unparsable"}
        except DslcError:
            pass
        stage = "render"
        try:
            to_dot(prog.graph)
        except DslcError:
            pass
        stage = "run"
        if s is not None and _small(s):
            try:
                with np.errstate(all="ignore"):
                    inputs = prog.random_inputs(0, bind)
                    prog.run(inputs, bind=bind)
            except DslcError:
                pass
        return None
    except Hang:
        return {"stage": stage, "error": f"hang: over {budget:g} s", "sig": f"{stage}:hang"}
    except BaseException as exc:  # noqa: BLE001 - every other exception is a finding
        if isinstance(exc, KeyboardInterrupt):
            raise
        tb = traceback.extract_tb(exc.__traceback__)
        inner = [f for f in tb if "/dslc/" in f.filename] or tb
        where = f"{Path(inner[-1].filename).name}:{inner[-1].lineno}" if inner else "?"
        return {"stage": stage, "error": f"{type(exc).__name__}: {str(exc)[:300]}",
                "sig": f"{stage}:{type(exc).__name__}:{where}",
                "traceback": "".join(traceback.format_exception(exc))[-4000:]}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _small(summary: dict) -> bool:
    macs, params = summary.get("macs"), summary.get("params")
    return (isinstance(macs, int) and isinstance(params, int) and macs <= RUN_MAX_MACS
            and params <= RUN_MAX_PARAMS)


# ---- driver ------------------------------------------------------------------------------


def _work(args) -> tuple[int, str, dict | None]:
    seed, index, budget = args
    case = make_case(seed, index)
    return index, case.kind, run_case(case, budget)


def fuzz(count: int, seed: int, start: int = 0, jobs: int = 1, budget: float = 20.0,
         save: Path | None = None, progress: bool = False) -> dict:
    """Run cases start..start+count; returns counts and the failures found."""
    t0 = time.time()
    kinds: dict[str, int] = {}
    failures: list[dict] = []
    work = [(seed, i, budget) for i in range(start, start + count)]
    if jobs > 1:
        import multiprocessing as mp

        pool = mp.get_context("fork").Pool(jobs, maxtasksperchild=2000)
        results = pool.imap_unordered(_work, work, chunksize=16)
    else:
        pool = None
        results = map(_work, work)
    try:
        for n, (index, kind, fail) in enumerate(results, 1):
            kinds[kind] = kinds.get(kind, 0) + 1
            if fail is not None:
                fail.update(index=index, kind=kind)
                failures.append(fail)
                if save is not None:
                    save.mkdir(parents=True, exist_ok=True)
                    case = make_case(seed, index)
                    (save / f"case_{seed}_{index}.dl").write_text(case.text, encoding="utf-8")
                    (save / f"case_{seed}_{index}.txt").write_text(
                        json.dumps(fail, indent=2), encoding="utf-8")
            if progress and n % 1000 == 0:
                print(f"  {n} cases, {len(failures)} failures, {time.time() - t0:.0f} s",
                      file=sys.stderr, flush=True)
    finally:
        if pool is not None:
            pool.terminate()
    sigs: dict[str, int] = {}
    for f in failures:
        sigs[f["sig"]] = sigs.get(f["sig"], 0) + 1
    return {"cases": count, "seed": seed, "kinds": kinds, "failures": len(failures),
            "signatures": sigs, "examples": failures[:20], "seconds": round(time.time() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start", type=int, default=0, help="first case index")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--budget", type=float, default=60.0, help="seconds per case")
    p.add_argument("--save", type=Path, help="write failing cases here")
    p.add_argument("--case", type=int, help="run only this case index")
    p.add_argument("--show", action="store_true", help="print the case's text")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.case is not None:
        case = make_case(args.seed, args.case)
        if args.show:
            print(case.text)
        fail = run_case(case, args.budget)
        print(json.dumps(fail, indent=2) if fail else f"case {args.case} ({case.kind}): ok")
        return 1 if fail else 0
    res = fuzz(args.count, args.seed, args.start, args.jobs, args.budget, args.save,
               progress=True)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(res["kinds"].items()))
        print(f"cases run: {res['cases']} ({kinds}) in {res['seconds']} s")
        print(f"failures found: {res['failures']}")
        for sig, n in sorted(res["signatures"].items(), key=lambda kv: -kv[1]):
            print(f"  {n:6d}  {sig}")
        for f in res["examples"][:10]:
            print(f"  case {f['index']} ({f['kind']}, {f['stage']}): {f['error']}")
    return 1 if res["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())

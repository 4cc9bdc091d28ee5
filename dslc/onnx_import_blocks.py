"""ONNX import: repeated chains of statements -> one `block` and a labelled `repeat`.

torch names the weights of `nn.Sequential(Block(), Block())` `layer1.0.conv1.weight`,
`layer1.1.conv1.weight`, ...: the iterations of a repeat. The statements between the first
layer of `layer1.0` and the first of `layer1.1` are iteration 0, and so on. Iterations
0..k-1 become `layer1: repeat k { h = h -> layer1_block }` when each is a chain with one output,
fed by the previous iteration's output and by outer values that every iteration reads alike (a
graph's `edge_index`, a decoder's `memory`: `h = h -> layer1_block(edge_index)`), and all are
the same statements up to variable names (same ops, attributes, parameter shapes), so the keys
stay torch's (`layer1.0.conv1.weight`). An untyped block infers its layers' in-features from its
input, so iteration 0 may differ from the rest in parameter shapes alone (an MLP's first layer
reads the model's features, the others the hidden width): the repeat then covers it too.
Iterations that differ otherwise (a ResNet stage's first block, with its downsample) stay plain
statements.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from dslc.onnx_import_core import Importer, Stmt
from dslc.onnx_import_values import dim_text

_PATH = re.compile(r"^([A-Za-z_][\w.]*?)\.(\d+)\.(.+)$")
_IDENT = re.compile(r"(?<![\w.\"])([A-Za-z_]\w*)")


@dataclass
class Block:
    name: str
    input: str
    output: str
    stmts: list[Stmt]
    input_type: str = ""  # `: f32[B, T, 512]` when the body writes dims
    # the outer values every iteration reads (name, type), block inputs after `input`
    extras: list[tuple[str, str]] = field(default_factory=list)
    hparams: list[str] = field(default_factory=list)  # `rate: float`, a per-iteration rate


def _split_path(imp: Importer, st: Stmt):
    path = imp.paths.get(st.label or "")
    m = _PATH.match(path) if path else None
    return (m.group(1), int(m.group(2)), m.group(3)) if m else None


def _refs(st: Stmt, defined: set[str]) -> list[str]:
    names = [m for m in _IDENT.findall(re.sub(r'"[^"]*"', '""', st.expr)) if m in defined]
    return names + ([st.first] if st.first else [])


def _region_io(stmts, lo, hi, defined, out_vars):
    inside = {t for st in stmts[lo:hi] for t in st.targets}
    ins = []
    for st in stmts[lo:hi]:
        for r in _refs(st, defined):
            if r not in inside and r not in ins:
                ins.append(r)
    later = {r for st in stmts[hi:] for r in _refs(st, defined)} | set(out_vars)
    outs = [t for st in stmts[lo:hi] for t in st.targets if t in later]
    return ins, outs


# A train-only op's rate (`drop_path(p=0.05)`): stochastic depth rises layer by layer.
_TRAIN_CALL = re.compile(r"^(dropout|dropout2d|alpha_dropout|drop_path|gaussian_noise|"
                         r"edge_dropout)\(")
_RATE = re.compile(r"\b(p|std)=(-?\d[\d.]*(?:e-?\d+)?)")


def _rates(stmts, lo, hi) -> list[float]:
    """The rates of the train-only ops of statements lo..hi, in order."""
    return [float(m.group(2)) for st in stmts[lo:hi] if _TRAIN_CALL.match(st.expr)
            for m in _RATE.finditer(st.expr)]


def _rate_steps(stmts, ranges) -> list[tuple[float, float]] | None:
    """Per rate of the body, (first value, step) when the iterations' values rise by a
    constant step (0.05, 0.075, 0.1: `0.05 + 0.025 * i`); None when one does not."""
    values = [_rates(stmts, lo, hi) for lo, hi in ranges]
    steps = []
    for slot in zip(*values):
        first, step = slot[0], slot[1] - slot[0]
        if any(abs(v - (first + step * i)) > 1e-9 * max(1.0, abs(v)) for i, v in enumerate(slot)):
            return None
        steps.append((first, step))
    return steps


def _signature(imp: Importer, stmts, lo, hi, defined, in_var, shapes: bool = True,
               rates: bool = False):
    """The statements with variables numbered by definition and labels relative to the
    iteration: equal signatures are the same computation on the same shapes (on inputs of
    any shape, without `shapes`: the parameter shapes then follow from the input's)."""
    names = {in_var: "@in"}
    sig = []
    for st in stmts[lo:hi]:
        def canon(m):
            return names.get(m.group(1), m.group(1))
        expr = _IDENT.sub(canon, st.expr)
        if rates and _TRAIN_CALL.match(st.expr):
            expr = _RATE.sub(lambda m: f"{m.group(1)}=@rate", expr)
        first = names.get(st.first, st.first) if st.first else None
        for t in st.targets:
            names[t] = f"@{len(names)}"
        parts = _split_path(imp, st) if st.label else None
        rest = parts[2] if parts else _auto(st.label)
        kinds = tuple((k, v.shape if shapes else v.ndim, str(v.dtype))
                      for k, v in sorted(st.params.items()))
        sig.append((expr, first, rest, kinds, len(st.targets)))
    return sig


def _auto(label: str | None) -> str | None:
    """A numbered layer name (`fc3`) stands for its kind: the block numbers it again."""
    return re.sub(r"\d+$", "", label) + "#" if label and re.search(r"\d$", label) else label


def _input_type(imp: Importer, stmts, lo, hi, in_var: str) -> str | None:
    """The block's input declaration: plain `x`, or typed `x: f32[B, T, 512]` when the body
    writes dims (a reshape), which the type then binds to the caller's sizes. None when the
    body needs something a block cannot see (a constant, `h.shape[i]`, a dim not in x)."""
    types = _input_types(imp, stmts, lo, hi, [in_var])
    return None if types is None else types[0]


def _input_types(imp: Importer, stmts, lo, hi, in_vars: list[str]) -> list[str] | None:
    """The declarations of several block inputs: all plain, or, when the body writes dims,
    all typed and together naming every dim it writes."""
    consts = {c.split(":")[0].split()[1] for c in imp.consts} - set(in_vars)
    dims = set(imp.dim_names.values())
    used = set()
    for st in stmts[lo:hi]:
        words = set(_IDENT.findall(re.sub(r'"[^"]*"', '""', st.expr)))
        if words & consts or ".shape[" in st.expr:
            return None
        used |= words & dims
    if not used:
        return [""] * len(in_vars)
    out, names = [], set()
    for var in in_vars:
        dtype, shape = imp.var_types.get(var, ("f32", []))
        if not shape or any(d is None or not (d.is_Integer or d.is_Symbol) for d in shape):
            return None
        names |= {d.name for d in shape if d.is_Symbol}
        out.append(f": {dtype}[{', '.join(dim_text(d) for d in shape)}]")
    return None if used - names else out


def _inner_labels(imp: Importer, stmts, lo, hi) -> list[str | None] | None:
    """Each statement's layer name inside the block: the rest of its module path
    (`layer1.0.conv1` -> `conv1`), numbered layers numbered again from 1 per kind."""
    out: list[str | None] = []
    for st in stmts[lo:hi]:
        parts = _split_path(imp, st) if st.label else None
        out.append(re.sub(r"\W", "_", parts[2]) if parts else None)
    taken = {lab for lab in out if lab}
    counts: dict[str, int] = {}
    for k, st in enumerate(stmts[lo:hi]):
        if st.label and out[k] is None:
            kind = re.sub(r"\d+$", "", st.label)
            n = counts.get(kind, 0) + 1
            while f"{kind}{n}" in taken:
                n += 1
            counts[kind] = n
            out[k] = f"{kind}{n}"
            taken.add(out[k])
    return out


def _rename_io(body: list[Stmt], in_var: str, out_var: str,
               keep: tuple[str, ...] = ()) -> tuple[str, str, list[Stmt]]:
    """The block's input and output read as `x` and `y` (a block is a scope of its own), unless
    the body has those names already (among them `keep`, its other inputs)."""
    names = {t for st in body for t in st.targets} | {in_var} | set(keep)
    new = {in_var: "x" if "x" not in names else in_var,
           out_var: "y" if "y" not in names else out_var}

    def sub(text: str) -> str:
        return _IDENT.sub(lambda m: new.get(m.group(1), m.group(1)), text)
    out = [replace(st, expr=sub(st.expr), first=new.get(st.first, st.first) if st.first
                   else None, targets=[new.get(t, t) for t in st.targets]) for st in body]
    return new[in_var], new[out_var], out


def find_repeats(imp: Importer, stmts: list[Stmt], out_vars: list[str],
                 defined: set[str]) -> tuple[list[Block], list[Stmt]]:
    firsts: dict[str, dict[int, int]] = {}
    for k, st in enumerate(stmts):
        parts = _split_path(imp, st) if st.label else None
        if parts:
            firsts.setdefault(parts[0], {}).setdefault(parts[1], k)
    blocks: list[Block] = []
    replaced: list[tuple[int, int, Stmt]] = []
    for prefix, iters in firsts.items():
        plan = _best_plan(imp, stmts, prefix, iters, defined, out_vars)
        if plan is None:
            continue
        lo, hi = plan[0][0][0], plan[0][-1][1]
        if all(hi <= a or lo >= b for a, b, _ in replaced):
            found = _make(imp, stmts, *plan)
            if found is not None:
                replaced.append(found[:3])
                blocks.append(found[3])
    for found in _structural(imp, stmts, out_vars, defined, [(a, b) for a, b, _ in replaced]):
        replaced.append(found[:3])
        blocks.append(found[3])
    if not replaced:
        return [], stmts
    body, k = [], 0
    for lo, hi, stmt in sorted(replaced, key=lambda r: r[0]):
        body += stmts[k:lo] + [stmt]
        k = hi
    body += stmts[k:]
    return blocks, body


def _best_plan(imp, stmts, prefix, iters, defined, out_vars):
    """The repeat of the most iterations, its iterations starting at their first layer or a
    few statements earlier: a layer without parameters (an aggregation before an MLP) has no
    module name, but belongs to the iteration it opens."""
    best = None
    for shift in range(_MAX_SHIFT + 1):
        starts = {i: k - shift for i, k in iters.items()}
        if any(k < 0 or any(st.label for st in stmts[k:k + shift]) for k in starts.values()):
            break
        plan = _repeat(imp, stmts, prefix, starts, defined, out_vars)
        if plan is not None and (best is None or len(plan[0]) > len(best[0])):
            best = plan
    return best


_MAX_SHIFT = 4


def _repeat(imp, stmts, prefix, iters, defined, out_vars):
    """(ranges, ios, label, input type, extras) of the repeat whose iterations start at
    `iters`, or None."""
    n = 0
    while n in iters:
        n += 1
    if n < 2:
        return None
    starts = [iters[i] for i in range(n)]
    ranges = [(starts[i], starts[i + 1]) for i in range(n - 1)]
    last_len = ranges[-1][1] - ranges[-1][0]
    ranges.append((starts[-1], min(starts[-1] + last_len, len(stmts))))
    chains = _chain_inputs(stmts, ranges, defined, out_vars)
    if chains is None:
        return None
    extras, ios = chains
    ranges = ranges[:len(ios)]
    in_types = _input_types(imp, stmts, *ranges[0], [ios[0][0], *extras])
    if in_types is None:
        return None
    for rates in (True, False):
        plan = _iterations(imp, stmts, prefix, ranges, ios, extras, in_types, defined, rates)
        if plan is not None:
            return plan
    return None


def _iterations(imp, stmts, prefix, ranges, ios, extras, in_types, defined, rates: bool):
    """The plan for the longest run of equal iterations from iteration 0; with `rates`, the
    train-only rates may rise by a constant step, passed to the block as `rate`, ..."""
    # an untyped block takes inputs of any shape: iteration 0 may read other features
    shapes = any(in_types)
    sigs = []
    for i, (lo, hi) in enumerate(ranges):
        if _input_types(imp, stmts, lo, hi, [ios[i][0], *extras]) != in_types:
            break
        if any(_split_path(imp, st) and _split_path(imp, st)[:2] != (prefix, len(sigs))
               for st in stmts[lo:hi] if st.label):
            break
        sig = _signature(imp, stmts, lo, hi, defined, ios[i][0], shapes, rates)
        if sigs and sig != sigs[0]:
            break
        sigs.append(sig)
    count = len(sigs)
    label = re.sub(r"\W", "_", prefix)
    if count < 2 or label in imp.labels or label in imp.taken:
        return None
    steps = _rate_steps(stmts, ranges[:count]) if rates else []
    if steps is None:
        return None
    return (ranges[:count], ios[:count], label, in_types[0], list(zip(extras, in_types[1:])),
            [(a, d) for a, d in steps])


def _chain_inputs(stmts, ranges, defined, out_vars):
    """The outer values read by every iteration (in the order iteration 1 reads them) and each
    iteration's (chained input, output), as far as iterations have one output that the next
    reads; None when fewer than two do."""
    regions = []
    for lo, hi in ranges:
        ins, outs = _region_io(stmts, lo, hi, defined, out_vars)
        if len(outs) != 1:
            break
        regions.append((ins, outs[0]))
    if len(regions) < 2 or regions[0][1] not in regions[1][0]:
        return None
    extras = [v for v in regions[1][0] if v != regions[0][1]]
    inside = {t for st in stmts[ranges[0][0]:ranges[len(regions) - 1][1]] for t in st.targets}
    if inside & set(extras):
        return None
    chain0 = [v for v in regions[0][0] if v not in extras]
    if len(chain0) != 1 or not set(regions[0][0]) <= set(extras) | set(chain0):
        return None
    ios = [(chain0[0], regions[0][1])]
    for ins, out in regions[1:]:
        prev = ios[-1][1]
        if prev not in ins or set(ins) - {prev} != set(extras) or prev in extras:
            break
        ios.append((prev, out))
    return (extras, ios) if len(ios) >= 2 else None


def _make(imp: Importer, stmts, ranges, ios, label: str, in_type: str,
          extras: list[tuple[str, str]] | None = None,
          steps: list[tuple[float, float]] | None = None):
    """The block (iteration 0's statements) and the `repeat` statement replacing them all;
    `extras` are the outer values every iteration reads, the block's further inputs, `steps`
    the (first value, step) of each train-only rate of the body."""
    extras = extras or []
    varying = [k for k, (_, d) in enumerate(steps or []) if d != 0.0]
    count = len(ranges)
    imp.labels.add(label)
    lo, hi = ranges[0][0], ranges[count - 1][1]
    name = imp.fresh(f"{label}_block")
    first_in, last_out = ios[0][0], ios[count - 1][1]
    inner_labels = [_inner_labels(imp, stmts, *ranges[i]) for i in range(count)]
    if inner_labels[0] is None:
        return None
    body = [replace(st, label=lab) for st, lab in zip(stmts[ranges[0][0]:ranges[0][1]],
                                                      inner_labels[0])]
    keep = tuple(v for v, _ in extras)
    hparams = [f"rate{j + 1 if j else ''}" for j in range(len(varying))]
    if varying:
        body = _rates_as_hparams(body, dict(zip(varying, hparams)))
    block = Block(name, *_rename_io(body, first_in, ios[0][1], keep), in_type, extras,
                  [f"{h}: float" for h in hparams])
    params = {}
    for i in range(count):
        for st, inner in zip(stmts[ranges[i][0]:ranges[i][1]], inner_labels[i]):
            for k, v in st.params.items():
                params[f"{label}.{i}.{inner}.{k}"] = v
    index = next(v for v in ("i", "k", "i_") if v not in imp.taken)
    args = list(keep) + [f"{h}={_number(steps[k][0])} + {_number(steps[k][1])} * {index}"
                         for k, h in zip(varying, hparams)]
    call = f"({', '.join(args)})" if args else ""
    head = f"repeat {count} as {index}" if varying else f"repeat {count}"
    raw = [f"  {last_out} = {first_in}",
           f"  {label}: {head} {{ {last_out} = {last_out} -> {name}{call} }}"]
    stmt = Stmt([last_out], first_in, None, None, {}, "", {"raw": raw, "block_params": params})
    return lo, hi, stmt, block


def _rates_as_hparams(body: list[Stmt], names: dict[int, str]) -> list[Stmt]:
    """The body with rate number k (counted over its train-only ops) read from hyperparameter
    names[k]."""
    out, k = [], 0
    for st in body:
        if not _TRAIN_CALL.match(st.expr):
            out.append(st)
            continue

        def sub(m):
            nonlocal k
            k += 1
            return f"{m.group(1)}={names[k - 1]}" if k - 1 in names else m.group(0)
        out.append(replace(st, expr=_RATE.sub(sub, st.expr)))
    return out


def _number(x: float) -> str:
    text = f"{x:.15g}"
    return text if "." in text or "e" in text else f"{text}.0"


def _structural(imp: Importer, stmts, out_vars, defined, taken_ranges):
    """Runs of identical segments found by structure alone, for graphs whose weights carry no
    module names (an optimised export): the statements are cut where exactly one value flows
    from before to after, and consecutive equal segments with layers become a repeat."""
    n = len(stmts)
    born = {t: i for i, st in enumerate(stmts) for t in st.targets}
    last: dict[str, int] = {}
    for i, st in enumerate(stmts):
        for r in _refs(st, defined):
            last[r] = i
    for o in out_vars:
        last[o] = n
    cuts = [0]
    for k in range(1, n):
        live = [v for v, end in last.items() if born.get(v, -1) < k <= end]
        if len(live) == 1:
            cuts.append(k)
    cuts.append(n)
    segs = [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]
    found = []
    j = 0
    while j < len(segs):
        best = None
        for period in range(1, 5):  # a unit may span several cuts (a block and its relu)
            units, ios, info0 = _units(imp, stmts, segs, j, period, defined, out_vars,
                                       taken_ranges)
            if len(units) >= 2 and (best is None or len(units) * period > best[0]):
                best = (len(units) * period, units, ios, info0)
        if best is None:
            j += 1
            continue
        _, units, ios, info0 = best
        k = 1
        while f"blocks{k if k > 1 else ''}" in imp.labels | imp.taken:
            k += 1
        made = _make(imp, stmts, units, ios, f"blocks{k if k > 1 else ''}", info0[2])
        if made is not None:
            found.append(made)
        j += best[0]
    return found


def _units(imp, stmts, segs, j, period, defined, out_vars, taken_ranges):
    """Consecutive equal units of `period` segments from segment j on."""
    units, ios, first = [], [], None
    while j + (len(units) + 1) * period <= len(segs):
        a = segs[j + len(units) * period][0]
        b = segs[j + (len(units) + 1) * period - 1][1]
        if any(not (b <= lo or a >= hi) for lo, hi in taken_ranges):
            break
        info = _segment(imp, stmts, a, b, defined, out_vars)
        if info is None or (first is not None and (info[3] != first[3] or
                                                   info[0] != ios[-1][1])):
            break
        first = first or info
        units.append((a, b))
        ios.append(info[:2])
    return units, ios, first


def _segment(imp: Importer, stmts, lo, hi, defined, out_vars):
    """(input, output, input type, signature) of a one-in, one-out segment with layers."""
    ins, outs = _region_io(stmts, lo, hi, defined, out_vars)
    if len(ins) != 1 or len(outs) != 1 or not any(st.params for st in stmts[lo:hi]):
        return None
    if any(st.meta.get("raw") or (st.label and imp.paths.get(st.label)) for st in stmts[lo:hi]):
        return None
    typed = _input_type(imp, stmts, lo, hi, ins[0])
    if typed is None:
        return None
    sig = _signature(imp, stmts, lo, hi, defined, ins[0])
    return ins[0], outs[0], typed, sig

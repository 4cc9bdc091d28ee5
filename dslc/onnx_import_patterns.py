"""ONNX import, the larger patterns: subgraphs that are one dslc op (exact GELU from `Erf`,
masks and position tables computed from the sizes alone, a class token broadcast over the
batch), matched by the node walk of onnx_import_ops."""

from __future__ import annotations

import numpy as np
import sympy

from dslc import dims as D
from dslc import onnx_import_ops as ops
from dslc.onnx_import_core import Importer, ImportProblem
from dslc.onnx_import_ops import (
    _lit,
    _name,
    _out,
    _scalar,
    _t,
    attrs_of,
    dims_value,
    handles,
    sole_user,
)
from dslc.onnx_import_values import Const, Dims, Sized, Tensor, Value, Zeros


@handles("Erf")
def _erf_gelu(imp, node, ins, attrs):
    """x · ½(1 + erf(x/√2)): the exact GELU as exporters spell it (Div or Mul by a
    constant, Erf, Add 1, and the products with x and ½ in either order)."""
    fail = ImportProblem("an Erf outside the GELU pattern x * 0.5 * (1 + erf(x / sqrt(2)))")
    scaled = imp.producer.get(node.input[0])
    if scaled is None or scaled.op_type not in ("Div", "Mul"):
        raise fail
    x_name, c = scaled.input[0], _scalar(imp.values.get(scaled.input[1]))
    want = np.sqrt(2.0) if scaled.op_type == "Div" else 1 / np.sqrt(2.0)
    if c is None or abs(c - want) > 1e-4 or not isinstance(imp.values.get(x_name), Tensor):
        raise fail
    add = sole_user(imp, node.output[0], "Add")
    if add is None or _scalar(imp.values.get(_other(add, node.output[0]))) != 1.0:
        raise fail
    mul = sole_user(imp, add.output[0], "Mul")
    if mul is None:
        raise fail
    other = _other(mul, add.output[0])
    half = imp.producer.get(other)
    if other == x_name:  # (x * (1 + erf)) * 0.5
        final = sole_user(imp, mul.output[0], "Mul")
        if final is None or _scalar(imp.values.get(_other(final, mul.output[0]))) != 0.5:
            raise fail
        inner = [add, mul]
    elif half is not None and half.op_type == "Mul" and x_name in half.input and _scalar(
            imp.values.get(_other(half, x_name))) == 0.5:
        final, inner = mul, [add, half]  # (x * 0.5) * (1 + erf)
    else:
        raise fail
    (var,) = imp.emit("gelu", first=_t(imp, imp.values[x_name], node), hint=final.output[0],
                      node=_name(node))
    folded = Tensor([], "f32", var="<folded>")
    for n in inner:
        imp.skip[_name(n)] = [folded]
    imp.skip[_name(final)] = [imp.tensor(final.output[0], var=var)]
    return [folded]


def _other(node, name: str) -> str:
    rest = [n for n in node.input if n != name]
    return rest[0] if rest else name


def sized_value(imp: Importer, v: Value, bind: dict, memo: dict) -> np.ndarray:
    """A size-only value computed for concrete sizes (`bind`: dim name -> size)."""
    from onnx.reference import ReferenceEvaluator

    if isinstance(v, Const):
        return v.array
    if isinstance(v, Dims):
        subs = {D.symbol(n): size for n, size in bind.items()}
        arr = np.array([int(sympy.sympify(d).subs(subs)) for d in v.items], dtype=np.int64)
        return arr.reshape(()) if v.scalar else arr
    key = id(v)
    if key not in memo:
        node, ins, k = v.source
        feeds = {n: sized_value(imp, x, bind, memo) for n, x in zip(node.input, ins)
                 if n and x is not None}
        opset = {o.domain or "": o.version for o in imp.model.opset_import}.get("", 17)
        memo[key] = np.array(ReferenceEvaluator(node, opsets={"": opset}).run(None, feeds)[k])
    return memo[key]


@handles("Where")
def _where(imp, node, ins, attrs):
    """Where(mask, value, scores) with a mask made from sizes alone: `masked_fill` with the
    mask dslc builds (`causal_mask`, `band_mask`), found by computing the mask at two sizes."""
    cond, a, b = ins
    fill = _scalar(a)
    if not isinstance(cond, (Sized, Zeros)) or fill is None or not isinstance(b, Tensor):
        raise ImportProblem("a Where other than a size-made mask over scores")
    rank = imp.rank(b)
    if rank is None or rank < 2:
        raise ImportProblem("a masked tensor of unknown rank")
    mask = _recognise_mask(imp, cond, b, rank)
    if mask is None:
        raise ImportProblem("a mask that is neither causal nor a band")
    value = fill if np.isfinite(fill) else float(np.sign(fill) * np.finfo(np.float32).max)
    bv = _t(imp, b, node)
    (m,) = imp.emit(mask, first=bv, hint="mask", node=_name(node))
    (var,) = imp.emit(f"masked_fill({bv}, {m}, {_lit(value)})", hint=node.output[0],
                      node=_name(node))
    return [_out(imp, node, var)]


def _recognise_mask(imp, cond, scores: Tensor, rank: int) -> str | None:
    """The dslc mask call equal to `cond` at two sets of sizes, or None."""
    names = sorted({s.name for d in scores.shape if d is not None for s in d.free_symbols})
    dim = rank - 1
    candidates = [(f"causal_mask({dim})", lambda q, k: np.triu(np.ones((q, k), bool), 1))]
    candidates += [(f"band_mask({w}, {dim})",
                    lambda q, k, w=w: np.abs(np.subtract.outer(np.arange(q), np.arange(k))) > w)
                   for w in range(0, 9)]
    for call, make in candidates:
        ok = True
        for base in (3, 5):
            bind = {n: base + i for i, n in enumerate(names)}
            try:
                got = sized_value(imp, cond, bind, {})
            except Exception:  # noqa: BLE001 - not evaluable at these sizes: no match
                return None
            subs = {D.symbol(n): size for n, size in bind.items()}
            q, k = (int(sympy.sympify(d).subs(subs)) if d is not None else -1
                    for d in scores.shape[-2:])
            if q != k or got.shape[-2:] != (q, k) or got.dtype != bool or not np.array_equal(
                    got.reshape(-1, q, k)[0], make(q, k)) or (got.size != q * k):
                ok = False
                break
        if ok:
            return call
    return None


def _is_position_table(table: Value, x: Value) -> bool:
    """A learned [T, d] table (an initializer) added to a [B, T, d] sequence."""
    if not (isinstance(table, Const) and table.sources and table.array.dtype.kind == "f"
            and table.array.ndim == 2 and isinstance(x, Tensor) and len(x.shape) == 3):
        return False
    t, d = x.shape[1], x.shape[2]
    return all(v is not None and v.is_Integer for v in (t, d)) and (
        table.array.shape == (int(t), int(d)))


def _position_embedding(imp, node, table: Const, x: Tensor) -> list:
    """`x + (x -> position_embedding(T) as name)`: the table stays a parameter, under its
    initializer's name, instead of becoming a constant in the spec."""
    xv = _t(imp, x, node)
    label = imp.take_label(imp.label_for(table.sources), "pos")
    (pe,) = imp.emit(f"position_embedding({table.array.shape[0]})", first=xv, hint="pos",
                     label=label, params={"weight": table.array.astype(np.float32)},
                     node=_name(node))
    (var,) = imp.emit(f"{xv} + {pe}", hint=node.output[0], node=_name(node))
    return [_out(imp, node, var)]


def _sized_positions(imp, node, sized: Sized, x: Tensor) -> list:
    """A [T, d] table made from the sequence length alone, added to x [B, T, d]: rows
    0..T-1 of a learned table (`Gather(table, CumSum(ones))`: position_embedding) or the
    sinusoidal table (sinusoidal_encoding), told apart by computing it at two lengths."""
    fail = ImportProblem("a tensor made from sizes alone, added to a sequence, that is neither "
                         "a learned position table nor the sinusoidal one")
    if len(x.shape) != 3 or x.shape[1] is None:
        raise fail
    names = sorted({sym.name for dim in x.shape if dim is not None for sym in dim.free_symbols})
    gnode, gins, _ = sized.source
    table = gins[0] if gnode.op_type == "Gather" else None
    learned = isinstance(table, Const) and table.sources and table.array.ndim == 2
    sinusoid = True
    for base in (3, 6):
        bind = {n: base + i for i, n in enumerate(names)}
        t = int(sympy.sympify(x.shape[1]).subs({D.symbol(n): v for n, v in bind.items()}))
        try:
            got = sized_value(imp, sized, bind, {})
            idx = sized_value(imp, gins[1], bind, {}) if learned else None
        except Exception:  # noqa: BLE001 - not computable at these sizes
            raise fail from None
        if learned and not np.array_equal(np.asarray(idx).reshape(-1), np.arange(t)):
            learned = False
        d = got.shape[-1]
        if got.reshape(-1, d).shape[0] != t or not np.allclose(got.reshape(t, d),
                                                                _sinusoid(t, d), atol=1e-5):
            sinusoid = False
    xv = _t(imp, x, node)
    if learned:
        label = imp.take_label(imp.label_for(table.sources), "pos")
        (pe,) = imp.emit(f"position_embedding({table.array.shape[0]})", first=xv, hint="pos",
                         label=label, params={"weight": table.array.astype(np.float32)},
                         node=_name(node))
    elif sinusoid:
        (pe,) = imp.emit("sinusoidal_encoding", first=xv, hint="pe", node=_name(node))
    else:
        raise fail
    (var,) = imp.emit(f"{xv} + {pe}", hint=node.output[0], node=_name(node))
    return [_out(imp, node, var)]


def _sinusoid(t: int, d: int) -> np.ndarray:
    """The table of 'Attention is all you need' (dslc's sinusoidal_encoding)."""
    pos = np.arange(t)[:, None]
    rate = np.power(10000.0, -(np.arange(0, d, 2) / d))
    out = np.zeros((t, d))
    out[:, 0::2] = np.sin(pos * rate)
    out[:, 1::2] = np.cos(pos * rate)[:, : d // 2]
    return out


def _class_token(imp, node, ins, attrs) -> list | None:
    """Expand of a learned [1, 1, d] token to [B, 1, d], put before a sequence by Concat on
    axis 1: dslc's `class_token` (ViT's and BERT's [CLS])."""
    src, shape = ins[0], dims_value(ins[1])
    cat = sole_user(imp, node.output[0], "Concat")
    if not (isinstance(src, Const) and src.sources and src.array.ndim == 3
            and src.array.shape[:2] == (1, 1) and shape is not None and cat is not None):
        return None
    cat_attrs = attrs_of(imp, cat)
    if cat_attrs.get("axis") != 1 or list(cat.input[:1]) != [node.output[0]] or len(
            cat.input) != 2:
        return None
    x = imp.values.get(cat.input[1])
    if not isinstance(x, Tensor):
        return None
    label = imp.take_label(imp.label_for(src.sources), "cls")
    weight = src.array.reshape(1, -1).astype(np.float32)
    (var,) = imp.emit("class_token", first=_t(imp, x, node), hint=cat.output[0], label=label,
                      params={"weight": weight}, node=_name(node))
    imp.skip[_name(cat)] = [imp.tensor(cat.output[0], var=var)]
    return [Tensor([], "f32", var="<folded>")]


def _affine_grid(imp, node, a, b) -> list | None:
    """MatMul(base, thetaᵀ) -> Reshape [B, H, W, 2], with base the [H·W, 3] rows (x, y, 1)
    of the [-1, 1] grid: `affine_grid(theta, H, W)`. The product stays lazy until the reshape
    (read later) says H and W; anything else writes it as it is."""
    tr = imp.producer.get(node.input[1])
    if not (isinstance(a, Const) and a.array.ndim == 2 and a.array.shape[1] == 3 and tr
            is not None and tr.op_type == "Transpose" and isinstance(b, Tensor)
            and sole_user(imp, node.output[0], "Reshape") is not None
            and list(attrs_of(imp, tr).get("perm", [])) == [0, 2, 1]):
        return None
    theta = imp.values.get(tr.input[0])
    if not isinstance(theta, Tensor):
        return None
    out = imp.tensor(node.output[0], tag=("grid", theta, a))

    def write() -> str:
        (var,) = imp.emit(f"{_t(imp, a, node)} @ {_t(imp, b, node)}", hint=node.output[0],
                          node=_name(node))
        return var
    out.lazy = write
    return [out]


def _grid_reshape(imp, node, x: Tensor, target) -> Tensor | None:
    _, theta, base = x.tag
    if len(target) != 4 or not (target[1].is_Integer and target[2].is_Integer):
        return None
    h, w = int(target[1]), int(target[2])
    if h * w != base.array.shape[0]:
        return None
    for align in (False, True):
        if np.allclose(base.array, _grid_base(h, w, align), atol=1e-6):
            kw = ", align_corners=true" if align else ""
            (var,) = imp.emit(f"affine_grid({h}, {w}{kw})", first=_t(imp, theta, node),
                              hint=node.output[0], node=_name(node))
            return imp.tensor(node.output[0], var=var)
    return None


def _grid_base(h: int, w: int, align: bool) -> np.ndarray:
    def axis(n: int) -> np.ndarray:
        if align:
            return np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)
        return (np.arange(n) * 2 + 1) / n - 1
    ys, xs = np.meshgrid(axis(h), axis(w), indexing="ij")
    return np.stack([xs.reshape(-1), ys.reshape(-1), np.ones(h * w)], axis=1)


def _add_patterns(imp, node, a, b) -> list | None:
    for table, other in ((b, a), (a, b)):
        if _is_position_table(table, other):
            return _position_embedding(imp, node, table, other)
        if isinstance(table, Sized) and isinstance(other, Tensor):
            return _sized_positions(imp, node, table, other)
    return None


ops.ADD_PATTERNS.append(_add_patterns)
ops.EXPAND_PATTERNS.append(_class_token)
ops.MATMUL_PATTERNS.append(_affine_grid)
ops.RESHAPE_THROUGH["grid"] = _grid_reshape

"""ONNX import pattern: a MatMul by torch's adaptive-average bin matrix (how dslc's export
writes `adaptive_avg_pool` at fixed sizes, one spatial axis at a time) -> the pool, never a
`linear` layer (a handler pattern of the node walk, dslc/onnx_import_ops.py).

The export moves the axis last (`Transpose`), multiplies by the constant [n, o] matrix whose
column i averages torch's bin i, and moves it back. The matrix is recognised by its values, so
the pattern is exactly the pool: the identity (o = n: VGG-16's 7x7 pool of a 7x7 map) is the
input itself; otherwise `adaptive_avg_pool{1,2,3}d` to the sizes with that one axis pooled.
"""

from __future__ import annotations

import numpy as np

from dslc import dims as D
from dslc import onnx_import_ops as ops
from dslc.onnx_import_core import Importer
from dslc.onnx_import_values import Const, Tensor


def bin_matrix(n: int, o: int) -> np.ndarray:
    """torch's adaptive bins along an axis of size n as an [n, o] averaging matrix (output i
    covers floor(i·n/o) .. ceil((i+1)·n/o))."""
    m = np.zeros((n, o), np.float64)
    for i in range(o):
        lo, hi = (i * n) // o, -(-((i + 1) * n) // o)
        m[lo:hi, i] = 1.0 / (hi - lo)
    return m


def _swap(perm: list[int], k: int) -> bool:
    r = len(perm)
    want = list(range(r))
    want[k], want[-1] = want[-1], want[k]
    return perm == want


def _adaptive_avg(imp: Importer, node, a, b) -> list | None:
    if not (isinstance(a, Tensor) and isinstance(b, Const) and b.array.ndim == 2):
        return None
    n, o = b.array.shape
    if o > n or not np.allclose(b.array, bin_matrix(n, o), rtol=0, atol=1e-6):
        return None
    rank = imp.rank(a)
    if rank is None or not 3 <= rank <= 5:
        return None
    src, axis, out_name, second = a, rank - 1, node.output[0], None
    first = imp.producer.get(node.input[0])
    after = ops.sole_user(imp, node.output[0], "Transpose")
    if first is not None and first.op_type == "Transpose" and after is not None:
        # Transpose (axis k <-> last), MatMul, the same Transpose back: a pool of axis k.
        perm = list(ops.attrs_of(imp, first).get("perm", []))
        k = next((i for i in range(rank - 1) if _swap(perm, i)), None)
        back = list(ops.attrs_of(imp, after).get("perm", []))
        src = imp.values.get(first.input[0])
        if k is not None and back == perm and isinstance(src, Tensor) and \
                ops.sole_user(imp, node.input[0], "MatMul") is not None:
            axis, out_name, second = k, after.output[0], after
        else:
            src = a
    if axis < 2:
        return None  # a batch or channel axis: not a pool
    if n == o:
        result = src
    else:
        base, shape = src, src.shape
        if src.var is None and src.tag and src.tag[0] == "adaptive_avg":
            base, shape = src.tag[1], [None, None] + [D.const(k) for k in src.tag[2]]
        sizes = []
        for i in range(2, rank):
            d = shape[i] if shape and len(shape) == rank else None
            if i == axis:
                sizes.append(o)
            elif d is not None and d.is_Integer:
                sizes.append(int(d))
            else:
                return None
        result = _pooled(imp, node, base, sizes, out_name)
    if second is not None:
        imp.skip[ops._name(second)] = [result]
    return [result]


def _pooled(imp: Importer, node, src: Tensor, sizes: list[int], out_name: str) -> Tensor:
    """The pool, written only when read: the export's next axis pools the same tensor
    again, and the two steps are one `adaptive_avg_pool2d((h, w))` (the bins are separable)."""
    out = imp.tensor(out_name, tag=("adaptive_avg", src, tuple(sizes)))

    def write() -> str:
        size = str(sizes[0]) if len(set(sizes)) == 1 else ops._tup(tuple(sizes))
        (var,) = imp.emit(f"adaptive_avg_pool{len(sizes)}d({size})",
                          first=ops._t(imp, src, node), hint=out_name, node=ops._name(node))
        return var
    out.lazy = write
    return out


ops.MATMUL_PATTERNS.append(_adaptive_avg)

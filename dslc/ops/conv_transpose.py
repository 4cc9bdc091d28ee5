"""Transposed convolution ops (conv_transpose1d/2d/3d): op records for the registry, used by
elaboration (shape rules), the interpreter (NumPy kernel) and the PyTorch back end
(nn.ConvTranspose*d).

The NumPy kernel is the adjoint of the conv's im2col: one matmul per group turns every input
pixel into its kernel-sized patch of outputs ([N, *L, *K, out/g]), and a loop over the kernel
taps (not over pixels) adds each tap's plane into the output at stride S, offset t*D. Padding
P crops the full output; the taps' writes are clipped to the cropped range directly, so a
large padding costs nothing. output_padding extends the far end (only the bias lands there
unless a tap reaches it), as in torch.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from dslc import dims as D
from dslc.limits import MAX_RUN_ELEMENTS
from dslc.ops.base import (
    Attrs,
    Example,
    Op,
    ParamSpec,
    ShapeError,
    concrete,
    fmt_value,
    need_float,
)
from dslc.ops.conv_grad import conv_transpose_vjp
from dslc.ops.padding import padding_label, tap_slices, transposed_pads
from dslc.types import tensor

SPATIAL_AXES = {1: "L", 2: "H, W", 3: "D, H, W"}


class ConvTranspose1dAttrs(Attrs):
    out_channels: int | None = None  # None: taken from a weight tensor input
    kernel: int | tuple[int] | None = None
    stride: int | tuple[int] = 1
    padding: int | tuple[int, ...] | str = 0  # per axis or per side (ops/padding.py)
    output_padding: int | tuple[int] = 0
    groups: int = 1
    bias: bool = True
    dilation: int | tuple[int] = 1


class ConvTranspose2dAttrs(Attrs):
    out_channels: int | None = None
    kernel: int | tuple[int, int] | None = None
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, ...] | str = 0
    output_padding: int | tuple[int, int] = 0
    groups: int = 1
    bias: bool = True
    dilation: int | tuple[int, int] = 1


class ConvTranspose3dAttrs(Attrs):
    out_channels: int | None = None
    kernel: int | tuple[int, int, int] | None = None
    stride: int | tuple[int, int, int] = 1
    padding: int | tuple[int, ...] | str = 0
    output_padding: int | tuple[int, int, int] = 0
    groups: int = 1
    bias: bool = True
    dilation: int | tuple[int, int, int] = 1


def _tup(v, n: int) -> tuple[int, ...]:
    return (v,) * n if isinstance(v, int) else tuple(v)


def out_size(size, k: int, s: int, d: int, pads: tuple[int, int], op: int):
    """torch's formula: (L-1)*S - 2P + D*(K-1) + output_padding + 1, P per side."""
    return (size - 1) * s - pads[0] - pads[1] + d * (k - 1) + op + 1


class _Geom:
    """The resolved numbers of one transposed conv call."""

    def __init__(self, a, ins, nd: int):
        x = ins[0]
        need_float(x)
        name = f"conv_transpose{nd}d"
        if x.rank not in (nd + 1, nd + 2):
            raise ShapeError(f"{name} needs an input of rank {nd + 2} (batched) or {nd + 1}",
                             expected=f"[B, C, {SPATIAL_AXES[nd]}]",
                             found=f"{x} (rank {x.rank})", arg=0)
        self.batched = x.rank == nd + 2
        self.spatial = x.shape[-nd:]
        self.in_ch = concrete(x.shape[-nd - 1], f"{name}'s input channels (axis 1)")
        g = a.groups
        if g < 1:
            raise ShapeError("groups must be positive", expected=">= 1", found=str(g),
                             attr="groups")
        self.functional = len(ins) >= 2
        if self.functional:
            w = ins[1]
            if w.rank != nd + 2:
                raise ShapeError(f"{name} weight must have rank {nd + 2}",
                                 expected="[in, out/groups, " + ", ".join("k" * nd) + "]",
                                 found=str(w), arg=1)
            wshape = tuple(concrete(dim, f"{name}'s weight shape") for dim in w.shape)
            if wshape[0] != self.in_ch:
                raise ShapeError(f"{name} weight axis 0 must be the input channels",
                                 expected=str(self.in_ch), found=str(w), arg=1)
            self.out_ch = wshape[1] * g
            if a.out_channels is not None and a.out_channels != self.out_ch:
                raise ShapeError("out_channels differs from the weight's axis 1 x groups",
                                 expected=str(self.out_ch), found=str(a.out_channels),
                                 attr="out_channels")
            self.k = wshape[2:]
            if a.kernel is not None and _tup(a.kernel, nd) != self.k:
                raise ShapeError("kernel differs from the weight's shape",
                                 expected=fmt_value(self.k), found=fmt_value(a.kernel),
                                 attr="kernel")
        else:
            if a.out_channels is None:
                raise ShapeError(f"{name} needs out_channels (or a weight tensor input)",
                                 expected=f"{name}(out_channels, kernel)", found="none",
                                 attr="out_channels")
            if a.kernel is None:
                raise ShapeError(f"{name} needs a kernel size", expected="kernel=2",
                                 found="none", attr="kernel")
            self.out_ch = a.out_channels
            self.k = _tup(a.kernel, nd)
        for attr, val, lo in (("kernel", self.k, 1), ("stride", _tup(a.stride, nd), 1),
                              ("dilation", _tup(a.dilation, nd), 1),
                              ("output_padding", _tup(a.output_padding, nd), 0)):
            if len(val) != nd or min(val) < lo:
                raise ShapeError(f"{attr} must be {nd} number(s) >= {lo}",
                                 expected=f"{nd} value(s) >= {lo}", found=fmt_value(val),
                                 attr=attr)
        if self.out_ch < 1:
            raise ShapeError("out_channels must be positive", expected=">= 1",
                             found=str(self.out_ch), attr="out_channels")
        if self.in_ch % g or self.out_ch % g:
            raise ShapeError("groups must divide both the input and the output channels",
                             expected=f"in_channels ({self.in_ch}) and out_channels "
                             f"({self.out_ch}) divisible by groups",
                             found=f"groups={g}", attr="groups")
        self.g = g
        self.s = _tup(a.stride, nd)
        self.d = _tup(a.dilation, nd)
        self.op = _tup(a.output_padding, nd)
        for op, s, d in zip(self.op, self.s, self.d):
            if not (op < s or op < d):
                raise ShapeError("output_padding must be smaller than either stride or "
                                 "dilation (as in torch)",
                                 expected=f"output_padding < {max(s, d)}",
                                 found=f"output_padding={fmt_value(a.output_padding)}, "
                                 f"stride={fmt_value(a.stride)}, "
                                 f"dilation={fmt_value(a.dilation)}",
                                 attr="output_padding", code="E0324")
        if len(ins) == 3:
            b = ins[2]
            if b.rank != 1 or D.equal(b.shape[0], D.const(self.out_ch)) is not True:
                raise ShapeError("bias must be [out_channels]",
                                 expected=f"[{self.out_ch}]", found=str(b), arg=2)
        self.pads = transposed_pads(a.padding, self.k, self.s, self.d, nd, name)
        self.out_spatial = []
        for ax, (size, k, s, d, p, op) in enumerate(
                zip(self.spatial, self.k, self.s, self.d, self.pads, self.op)):
            v = D.value(D.as_dim(size))
            if v is not None and out_size(v, k, s, d, p, op) < 1:
                raise ShapeError(f"the padding crops the whole output on spatial "
                                 f"axis {ax} (torch: output size is too small)",
                                 expected=f"padding of at most "
                                 f"{out_size(v, k, s, d, (0, 0), op) - 1} in all on that axis",
                                 found=f"output size {out_size(v, k, s, d, p, op)}",
                                 attr="padding", code="E0326")
            self.out_spatial.append(out_size(D.as_dim(size), k, s, d, p, op))

    def out_shape(self, x):
        lead = x.shape[:1] if self.batched else ()
        return lead + (D.const(self.out_ch),) + tuple(self.out_spatial)


def _shape(nd):
    def shape(a, ins):
        geo = _Geom(a, ins, nd)
        return [ins[0].with_shape(geo.out_shape(ins[0]))]
    return shape


def _params(nd):
    def params(a, ins):
        geo = _Geom(a, ins, nd)
        if geo.functional:
            return {}
        # torch's fan_in for a transposed conv is weight.size(1) x kernel: out/groups x k
        fan_in = geo.out_ch // geo.g * math.prod(geo.k)
        p = {"weight": ParamSpec((D.const(geo.in_ch), D.const(geo.out_ch // geo.g))
                                 + tuple(D.const(k) for k in geo.k), "uniform_fan_in", fan_in)}
        if a.bias:
            p["bias"] = ParamSpec((D.const(geo.out_ch),), "uniform_fan_in", fan_in)
        return p
    return params


def _macs(nd):
    def macs(a, ins, outs):
        """Counted as torch-side tools (fvcore, thop) do: every input element is multiplied
        with its out/groups x kernel-volume weights once. Taps that land in the cropped
        padding are counted too (the work a direct implementation does)."""
        geo = _Geom(a, ins, nd)
        return D.product(ins[0].shape) * (geo.out_ch // geo.g * math.prod(geo.k))
    return macs


# ---- NumPy kernel --------------------------------------------------------------------------


# Elements of the per-input patch buffer of one matmul: whole images per block up to this
# size (32 MB of f32), so that a large batch does not hold every image's patches at once
# (torch's col2im also works image by image).
_BLOCK = 1 << 23


def conv_transpose_nd(x, w, b, stride, pads, dilation, output_padding, groups) -> np.ndarray:
    """x [N, Cin, *L], w [Cin, O/g, *K], b [O] or None -> [N, O, *out] (a channels-first view
    of a channels-last array)."""
    dtype = x.dtype
    if dtype == np.float16:  # NumPy has no fast f16 matmul: compute in f32
        x, w = x.astype(np.float32), w.astype(np.float32)
        b = None if b is None else b.astype(np.float32)
    w = w.astype(x.dtype, copy=False)
    n, cin = x.shape[:2]
    size = x.shape[2:]
    og, k = w.shape[1], w.shape[2:]
    outs = tuple(out_size(*args) for args in zip(size, k, stride, dilation, pads,
                                                 output_padding))
    if min(outs) < 1:
        raise ShapeError("the padding crops the whole output", code="E0326",
                         found=f"output size {list(outs)}")
    kvol = math.prod(k)
    per_image = math.prod(size) * kvol * og
    if per_image > MAX_RUN_ELEMENTS:
        raise ShapeError("the patches of one input image would be too large to run",
                         expected=f"at most {MAX_RUN_ELEMENTS} elements",
                         found=f"{per_image} elements", code="E0505")
    o = og * groups
    cg = cin // groups
    xl = np.moveaxis(x, 1, -1)  # [N, *L, Cin]
    out = np.zeros((n,) + outs + (o,), x.dtype)
    # [Cg, O/g, *K] -> [Cg, *K, O/g] per group: each tap's outputs are a contiguous run
    wgs = [np.moveaxis(w[gi * cg:(gi + 1) * cg], 1, -1).reshape(cg, kvol * og)
           for gi in range(groups)]
    # per axis, per tap: which inputs land where (None: the tap lands in the crop only)
    per_axis = [[tap_slices(t, sz, s, d, lo, ot) for t in range(kk)]
                for kk, sz, s, d, (lo, _), ot in zip(k, size, stride, dilation, pads, outs)]
    taps = [(tap, tuple(per_axis[ax][t] for ax, t in enumerate(tap)))
            for tap in itertools.product(*(range(kk) for kk in k))]
    taps = [(tap, sl) for tap, sl in taps if all(s is not None for s in sl)]
    chunk = max(1, _BLOCK // per_image)
    for n0 in range(0, n, chunk):
        m = min(chunk, n - n0)
        for gi, wg in enumerate(wgs):
            xg = xl[n0:n0 + m, ..., gi * cg:(gi + 1) * cg].reshape(-1, cg)
            cols = (xg @ wg).reshape((m,) + size + k + (og,))
            rows = slice(n0, n0 + m)
            chans = slice(gi * og, (gi + 1) * og)
            for tap, sl in taps:
                src = (slice(None),) + tuple(a for a, _ in sl) + tap
                dst = (rows,) + tuple(z for _, z in sl) + (chans,)
                out[dst] += cols[src]
    if b is not None:
        out += b.astype(out.dtype, copy=False)
    res = np.moveaxis(out, -1, 1)
    return res.astype(dtype) if res.dtype != dtype else res


def _kernel(nd):
    def kernel(a, xs, ctx):
        x = xs[0]
        if len(xs) >= 2:
            w = xs[1]
            b = xs[2] if len(xs) == 3 else None
        else:
            w = ctx.params["weight"]
            b = ctx.params.get("bias")
        batched = x.ndim == nd + 2
        if not batched:
            x = x[None]
        s, d = _tup(a.stride, nd), _tup(a.dilation, nd)
        pads = transposed_pads(a.padding, w.shape[2:], s, d, nd, f"conv_transpose{nd}d")
        y = conv_transpose_nd(x, w, b, s, pads, d, _tup(a.output_padding, nd), a.groups)
        return [y if batched else y[0]]
    return kernel


# ---- PyTorch emitters ----------------------------------------------------------------------


def _torch_args(a, geo, nd) -> list[str]:
    """torch's keyword arguments, defaults left out; padding is the symmetric part of the
    per-side padding (the rest is cropped by _crop)."""
    out = []
    if geo.s != (1,) * nd:
        out.append(f"stride={fmt_value(a.stride)}")
    sym = tuple(min(p) for p in geo.pads)
    if any(sym):
        out.append(f"padding={fmt_value(sym[0] if len(set(sym)) == 1 else sym)}")
    if any(geo.op):
        out.append(f"output_padding={fmt_value(a.output_padding)}")
    if a.groups != 1:
        out.append(f"groups={a.groups}")
    return out


def _dilation_arg(a, geo, nd) -> list[str]:
    return [f"dilation={fmt_value(a.dilation)}"] if geo.d != (1,) * nd else []


def _crop(geo, expr: str) -> str:
    """`expr`, sliced where the padding is not the same on both sides of an axis: torch's
    ConvTranspose crops symmetrically, the slice crops the rest."""
    if all(lo == hi for lo, hi in geo.pads):
        return expr
    parts = []
    for lo, hi in geo.pads:
        extra_lo, extra_hi = lo - min(lo, hi), hi - min(lo, hi)
        parts.append(f"{extra_lo or ''}:{-extra_hi if extra_hi else ''}")
    return f"{expr}[..., {', '.join(parts)}]"


def _torch_module(nd):
    def module(a, ins):
        geo = _Geom(a, ins, nd)
        if geo.functional:
            return None
        k = a.kernel if isinstance(a.kernel, int) else tuple(a.kernel)
        args = [str(geo.in_ch), str(geo.out_ch), f"kernel_size={fmt_value(k)}"]
        args += _torch_args(a, geo, nd)
        if not a.bias:
            args.append("bias=False")
        args += _dilation_arg(a, geo, nd)
        return f"nn.ConvTranspose{nd}d({', '.join(args)})"
    return module


def _torch_call(nd):
    def call(a, args, ctx, ins):
        geo = _Geom(a, ins, nd)
        if len(args) == 1:
            return _crop(geo, f"{ctx.module}({args[0]})")
        bias = args[2] if len(args) == 3 else "None"
        parts = [args[0], args[1], bias] + _torch_args(a, geo, nd) + _dilation_arg(a, geo, nd)
        return _crop(geo, f"F.conv_transpose{nd}d({', '.join(parts)})")
    return call


def _fmt(v, nd: int) -> str:
    return "x".join(str(x) for x in _tup(v, nd))


def _label(nd):
    """Diagram label like the convs': "4x4, s2, p1, op1" (defaults left out)."""
    def label(a) -> str:
        parts = [] if a.kernel is None else [_fmt(a.kernel, nd)]
        if _tup(a.stride, nd) != (1,) * nd:
            parts.append("s" + _fmt(a.stride, 1 if isinstance(a.stride, int) else nd))
        if isinstance(a.padding, int | tuple) and padding_label(a.padding, nd):
            parts.append(padding_label(a.padding, nd))
        if _tup(a.output_padding, nd) != (0,) * nd:
            parts.append("op" + _fmt(a.output_padding,
                                     1 if isinstance(a.output_padding, int) else nd))
        if _tup(a.dilation, nd) != (1,) * nd:
            parts.append("d" + _fmt(a.dilation, 1 if isinstance(a.dilation, int) else nd))
        if a.groups != 1:
            parts.append(f"g{a.groups}")
        if not a.bias:
            parts.append("no bias")
        return ", ".join(parts)
    return label


def _op(nd: int, attrs, examples) -> Op:
    axes = SPATIAL_AXES[nd]
    return Op(
        name=f"conv_transpose{nd}d",
        family="conv",
        doc=(f"{nd}-D transposed convolution (torch.nn.ConvTranspose{nd}d) over [B, C, {axes}]: "
             f"`x -> conv_transpose{nd}d(out_channels, kernel, stride=1, padding=0, "
             "output_padding=0, groups=1, bias=true, dilation=1)`; out = (L-1)*S - 2P + "
             "D*(K-1) + output_padding + 1, output_padding < stride or < dilation. padding "
             f"crops the output: an int, one per axis, or {2 * nd} per side in F.pad's order "
             "(last axis first; the generated code slices what torch cannot crop). Weight "
             f"[in, out/groups, k...]. With a weight tensor input it is F.conv_transpose{nd}d. "
             "MACs = input elements x out/groups x kernel elements."),
        attrs=attrs,
        positional=("out_channels", "kernel"),
        min_inputs=1,
        max_inputs=3,
        shape=_shape(nd),
        params=_params(nd),
        macs=_macs(nd),
        numpy=_kernel(nd),
        vjp=conv_transpose_vjp(nd),
        torch_module=_torch_module(nd),
        torch_call=_torch_call(nd),
        label=_label(nd),
        module_prefix="conv",
        examples=examples,
    )


CONV_TRANSPOSE1D = _op(1, ConvTranspose1dAttrs, (
    Example({"out_channels": 4, "kernel": 3}, (tensor("f32", D.symbol("B"), 3, 7),)),
    Example({"out_channels": 4, "kernel": 4, "stride": 2, "padding": 1, "output_padding": 1},
            (tensor("f32", 2, 3, D.symbol("L")),)),
    Example({"out_channels": 6, "kernel": 3, "stride": 3, "dilation": 2, "groups": 3,
             "padding": 4, "output_padding": 2, "bias": False}, (tensor("f32", 2, 6, 5),)),
    Example({"out_channels": 2, "kernel": 3, "stride": 2, "padding": (0, 2)},
            (tensor("f32", 2, 3, 4),)),
    Example({"stride": 2}, (tensor("f32", 2, 3, 5), tensor("f32", 3, 2, 3), tensor("f32", 2))),
    Example({"out_channels": 3, "kernel": 2}, (tensor("f32", 2, 1),)),  # unbatched, size 1
))

CONV_TRANSPOSE2D = _op(2, ConvTranspose2dAttrs, (
    # DCGAN's generator: 4x4, stride 2, padding 1 doubles the size
    Example({"out_channels": 4, "kernel": 4, "stride": 2, "padding": 1, "bias": False},
            (tensor("f32", D.symbol("B"), 6, 4, 4),)),
    # DCGAN's first layer from the noise vector, and U-Net's 2x2 up-convolution
    Example({"out_channels": 5, "kernel": 4}, (tensor("f32", 2, 7, 1, 1),)),
    Example({"out_channels": 3, "kernel": 2, "stride": 2}, (tensor("f32", 2, 6, 3, 5),)),
    Example({"out_channels": 4, "kernel": (3, 2), "stride": (2, 3), "padding": (1, 0),
             "output_padding": (1, 2), "dilation": (1, 2)}, (tensor("f32", 2, 2, 4, 5),)),
    Example({"out_channels": 4, "kernel": 3, "groups": 4, "stride": 2, "padding": 1},
            (tensor("f32", 1, 4, 5, 5),)),  # depthwise
    Example({"out_channels": 6, "kernel": 3, "groups": 2, "dilation": 3, "output_padding": 2},
            (tensor("f32", 2, 4, 3, 4),)),  # output_padding < dilation, stride 1
    Example({"out_channels": 3, "kernel": 3, "stride": 2, "padding": (0, 1, 1, 0)},
            (tensor("f32", 2, 2, 4, D.symbol("W")),)),  # per side: cropped by a slice
    Example({"out_channels": 2, "kernel": 2, "stride": 3, "padding": 3},
            (tensor("f32", 1, 2, 4, 5),)),  # padding larger than the kernel
    Example({"padding": 1}, (tensor("f32", 1, 4, 3, 3), tensor("f32", 4, 2, 3, 3))),
))

CONV_TRANSPOSE3D = _op(3, ConvTranspose3dAttrs, (
    Example({"out_channels": 3, "kernel": 2, "stride": 2},
            (tensor("f32", D.symbol("B"), 2, 2, 3, 3),)),
    Example({"out_channels": 4, "kernel": (3, 2, 3), "stride": (1, 2, 2), "padding": (1, 0, 1),
             "output_padding": (0, 1, 1), "groups": 2}, (tensor("f32", 2, 4, 3, 3, 2),)),
    Example({"out_channels": 2, "kernel": 3, "stride": 2, "padding": (1, 0, 0, 1, 1, 1),
             "dilation": (1, 2, 1), "bias": False}, (tensor("f32", 1, 3, 2, 3, 2),)),
    Example({"stride": (2, 1, 1), "output_padding": (1, 0, 0)},
            (tensor("f32", 3, 2, 2, 2), tensor("f32", 3, 2, 2, 1, 2), tensor("f32", 2))),
))

CONV_TRANSPOSE_OPS: tuple = (CONV_TRANSPOSE1D, CONV_TRANSPOSE2D, CONV_TRANSPOSE3D)

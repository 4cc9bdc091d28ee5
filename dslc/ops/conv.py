"""Convolution ops (conv1d, conv2d): op records for the registry, used by elaboration (shape
rules), the interpreter (fast NumPy kernels) and the PyTorch back end (nn.Conv1d/nn.Conv2d).

The NumPy kernel works channels-last (NHWC) inside: the padded input (just the rows the
kernel's taps read, ops/window.py) is copied once into NHWC, the patches of a block of output
rows are gathered into a cache-sized buffer and multiplied with the weight in one BLAS matmul
per block. The result is returned as an NCHW *view* of the NHWC array, so the next conv's
transpose to NHWC is free, and NumPy's element-wise ops (relu, add, batch norm) keep the
layout. 1x1 convolutions skip the gather; depthwise convolutions are
shifted multiply-adds.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from dslc import dims as D
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
from dslc.ops.window import Reach, reach, window
from dslc.types import tensor


class Conv1dAttrs(Attrs):
    out_channels: int | None = None  # None: taken from a weight tensor input
    kernel: int | tuple[int] | None = None
    stride: int | tuple[int] = 1
    padding: int | tuple[int] | str = 0
    dilation: int | tuple[int] = 1
    groups: int = 1
    bias: bool = True


class Conv2dAttrs(Attrs):
    out_channels: int | None = None
    kernel: int | tuple[int, int] | None = None
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] | str = 0
    dilation: int | tuple[int, int] = 1
    groups: int = 1
    bias: bool = True


def _tup(v, n: int) -> tuple[int, ...]:
    return (v,) * n if isinstance(v, int) else tuple(v)


def _pads(padding, k, d, nd: int) -> tuple[tuple[int, int], ...]:
    """(before, after) zero padding per spatial axis."""
    if padding == "valid":
        return ((0, 0),) * nd
    if padding == "same":  # torch puts the odd extra pixel of an even kernel after the input
        tot = [dd * (kk - 1) for dd, kk in zip(d, k)]
        return tuple((t // 2, t - t // 2) for t in tot)
    return tuple((q, q) for q in _tup(padding, nd))


class _Geom:
    """The resolved numbers of one conv call: per spatial axis kernel, stride, dilation and
    (before, after) padding, and the channel counts."""

    def __init__(self, a, ins, nd: int):
        x = ins[0]
        need_float(x)
        if x.rank not in (nd + 1, nd + 2):
            raise ShapeError(f"conv{nd}d needs an input of rank {nd + 2} (batched) or {nd + 1}",
                             expected=f"[B, C, {', '.join('HW'[2 - nd:])}]",
                             found=f"{x} (rank {x.rank})", arg=0)
        self.batched = x.rank == nd + 2
        self.spatial = x.shape[-nd:]
        self.in_ch = concrete(x.shape[-nd - 1], f"conv{nd}d's input channels (axis 1)")
        self.functional = len(ins) >= 2
        if self.functional:
            w = ins[1]
            if w.rank != nd + 2:
                raise ShapeError(f"conv{nd}d weight must have rank {nd + 2}",
                                 expected="[out, in/groups, " + ", ".join("k" * nd) + "]",
                                 found=str(w), arg=1)
            wshape = tuple(concrete(d, f"conv{nd}d's weight shape") for d in w.shape)
            if a.out_channels is not None and a.out_channels != wshape[0]:
                raise ShapeError("out_channels differs from the weight's axis 0",
                                 expected=str(wshape[0]), found=str(a.out_channels),
                                 attr="out_channels")
            self.out_ch = wshape[0]
            self.k = wshape[2:]
            if a.kernel is not None and _tup(a.kernel, nd) != self.k:
                raise ShapeError("kernel differs from the weight's shape",
                                 expected=fmt_value(self.k), found=fmt_value(a.kernel),
                                 attr="kernel")
        else:
            if a.out_channels is None:
                raise ShapeError(f"conv{nd}d needs out_channels (or a weight tensor input)",
                                 expected="conv2d(out_channels, kernel)", found="none",
                                 attr="out_channels")
            if a.kernel is None:
                raise ShapeError(f"conv{nd}d needs a kernel size", expected="kernel=3",
                                 found="none", attr="kernel")
            self.out_ch = a.out_channels
            self.k = _tup(a.kernel, nd)
        for name, val, lo in (("kernel", self.k, 1), ("stride", _tup(a.stride, nd), 1),
                              ("dilation", _tup(a.dilation, nd), 1)):
            if len(val) != nd or min(val) < lo:
                raise ShapeError(f"{name} must be {nd} number(s) >= {lo}",
                                 expected=f"{nd} value(s) >= {lo}", found=fmt_value(val),
                                 attr=name)
        if self.out_ch < 1:
            raise ShapeError("out_channels must be positive", expected=">= 1",
                             found=str(self.out_ch), attr="out_channels")
        self.s = _tup(a.stride, nd)
        self.d = _tup(a.dilation, nd)
        g = a.groups
        if g < 1 or self.in_ch % g or self.out_ch % g:
            raise ShapeError("groups must divide both the input and the output channels",
                             expected=f"in_channels ({self.in_ch}) and out_channels "
                             f"({self.out_ch}) divisible by groups",
                             found=f"groups={g}", attr="groups")
        self.g = g
        if self.functional and ins[1].shape[1] != self.in_ch // g:
            raise ShapeError("weight axis 1 must be in_channels / groups",
                             expected=str(self.in_ch // g), found=str(ins[1]), arg=1)
        if len(ins) == 3:
            b = ins[2]
            if b.rank != 1 or D.equal(b.shape[0], D.const(self.out_ch)) is not True:
                raise ShapeError("conv bias must be [out_channels]",
                                 expected=f"[{self.out_ch}]", found=str(b), arg=2)
        p = a.padding
        if isinstance(p, str):
            if p not in ("same", "valid"):
                raise ShapeError("padding must be a number, a pair, 'same' or 'valid'",
                                 expected="'same' or 'valid'", found=repr(p), attr="padding")
            if p == "same" and self.s != (1,) * nd:
                raise ShapeError("padding='same' needs stride 1 (as in torch)",
                                 expected="stride=1", found=f"stride={fmt_value(a.stride)}",
                                 attr="padding")
        elif len(_tup(p, nd)) != nd or min(_tup(p, nd)) < 0:
            raise ShapeError("padding must be >= 0", expected=f"{nd} value(s) >= 0",
                             found=fmt_value(p), attr="padding")
        self.pads = _pads(p, self.k, self.d, nd)
        self.out_spatial = []
        for ax, (size, k, s, d, (lo, hi)) in enumerate(
                zip(self.spatial, self.k, self.s, self.d, self.pads)):
            span = d * (k - 1) + 1
            v = D.value(D.as_dim(size))
            if v is not None and v + lo + hi < span:
                raise ShapeError(f"kernel larger than the (padded) input on spatial axis {ax}",
                                 expected=f"padded size >= {span} (dilated kernel)",
                                 found=f"size {v} + padding {lo + hi} = {v + lo + hi}",
                                 attr="kernel", code="E0305")
            # the one formula; asymmetric 'same' padding enters as a wider input
            self.out_spatial.append(D.conv_out(size + (lo + hi - 2 * lo), k, s, lo, d))

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
        fan_in = geo.in_ch // geo.g * int(np.prod(geo.k))
        p = {"weight": ParamSpec((D.const(geo.out_ch), D.const(geo.in_ch // geo.g))
                                 + tuple(D.const(k) for k in geo.k), "uniform_fan_in", fan_in)}
        if a.bias:
            p["bias"] = ParamSpec((D.const(geo.out_ch),), "uniform_fan_in", fan_in)
        return p
    return params


def _macs(nd):
    def macs(a, ins, outs):
        geo = _Geom(a, ins, nd)
        return D.product(outs[0].shape) * (geo.in_ch // geo.g * int(np.prod(geo.k)))
    return macs


# ---- NumPy kernel --------------------------------------------------------------------------

# Elements of the patch buffer per matmul: big enough for BLAS to run at full speed, bounded
# so that memory stays small. Measured on ResNet-18 at batch 16: 16 MB blocks beat 4 MB by
# ~8% (median of 4 runs, 649-812 against 728-842 ms) once dslc/heap.py keeps the buffer's
# pages between calls (before, 4 MB won: a bigger fresh buffer cost its page faults); 1 MB
# and 32 MB are slower.
_BLOCK = 1 << 22


def _nhwc_window(x: np.ndarray, reaches: tuple[Reach, Reach]) -> np.ndarray:
    """x [N, C, H, W] -> the padded rows and columns the taps read (see ops/window.py) as
    [N, rows, cols, C] with C-contiguous rows: a view of x when it is NHWC already and no
    padding is read, else a zero-padded copy."""
    xh = x.transpose(0, 2, 3, 1)
    return window(xh, (1, 2), reaches, 0.0, lambda shape: np.empty(shape, x.dtype),
                  copy=not xh.flags.c_contiguous)


def _conv_group(xp, w, s, d, ho, wo):
    """One group: xp [N, Hp, Wp, Cg] (a C-strided view), w [Og, Cg, kh, kw] ->
    out [N, Ho, Wo, Og] C-contiguous."""
    n, _, _, cg = xp.shape
    og, _, kh, kw = w.shape
    (sh, sw), (dh, dw) = s, d
    dt = xp.dtype
    k = kh * kw * cg
    out = np.empty((n, ho, wo, og), dt)
    if kh == kw == 1:
        wt = w.reshape(og, cg).T  # a view: BLAS takes the transpose as a flag
        if xp.flags.c_contiguous and sh == sw == 1:
            return np.matmul(xp.reshape(-1, cg), wt, out=out.reshape(-1, og)).reshape(out.shape)
        cols = np.ascontiguousarray(xp[:, ::sh, ::sw, :][:, :ho, :wo])
        np.matmul(cols.reshape(-1, cg), wt, out=out.reshape(-1, og))
        return out
    st = xp.strides
    # Patch order: (kh, kw, C) gathers whole channel runs (fast) but needs the weight reordered
    # to match, a copy of the weight on every call; (C, kh, kw) uses the weight as it is but
    # gathers with a stride. Copy whichever is smaller: deep layers on small maps (ResNet's
    # 7x7x512 at batch 1) have more weight than patches.
    native = og > n * ho * wo
    if native:
        wt = w.reshape(og, k).T
        shape = (ho, wo, cg, kh, kw)
        strides = (st[1] * sh, st[2] * sw, st[3], st[1] * dh, st[2] * dw)
    else:
        wt = w.transpose(0, 2, 3, 1).reshape(og, k).T
        shape = (ho, wo, kh, kw, cg)
        strides = (st[1] * sh, st[2] * sw, st[1] * dh, st[2] * dw, st[3])
    per_image = ho * wo * k
    if per_image <= _BLOCK:  # several whole images per block
        imgs = max(1, _BLOCK // per_image)
        buf = np.empty((min(imgs, n),) + shape, dt)
        for n0 in range(0, n, imgs):
            m = min(imgs, n - n0)
            view = as_strided(xp[n0:], (m,) + shape, (st[0],) + strides, writeable=False)
            b = buf[:m]
            np.copyto(b, view)
            np.matmul(b.reshape(-1, k), wt, out=out[n0:n0 + m].reshape(-1, og))
        return out
    rows = max(1, _BLOCK // (wo * k))
    buf = np.empty((min(rows, ho),) + shape[1:], dt)
    for i in range(n):
        for h0 in range(0, ho, rows):
            r = min(rows, ho - h0)
            view = as_strided(xp[i, h0 * sh:], (r,) + shape[1:], strides, writeable=False)
            b = buf[:r]
            np.copyto(b, view)
            np.matmul(b.reshape(-1, k), wt, out=out[i, h0:h0 + r].reshape(-1, og))
    return out


def _depthwise(xp, w, s, d, ho, wo):
    """groups == in_channels: one small filter per channel, as kh*kw shifted multiply-adds
    (a matmul per channel would be a few thousand tiny BLAS calls)."""
    n, _, _, c = xp.shape
    o, _, kh, kw = w.shape
    m = o // c
    (sh, sw), (dh, dw) = s, d
    wr = w.reshape(c, m, kh, kw)
    acc = np.zeros((n, ho, wo, c, m), xp.dtype)
    for i in range(kh):
        for j in range(kw):
            win = xp[:, i * dh:i * dh + (ho - 1) * sh + 1:sh, j * dw:j * dw + (wo - 1) * sw + 1:sw]
            acc += win[..., None] * wr[:, :, i, j]
    return acc.reshape(n, ho, wo, o)


def conv2d_nchw(x, w, b, stride, pads, dilation, groups) -> np.ndarray:
    """The NumPy conv: x [N, C, H, W], w [O, C/g, kh, kw], b [O] or None -> [N, O, Ho, Wo]
    (an NCHW view of an NHWC array). `pads` = ((top, bottom), (left, right))."""
    dtype = x.dtype
    if dtype == np.float16:  # NumPy has no fast f16 matmul: compute in f32
        x, w = x.astype(np.float32), w.astype(np.float32)
        b = None if b is None else b.astype(np.float32)
    w = w.astype(x.dtype, copy=False)
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    ho = (h + sum(pads[0]) - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + sum(pads[1]) - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if ho < 1 or wo < 1:
        raise ShapeError("kernel larger than the (padded) input", code="E0305",
                         found=f"input {list(x.shape)}, kernel {[kh, kw]}")
    reaches = tuple(reach(size, kk, ss, dd, p[0], oo) for size, kk, ss, dd, p, oo in
                    zip((h, wd), (kh, kw), stride, dilation, pads, (ho, wo)))
    rh, rw = reaches
    if rh.empty or rw.empty:  # every tap reads padding only: the bias alone
        out = np.zeros((n, ho, wo, o), x.dtype)
    else:
        # The taps that reach the input (all of them but at absurd paddings) on the rows
        # they read: a valid convolution of the window.
        xp = _nhwc_window(x, reaches)
        w = w[:, :, rh.t0:rh.t1, rw.t0:rw.t1]
        if groups == 1:
            out = _conv_group(xp, w, stride, dilation, ho, wo)
        elif cg == 1 and c == groups:
            out = _depthwise(xp, w, stride, dilation, ho, wo)
        else:
            og = o // groups
            out = np.empty((n, ho, wo, o), x.dtype)
            for gi in range(groups):
                out[..., gi * og:(gi + 1) * og] = _conv_group(
                    xp[..., gi * cg:(gi + 1) * cg], w[gi * og:(gi + 1) * og], stride,
                    dilation, ho, wo)
    if b is not None:
        out += b.astype(out.dtype, copy=False)
    res = out.transpose(0, 3, 1, 2)
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
        # plain ints here: the shape rule already checked them (sympy would cost ~0.3 ms/call)
        s, d = _tup(a.stride, nd), _tup(a.dilation, nd)
        pads = _pads(a.padding, w.shape[2:], d, nd)
        if nd == 1:  # a 1-D conv is a 2-D conv over a height-1 image
            x, w = x[:, :, None, :], w[:, :, None, :]
            pads, s, d = ((0, 0),) + pads, (1,) + s, (1,) + d
        y = conv2d_nchw(x, w, b, s, pads, d, a.groups)
        if nd == 1:
            y = y[:, :, 0, :]
        return [y if batched else y[0]]
    return kernel


# ---- PyTorch emitters ----------------------------------------------------------------------


def _torch_args(a, geo, nd) -> list[str]:
    out = []
    if a.stride != 1 and _tup(a.stride, nd) != (1,) * nd:
        out.append(f"stride={fmt_value(a.stride)}")
    if isinstance(a.padding, str):
        out.append(f"padding={a.padding!r}")
    elif _tup(a.padding, nd) != (0,) * nd:
        out.append(f"padding={fmt_value(a.padding)}")
    if _tup(a.dilation, nd) != (1,) * nd:
        out.append(f"dilation={fmt_value(a.dilation)}")
    if a.groups != 1:
        out.append(f"groups={a.groups}")
    return out


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
        return f"nn.Conv{nd}d({', '.join(args)})"
    return module


def _torch_call(nd):
    def call(a, args, ctx, ins):
        if len(args) == 1:
            return f"{ctx.module}({args[0]})"
        geo = _Geom(a, ins, nd)
        bias = args[2] if len(args) == 3 else "None"
        return (f"F.conv{nd}d({', '.join([args[0], args[1], bias] + _torch_args(a, geo, nd))})")
    return call


def _fmt(v, nd: int) -> str:
    return "x".join(str(x) for x in _tup(v, nd))


def _label(nd):
    """Diagram label in the notes' words: "5x5, s2, p1" (defaults left out)."""
    def label(a) -> str:
        parts = [] if a.kernel is None else [_fmt(a.kernel, nd)]
        if _tup(a.stride, nd) != (1,) * nd:
            parts.append("s" + _fmt(a.stride, 1 if isinstance(a.stride, int) else nd))
        if isinstance(a.padding, str):
            parts.append(a.padding)
        elif _tup(a.padding, nd) != (0,) * nd:
            parts.append("p" + _fmt(a.padding, 1 if isinstance(a.padding, int) else nd))
        if _tup(a.dilation, nd) != (1,) * nd:
            parts.append("d" + _fmt(a.dilation, 1 if isinstance(a.dilation, int) else nd))
        if a.groups != 1:
            parts.append(f"g{a.groups}")
        if not a.bias:
            parts.append("no bias")
        return ", ".join(parts)
    return label


def _conv_op(nd: int, attrs, label, examples) -> Op:
    axes = "L" if nd == 1 else "H, W"
    return Op(
        name=f"conv{nd}d",
        family="conv",
        doc=(f"{nd}-D convolution (cross-correlation, torch.nn.Conv{nd}d) over [B, C, {axes}]: "
             f"`x -> conv{nd}d(out_channels, kernel, stride=1, padding=0, dilation=1, "
             "groups=1, bias=true)`; padding may be 'same' (stride 1) or 'valid'. "
             f"With a weight tensor input, `conv{nd}d(x, weight[, bias])` is F.conv{nd}d. "
             "MACs = output elements x in/groups x kernel elements."),
        attrs=attrs,
        positional=("out_channels", "kernel"),
        min_inputs=1,
        max_inputs=3,
        shape=_shape(nd),
        params=_params(nd),
        macs=_macs(nd),
        numpy=_kernel(nd),
        torch_module=_torch_module(nd),
        torch_call=_torch_call(nd),
        label=label,
        module_prefix="conv",
        examples=examples,
    )


CONV1D = _conv_op(1, Conv1dAttrs, _label(1), (
    Example({"out_channels": 4, "kernel": 3}, (tensor("f32", D.symbol("B"), 3, 10),)),
    Example({"out_channels": 6, "kernel": 5, "stride": 2, "padding": 2, "dilation": 2,
             "groups": 2}, (tensor("f32", 2, 4, 17),)),
    Example({"out_channels": 4, "kernel": 4, "padding": "same", "bias": False},
            (tensor("f32", 2, 3, 9),)),
    Example({}, (tensor("f32", 2, 3, 9), tensor("f32", 5, 3, 2))),
))

CONV2D = _conv_op(2, Conv2dAttrs, _label(2), (
    Example({"out_channels": 6, "kernel": 5}, (tensor("f32", D.symbol("B"), 3, 12, 12),)),
    Example({"out_channels": 8, "kernel": 3, "stride": 2, "padding": 1},
            (tensor("f32", 2, 4, 9, 11),)),
    Example({"out_channels": 4, "kernel": (3, 2), "padding": "same", "dilation": (2, 1)},
            (tensor("f32", 2, 3, 7, 8),)),
    Example({"out_channels": 6, "kernel": 3, "groups": 3, "bias": False},
            (tensor("f32", 2, 6, 6, 6),)),
    Example({"out_channels": 8, "kernel": 3, "groups": 4, "padding": 1},
            (tensor("f32", 1, 4, 5, 5),)),  # depthwise, channel multiplier 2
    Example({"out_channels": 5, "kernel": 1, "stride": 2}, (tensor("f32", 2, 3, 7, 7),)),
    Example({}, (tensor("f32", 1, 2, 6, 6), tensor("f32", 3, 2, 3, 3), tensor("f32", 3))),
))

CONV_OPS: tuple = (CONV1D, CONV2D)

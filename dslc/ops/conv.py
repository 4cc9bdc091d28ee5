"""Convolution ops (conv1d, conv2d, conv3d): op records for the registry, used by elaboration
(shape rules), the interpreter (fast NumPy kernels) and the PyTorch back end (nn.Conv*d).

The NumPy kernel works channels-last (NHWC) inside: the padded input (just the rows the
kernel's taps read, ops/window.py) is copied once into NHWC, the patches of a block of output
rows are gathered into a cache-sized buffer and multiplied with the weight in one BLAS matmul
per block. The result is returned as an NCHW *view* of the NHWC array, so the next conv's
transpose to NHWC is free, and NumPy's element-wise ops (relu, add, batch norm) keep the
layout. 1x1 convolutions skip the gather; depthwise convolutions are
shifted multiply-adds. A 3-D conv is one batched 2-D conv per depth tap. Padding forms are
resolved in ops/padding.py; padding modes other than zeros pad the input first, as torch does.
"""

from __future__ import annotations

from collections.abc import Callable

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
from dslc.ops.conv_grad import conv_vjp
from dslc.ops.padding import (
    check_padding_mode,
    fpad_order,
    pad_input,
    padding_label,
    resolve_padding,
    torch_padding,
)
from dslc.ops.scratch import Scratch, alloc
from dslc.ops.window import Reach, reach, window
from dslc.ops.workers import Workers, serial
from dslc.types import tensor

# What the interpreter fuses into a conv (dslc/interp.py): an in-place function on a
# channels-last block [..., C] of the conv's output (batch norm's eval form, relu6), applied
# after the bias while the block is in cache. `Finish` is the bias and the epilogue together.
Epilogue = Callable[[np.ndarray], None]
Finish = Callable[[np.ndarray], None]


class Conv1dAttrs(Attrs):
    out_channels: int | None = None  # None: taken from a weight tensor input
    kernel: int | tuple[int] | None = None
    stride: int | tuple[int] = 1
    padding: int | tuple[int, ...] | str = 0  # see ops/padding.py for the forms
    dilation: int | tuple[int] = 1
    groups: int = 1
    bias: bool = True
    padding_mode: str = "zeros"


class Conv2dAttrs(Attrs):
    out_channels: int | None = None
    kernel: int | tuple[int, int] | None = None
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, ...] | str = 0
    dilation: int | tuple[int, int] = 1
    groups: int = 1
    bias: bool = True
    padding_mode: str = "zeros"


class Conv3dAttrs(Attrs):
    out_channels: int | None = None
    kernel: int | tuple[int, int, int] | None = None
    stride: int | tuple[int, int, int] = 1
    padding: int | tuple[int, ...] | str = 0
    dilation: int | tuple[int, int, int] = 1
    groups: int = 1
    bias: bool = True
    padding_mode: str = "zeros"


SPATIAL_AXES = {1: "L", 2: "H, W", 3: "D, H, W"}


def _tup(v, n: int) -> tuple[int, ...]:
    return (v,) * n if isinstance(v, int) else tuple(v)


class _Geom:
    """The resolved numbers of one conv call: per spatial axis kernel, stride, dilation and
    (before, after) padding, and the channel counts."""

    def __init__(self, a, ins, nd: int):
        x = ins[0]
        need_float(x)
        name = f"conv{nd}d"
        if x.rank not in (nd + 1, nd + 2):
            raise ShapeError(f"{name} needs an input of rank {nd + 2} (batched) or {nd + 1}",
                             expected=f"[B, C, {SPATIAL_AXES[nd]}]",
                             found=f"{x} (rank {x.rank})", arg=0)
        self.batched = x.rank == nd + 2
        self.spatial = x.shape[-nd:]
        self.in_ch = concrete(x.shape[-nd - 1], f"{name}'s input channels (axis 1)")
        self.functional = len(ins) >= 2
        if self.functional:
            w = ins[1]
            if w.rank != nd + 2:
                raise ShapeError(f"{name} weight must have rank {nd + 2}",
                                 expected="[out, in/groups, " + ", ".join("k" * nd) + "]",
                                 found=str(w), arg=1)
            wshape = tuple(concrete(d, f"{name}'s weight shape") for d in w.shape)
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
                raise ShapeError(f"{name} needs out_channels (or a weight tensor input)",
                                 expected=f"{name}(out_channels, kernel)", found="none",
                                 attr="out_channels")
            if a.kernel is None:
                raise ShapeError(f"{name} needs a kernel size", expected="kernel=3",
                                 found="none", attr="kernel")
            self.out_ch = a.out_channels
            self.k = _tup(a.kernel, nd)
        for attr, val, lo in (("kernel", self.k, 1), ("stride", _tup(a.stride, nd), 1),
                              ("dilation", _tup(a.dilation, nd), 1)):
            if len(val) != nd or min(val) < lo:
                raise ShapeError(f"{attr} must be {nd} number(s) >= {lo}",
                                 expected=f"{nd} value(s) >= {lo}", found=fmt_value(val),
                                 attr=attr)
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
        self.pads = resolve_padding(a.padding, self.k, self.s, self.d, nd, name)
        check_padding_mode(a.padding_mode, self.pads, self.spatial, name)
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
            # the one formula; per-side padding enters as a wider input
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


def _nhwc_window(x: np.ndarray, reaches: tuple[Reach, Reach],
                 scratch: Scratch | None = None) -> np.ndarray:
    """x [N, C, H, W] -> the padded rows and columns the taps read (see ops/window.py) as
    [N, rows, cols, C] with C-contiguous rows: a view of x when it is NHWC already and no
    padding is read, else a zero-padded copy (on the run's scratch buffer when given)."""
    xh = x.transpose(0, 2, 3, 1)
    take = alloc(scratch, "conv.window")
    return window(xh, (1, 2), reaches, 0.0, lambda shape: take(shape, x.dtype),
                  copy=not xh.flags.c_contiguous)


def _conv_group(xp, w, s, d, ho, wo, scratch: Scratch | None = None,
                workers: Workers | None = None, finish: Finish | None = None):
    """One group: xp [N, Hp, Wp, Cg] (a C-strided view), w [Og, Cg, kh, kw] ->
    out [N, Ho, Wo, Og] C-contiguous. The patch block is taken from the run's scratch;
    `finish` (bias, epilogue) is applied to each matmul's output block while in cache (on
    `workers` for a 1x1 conv, where it costs about what the matmul does)."""
    n, _, _, cg = xp.shape
    og, _, kh, kw = w.shape
    (sh, sw), (dh, dw) = s, d
    dt = xp.dtype
    k = kh * kw * cg
    out = np.empty((n, ho, wo, og), dt)
    if kh == kw == 1:
        wt = w.reshape(og, cg).T  # a view: BLAS takes the transpose as a flag
        if xp.flags.c_contiguous and sh == sw == 1:
            np.matmul(xp.reshape(-1, cg), wt, out=out.reshape(-1, og))
        else:
            cols = alloc(scratch, "conv.patches")((n, ho, wo, cg), dt)
            np.copyto(cols, xp[:, ::sh, ::sw, :][:, :ho, :wo])
            np.matmul(cols.reshape(-1, cg), wt, out=out.reshape(-1, og))
        if finish is not None:
            _finish_rows(out, finish, workers)
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
        buf = alloc(scratch, "conv.patches")((min(imgs, n),) + shape, dt)
        for n0 in range(0, n, imgs):
            m = min(imgs, n - n0)
            view = as_strided(xp[n0:], (m,) + shape, (st[0],) + strides, writeable=False)
            b = buf[:m]
            np.copyto(b, view)
            np.matmul(b.reshape(-1, k), wt, out=out[n0:n0 + m].reshape(-1, og))
            if finish is not None:  # one thread: small beside a matmul of k = kh*kw*C
                _finish_rows(out[n0:n0 + m], finish, None)
        return out
    rows = max(1, _BLOCK // (wo * k))
    buf = alloc(scratch, "conv.patches")((min(rows, ho),) + shape[1:], dt)
    for i in range(n):
        for h0 in range(0, ho, rows):
            r = min(rows, ho - h0)
            view = as_strided(xp[i, h0 * sh:], (r,) + shape[1:], strides, writeable=False)
            b = buf[:r]
            np.copyto(b, view)
            np.matmul(b.reshape(-1, k), wt, out=out[i, h0:h0 + r].reshape(-1, og))
            if finish is not None:
                _finish_rows(out[i, h0:h0 + r][None], finish, None)
    return out


# Output elements of one block of the depthwise kernel: the block and the tap's product stay
# in L2 over the kh*kw passes (a whole MobileNetV2 layer at batch 16 is 25 MB and ran the nine
# passes from memory: 2-7x slower, measured on the 2-core VM).
_DW_BLOCK = 1 << 16


def _row_blocks(n: int, ho: int, rows: int, threads: int) -> list[tuple[int, int, int]]:
    """(image, first row, end row) blocks of at most `rows` output rows, made smaller where
    the images alone give fewer blocks than threads (batch 1: each thread takes a band)."""
    rows = max(1, min(rows, -(-n * ho // threads)))
    return [(img, h0, min(ho, h0 + rows)) for img in range(n) for h0 in range(0, ho, rows)]


def _depthwise(xp, w, s, d, ho, wo, workers: Workers | None = None,
               finish: Finish | None = None):
    """groups == in_channels: one small filter per channel, as kh*kw shifted multiply-adds
    (a matmul per channel would be a few thousand tiny BLAS calls), in blocks of output rows
    that stay in cache. Each tap's weight is tiled along the output row ([Wo, C]), so that
    NumPy's loop runs over a whole contiguous row instead of C elements at a time; a strided
    conv first splits the columns into `stride` phases, so every tap reads contiguous rows.
    The blocks are independent: `workers` runs them on several threads, and `finish` (bias,
    epilogue) is applied to each block while it is in cache.
    _depthwise_reference is the plain form this must equal."""
    n, _, _, c = xp.shape
    o, _, kh, kw = w.shape
    if o != c:  # a channel multiplier: rare, the plain form
        out = _depthwise_reference(xp, w, s, d, ho, wo)
        if finish is not None:
            finish(out)
        return out
    workers = workers or serial()
    (sh, sw), (dh, dw) = s, d
    dt = xp.dtype
    taps = np.empty((kh * kw, wo, c), dt)
    taps[...] = w.reshape(c, kh * kw).T[:, None, :]
    out = np.empty((n, ho, wo, c), dt)
    threads = workers.split(n * ho * wo * c * kh * kw)
    blocks = _row_blocks(n, ho, max(1, _DW_BLOCK // (wo * c)), threads)

    def run(part: list[tuple[int, int, int]]) -> None:
        tmp = np.empty((max(h1 - h0 for _, h0, h1 in part), wo, c), dt)  # this thread's
        for img, h0, h1 in part:
            acc = out[img, h0:h1]
            t = tmp[:h1 - h0]
            # the padded rows this block reads; for a strided conv, split into column phases
            # (phase p: columns p, p + sw, ...; tap j reads phase (j*dw) % sw from column
            # (j*dw) // sw), a copy that stays in cache
            lo, hi = h0 * sh, (h1 - 1) * sh + (kh - 1) * dh + 1
            band = xp[img, lo:hi]
            phases = [band] if sw == 1 else [np.ascontiguousarray(band[:, p::sw])
                                             for p in range(sw)]
            for i in range(kh):
                for j in range(kw):
                    ph, c0 = (j * dw) % sw, (j * dw) // sw
                    win = phases[ph][i * dh:i * dh + (h1 - h0 - 1) * sh + 1:sh, c0:c0 + wo]
                    if i == j == 0:
                        np.multiply(win, taps[0], out=acc)
                    else:
                        np.multiply(win, taps[i * kw + j], out=t)
                        acc += t
            if finish is not None:
                finish(acc)

    workers.run(run, blocks, threads)
    return out


# Elements of one block of an epilogue over a conv's result: its passes (batch norm's two,
# relu6's one) run on 2 MB of float32, which stays in cache, in few enough calls that NumPy's
# per-call cost stays small. Measured (one thread, batch norm + relu6): MobileNetV2's outputs
# at batch 16, 2^17-2^19 elements 14.0 ms, whole arrays 18.4; at batch 1 (a few MB each),
# 2^16 1.64 ms, 2^19 1.27 ms.
_FINISH_BLOCK = 1 << 19


def _finish_rows(out: np.ndarray, finish: Finish, workers: Workers | None) -> None:
    """finish(block) over out [N, Ho, Wo, C] in cache-sized blocks of rows, on the threads
    the size is worth."""
    workers = workers or serial()
    n, ho, wo, c = out.shape
    threads = workers.split(out.size)
    if threads == 1 and out.size <= _FINISH_BLOCK:
        finish(out)
        return
    blocks = _row_blocks(n, ho, max(1, _FINISH_BLOCK // (wo * c)), threads)

    def run(part: list[tuple[int, int, int]]) -> None:
        for img, h0, h1 in part:
            finish(out[img, h0:h1])

    workers.run(run, blocks, threads)


def _depthwise_reference(xp, w, s, d, ho, wo):
    """The plain depthwise conv (any channel multiplier): xp [N, Hp, Wp, C] (padded),
    w [C*m, 1, kh, kw] -> [N, Ho, Wo, C*m], one shifted multiply-add per tap."""
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


def conv2d_nchw(x, w, b, stride, pads, dilation, groups,
                scratch: Scratch | None = None, workers: Workers | None = None,
                epilogue: Epilogue | None = None) -> np.ndarray:
    """The NumPy conv: x [N, C, H, W], w [O, C/g, kh, kw], b [O] or None -> [N, O, Ho, Wo]
    (an NCHW view of an NHWC array). `pads` = ((top, bottom), (left, right)). Temporaries
    come from `scratch` (the run's) when given, independent blocks run on `workers`, and
    `epilogue` is applied in place to the result (channels-last blocks [..., O]): block by
    block while in cache where the kernel allows, else at the end."""
    dtype = x.dtype
    late = None  # an epilogue that must see the result in its own dtype
    if dtype == np.float16:  # NumPy has no fast f16 matmul: compute in f32
        x, w = x.astype(np.float32), w.astype(np.float32)
        b = None if b is None else b.astype(np.float32)
        late, epilogue = epilogue, None
    w = w.astype(x.dtype, copy=False)
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    ho = (h + sum(pads[0]) - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + sum(pads[1]) - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if ho < 1 or wo < 1:
        raise ShapeError("kernel larger than the (padded) input", code="E0305",
                         found=f"input {list(x.shape)}, kernel {[kh, kw]}")
    finish = _finisher(None if b is None else b.astype(x.dtype, copy=False), epilogue)
    reaches = tuple(reach(size, kk, ss, dd, p[0], oo) for size, kk, ss, dd, p, oo in
                    zip((h, wd), (kh, kw), stride, dilation, pads, (ho, wo)))
    rh, rw = reaches
    if rh.empty or rw.empty:  # every tap reads padding only: the bias alone
        out = np.zeros((n, ho, wo, o), x.dtype)
        if finish is not None:
            _finish_rows(out, finish, workers)
    else:
        # The taps that reach the input (all of them but at absurd paddings) on the rows
        # they read: a valid convolution of the window.
        xp = _nhwc_window(x, reaches, scratch)
        w = w[:, :, rh.t0:rh.t1, rw.t0:rw.t1]
        if groups == 1:
            out = _conv_group(xp, w, stride, dilation, ho, wo, scratch, workers, finish)
        elif cg == 1 and c == groups:
            out = _depthwise(xp, w, stride, dilation, ho, wo, workers, finish)
        else:
            og = o // groups
            out = np.empty((n, ho, wo, o), x.dtype)
            for gi in range(groups):
                out[..., gi * og:(gi + 1) * og] = _conv_group(
                    xp[..., gi * cg:(gi + 1) * cg], w[gi * og:(gi + 1) * og], stride,
                    dilation, ho, wo, scratch)
            if finish is not None:
                _finish_rows(out, finish, workers)
    if dtype == np.float16:
        out = out.astype(dtype)
        if late is not None:
            _finish_rows(out, late, workers)
    return out.transpose(0, 3, 1, 2)


def _finisher(bias: np.ndarray | None, epilogue: Epilogue | None) -> Finish | None:
    """The bias, then the epilogue, in place on a channels-last block [..., O]; None when
    there is neither."""
    if bias is None:
        return epilogue
    if epilogue is None:
        return lambda block: np.add(block, bias, out=block)

    def finish(block: np.ndarray) -> None:
        block += bias
        epilogue(block)
    return finish


def conv2d_reference(x, w, b, stride, pads, dilation, groups) -> np.ndarray:
    """The plain conv2d that conv2d_nchw (blocked patches, 1x1 matmuls, the tuned depthwise
    kernel) must equal: pad in full, then one multiply-add of a shifted, strided view per
    kernel tap and group, NCHW throughout. Slow; for tests."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    og = o // groups
    (sh, sw), (dh, dw) = stride, dilation
    xp = np.pad(x, ((0, 0), (0, 0)) + tuple(pads))
    ho = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    wo = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, o, ho, wo), np.result_type(x, w))
    for gi in range(groups):
        xs = xp[:, gi * cg:(gi + 1) * cg]
        ws = w[gi * og:(gi + 1) * og]
        for i in range(kh):
            for j in range(kw):
                win = xs[:, :, i * dh:i * dh + (ho - 1) * sh + 1:sh,
                         j * dw:j * dw + (wo - 1) * sw + 1:sw]
                out[:, gi * og:(gi + 1) * og] += np.einsum("nchw,oc->nohw", win, ws[:, :, i, j])
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out


def conv3d_ncdhw(x, w, b, stride, pads, dilation, groups,
                 scratch: Scratch | None = None, workers: Workers | None = None,
                 epilogue: Epilogue | None = None) -> np.ndarray:
    """x [N, C, D, H, W], w [O, C/g, kd, kh, kw] -> [N, O, Do, Ho, Wo]: one batched 2-D conv
    per depth tap (kd of them), the output depths folded into the batch, summed; then the
    bias and `epilogue` (as conv2d_nchw's)."""
    n, c, depth, h, wd = x.shape
    o, _, kd, kh, kw = w.shape
    (sd, *s2), (dd, *d2) = stride, dilation
    do = (depth + sum(pads[0]) - dd * (kd - 1) - 1) // sd + 1
    ho = (h + sum(pads[1]) - d2[0] * (kh - 1) - 1) // s2[0] + 1
    wo = (wd + sum(pads[2]) - d2[1] * (kw - 1) - 1) // s2[1] + 1
    if do < 1 or ho < 1 or wo < 1:
        raise ShapeError("kernel larger than the (padded) input", code="E0305",
                         found=f"input {list(x.shape)}, kernel {[kd, kh, kw]}")
    in_dtype = x.dtype
    if in_dtype == np.float16:  # summed over the depth taps in f32, rounded once at the end
        x, w = x.astype(np.float32), w.astype(np.float32)
        b = None if b is None else b.astype(np.float32)
    dtype = x.dtype
    r = reach(depth, kd, sd, dd, pads[0][0], do)
    acc = None  # [N * Do, Ho, Wo, O], channels last like conv2d_nchw's result
    if not r.empty:
        # channels last once, the depth rows the taps read (zero frame where they read padding)
        take = alloc(scratch, "conv3d.window")
        xd = window(x.transpose(0, 2, 3, 4, 1), (1,), (r,), 0.0,
                    lambda shape: take(shape, x.dtype), copy=True)
        for t in range(r.t0, r.t1):
            first = (t - r.t0) * dd  # buffer row of tap t's read for output depth 0
            rows = xd[:, first:first + (do - 1) * sd + 1:sd]  # [N, Do, H, W, C]
            y = conv2d_nchw(rows.reshape(n * do, h, wd, c).transpose(0, 3, 1, 2),
                            w[:, :, t], None, tuple(s2), pads[1:], tuple(d2), groups,
                            scratch, workers)
            y = y.transpose(0, 2, 3, 1)
            acc = y if acc is None else np.add(acc, y, out=acc)  # y is new memory
    if acc is None:  # every depth tap reads padding only: the bias alone
        acc = np.zeros((n * do, ho, wo, o), dtype)
    if b is not None:
        acc += b.astype(acc.dtype, copy=False)
    if acc.dtype != in_dtype:
        acc = acc.astype(in_dtype)
    if epilogue is not None:  # after the rounding: it sees the result in its own dtype
        _finish_rows(acc, epilogue, workers)
    return acc.reshape(n, do, ho, wo, o).transpose(0, 4, 1, 2, 3)


def conv_nd(x, w, b, stride, pads, dilation, groups,
            scratch: Scratch | None = None, workers: Workers | None = None,
            epilogue: Epilogue | None = None) -> np.ndarray:
    """The NumPy conv for 1, 2 or 3 spatial axes, batched input, zero padding `pads`;
    temporaries on `scratch` (the run's) and threads from `workers` when given; `epilogue`
    applied in place to the result (see conv2d_nchw)."""
    nd = x.ndim - 2
    if nd == 1:  # a 1-D conv is a 2-D conv over a height-1 image
        y = conv2d_nchw(x[:, :, None, :], w[:, :, None, :], b, (1,) + stride,
                        ((0, 0),) + pads, (1,) + dilation, groups, scratch, workers, epilogue)
        return y[:, :, 0, :]
    if nd == 2:
        return conv2d_nchw(x, w, b, stride, pads, dilation, groups, scratch, workers, epilogue)
    return conv3d_ncdhw(x, w, b, stride, pads, dilation, groups, scratch, workers, epilogue)


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
        pads = resolve_padding(a.padding, w.shape[2:], s, d, nd, f"conv{nd}d")
        if a.padding_mode != "zeros" and any(lo or hi for lo, hi in pads):
            x = pad_input(x, pads, a.padding_mode)
            pads = ((0, 0),) * nd
        y = conv_nd(x, w, b, s, pads, d, a.groups, ctx.scratch, ctx.workers, ctx.epilogue)
        return [y if batched else y[0]]
    return kernel


# ---- PyTorch emitters ----------------------------------------------------------------------


def _torch_args(a, geo, nd, module: bool) -> list[str]:
    """stride, padding, dilation, groups (and padding_mode for a module) as torch's keyword
    arguments, defaults left out. Padding that torch's conv cannot say (per side, or a mode
    on the functional form) is left to the F.pad that _pre_pad emits."""
    out = []
    if _tup(a.stride, nd) != (1,) * nd:
        out.append(f"stride={fmt_value(a.stride)}")
    tp = torch_padding(a.padding, geo.pads)
    fpad = tp.pre_pad is not None or (not module and a.padding_mode != "zeros")
    if tp.arg is not None and not fpad:
        out.append(f"padding={fmt_value(tp.arg)}")
    if _tup(a.dilation, nd) != (1,) * nd:
        out.append(f"dilation={fmt_value(a.dilation)}")
    if a.groups != 1:
        out.append(f"groups={a.groups}")
    if module and not fpad and a.padding_mode != "zeros" and tp.arg is not None:
        out.append(f"padding_mode={a.padding_mode!r}")
    return out


def _pre_pad(a, geo, x: str, module: bool) -> str:
    """`x`, or `F.pad(x, ...)` when torch's conv cannot pad as asked itself (per-side pads,
    as timm and torchvision write their "same" convs; or a padding_mode on F.convNd)."""
    tp = torch_padding(a.padding, geo.pads)
    if tp.pre_pad is None and (module or a.padding_mode == "zeros"):
        return x
    pad = fpad_order(geo.pads)
    if not any(pad):
        return x
    mode = "" if a.padding_mode == "zeros" else f", mode={a.padding_mode!r}"
    return f"F.pad({x}, {fmt_value(pad)}{mode})"


def _torch_module(nd):
    def module(a, ins):
        geo = _Geom(a, ins, nd)
        if geo.functional:
            return None
        k = a.kernel if isinstance(a.kernel, int) else tuple(a.kernel)
        args = [str(geo.in_ch), str(geo.out_ch), f"kernel_size={fmt_value(k)}"]
        args += _torch_args(a, geo, nd, module=True)
        if not a.bias:
            args.append("bias=False")
        return f"nn.Conv{nd}d({', '.join(args)})"
    return module


def _torch_call(nd):
    def call(a, args, ctx, ins):
        geo = _Geom(a, ins, nd)
        if len(args) == 1:
            return f"{ctx.module}({_pre_pad(a, geo, args[0], module=True)})"
        bias = args[2] if len(args) == 3 else "None"
        x = _pre_pad(a, geo, args[0], module=False)
        return f"F.conv{nd}d({', '.join([x, args[1], bias] + _torch_args(a, geo, nd, False))})"
    return call


def _fmt(v, nd: int) -> str:
    return "x".join(str(x) for x in _tup(v, nd))


def _label(nd):
    """Diagram label in the notes' words: "5x5, s2, p1" (defaults left out)."""
    def label(a) -> str:
        parts = [] if a.kernel is None else [_fmt(a.kernel, nd)]
        if _tup(a.stride, nd) != (1,) * nd:
            parts.append("s" + _fmt(a.stride, 1 if isinstance(a.stride, int) else nd))
        if padding_label(a.padding, nd):
            parts.append(padding_label(a.padding, nd))
        if a.padding_mode != "zeros":
            parts.append(a.padding_mode)
        if _tup(a.dilation, nd) != (1,) * nd:
            parts.append("d" + _fmt(a.dilation, 1 if isinstance(a.dilation, int) else nd))
        if a.groups != 1:
            parts.append(f"g{a.groups}")
        if not a.bias:
            parts.append("no bias")
        return ", ".join(parts)
    return label


def _conv_op(nd: int, attrs, examples) -> Op:
    axes = SPATIAL_AXES[nd]
    return Op(
        name=f"conv{nd}d",
        family="conv",
        doc=(f"{nd}-D convolution (cross-correlation, torch.nn.Conv{nd}d) over [B, C, {axes}]: "
             f"`x -> conv{nd}d(out_channels, kernel, stride=1, padding=0, dilation=1, "
             "groups=1, bias=true, padding_mode=\"zeros\")`. padding: an int, one per axis, "
             f"{2 * nd} per side in F.pad's order (last axis first), \"same\" (stride 1; an "
             "odd total puts the extra after, as torch) or \"valid\". padding_mode: zeros, "
             "reflect, replicate or circular (nn.Conv's). "
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
        vjp=conv_vjp(nd),
        torch_module=_torch_module(nd),
        torch_call=_torch_call(nd),
        result_overwritable=True,  # a new tensor; the backward reads input and weight
        label=_label(nd),
        module_prefix="conv",
        examples=examples,
        takes_epilogue=True,
        # A batch norm after it folds into its weight and bias at -O2 (1-d and 2-d only, as
        # the fold pass has always done).
        absorbs_norm=(lambda a, outs: True) if nd in (1, 2) else None,
        layout_sensitive=nd == 2,  # channels_last speeds up 2-d convolutions
    )


CONV1D = _conv_op(1, Conv1dAttrs, (
    Example({"out_channels": 4, "kernel": 3}, (tensor("f32", D.symbol("B"), 3, 10),)),
    Example({"out_channels": 6, "kernel": 5, "stride": 2, "padding": 2, "dilation": 2,
             "groups": 2}, (tensor("f32", 2, 4, 17),)),
    Example({"out_channels": 4, "kernel": 4, "padding": "same", "bias": False},
            (tensor("f32", 2, 3, 9),)),
    Example({}, (tensor("f32", 2, 3, 9), tensor("f32", 5, 3, 2))),
    # causal: all the padding on the left (WaveNet/TCN)
    Example({"out_channels": 4, "kernel": 3, "dilation": 2, "padding": (4, 0)},
            (tensor("f32", 2, 3, 9),)),
    Example({"out_channels": 4, "kernel": 3, "padding": 2, "padding_mode": "circular"},
            (tensor("f32", 2, 3, 5),)),
    Example({"out_channels": 4, "kernel": 4, "padding": "same", "padding_mode": "reflect"},
            (tensor("f32", 2, 3, 6),)),
    Example({"padding": (2, 1), "padding_mode": "replicate"},
            (tensor("f32", 2, 3, 6), tensor("f32", 4, 3, 3), tensor("f32", 4))),
))

CONV2D = _conv_op(2, Conv2dAttrs, (
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
    # TF-style "same" for a stride-2 conv: per side (left, right, top, bottom)
    Example({"out_channels": 4, "kernel": 3, "stride": 2, "padding": (0, 1, 0, 1)},
            (tensor("f32", 2, 3, 8, 7),)),
    Example({"out_channels": 4, "kernel": 3, "padding": 1, "padding_mode": "reflect"},
            (tensor("f32", 2, 3, D.symbol("H"), 6),)),
    Example({"out_channels": 6, "kernel": (2, 3), "padding": (1, 0, 2, 1), "groups": 3,
             "padding_mode": "replicate"}, (tensor("f32", 2, 3, 5, 4),)),
    Example({"out_channels": 4, "kernel": 4, "padding": "same", "padding_mode": "circular",
             "dilation": (1, 2)}, (tensor("f32", 1, 2, 6, 7),)),
    # padding larger than the kernel; size-1 axis
    Example({"out_channels": 3, "kernel": (1, 2), "padding": (3, 4)},
            (tensor("f32", 2, 2, 1, 3),)),
    Example({"padding": (1, 0, 0, 2), "stride": (1, 2)},
            (tensor("f32", 2, 2, 5, 6), tensor("f32", 3, 2, 2, 3))),
))

CONV3D = _conv_op(3, Conv3dAttrs, (
    Example({"out_channels": 4, "kernel": 3}, (tensor("f32", D.symbol("B"), 2, 5, 6, 6),)),
    # r3d_18's stem: 3x7x7, stride (1, 2, 2), padding (1, 3, 3), no bias
    Example({"out_channels": 4, "kernel": (3, 7, 7), "stride": (1, 2, 2),
             "padding": (1, 3, 3), "bias": False}, (tensor("f32", 2, 3, 4, 9, 9),)),
    Example({"out_channels": 6, "kernel": (2, 3, 1), "stride": (2, 1, 2), "dilation": (2, 1, 1),
             "groups": 3, "padding": 1}, (tensor("f32", 2, 3, 7, 5, 6),)),
    Example({"out_channels": 4, "kernel": 1, "stride": 2}, (tensor("f32", 1, 3, 5, 5, 5),)),
    Example({"out_channels": 6, "kernel": 3, "groups": 3, "padding": "same"},
            (tensor("f32", 1, 3, 4, 5, 6),)),  # depthwise x2
    Example({"out_channels": 4, "kernel": (2, 2, 3), "padding": "same",
             "padding_mode": "reflect"}, (tensor("f32", 1, 2, 4, 5, 4),)),
    Example({"out_channels": 3, "kernel": 2, "padding": (1, 0, 0, 1, 2, 0),
             "padding_mode": "circular"}, (tensor("f32", 1, 2, 3, 4, 5),)),
    Example({"out_channels": 3, "kernel": 2, "padding": (0, 1, 2, 0, 1, 1)},
            (tensor("f32", 1, 2, 1, 3, 4),)),
    Example({"padding": 1, "padding_mode": "replicate"},
            (tensor("f32", 1, 2, 3, 4, 5), tensor("f32", 4, 2, 2, 2, 3), tensor("f32", 4))),
    Example({"out_channels": 2, "kernel": 3, "padding": 5, "dilation": 4},
            (tensor("f32", 2, 3, 4, 5),)),  # unbatched, padding past the kernel
))

CONV_OPS: tuple = (CONV1D, CONV2D, CONV3D)

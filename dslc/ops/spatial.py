"""Spatial-transformer ops (affine_grid, grid_sample): op records for the registry, used by
elaboration (shape rules), the interpreter (vectorised NumPy kernels) and the PyTorch back end.

Both follow torch.nn.functional exactly, including `align_corners` either way: with
align_corners=true the extreme grid values -1 and 1 are the centres of the corner pixels, with
false they are the outer edges of the corner pixels.
"""

from __future__ import annotations

import numpy as np

from dslc import dims as D
from dslc.ops.base import Attrs, Example, Op, ShapeError, need_float, need_rank
from dslc.types import tensor


def _need_dim(t, axis: int, want: int, arg: int, what: str, form: str) -> None:
    if D.equal(t.shape[axis], D.const(want)) is not True:
        raise ShapeError(f"{what} must have size {want} on axis {axis}", expected=form,
                         found=str(t), arg=arg)


# ---- affine_grid -------------------------------------------------------------------------


class AffineGridAttrs(Attrs):
    out_h: int
    out_w: int
    align_corners: bool = False


def _ag_shape(a: AffineGridAttrs, ins):
    theta = ins[0]
    need_float(theta)
    need_rank(theta, (3,), what="affine_grid theta ([B, 2, 3])")
    _need_dim(theta, 1, 2, 0, "affine_grid theta", "[B, 2, 3]")
    _need_dim(theta, 2, 3, 0, "affine_grid theta", "[B, 2, 3]")
    for name in ("out_h", "out_w"):
        v = getattr(a, name)
        if v < 1:
            raise ShapeError(f"{name} must be positive", expected=">= 1", found=str(v),
                             attr=name)
    return [theta.with_shape((theta.shape[0], a.out_h, a.out_w, 2))]


def _linspace(n: int, align_corners: bool, dtype) -> np.ndarray:
    # torch's linspace_from_neg_one: a single step sits at 0; otherwise -1..1, shrunk by
    # (n-1)/n without align_corners so the points are pixel centres.
    if n <= 1:
        return np.zeros(1, dtype=dtype)
    r = np.linspace(-1.0, 1.0, n, dtype=dtype)
    if not align_corners:
        r = r * dtype.type((n - 1) / n)
    return r


def _ag_kernel(a: AffineGridAttrs, xs, ctx):
    theta = xs[0]
    wt = np.promote_types(theta.dtype, np.float32)
    xs_ = _linspace(a.out_w, a.align_corners, wt)
    ys_ = _linspace(a.out_h, a.align_corners, wt)
    base = np.empty((a.out_h, a.out_w, 3), dtype=wt)
    base[..., 0] = xs_[None, :]
    base[..., 1] = ys_[:, None]
    base[..., 2] = 1.0
    # grid[b, h, w, i] = Σ_j base[h, w, j] · theta[b, i, j]
    grid = np.einsum("hwj,bij->bhwi", base, theta.astype(wt, copy=False))
    return [grid.astype(theta.dtype)]


def _ag_vjp(a: AffineGridAttrs, ins, outs, gouts, ctx):
    """grid = base · thetaᵀ per batch: dtheta[b, i, j] = Σ_hw base[h, w, j] g[b, h, w, i]."""
    g = gouts[0]
    base = np.empty((a.out_h, a.out_w, 3), dtype=g.dtype)
    base[..., 0] = _linspace(a.out_w, a.align_corners, g.dtype)[None, :]
    base[..., 1] = _linspace(a.out_h, a.align_corners, g.dtype)[:, None]
    base[..., 2] = 1.0
    return [np.einsum("hwj,bhwi->bij", base, g)], {}


AFFINE_GRID = Op(
    name="affine_grid",
    family="spatial",
    doc="Sampling grid of a 2-D affine transform (torch.nn.functional.affine_grid): "
        "`grid = affine_grid(theta, out_h, out_w, align_corners=false)` with theta [B, 2, 3] "
        "gives grid [B, out_h, out_w, 2] of (x, y) in [-1, 1] coordinates, for grid_sample. "
        "The channel count torch asks for does not change the grid. MACs 0 (no weights).",
    attrs=AffineGridAttrs,
    positional=("out_h", "out_w"),
    shape=_ag_shape,
    numpy=_ag_kernel,
    vjp=_ag_vjp,
    torch_call=lambda a, args, ctx, ins: (
        f"F.affine_grid({args[0]}, [{args[0]}.shape[0], 1, {a.out_h}, {a.out_w}], "
        f"align_corners={a.align_corners!r})"),
    label=lambda a: f"{a.out_h}×{a.out_w}" + (", align corners" if a.align_corners else ""),
    examples=(
        Example({"out_h": 5, "out_w": 7}, (tensor("f32", 3, 2, 3),)),
        Example({"out_h": 4, "out_w": 3, "align_corners": True}, (tensor("f32", 2, 2, 3),)),
        Example({"out_h": 1, "out_w": 3}, (tensor("f32", 2, 2, 3),)),
    ),
)


# ---- grid_sample -------------------------------------------------------------------------


class GridSampleAttrs(Attrs):
    mode: str = "bilinear"
    padding_mode: str = "zeros"
    align_corners: bool = False


def _gs_shape(a: GridSampleAttrs, ins):
    x, grid = ins
    for name, allowed in (("mode", ("bilinear", "nearest")),
                          ("padding_mode", ("zeros", "border"))):
        v = getattr(a, name)
        if v not in allowed:
            raise ShapeError(f"grid_sample {name} must be one of {', '.join(allowed)}",
                             expected=" or ".join(repr(s) for s in allowed), found=repr(v),
                             attr=name)
    need_float(x, 0)
    need_float(grid, 1)
    need_rank(x, (4,), 0, "grid_sample input ([B, C, H, W])")
    need_rank(grid, (4,), 1, "grid_sample grid ([B, H_out, W_out, 2])")
    _need_dim(grid, 3, 2, 1, "grid_sample grid", "[B, H_out, W_out, 2]")
    if grid.dtype != x.dtype:
        raise ShapeError("grid_sample input and grid must have the same dtype",
                         expected=x.dtype, found=str(grid), arg=1, code="E0302")
    if D.equal(x.shape[0], grid.shape[0]) is False:
        raise ShapeError("grid_sample input and grid must have the same batch size",
                         expected=f"[{D.fmt(x.shape[0])}, H_out, W_out, 2]", found=str(grid),
                         arg=1)
    return [x.with_shape((x.shape[0], x.shape[1], grid.shape[1], grid.shape[2]))]


def _unnormalise(coord: np.ndarray, size: int, align_corners: bool) -> np.ndarray:
    if align_corners:
        return (coord + 1) / 2 * (size - 1)
    return ((coord + 1) * size - 1) / 2


def _gs_kernel(a: GridSampleAttrs, xs, ctx):
    x, grid = xs
    if x.shape[0] != grid.shape[0]:
        raise ShapeError("grid_sample input and grid must have the same batch size",
                         expected=str(x.shape[0]), found=str(grid.shape[0]))
    wt = np.promote_types(x.dtype, np.float32)
    b, _, h, w = x.shape
    # Channels last, so one fancy index gathers every channel of a pixel: [B, Ho, Wo, C].
    xt = np.ascontiguousarray(x.astype(wt, copy=False).transpose(0, 2, 3, 1))
    g = grid.astype(wt, copy=False)
    ix = _unnormalise(g[..., 0], w, a.align_corners)
    iy = _unnormalise(g[..., 1], h, a.align_corners)
    if a.padding_mode == "border":
        ix = np.clip(ix, 0, w - 1)
        iy = np.clip(iy, 0, h - 1)
    bi = np.arange(b)[:, None, None]

    def tap(yy, xx, weight):
        # Zeros padding: a tap outside the image contributes nothing.
        inside = (xx >= 0) & (xx < w) & (yy >= 0) & (yy < h)
        vals = xt[bi, np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]
        return np.where(inside[..., None], vals * weight[..., None], 0)

    if a.mode == "nearest":
        # torch rounds half to even (nearbyint), as np.rint does.
        ones = np.ones_like(ix)
        out = tap(np.rint(iy).astype(np.int64), np.rint(ix).astype(np.int64), ones)
    else:
        x0 = np.floor(ix)
        y0 = np.floor(iy)
        fx, fy = ix - x0, iy - y0
        x0 = x0.astype(np.int64)
        y0 = y0.astype(np.int64)
        out = (tap(y0, x0, (1 - fx) * (1 - fy)) + tap(y0, x0 + 1, fx * (1 - fy))
               + tap(y0 + 1, x0, (1 - fx) * fy) + tap(y0 + 1, x0 + 1, fx * fy))
    return [out.transpose(0, 3, 1, 2).astype(x.dtype)]


def _gs_vjp(a: GridSampleAttrs, ins, outs, gouts, ctx):
    """Each tap's cotangent goes back to its pixel (scatter-add) and, through the bilinear
    weights, to the sampling point; a border-clipped coordinate and nearest mode pass none
    to the grid, as torch. Memory: the taps' indices and weights, recomputed."""
    x, grid = ins
    g = gouts[0].transpose(0, 2, 3, 1)  # [B, Ho, Wo, C]
    b, c, h, w = x.shape
    xt = x.transpose(0, 2, 3, 1)
    gx = np.zeros((b, h, w, c), g.dtype)
    ix = _unnormalise(grid[..., 0], w, a.align_corners)
    iy = _unnormalise(grid[..., 1], h, a.align_corners)
    dix = (w - 1) / 2 if a.align_corners else w / 2  # d ix / d grid x
    diy = (h - 1) / 2 if a.align_corners else h / 2
    if a.padding_mode == "border":
        dix = dix * ((ix > 0) & (ix < w - 1))
        diy = diy * ((iy > 0) & (iy < h - 1))
        ix, iy = np.clip(ix, 0, w - 1), np.clip(iy, 0, h - 1)
    bi = np.broadcast_to(np.arange(b)[:, None, None], ix.shape)

    def tap(yy, xx, weight):
        """Adds the tap's cotangent into gx; returns <g, pixel value> per output point."""
        inside = (xx >= 0) & (xx < w) & (yy >= 0) & (yy < h)
        yc, xc = np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)
        np.add.at(gx, (bi[inside], yc[inside], xc[inside]),
                  (g * weight[..., None])[inside])
        return np.where(inside, (g * xt[bi, yc, xc]).sum(-1), 0.0)

    ggrid = np.zeros(grid.shape, g.dtype)
    if a.mode == "nearest":
        tap(np.rint(iy).astype(np.int64), np.rint(ix).astype(np.int64), np.ones_like(ix))
    else:
        x0, y0 = np.floor(ix), np.floor(iy)
        fx, fy = ix - x0, iy - y0
        x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
        v00 = tap(y0, x0, (1 - fx) * (1 - fy))
        v01 = tap(y0, x0 + 1, fx * (1 - fy))
        v10 = tap(y0 + 1, x0, (1 - fx) * fy)
        v11 = tap(y0 + 1, x0 + 1, fx * fy)
        ggrid[..., 0] = ((v01 - v00) * (1 - fy) + (v11 - v10) * fy) * dix
        ggrid[..., 1] = ((v10 - v00) * (1 - fx) + (v11 - v01) * fx) * diy
    return [gx.transpose(0, 3, 1, 2), ggrid], {}


def _gs_call(a: GridSampleAttrs, args, ctx, ins):
    return (f"F.grid_sample({args[0]}, {args[1]}, mode={a.mode!r}, "
            f"padding_mode={a.padding_mode!r}, align_corners={a.align_corners!r})")


GRID_SAMPLE = Op(
    name="grid_sample",
    family="spatial",
    doc="Samples x [B, C, H, W] at the (x, y) points of grid [B, H_out, W_out, 2] in [-1, 1] "
        "coordinates (torch.nn.functional.grid_sample): `grid_sample(x, grid, "
        "mode=\"bilinear\", padding_mode=\"zeros\", align_corners=false)` gives "
        "[B, C, H_out, W_out]. mode: bilinear or nearest; padding_mode: zeros or border. "
        "MACs 0 (no weights).",
    attrs=GridSampleAttrs,
    min_inputs=2,
    max_inputs=2,
    shape=_gs_shape,
    numpy=_gs_kernel,
    vjp=_gs_vjp,
    torch_call=_gs_call,
    label=lambda a: ", ".join(
        [s for s in (a.mode if a.mode != "bilinear" else "",
                     a.padding_mode if a.padding_mode != "zeros" else "",
                     "align corners" if a.align_corners else "") if s]),
    examples=(
        Example({}, (tensor("f32", 2, 3, 5, 6), tensor("f32", 2, 4, 7, 2))),
        Example({"align_corners": True}, (tensor("f32", 2, 3, 5, 6), tensor("f32", 2, 4, 7, 2))),
        Example({"mode": "nearest", "padding_mode": "border"},
                (tensor("f32", 1, 2, 4, 4), tensor("f32", 1, 3, 3, 2))),
    ),
)

SPATIAL_OPS = (AFFINE_GRID, GRID_SAMPLE)

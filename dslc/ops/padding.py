"""Padding attributes of window ops (conv, pool): the shape rules resolve `padding=` into
(before, after) pads per spatial axis here, and the PyTorch emitters ask here how torch can
say them (the op's own `padding=` argument, or an `F.pad` before the op).

Accepted forms of `padding` for an op with `nd` spatial axes (axis order D, H, W):
- an int p: p on both sides of every axis;
- a tuple of nd ints: symmetric per axis, in axis order (torch's `padding=(ph, pw)`);
- a tuple of 2*nd ints: per side in F.pad's order, last axis first:
  (left, right) for 1-D, (left, right, top, bottom) for 2-D, 6 numbers for 3-D;
- "valid": no padding; "same": the output has the input's size (stride 1 only, as in torch),
  total d*(k-1) per axis, the odd extra after the input (right/bottom), as torch does.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from dslc import dims as D
from dslc.ops.base import ShapeError, fmt_value

Pads = tuple[tuple[int, int], ...]
"""(before, after) per spatial axis, in axis order (D, H, W)."""

PADDING_STRINGS = ("same", "valid")


def _tup(v: int | tuple[int, ...], n: int) -> tuple[int, ...]:
    return (v,) * n if isinstance(v, int) else tuple(v)


def _forms(nd: int) -> str:
    return (f"an int, {nd} per-axis value(s), {2 * nd} per-side values in F.pad order "
            "(last axis first), 'same' or 'valid'")


def resolve_padding(padding: int | tuple[int, ...] | str, kernel: tuple[int, ...],
                    stride: tuple[int, ...], dilation: tuple[int, ...], nd: int,
                    op: str) -> Pads:
    """The (before, after) pads per spatial axis of a `padding` attribute. `kernel`, `stride`
    and `dilation` are per axis (already checked >= 1). Raises a ShapeError on the `padding`
    attribute: E0320 for a malformed value, E0321 for 'same' with a stride above 1. `op` is
    the op's name; messages leave it out (the elaborator and the interpreter prefix it)."""
    del op
    if isinstance(padding, str):
        if padding not in PADDING_STRINGS:
            raise ShapeError(f"unknown padding {padding!r}", expected=_forms(nd),
                             found=repr(padding), attr="padding", code="E0320")
        if padding == "valid":
            return ((0, 0),) * nd
        if any(s != 1 for s in stride):
            raise ShapeError("padding='same' needs stride 1 (torch refuses it too: "
                             "with a stride the output cannot keep the input's size)",
                             expected="stride=1", found=f"stride={fmt_value(stride)}",
                             attr="padding", code="E0321")
        # torch (ConvNd's _reversed_padding_repeated_twice) puts the odd extra pad after
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple((t // 2, t - t // 2) for t in totals)
    values = _tup(padding, nd)
    if len(values) not in (nd, 2 * nd) or min(values) < 0:
        raise ShapeError("padding must be >= 0, given per axis or per side",
                         expected=_forms(nd) + ", all >= 0", found=fmt_value(padding),
                         attr="padding", code="E0320")
    if len(values) == nd:
        return tuple((p, p) for p in values)
    # F.pad order: the last axis's (before, after) first
    return tuple((values[2 * i], values[2 * i + 1]) for i in reversed(range(nd)))


def is_symmetric(pads: Pads) -> bool:
    return all(lo == hi for lo, hi in pads)


def fpad_order(pads: Pads) -> tuple[int, ...]:
    """The pads as F.pad's `pad` argument: last axis first, (before, after) each."""
    return tuple(p for lo_hi in reversed(pads) for p in lo_hi)


class TorchPadding(NamedTuple):
    """How the torch code says a padding: `arg` for the op's own `padding=` (None: leave it
    out, the default 0), and `pre_pad` for an `F.pad(x, pre_pad)` before the op (None: not
    needed). The op pads with its own rule (zeros for conv, -inf for max pool); an `F.pad`
    pads with zeros unless the emitter gives it a mode or a value."""
    arg: int | tuple[int, ...] | str | None
    pre_pad: tuple[int, ...] | None


def torch_padding(padding: int | tuple[int, ...] | str, pads: Pads,
                  accepts_strings: bool = True) -> TorchPadding:
    """The torch form of `padding` (resolved to `pads`). nn.Conv*d accepts 'same'/'valid'
    (`accepts_strings`); pools do not. Per-side pads that are not symmetric go to F.pad
    whole, as timm's and torchvision's "same" convs do."""
    if isinstance(padding, str) and accepts_strings:
        return TorchPadding(padding, None)
    if not is_symmetric(pads):
        return TorchPadding(None, fpad_order(pads))
    per_axis = tuple(lo for lo, _ in pads)
    if all(p == 0 for p in per_axis):
        return TorchPadding(None, None)
    if all(p == per_axis[0] for p in per_axis):
        return TorchPadding(per_axis[0], None)
    return TorchPadding(per_axis, None)


def padding_label(padding: int | tuple[int, ...] | str, nd: int) -> str:
    """Diagram text of a padding attribute: "p1", "p1x2", "p(0,1,1,0)", "same" ("" for 0)."""
    if isinstance(padding, str):
        return padding
    values = _tup(padding, nd)
    if all(v == 0 for v in values):
        return ""
    if len(values) == 2 * nd:
        return "p(" + ",".join(str(v) for v in values) + ")"
    if all(v == values[0] for v in values):
        return f"p{values[0]}"
    return "p" + "x".join(str(v) for v in values)


# ---- padding modes and transposed-conv crops (shared by the ops and their vjps) ----

# torch's padding_mode -> np.pad's mode
PADDING_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge",
                 "circular": "wrap"}


def check_padding_mode(mode: str, pads: Pads, spatial, op: str) -> None:
    """torch's rules for padding_mode: a known mode (E0322); reflect pads less than the
    axis, circular at most the axis (F.pad refuses more: it would wrap twice) (E0323).
    Symbolic sizes are checked when the kernel runs."""
    if mode not in PADDING_MODES:
        raise ShapeError(f"unknown padding_mode {mode!r}",
                         expected="'zeros', 'reflect', 'replicate' or 'circular'",
                         found=repr(mode), attr="padding_mode", code="E0322")
    if mode not in ("reflect", "circular"):
        return
    for ax, (size, (lo, hi)) in enumerate(zip(spatial, pads)):
        v = size if isinstance(size, int) else D.value(D.as_dim(size))
        if v is None:
            continue
        too_big = max(lo, hi) >= v if mode == "reflect" else max(lo, hi) > v
        if too_big:
            limit = f"< {v}" if mode == "reflect" else f"<= {v}"
            rule = "smaller than" if mode == "reflect" else "at most"
            raise ShapeError(f"{mode} padding must be {rule} the input on spatial axis "
                             f"{ax} (as in torch)",
                             expected=f"padding {limit}", found=f"padding {max(lo, hi)}, "
                             f"size {v}", attr="padding", code="E0323")


def pad_input(x: np.ndarray, pads: Pads, mode: str) -> np.ndarray:
    """x [N, C, *spatial] padded as F.pad(x, pads, mode) (reflect, replicate, circular), for
    a conv whose padding_mode is not zeros (torch pads first too). Sizes the shape rule could
    not check (symbolic) are checked here (E0323's rule; E0507 at run time)."""
    check_padding_mode(mode, pads, x.shape[2:], "conv")
    return np.pad(x, ((0, 0), (0, 0)) + tuple(pads), mode=PADDING_MODES[mode])


def transposed_pads(padding, k, s, d, nd: int, name: str) -> Pads:
    """(before, after) crop per axis. torch takes numbers only: 'same'/'valid' are E0325."""
    if isinstance(padding, str):
        raise ShapeError("padding must be numbers (torch's ConvTranspose has no "
                         "'same' or 'valid')", expected="an int, one per axis or two per axis",
                         found=repr(padding), attr="padding", code="E0325")
    return resolve_padding(padding, k, s, d, nd, name)


def tap_slices(t: int, size: int, s: int, d: int, lo: int, out: int) -> tuple[slice, slice] | None:
    """Along one axis, tap t sends input l to output t*d + l*s - lo (after cropping lo).
    Returns (inputs, outputs) slices of the inputs that land inside [0, out), None if none."""
    off = t * d - lo
    l0 = max(0, -(off // s))  # ceil(-off / s): the first l with off + l*s >= 0
    l1 = min(size, (out - 1 - off) // s + 1)  # floor division: <= 0 when none lands
    if l1 <= l0:
        return None
    first = off + l0 * s
    return slice(l0, l1), slice(first, first + (l1 - l0 - 1) * s + 1, s)

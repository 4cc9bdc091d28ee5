"""ONNX lowerings of the convolutions: conv1d/2d/3d with every padding form (per side,
"same"/"valid", padding_mode by Pad or Slice+Concat) and conv_transpose1d/2d/3d."""

from __future__ import annotations

from collections.abc import Callable

from dslc.backends.onnx_builder import Lower
from dslc.ops.padding import Pads, resolve_padding, transposed_pads
from dslc.ops.pool import per_axis

# torch's padding_mode -> ONNX Pad's mode ("wrap" from opset 19).
PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge",
             "circular": "wrap"}


def batched(lw: Lower, nd: int, x: str, make: Callable[[str], str]) -> str:
    """Run `make` on a batched input: an unbatched [C, ...] input gets a batch axis of 1."""
    if lw.in_types[0].rank == nd + 2:
        return make(x)
    return lw.squeeze(make(lw.unsqueeze(x, [0])), [0])


def onnx_pads(pads: Pads) -> list[int]:
    """(before, after) per spatial axis -> ONNX's [x1_begin, x2_begin, ..., x1_end, ...]."""
    return [lo for lo, _ in pads] + [hi for _, hi in pads]


def circular_pad(lw: Lower, x: str, pairs) -> str:
    """Circular padding before opset 19 (no Pad "wrap"): for each (axis, lo, hi) of `pairs`,
    the last `lo` and the first `hi` positions Sliced and Concat-ed around x (torch's rule:
    pads at most the axis size, so one copy each side is enough)."""
    big = 2 ** 62
    for ax, lo, hi in pairs:
        parts = []
        if lo:
            parts.append(lw.op("Slice", [x, lw.ints([-lo]), lw.ints([big]), lw.ints([ax])]))
        parts.append(x)
        if hi:
            parts.append(lw.op("Slice", [x, lw.ints([0]), lw.ints([hi]), lw.ints([ax])]))
        if len(parts) > 1:
            x = lw.op("Concat", parts, axis=ax)
    return x


def pad_input(lw: Lower, x: str, pads: Pads, mode: str) -> str:
    """x [N, C, *spatial] padded as F.pad(x, pads, mode): ONNX Pad (reflect, edge, wrap from
    opset 19; circular below 19 by Slice + Concat)."""
    if not any(lo or hi for lo, hi in pads):
        return x
    if mode == "circular" and lw.opset < 19:
        return circular_pad(lw, x, [(ax, lo, hi) for ax, (lo, hi) in enumerate(pads, start=2)])
    full = [(0, 0), (0, 0)] + list(pads)
    return lw.op("Pad", [x, lw.ints(onnx_pads(tuple(full)))], mode=PAD_MODES[mode])


def _weights(lw: Lower, ins: list[str]) -> tuple[str, str | None, list[int]]:
    """The weight, the bias (or None) and the kernel size: tensor inputs or parameters."""
    if len(ins) >= 2:
        return ins[1], (ins[2] if len(ins) == 3 else None), \
            [int(d) for d in lw.in_types[1].shape[2:]]
    w = lw.param("weight")
    b = lw.param("bias") if lw.has_param("bias") else None
    return w, b, [int(d) for d in lw.node.params["weight"].shape[2:]]


def _conv(nd: int):
    def lower(lw: Lower, node, ins):
        """Conv with its pads per side; padding_mode other than zeros pads first (as torch
        does), then a Conv without pads."""
        a = lw.attrs
        w, b, k = _weights(lw, ins)
        s, d = per_axis(a.stride, nd), per_axis(a.dilation, nd)
        pads = resolve_padding(a.padding, tuple(k), s, d, nd, node.op)
        mode = a.padding_mode

        def make(x: str) -> str:
            conv_pads = pads
            if mode != "zeros":
                x = pad_input(lw, x, pads, mode)
                conv_pads = ((0, 0),) * nd
            return lw.op("Conv", [x, w] + ([b] if b else []), kernel_shape=k, strides=list(s),
                         pads=onnx_pads(conv_pads), dilations=list(d), group=a.groups)
        return [batched(lw, nd, ins[0], make)]
    return lower


def _conv_transpose(nd: int):
    def lower(lw: Lower, node, ins):
        """ConvTranspose: the crop per side as pads, weights [in, out/g, *k] in both.
        output_padding first shortens the end crop (the same numbers: the taps reach there);
        what is left lies past every tap, where torch has the bias alone. onnxruntime refuses
        an output_padding not below the stride (torch allows one below the dilation), so then
        the leftover is a zero Pad at the far end before the bias is added."""
        a = lw.attrs
        w, b, k = _weights(lw, ins)
        s, d = per_axis(a.stride, nd), per_axis(a.dilation, nd)
        crop = transposed_pads(a.padding, tuple(k), s, d, nd, node.op)
        pads, extra = [], []
        for (lo, hi), op in zip(crop, per_axis(a.output_padding, nd)):
            cut = min(hi, op)
            pads.append((lo, hi - cut))
            extra.append(op - cut)
        native = all(e < st for e, st in zip(extra, s))

        def make(x: str) -> str:
            y = lw.op("ConvTranspose", [x, w] + ([b] if b and native else []), kernel_shape=k,
                      strides=list(s), pads=onnx_pads(tuple(pads)), dilations=list(d),
                      group=a.groups, output_padding=extra if native else None)
            if native:
                return y
            ends = [0, 0] + extra
            y = lw.op("Pad", [y, lw.ints([0] * (nd + 2) + ends)], mode="constant")
            if b:
                y = lw.op("Add", [y, lw.reshape(b, [-1] + [1] * nd)])
            return y
        return [batched(lw, nd, ins[0], make)]
    return lower


LOWERINGS = {
    "conv1d": _conv(1),
    "conv2d": _conv(2),
    "conv3d": _conv(3),
    "conv_transpose1d": _conv_transpose(1),
    "conv_transpose2d": _conv_transpose(2),
    "conv_transpose3d": _conv_transpose(3),
}

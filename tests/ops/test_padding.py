"""Tests of dslc/ops/padding.py: padding attributes resolved to per-axis pads, checked against
what torch does with the same attribute (F.pad, padding='same'), and the torch form."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from dslc.ops.base import ShapeError
from dslc.ops.padding import fpad_order, padding_label, resolve_padding, torch_padding

pytestmark = pytest.mark.filterwarnings("ignore:Using padding=.same.")


def _pad_like_torch(x: torch.Tensor, pads) -> torch.Tensor:
    return F.pad(x, fpad_order(pads))


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_same_padding_equals_torch_same_conv(nd):
    """F.pad with the resolved pads then a valid conv == torch's conv with padding='same',
    for odd and even kernels and dilations (the odd extra after the input)."""
    conv = (F.conv1d, F.conv2d, F.conv3d)[nd - 1]
    g = torch.Generator().manual_seed(nd)
    n = 0
    for k, d in itertools.product((1, 2, 3, 4), (1, 2, 3)):
        kernel = tuple(k + i % 2 for i in range(nd))  # non-square
        dil = tuple(d + (i == 0) for i in range(nd))
        x = torch.randn((1, 2) + (7,) * nd, generator=g, dtype=torch.float64)
        w = torch.randn((3, 2) + kernel, generator=g, dtype=torch.float64)
        pads = resolve_padding("same", kernel, (1,) * nd, dil, nd, "conv")
        want = conv(x, w, padding="same", dilation=dil)
        got = conv(_pad_like_torch(x, pads), w, dilation=dil)
        torch.testing.assert_close(got, want)
        n += 1
    assert n == 12


def test_per_side_padding_is_in_fpad_order():
    x = torch.arange(2 * 3 * 4, dtype=torch.float64).reshape(1, 2, 3, 4)
    per_side = (1, 2, 0, 3)  # left 1, right 2, top 0, bottom 3
    pads = resolve_padding(per_side, (1, 1), (1, 1), (1, 1), 2, "conv2d")
    assert pads == ((0, 3), (1, 2))
    torch.testing.assert_close(_pad_like_torch(x, pads), F.pad(x, per_side))
    assert fpad_order(pads) == per_side
    pads3 = resolve_padding((1, 2, 3, 4, 5, 6), (1,) * 3, (1,) * 3, (1,) * 3, 3, "conv3d")
    assert pads3 == ((5, 6), (3, 4), (1, 2))
    assert resolve_padding((1, 2), (3,), (1,), (1,), 1, "conv1d") == ((1, 2),)


def test_int_per_axis_and_valid():
    assert resolve_padding(2, (3, 3), (2, 2), (1, 1), 2, "c") == ((2, 2), (2, 2))
    assert resolve_padding((1, 4), (3, 3), (2, 2), (1, 1), 2, "c") == ((1, 1), (4, 4))
    assert resolve_padding("valid", (3, 3), (2, 2), (1, 1), 2, "c") == ((0, 0), (0, 0))
    assert resolve_padding((3,), (5,), (1,), (1,), 1, "c") == ((3, 3),)


@pytest.mark.parametrize("padding, code", [
    ("full", "E0320"), ((1, 2, 3), "E0320"), ((-1, 0), "E0320"), (-2, "E0320"),
    ((1, 1, 1, 1, 1), "E0320")])
def test_bad_padding_is_located(padding, code):
    with pytest.raises(ShapeError) as e:
        resolve_padding(padding, (3, 3), (1, 1), (1, 1), 2, "conv2d")
    assert e.value.code == code and e.value.attr == "padding"


def test_same_with_stride_is_refused_like_torch():
    with pytest.raises(ShapeError) as e:
        resolve_padding("same", (3, 3), (1, 2), (1, 1), 2, "conv2d")
    assert e.value.code == "E0321" and e.value.attr == "padding"
    with pytest.raises(ValueError):  # torch refuses it too
        torch.nn.Conv2d(1, 1, 3, stride=(1, 2), padding="same")


def test_torch_padding_forms():
    assert torch_padding("same", ((1, 2),)) == ("same", None)
    assert torch_padding("same", ((1, 2), (1, 1)), accepts_strings=False) == (None, (1, 1, 1, 2))
    assert torch_padding("valid", ((0, 0),), accepts_strings=False) == (None, None)
    assert torch_padding(0, ((0, 0), (0, 0))) == (None, None)
    assert torch_padding((2, 2, 2, 2), ((2, 2), (2, 2))) == (2, None)
    assert torch_padding((1, 3), ((1, 1), (3, 3))) == ((1, 3), None)
    assert torch_padding((0, 0, 1, 1), ((1, 1), (0, 0))) == ((1, 0), None)
    assert torch_padding((0, 1, 0, 1), ((0, 1), (0, 1))) == (None, (0, 1, 0, 1))


def test_padding_label():
    assert padding_label(0, 2) == ""
    assert padding_label(1, 2) == "p1"
    assert padding_label((1, 2), 2) == "p1x2"
    assert padding_label((0, 1, 1, 0), 2) == "p(0,1,1,0)"
    assert padding_label("same", 3) == "same"

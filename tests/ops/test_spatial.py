"""Tests of dslc/ops/spatial.py: affine_grid and grid_sample against torch.nn.functional."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dslc
from dslc.diagnostics import DslcError
from tests.helpers import assert_close, compare_numpy_torch


def load(body: str):
    return dslc.load("t.dl", text="model t {\n" + body + "\n}\n")


def diag(body: str):
    with pytest.raises(DslcError) as exc:
        load(body)
    return exc.value.diagnostics[0]


def _b(v: bool) -> str:
    return "true" if v else "false"


# torch warns that a unit-size grid with align_corners=True is not an intended use; its result
# (the single point at 0) is still what we match.
@pytest.mark.filterwarnings("ignore:Since version 1.3.0, affine_grid")
@pytest.mark.parametrize("align", [False, True])
@pytest.mark.parametrize("h,w", [(5, 7), (1, 4), (3, 1), (2, 2)])
def test_affine_grid_matches_torch(align, h, w):
    prog = load(f"input theta: f32[B, 2, 3]\n"
                f"output grid = theta -> affine_grid({h}, {w}, align_corners={_b(align)})")
    theta = np.random.default_rng(0).standard_normal((3, 2, 3)).astype(np.float32)
    grid = prog.run({"theta": theta}, {})["grid"]
    assert grid.shape == (3, h, w, 2) and grid.dtype == np.float32
    ref = F.affine_grid(torch.from_numpy(theta), [3, 5, h, w], align_corners=align).numpy()
    assert_close(grid, ref)
    compare_numpy_torch(prog, bind={"B": 2})


@pytest.mark.parametrize("align", [False, True])
@pytest.mark.parametrize("mode,padding", [("bilinear", "zeros"), ("nearest", "zeros"),
                                          ("bilinear", "border"), ("nearest", "border")])
def test_grid_sample_matches_torch(align, mode, padding):
    prog = load(f"input x: f32[B, 3, 6, 5]\ninput grid: f32[B, 4, 7, 2]\n"
                f"output y = grid_sample(x, grid, mode=\"{mode}\", padding_mode=\"{padding}\", "
                f"align_corners={_b(align)})")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    # Points up to 1.4 outside [-1, 1], so zeros padding and border clamping both matter.
    grid = rng.uniform(-1.4, 1.4, (2, 4, 7, 2)).astype(np.float32)
    y = prog.run({"x": x, "grid": grid}, {})["y"]
    assert y.shape == (2, 3, 4, 7)
    ref = F.grid_sample(torch.from_numpy(x), torch.from_numpy(grid), mode=mode,
                        padding_mode=padding, align_corners=align).numpy()
    assert_close(y, ref)
    compare_numpy_torch(prog, bind={"B": 2})


def test_grid_sample_far_outside_is_zero():
    prog = load("input x: f32[1, 2, 3, 3]\ninput grid: f32[1, 1, 2, 2]\n"
                "output y = grid_sample(x, grid)")
    x = np.ones((1, 2, 3, 3), np.float32)
    grid = np.full((1, 1, 2, 2), 5.0, np.float32)
    np.testing.assert_array_equal(prog.run({"x": x, "grid": grid}, {})["y"], 0)


@pytest.mark.parametrize("align", [False, True])
def test_identity_theta_returns_the_input(align):
    prog = load(f"input x: f32[B, 3, 6, 8]\ninput theta: f32[B, 2, 3]\n"
                f"grid = affine_grid(theta, 6, 8, align_corners={_b(align)})\n"
                f"output y = grid_sample(x, grid, align_corners={_b(align)})")
    x = np.random.default_rng(2).standard_normal((2, 3, 6, 8)).astype(np.float32)
    theta = np.tile(np.array([[1, 0, 0], [0, 1, 0]], np.float32), (2, 1, 1))
    y = prog.run({"x": x, "theta": theta}, {})["y"]
    assert_close(y, x, rtol=1e-5, atol=1e-5)
    compare_numpy_torch(prog, bind={"B": 3})


def test_translation_by_one_pixel():
    # align_corners=true: one pixel is 2 / (W - 1) in grid units; x-shift reads the next column.
    prog = load("input x: f32[1, 1, 4, 5]\ninput theta: f32[1, 2, 3]\n"
                "output y = grid_sample(x, affine_grid(theta, 4, 5, align_corners=true), "
                "align_corners=true)")
    x = np.arange(20, dtype=np.float32).reshape(1, 1, 4, 5)
    theta = np.array([[[1, 0, 0.5], [0, 1, 0]]], np.float32)
    y = prog.run({"x": x, "theta": theta}, {})["y"]
    np.testing.assert_allclose(y[0, 0, :, :4], x[0, 0, :, 1:], atol=1e-5)
    np.testing.assert_allclose(y[0, 0, :, 4], 0, atol=1e-5)  # sampled beyond the border


def test_generated_code_is_functional():
    prog = load("input x: f32[B, 1, 8, 8]\ninput theta: f32[B, 2, 3]\n"
                "grid = theta -> affine_grid(8, 8)\noutput y = grid_sample(x, grid)")
    src = prog.to_torch_source()
    assert "F.affine_grid(theta, [theta.shape[0], 1, 8, 8], align_corners=False)" in src
    assert "F.grid_sample(x, grid, mode='bilinear', padding_mode='zeros', " \
           "align_corners=False)" in src
    assert prog.init_params() == {}


def test_spatial_errors():
    d = diag("input t: f32[B, 3, 3]\noutput g = t -> affine_grid(4, 4)")
    assert d.code == "E0301" and d.expected == "[B, 2, 3]" and d.found == "f32[B, 3, 3]"
    d = diag("input t: f32[B, 6]\noutput g = t -> affine_grid(4, 4)")
    assert d.code == "E0301" and "rank 3" in d.expected
    d = diag("input t: f32[B, 2, 3]\noutput g = t -> affine_grid(0, 4)")
    assert d.code == "E0301" and d.found == "0"
    d = diag("input t: i64[B, 2, 3]\noutput g = t -> affine_grid(4, 4)")
    assert d.code == "E0302"
    d = diag("input x: f32[B, 3, 5, 5]\ninput g: f32[B, 4, 4, 3]\noutput y = grid_sample(x, g)")
    assert d.code == "E0301" and d.found == "f32[B, 4, 4, 3]"
    d = diag("input x: f32[2, 3, 5, 5]\ninput g: f32[3, 4, 4, 2]\noutput y = grid_sample(x, g)")
    assert d.code == "E0301" and "batch" in d.message
    d = diag("input x: f32[2, 3, 5, 5]\ninput g: f64[2, 4, 4, 2]\noutput y = grid_sample(x, g)")
    assert d.code == "E0302"
    d = diag("input x: f32[2, 3, 5, 5]\ninput g: f32[2, 4, 4, 2]\n"
             "output y = grid_sample(x, g, mode=\"bicubic\")")
    assert d.code == "E0301" and d.found == "'bicubic'"
    d = diag("input x: f32[2, 3, 5, 5]\noutput y = grid_sample(x)")
    assert d.code == "E0240"

"""Tests of dslc/ops/scratch.py: a run's reusable temporaries, and the conv kernels that take
their padded windows and patch blocks from it."""

from __future__ import annotations

import numpy as np
import pytest

import dslc
from dslc.ops.conv import conv2d_nchw, conv2d_reference, conv_nd
from dslc.ops.scratch import Scratch, alloc


def test_take_reuses_one_buffer_and_grows_it():
    s = Scratch()
    a = s.take("x", (4, 5), np.float32)
    assert a.shape == (4, 5) and a.dtype == np.float32 and a.ctypes.data % 64 == 0
    b = s.take("x", (3, 2), np.float64)
    assert np.shares_memory(a, b)  # the same memory, reused
    held = s.nbytes()
    c = s.take("x", (100, 100), np.float32)  # larger: a new buffer
    assert c.shape == (100, 100) and s.nbytes() > held
    d = s.take("y", (4, 5), np.float32)  # another name: other memory
    assert not np.shares_memory(c, d)


def test_alloc_without_scratch_is_fresh_memory():
    make = alloc(None, "x")
    a, b = make((3, 3), np.float32), make((3, 3), np.float32)
    assert not np.shares_memory(a, b)


@pytest.mark.parametrize("shape,w,stride,pad,groups", [
    ((2, 4, 9, 9), (6, 4, 3, 3), (1, 1), ((1, 1), (1, 1)), 1),  # patch blocks + window
    ((2, 4, 9, 9), (4, 1, 3, 3), (2, 2), ((1, 1), (1, 1)), 4),  # depthwise on the window
    ((2, 4, 9, 9), (6, 2, 3, 3), (1, 2), ((0, 2), (1, 0)), 2),  # groups share the patches
    ((2, 4, 9, 9), (5, 4, 1, 1), (2, 2), ((0, 0), (0, 0)), 1),  # strided 1x1
])
def test_conv_results_do_not_live_in_the_scratch(shape, w, stride, pad, groups):
    """A result must be new memory: the next conv of the run reuses the scratch."""
    rng = np.random.default_rng(0)
    s = Scratch()
    x1, x2 = rng.standard_normal(shape), rng.standard_normal(shape)
    wt = rng.standard_normal(w)
    y1 = conv2d_nchw(x1, wt, None, stride, pad, (1, 1), groups, s)
    want1 = y1.copy()
    y2 = conv2d_nchw(x2, wt, None, stride, pad, (1, 1), groups, s)
    assert s.nbytes() > 0
    np.testing.assert_array_equal(y1, want1)  # untouched by the second call
    np.testing.assert_allclose(y2, conv2d_reference(x2, wt, None, stride, pad, (1, 1),
                                                    groups), rtol=1e-10, atol=1e-10)


def test_conv3d_with_scratch_equals_without():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 5, 6, 6))
    w = rng.standard_normal((4, 3, 3, 3, 3))
    args = ((1, 2, 1), ((1, 1), (1, 0), (0, 1)), (1, 1, 1), 1)
    np.testing.assert_array_equal(conv_nd(x, w, None, *args, Scratch()),
                                  conv_nd(x, w, None, *args))


def test_a_run_of_convs_equals_the_kernels_without_scratch():
    """Through the interpreter (one Scratch a run): three convs in a row reuse the buffers;
    the result equals the kernels called without one."""
    prog = dslc.load("t.dl", text="""model t {
  input x: f32[2, 3, 12, 12]
  output y = x -> conv2d(8, kernel=3, padding=1) as a -> relu
      -> conv2d(8, kernel=3, padding=1, groups=8) as b -> conv2d(4, kernel=1) as c
}
""")
    params = prog.init_params(0)
    x = np.random.default_rng(2).standard_normal((2, 3, 12, 12)).astype(np.float32)
    got = prog.run({"x": x}, params)["y"]
    h = conv2d_nchw(x, params["a.weight"], params["a.bias"], (1, 1), ((1, 1), (1, 1)),
                    (1, 1), 1)
    h = np.maximum(h, 0)
    h = conv2d_nchw(h, params["b.weight"], params["b.bias"], (1, 1), ((1, 1), (1, 1)),
                    (1, 1), 8)
    want = conv2d_nchw(h, params["c.weight"], params["c.bias"], (1, 1), ((0, 0), (0, 0)),
                       (1, 1), 1)
    np.testing.assert_array_equal(got, want)


def test_a_reused_buffer_always_holds_the_request_after_alignment():
    # Requests that fit the buffer's length but not its length past the aligned start used to
    # fail to reshape (wavenet_tcn: 664 elements for a [2, 1, 42, 8] view).
    import numpy as np

    from dslc.ops.scratch import Scratch

    s = Scratch()
    for n in list(range(1, 200)) + list(range(200, 1, -7)):
        for dtype in (np.float32, np.float64, np.uint8):
            a = s.take("x", (n,), dtype)
            assert a.shape == (n,) and a.ctypes.data % 64 == 0

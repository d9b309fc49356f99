"""Pooling kernels (tinyconv.kernels.pooling = "numpy", numba_pooling = "numba", run through the backends'
checked doors max_pool2d_forward ...): PyTorch's
semantics checked on hand-computed cases, the two implementations against each other,
adjointness, gradient routing, output-size arithmetic, validation and selection."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinyconv.kernels as K
from tinyconv.kernels import numba_pooling as numba_loops  # the compiled loops themselves
from tinyconv.kernels import shapes

from strategies_conv import pool_configs

pooling, numba_pooling = K.get_pool_kernel("numpy"), K.get_pool_kernel("numba")  # the backends that run them

ROOT = Path(__file__).resolve().parents[1]
POOL_NAMES = ["numpy", "numba"]


@pytest.fixture(params=POOL_NAMES)
def pk(request):
    return K.get_pool_kernel(request.param)


def plane(rows):
    return np.asarray(rows, dtype=np.float64)[None, None]


# ----------------------------------------------------------------------------- max: hand cases

def test_max_first_maximum_with_ties(pk):
    x = plane([[1, 3, 3], [3, 2, 1], [0, 3, 3]])
    y, idx = pk.max_pool2d_forward(x, 2, 1)
    np.testing.assert_array_equal(y[0, 0], [[3, 3], [3, 3]])
    # first maximum in row-major window order, as a flat index into the 3x3 plane
    np.testing.assert_array_equal(idx[0, 0], [[1, 1], [3, 7]])
    assert idx.dtype in (np.int32, np.int64)  # numba's kernels keep int32 (vectorises); NumPy's int64
    gx = pk.max_pool2d_backward(np.ones_like(y), idx, x.shape)
    np.testing.assert_array_equal(pk.max_pool2d_backward(np.ones_like(y), idx.astype(np.int64), x.shape), gx)
    np.testing.assert_array_equal(gx[0, 0], [[0, 2, 0], [1, 0, 0], [0, 1, 0]])


def test_max_2x2_fast_path_ties_and_all_equal(pk):
    x = plane([[5, 5, 1, 2], [5, 5, 2, 2], [0, 0, -1, 7], [0, 0, 7, 7]])
    y, idx = pk.max_pool2d_forward(x, 2, 2)
    np.testing.assert_array_equal(y[0, 0], [[5, 2], [0, 7]])
    np.testing.assert_array_equal(idx[0, 0], [[0, 3], [8, 11]])


def test_max_nan_propagates_last_nan_wins(pk):
    nan = np.nan
    x = plane([[nan, 1], [nan, 2]])
    y, idx = pk.max_pool2d_forward(x, 2)
    assert np.isnan(y[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 2
    x = plane([[1, nan, 0, 4], [9, 2, 3, nan]])
    y, idx = pk.max_pool2d_forward(x, 2)
    assert np.isnan(y).all()
    np.testing.assert_array_equal(idx[0, 0], [[1, 7]])
    x = plane([[1, nan, 9, 5, 0, 1]])
    y, idx = pk.max_pool2d_forward(x, (1, 3), 1)   # general path
    np.testing.assert_array_equal(idx[0, 0], [[1, 1, 2, 3]])


def test_max_padding_is_minus_infinity(pk):
    x = -np.ones((1, 1, 3, 3))
    y, idx = pk.max_pool2d_forward(x, 3, 1, 1)
    np.testing.assert_array_equal(y, -np.ones((1, 1, 3, 3)))
    # all-equal windows: the first position inside the input
    np.testing.assert_array_equal(idx[0, 0], [[0, 0, 1], [0, 0, 1], [3, 3, 4]])


def test_max_all_minus_inf_window_reports_first_position(pk):
    x = np.full((1, 1, 2, 3), -np.inf)
    y, idx = pk.max_pool2d_forward(x, 2, 1, 1)
    assert np.all(y == -np.inf)
    np.testing.assert_array_equal(idx[0, 0], [[0, 0, 1, 2], [0, 0, 1, 2], [3, 3, 4, 5]])


def test_max_ceil_mode_and_padding(pk):
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    y, idx = pk.max_pool2d_forward(x, 3, 2, 1, ceil_mode=True)
    np.testing.assert_array_equal(y[0, 0], [[5, 7, 7], [13, 15, 15], [13, 15, 15]])
    np.testing.assert_array_equal(idx[0, 0], y[0, 0].astype(np.int64))
    y, _ = pk.max_pool2d_forward(x, 3, 2, 1, ceil_mode=False)
    np.testing.assert_array_equal(y[0, 0], [[5, 7], [13, 15]])


def test_max_dilation(pk):
    x = np.arange(25.0).reshape(1, 1, 5, 5)
    x[0, 0, 2, 2] = 100
    y, idx = pk.max_pool2d_forward(x, 2, 1, 0, 2)   # taps (0,0) (0,2) (2,0) (2,2)
    assert y.shape == (1, 1, 3, 3)
    assert y[0, 0, 0, 0] == 100 and idx[0, 0, 0, 0] == 12
    assert y[0, 0, 1, 1] == 18 and idx[0, 0, 1, 1] == 18   # (1,1) (1,3) (3,1) (3,3)
    assert y[0, 0, 2, 2] == 100 and idx[0, 0, 2, 2] == 12
    assert y[0, 0, 0, 1] == 13 and idx[0, 0, 0, 1] == 13      # (0,1) (0,3) (2,1) (2,3)


def test_max_backward_routes_gradient_to_argmax(pk):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 6))
    y, idx = pk.max_pool2d_forward(x, 3, 2, 1)
    gy = rng.standard_normal(y.shape)
    gx = pk.max_pool2d_backward(gy, idx, x.shape)
    ref = np.zeros(x.shape).reshape(6, -1)
    for p in range(6):
        for k, g in zip(idx.reshape(6, -1)[p], gy.reshape(6, -1)[p]):
            ref[p, k] += g
    np.testing.assert_allclose(gx, ref.reshape(x.shape), rtol=1e-12)
    # gradient at the argmax positions == values that were picked
    np.testing.assert_array_equal(np.take_along_axis(x.reshape(6, -1), idx.reshape(6, -1), 1),
                                  y.reshape(6, -1))


def test_max_backward_non_overlapping_scatter(pk):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 2, 8, 9)).astype(np.float32)
    y, idx = pk.max_pool2d_forward(x, 2, 2)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    a = pk.max_pool2d_backward(gy, idx, x.shape)
    b = pk.max_pool2d_backward(gy, idx, x.shape, non_overlapping=True)
    assert a.dtype == b.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert a[:, :, :, 8].sum() == 0      # the odd last column is in no window


# ----------------------------------------------------------------------------- avg: hand cases

def test_avg_count_include_pad(pk):
    x = np.ones((1, 1, 3, 3))
    y = pk.avg_pool2d_forward(x, 3, 1, 1, count_include_pad=True)
    np.testing.assert_allclose(y[0, 0], np.array([[4, 6, 4], [6, 9, 6], [4, 6, 4]]) / 9)
    y = pk.avg_pool2d_forward(x, 3, 1, 1, count_include_pad=False)
    np.testing.assert_allclose(y[0, 0], np.ones((3, 3)))


def test_avg_ceil_mode_divisor_excludes_the_overhang(pk):
    x = np.arange(25.0).reshape(1, 1, 5, 5)
    y = pk.avg_pool2d_forward(x, 2, 2, ceil_mode=True)
    np.testing.assert_allclose(y[0, 0], [[3, 5, 6.5], [13, 15, 16.5], [20.5, 22.5, 24]])
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    y = pk.avg_pool2d_forward(x, 3, 2, 1, ceil_mode=True, count_include_pad=True)
    np.testing.assert_allclose(y[0, 0], [[10 / 9, 24 / 9, 10 / 6], [51 / 9, 10, 33 / 6],
                                         [25 / 6, 42 / 6, 15 / 4]])
    y = pk.avg_pool2d_forward(x, 3, 2, 1, ceil_mode=True, count_include_pad=False)
    np.testing.assert_allclose(y[0, 0], [[2.5, 4, 5], [8.5, 10, 11], [12.5, 14, 15]])


def test_avg_divisor_override(pk):
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    y = pk.avg_pool2d_forward(x, 2, 2, divisor_override=2)
    np.testing.assert_allclose(y[0, 0], [[10 / 2, 18 / 2], [42 / 2, 50 / 2]])
    g = pk.avg_pool2d_backward(np.ones_like(y), x.shape, 2, 2, divisor_override=2)
    np.testing.assert_allclose(g, np.full(x.shape, 0.5))
    with pytest.raises(ValueError, match="divisor_override must be non-zero"):
        pk.avg_pool2d_forward(x, 2, 2, divisor_override=0)


def test_avg_2x2_lenet_case(pk):
    x = np.arange(2 * 3 * 6 * 6, dtype=np.float32).reshape(2, 3, 6, 6)
    y = pk.avg_pool2d_forward(x, 2, 2)
    assert y.dtype == np.float32 and y.shape == (2, 3, 3, 3)
    ref = x.reshape(2, 3, 3, 2, 3, 2).mean(axis=(3, 5))
    np.testing.assert_allclose(y, ref, rtol=1e-6)
    g = pk.avg_pool2d_backward(np.ones_like(y), x.shape, 2, 2)
    np.testing.assert_array_equal(g, np.full(x.shape, 0.25, np.float32))
    # odd sizes: the last row / column is dropped by the floor rule and gets no gradient
    x = np.ones((1, 1, 5, 5), np.float32)
    g = pk.avg_pool2d_backward(np.ones((1, 1, 2, 2), np.float32), x.shape, 2, 2)
    assert g[0, 0, 4].sum() == 0 and g[0, 0, :, 4].sum() == 0 and g[0, 0, :4, :4].sum() == 4


# ----------------------------------------------------------------------------- properties

@settings(deadline=None)
@given(cfg=pool_configs())
def test_numpy_and_numba_max_pool_agree(cfg):
    x, gy = cfg.arrays(integer=True)   # small integers: many ties
    args = (cfg.kernel, cfg.stride, cfg.padding, cfg.dilation, cfg.ceil_mode)
    y1, i1 = pooling.max_pool2d_forward(x, *args)
    y2, i2 = numba_pooling.max_pool2d_forward(x, *args)
    assert y1.shape == cfg.out_shape
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(i1, i2)
    g1 = pooling.max_pool2d_backward(gy, i1, x.shape)
    g2 = numba_pooling.max_pool2d_backward(gy, i2, x.shape)
    np.testing.assert_allclose(g1, g2, rtol=1e-12, atol=1e-12)
    non_overlapping = all(s >= d * (k - 1) + 1 for k, s, d in zip(cfg.kernel, cfg.stride, cfg.dilation))
    if non_overlapping:  # the faster paths each implementation takes then
        for pk in (pooling, numba_pooling):
            np.testing.assert_allclose(pk.max_pool2d_backward(gy, i1, x.shape, non_overlapping=True), g1,
                                       rtol=1e-12, atol=1e-12)
    # every picked value is the maximum of the real pixels of its window
    picked = np.take_along_axis(x.reshape(cfg.n * cfg.c, -1), i1.reshape(cfg.n * cfg.c, -1), 1)
    finite = np.isfinite(y1.reshape(cfg.n * cfg.c, -1))
    np.testing.assert_array_equal(picked[finite], y1.reshape(cfg.n * cfg.c, -1)[finite])


@settings(deadline=None)
@given(cfg=pool_configs(with_dilation=False), override=st.sampled_from([None, 3]))
def test_numpy_and_numba_avg_pool_agree(cfg, override):
    x, gy = cfg.arrays()
    args = (cfg.kernel, cfg.stride, cfg.padding, cfg.ceil_mode, cfg.count_include_pad, override)
    y1 = pooling.avg_pool2d_forward(x, *args)
    y2 = numba_pooling.avg_pool2d_forward(x, *args)
    assert y1.shape == cfg.out_shape
    np.testing.assert_allclose(y1, y2, rtol=1e-12, atol=1e-12)
    g1 = pooling.avg_pool2d_backward(gy, x.shape, *args)
    g2 = numba_pooling.avg_pool2d_backward(gy, x.shape, *args)
    np.testing.assert_allclose(g1, g2, rtol=1e-12, atol=1e-12)


@settings(deadline=None)
@given(cfg=pool_configs(with_dilation=False), name=st.sampled_from(POOL_NAMES))
def test_avg_pool_backward_is_the_adjoint(cfg, name):
    pk = K.get_pool_kernel(name)
    x, gy = cfg.arrays()
    args = (cfg.kernel, cfg.stride, cfg.padding, cfg.ceil_mode, cfg.count_include_pad)
    y = pk.avg_pool2d_forward(x, *args)
    gx = pk.avg_pool2d_backward(gy, x.shape, *args)
    assert np.isclose(np.vdot(y, gy), np.vdot(x, gx), rtol=1e-10, atol=1e-12)


@settings(deadline=None)
@given(cfg=pool_configs(), name=st.sampled_from(POOL_NAMES))
def test_max_pool_backward_is_the_adjoint_of_the_selection(cfg, name):
    """With the argmax fixed, max pooling is linear (a selection) and its backward is the
    transpose of that selection."""
    pk = K.get_pool_kernel(name)
    x, gy = cfg.arrays()
    y, idx = pk.max_pool2d_forward(x, cfg.kernel, cfg.stride, cfg.padding, cfg.dilation,
                                   cfg.ceil_mode)
    # a degenerate window may hold no input pixel at all (value -inf): leave it out
    gy = np.where(np.isfinite(y), gy, 0.0)
    gx = pk.max_pool2d_backward(gy, idx, x.shape)
    assert np.isclose(np.vdot(np.where(np.isfinite(y), y, 0.0), gy), np.vdot(x, gx),
                      rtol=1e-10, atol=1e-12)


def test_float32_is_kept(pk):
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 7)).astype(np.float32)
    y, idx = pk.max_pool2d_forward(x, 3, 2, 1)
    assert y.dtype == np.float32
    assert pk.max_pool2d_backward(y, idx, x.shape).dtype == np.float32
    a = pk.avg_pool2d_forward(x, 3, 2, 1)
    assert a.dtype == np.float32
    assert pk.avg_pool2d_backward(a, x.shape, 3, 2, 1).dtype == np.float32
    with pytest.raises(TypeError, match="floating"):
        pk.max_pool2d_forward(np.ones((1, 1, 4, 4), np.int32), 2)


# ----------------------------------------------------------------------------- arithmetic

def _pytorch_pool_size(n, k, s, p, d, ceil):
    out = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)) // s + 1
    if ceil and (out - 1) * s >= n + p:
        out -= 1
    return out


@given(n=st.integers(1, 20), k=st.integers(1, 5), s=st.integers(1, 4), d=st.integers(1, 3),
       ceil=st.booleans(), data=st.data())
def test_pool_output_size(n, k, s, d, ceil, data):
    p = data.draw(st.integers(0, k // 2))
    got = shapes.pool_output_size(n, k, s, p, d, ceil)
    assert got == _pytorch_pool_size(n, k, s, p, d, ceil)
    if got >= 1:
        # every window starts inside the input or its left padding ...
        assert (got - 1) * s - p < n
        # ... and floor mode keeps only windows that fit entirely in the padded input
        if not ceil:
            assert (got - 1) * s + d * (k - 1) + 1 <= n + 2 * p


def test_pool_output_size_examples():
    assert shapes.pool_output_size(28, 2, 2, 0) == 14
    assert shapes.pool_output_size(5, 2, 2, 0, ceil_mode=False) == 2
    assert shapes.pool_output_size(5, 2, 2, 0, ceil_mode=True) == 3
    # ceil mode would start a window in the right padding: dropped
    assert shapes.pool_output_size(4, 3, 2, 1, ceil_mode=True) == 3
    assert shapes.pool_output_size(5, 3, 3, 1, ceil_mode=True) == 2
    args = shapes.normalize_pool_args((2, 3, 9, 9), 3)
    assert args.stride == (3, 3) and args.out_shape == (2, 3, 3, 3)


@pytest.mark.parametrize("kw,exc,message", [
    (dict(input_shape=(6, 4, 4)), ValueError, r"4-D input .*\(6, 4, 4\)"),
    (dict(kernel_size=0), ValueError, r"kernel_size must be positive"),
    (dict(stride=(0, 1)), ValueError, r"stride must be positive, got stride=\(0, 1\)"),
    (dict(dilation=0), ValueError, r"dilation must be positive"),
    (dict(padding=2), ValueError, r"padding should be at most half of the kernel size, got "
                                  r"padding=\(2, 2\), kernel_size=\(3, 3\)"),
    (dict(padding=-1), ValueError, r"padding must be non-negative"),
    (dict(padding="same"), TypeError, r"pooling padding must be an int or a pair"),
    (dict(input_shape=(1, 1, 2, 2)), ValueError, r"output size is too small.*\(1, 1, 2, 2\)"),
    (dict(kernel_size=(2, 2, 2)), ValueError, r"kernel_size must be an int or a pair"),
])
def test_pool_arg_errors(kw, exc, message):
    full = dict(input_shape=(1, 1, 8, 8), kernel_size=3, stride=None, padding=0, dilation=1,
                ceil_mode=False)
    full.update(kw)
    with pytest.raises(exc, match=message):
        shapes.normalize_pool_args(**full)


def test_pool_kernels_validate(pk):
    with pytest.raises(ValueError, match="padding should be at most half"):
        pk.max_pool2d_forward(np.ones((1, 1, 4, 4)), 2, 2, 2)
    with pytest.raises(ValueError, match="padding should be at most half"):
        pk.avg_pool2d_forward(np.ones((1, 1, 4, 4)), 2, 2, 2)
    with pytest.raises(ValueError, match=r"grad_output of shape \(1, 1, 3, 3\) does not match"):
        pk.avg_pool2d_backward(np.ones((1, 1, 3, 3)), (1, 1, 4, 4), 2, 2)


# ----------------------------------------------------------------------------- selection

def test_pool_selection():
    assert set(K.POOL_KERNELS) == {"numpy", "numba"}
    assert K.get_pool_kernel("numpy") is K.get_kernel("direct")  # NumPy pooling, run by the reference backend
    assert K.get_pool_kernel("numba") is K.get_kernel("numba")
    expected_auto = "numba" if K.jit_enabled() else "numpy"
    assert K.choose_pool_kernel(kernel="auto") == expected_auto
    before = K.get_default_pool_kernel()
    try:
        K.set_default_pool_kernel("numpy")
        assert K.choose_pool_kernel() == "numpy"
        with K.use_pool_kernel("numba"):
            assert K.choose_pool_kernel() == "numba"
            assert K.choose_pool_kernel(kernel="numpy") == "numpy"
        assert K.get_default_pool_kernel() == "numpy"
    finally:
        K.set_default_pool_kernel(before)
    with pytest.raises(ValueError, match=r"unknown pool kernel 'torch'; valid pool kernels: "
                                         r"'numpy', 'numba'"):
        K.get_pool_kernel("torch")
    with pytest.raises(ValueError, match="unknown pool kernel"):
        K.set_default_pool_kernel("torch")


def test_pool_env_var():
    env = {k: v for k, v in os.environ.items() if k != "TINYCONV_KERNEL"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    code = "import tinyconv.kernels as K; print(K.get_default_pool_kernel())"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(env, TINYCONV_POOL_KERNEL="numpy"), cwd=str(ROOT), timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "numpy"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(env, TINYCONV_POOL_KERNEL="cuda"), cwd=str(ROOT), timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "auto"  # a typo warns and falls back
    assert "RuntimeWarning: environment variable TINYCONV_POOL_KERNEL='cuda' is not a valid pool kernel" in r.stderr


@pytest.mark.parametrize("module", [pooling, numba_pooling], ids=["numpy", "numba"])
def test_window_of_padding_only_sends_its_gradient_nowhere(module):
    # 1x1 input, columns -1 and 1 of the window are padding / beyond the input: no input pixel at all.
    x = np.array([[[[5.0]], [[7.0]]]])
    y, argmax = module.max_pool2d_forward(x, (1, 2), (1, 1), (0, 1), (1, 2), False)
    assert np.all(np.isneginf(y)) and np.all(argmax == -1)
    gx = module.max_pool2d_backward(np.ones_like(y), argmax, x.shape)
    np.testing.assert_array_equal(gx, np.zeros_like(x))


@pytest.mark.parametrize("flat", [False, True])
@pytest.mark.parametrize("shape", [(3, 4, 9, 8), (2, 3, 7, 9), (1, 2, 2, 3), (2, 2, 6, 60)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numba_2x2_fast_path_equals_the_general_loop(dtype, shape, flat):
    """Both 2x2 loops (per row, and per plane: ``flat``, whatever this CPU's choice) against the general loop and
    NumPy's: odd sizes (last row or column dropped), many ties, NaNs, signed zeros."""
    rng = np.random.default_rng(5)
    x = rng.integers(-2, 3, size=shape).astype(dtype)  # many ties
    x.reshape(-1)[::7] = -0.0
    x[0, 0, 0, 1] = np.nan
    x[-1, -1, 0, 0] = x[-1, -1, 1, 1] = np.nan  # two NaNs in one window: the last one wins, as in PyTorch
    y, argmax = numba_loops.max_pool(x, shapes.normalize_pool_args(x.shape, 2, 2), flat=flat)
    assert y.shape == (shape[0], shape[1], shape[2] // 2, shape[3] // 2)
    y_ref = np.empty_like(y)
    argmax_ref = np.empty_like(argmax)
    numba_loops._max_fwd(x, y_ref, argmax_ref, 2, 2, 2, 2, 0, 0, 1, 1)
    np.testing.assert_array_equal(y.view(np.uint8), y_ref.view(np.uint8))  # bit for bit: NaNs, signed zeros
    np.testing.assert_array_equal(argmax, argmax_ref)
    y_np, argmax_np = pooling.max_pool2d_forward(x, 2, 2)
    np.testing.assert_array_equal(y, y_np)  # (NumPy's maximum may give either zero of a tie of signed zeros)
    np.testing.assert_array_equal(argmax, argmax_np)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 4, 8, 8), (2, 3, 9, 8), (2, 3, 7, 9), (1, 2, 2, 3)])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_numba_2x2_fast_paths_equal_the_general_loops(dtype, shape, ceil_mode):
    """2x2 / stride 2 takes the numba fast paths unless ceil_mode leaves a partial last window (odd sizes):
    either way the results are those of the general loops (an earlier fast path read past the input there)."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal(shape).astype(dtype)
    y, argmax = numba_pooling.max_pool2d_forward(x, 2, 2, ceil_mode=ceil_mode)
    y_ref, argmax_ref = np.empty_like(y), np.empty_like(argmax)
    numba_loops._max_fwd(x, y_ref, argmax_ref, 2, 2, 2, 2, 0, 0, 1, 1)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-13)
    for include_pad in (True, False):
        y = numba_pooling.avg_pool2d_forward(x, 2, 2, 0, ceil_mode, include_pad)
        y_ref = np.empty_like(y)
        numba_loops._avg_fwd(x, y_ref, 2, 2, 2, 2, 0, 0, include_pad, 0)
        np.testing.assert_allclose(y, y_ref, **tol)
        gy = rng.standard_normal(y.shape).astype(dtype)
        gx = numba_pooling.avg_pool2d_backward(gy, shape, 2, 2, 0, ceil_mode, include_pad)
        gx_ref = np.zeros(shape, dtype)
        numba_loops._avg_bwd(gy, gx_ref, 2, 2, 2, 2, 0, 0, include_pad, 0)
        np.testing.assert_allclose(gx, gx_ref, **tol)
        assert y.dtype == gx.dtype == dtype



@settings(deadline=None)
@given(cfg=pool_configs(max_batch=8, max_channels=5), special=st.booleans(), chunk=st.sampled_from([16, 32]),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_numba_planes_last_loop_equals_numpy(cfg, special, chunk, dtype):
    """The many-planes-at-a-time loop against NumPy's on any window, stride, padding, dilation and ceil_mode, in
    chunks of planes with a partial last one: ties, NaNs (the last wins), windows of -inf only, bit for bit."""
    x, _ = cfg.arrays(integer=True)
    x = x.astype(dtype)
    if special:
        x.reshape(-1)[::5] = np.nan
        x.reshape(-1)[1::3] = -np.inf
    y, argmax = np.empty(cfg.out_shape, dtype), np.empty(cfg.out_shape, np.int32)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = cfg.kernel, cfg.stride, cfg.padding, cfg.dilation
    numba_loops._max_fwd_planes_last(x, y, argmax, kh, kw, sh, sw, ph, pw, dh, dw, chunk)
    y_ref, argmax_ref = pooling.max_pool2d_forward(x, cfg.kernel, cfg.stride, cfg.padding, cfg.dilation,
                                                   cfg.ceil_mode)
    np.testing.assert_array_equal(y.view(np.uint8), y_ref.view(np.uint8))
    np.testing.assert_array_equal(argmax, argmax_ref)
    args = shapes.normalize_pool_args(x.shape, cfg.kernel, cfg.stride, cfg.padding, cfg.dilation, cfg.ceil_mode)
    y2, argmax2 = numba_loops.max_pool(x, args, planes_last=True)  # the door, its chunk size
    np.testing.assert_array_equal(y2.view(np.uint8), y_ref.view(np.uint8))
    np.testing.assert_array_equal(argmax2, argmax_ref)

"""The conv's 2x2 max pooling in the conv's own loops (blocked.forward_max_pool, the numba backend's
forward_max_pool, and the fused Conv2d + ReLU + MaxPool2d node that uses it), against the conv then the pooling:
values and indices bit for bit, NaN, ties and signed zeros included. simd.max_2x2, the vector of windows it is
built from, against a window-by-window reference."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

import tinyconv as tc
import tinyconv.kernels as K
from tinyconv import functional as F
from tinyconv import nn
from tinyconv.kernels import choose, numba_pooling, shapes
from tinyconv.kernels.numba_jit.fast import blocked, simd
from tinyconv.kernels.numba_jit.fast import conv as numba_conv

from strategies_conv import conv_configs

jit_only = pytest.mark.skipif(not K.jit_enabled(), reason="compiled code only (the NUMBA_DISABLE_JIT run is in "
                                                          "test_kernels.test_numba_kernels_run_without_the_jit)")


def _reference_windows(top, bottom, bias):
    """(best, which) per 2x2 window of the row pair, one window at a time: the first maximum or the last NaN."""
    n = min(len(top), len(bottom)) // 2
    best, which = np.empty(n, top.dtype), np.empty(n, np.int64)
    for j in range(n):
        values = [top[2 * j], top[2 * j + 1], bottom[2 * j], bottom[2 * j + 1]]
        if bias is not None:
            values = [v + bias for v in values]
        b, k = values[0], 0
        for t, v in enumerate(values[1:], start=1):
            if v > b or np.isnan(v):
                b, k = v, t
        best[j], which[j] = b, k
    return best, which


@njit
def _pool_row_pair(src, row, bias, y, a, base, width):
    simd.max_2x2(src, 0, row, bias, y, a, 0, base, width)


@njit
def _pool_row_pair_no_bias(src, row, y, a, base, width):
    simd.max_2x2(src, 0, row, None, y, a, 0, base, width)


@jit_only
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_max_2x2_pools_a_vector_of_windows_by_the_first_maximum_and_the_last_nan(dtype, with_bias, seed):
    rng = np.random.default_rng(seed)
    lanes = 64 // np.dtype(dtype).itemsize
    row = 2 * lanes + int(rng.integers(0, 5))
    pool = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, 1.0, -1.0, 2.5], dtype)  # ties, signs, NaN, inf
    src = rng.choice(pool, size=row + 2 * lanes).astype(dtype) if seed % 2 else \
        rng.integers(-2, 3, row + 2 * lanes).astype(dtype)
    bias = dtype(rng.uniform(-1, 1)) if with_bias else None
    y, a = np.full(lanes, 7, dtype), np.full(lanes, -5, np.int32)
    base, width = int(rng.integers(0, 1000)), int(rng.integers(2 * lanes, 100))
    if with_bias:
        _pool_row_pair(src, row, bias, y, a, base, width)
    else:
        _pool_row_pair_no_bias(src, row, y, a, base, width)
    best, which = _reference_windows(src[:2 * lanes], src[row:row + 2 * lanes], bias)
    np.testing.assert_array_equal(y, best)  # (equal: NaN matches NaN; -0.0 and 0.0 are told apart below)
    assert np.array_equal(np.signbit(y), np.signbit(best))
    offsets = np.array([0, 1, width, width + 1])[which]
    np.testing.assert_array_equal(a, base + 2 * np.arange(lanes) + offsets)


def _pooled_configs():
    """Stride-1 convs as the tiles take them, with outputs from 2x2 up to wider than two vectors of float32 windows
    (72 wide: 36 windows; the row loop's whole vectors, its last partial one, and planes too small for a whole
    vector)."""
    channels = st.one_of(st.integers(1, 9), st.sampled_from([12, 16, 17]))
    return conv_configs(max_batch=5, max_groups=2, max_kernel=3, max_stride=1, max_dilation=2, max_size=72,
                        group_channels=channels)


def _inputs(cfg, dtype, kind):
    """x, w, bias: uniform, small integers (convolutions of integers: exact, with many tied windows), or
    uniform with NaN in x."""
    x, w, _ = cfg.arrays(dtype)
    rng = np.random.default_rng(cfg.seed + 1)
    bias = rng.uniform(-1, 1, cfg.c_out).astype(dtype)
    if kind == "ties":
        x = rng.integers(-1, 2, x.shape).astype(dtype)
        w = rng.integers(-1, 2, w.shape).astype(dtype)
        bias = rng.integers(-1, 2, cfg.c_out).astype(dtype)
    elif kind == "nan":
        x.flat[rng.integers(0, x.size, 3)] = np.nan
    return x, w, bias


@jit_only
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("tiles", blocked.TILES)
@settings(deadline=None, max_examples=25)
@given(cfg=_pooled_configs(), kind=st.sampled_from(["uniform", "ties", "nan"]))
def test_forward_max_pool_is_the_max_pooling_of_the_forward_bit_for_bit(tiles, dtype, cfg, kind):
    """Each variant of the tiles (forced: on any CPU, slow where it spills), any stride-1 configuration the tiles
    run (groups, dilation, uneven padding, tile tails), odd and even output sizes (a last row or column no window
    takes), against numba's max pooling of blocked.forward's output: the same values and the same indices."""
    args = shapes.normalize_conv_args(cfg.x_shape, cfg.w_shape, *cfg.kernel_args)
    x, w, bias = _inputs(cfg, dtype, kind)
    ho, wo = args.out_shape[2:]
    y, argmax = blocked.forward_max_pool(x, w, bias, args, tiles)
    if min(ho, wo) < 2:  # no whole window: empty, as max_pool2d refuses to make
        assert y.shape == argmax.shape == (cfg.n, cfg.c_out, ho // 2, wo // 2) and y.size == 0
        return
    conv = blocked.forward(x, w, bias, args, np.empty(args.out_shape, dtype), tiles)
    want, want_argmax = numba_pooling.max_pool(conv, shapes.normalize_pool_args(conv.shape, 2, 2))
    assert y.shape == want.shape == (cfg.n, cfg.c_out, ho // 2, wo // 2) and y.dtype == dtype
    assert argmax.dtype == np.int32
    assert np.array_equal(y, want, equal_nan=True) and np.array_equal(np.signbit(y), np.signbit(want))
    np.testing.assert_array_equal(argmax, want_argmax)
    # the whole vectors a plane's rows store stay inside the plane: outputs with one more image of sentinels
    guard_y, guard_a = np.full((cfg.n + 1,) + y.shape[1:], -7, dtype), np.full((cfg.n + 1,) + y.shape[1:], -7, np.int32)
    wpack = blocked.pack_weights(w, cfg.groups, blocked.tile_channels(cfg.c_out // cfg.groups, tiles))
    blocked._conv(x, wpack, cfg.kernel, bias, args.padding, args.dilation, cfg.groups, guard_y[:cfg.n], "x", tiles,
                  guard_a[:cfg.n], (ho, wo))
    assert np.array_equal(guard_y[:cfg.n], y, equal_nan=True) and np.array_equal(guard_a[:cfg.n], argmax)
    assert (guard_y[cfg.n] == -7).all() and (guard_a[cfg.n] == -7).all()


@jit_only
def test_a_bias_of_another_dtype_is_added_in_the_inputs_dtype_on_both_paths():
    """forward and forward_max_pool take the bias in x's dtype alike (a float64 bias of a float32 conv): the pooled
    values stay the pooling of forward's, bit for bit."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, 3, 12, 20)).astype(np.float32)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(8)  # float64
    args = shapes.normalize_conv_args(x.shape, w.shape, 1, 1, 1, 1)
    pool_args = shapes.normalize_pool_args(args.out_shape, 2, 2)
    for tiles in blocked.TILES:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(choose, "BLOCKED_TILES", tiles)
            mp.setattr(choose, "MIN_BLOCK_USE", 0.0)
            mp.setattr(choose, "TILES_BATCH_LAST_MAX_FLAT_USE", 0.0)
            conv = numba_conv.forward(x, w, args, bias)
            assert conv.dtype == np.float32
            y, argmax = numba_conv.forward_max_pool(x, w, args, bias, pool_args)
        want, want_argmax = numba_pooling.max_pool(conv, pool_args)
        assert np.array_equal(y, want) and np.array_equal(argmax, want_argmax), tiles


@jit_only
def test_max_pool_planes_writes_the_planes_it_is_given_and_nothing_else():
    """The pooled epilogue of one task: planes o0 .. o0 + count - 1 of image n, from the tile's flat outputs; every
    other plane of y and argmax keeps what it held (tasks run side by side on the others)."""
    rng = np.random.default_rng(5)
    ho, wo, wp, tc = 9, 13, 15, 8
    lanes = 16
    out = rng.standard_normal((tc, ho * wp + 3 * lanes)).astype(np.float32)
    bias = rng.standard_normal(12).astype(np.float32)
    y = np.full((3, 12, ho // 2, wo // 2), -7, np.float32)
    argmax = np.full(y.shape, -7, np.int32)
    blocked._max_pool_planes(out, bias, y, argmax, 1, 3, 5, wp, wo)
    for k in range(5):
        plane = (out[k, :ho * wp].reshape(ho, wp)[:, :wo] + bias[3 + k])[None, None]
        want, want_argmax = numba_pooling.max_pool(plane, shapes.normalize_pool_args(plane.shape, 2, 2))
        assert np.array_equal(y[1, 3 + k], want[0, 0]) and np.array_equal(argmax[1, 3 + k], want_argmax[0, 0])
    untouched = np.ones(y.shape, bool)
    untouched[1, 3:8] = False
    assert (y[untouched] == -7).all() and (argmax[untouched] == -7).all()


@pytest.fixture
def fusion_on():
    previous = nn.set_fusion(True)
    yield
    nn.set_fusion(previous)


def _step(model, x):
    """The model's output and every parameter's gradient (and the input's) for a fixed upstream gradient."""
    xt = tc.tensor(x, requires_grad=True)
    out = model(xt)
    out.backward(tc.ones_like(out))
    return [out.numpy(), xt.grad.numpy()] + [p.grad.numpy() for p in model.parameters()]


@jit_only
@pytest.mark.parametrize("tiles", blocked.TILES)
@pytest.mark.parametrize("kernel", ["numba", "auto"])
def test_lenets_fused_layers_pool_inside_the_conv_and_match_the_three_layers(fusion_on, tiles, kernel,
                                                                            monkeypatch):
    """LeNet's two Conv2d, ReLU, MaxPool2d triples in a Sequential: where the tiles run, the fused node takes the
    one-pass pooling (counted), and its output and gradients equal the three layers', bit for bit."""
    monkeypatch.setattr(choose, "BLOCKED_TILES", tiles)
    monkeypatch.setattr(choose, "MIN_BLOCK_USE", 0.0)
    monkeypatch.setattr(choose, "BATCH_MIN_BLOCK_USE", {})
    calls = []
    real = blocked.forward_max_pool
    monkeypatch.setattr(blocked, "forward_max_pool", lambda *a: calls.append(a[-1]) or real(*a))
    tc.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2, kernel=kernel), nn.ReLU(), nn.MaxPool2d(2, 2),
                          nn.Conv2d(6, 16, 5, kernel=kernel), nn.ReLU(), nn.MaxPool2d(2, 2))
    x = np.random.default_rng(0).standard_normal((32, 1, 28, 28)).astype(np.float32)  # a batch the tiles take
    fused = _step(model, x)
    assert calls == [tiles, tiles]
    model.zero_grad()
    nn.set_fusion(False)
    unfused = _step(model, x)
    assert len(calls) == 2
    for a, b in zip(fused, unfused):
        assert a.dtype == b.dtype and np.array_equal(a, b)


@jit_only
def test_the_numba_backend_pools_in_the_conv_only_where_it_can(monkeypatch):
    """forward_max_pool answers None (the caller then runs the conv and the pooling) for other windows, strides,
    padding and windows past the edge, and for layouts other than the tiles; the other backends always do."""
    monkeypatch.setattr(choose, "BLOCKED_TILES", "avx512")
    monkeypatch.setattr(choose, "MIN_BLOCK_USE", 0.0)
    monkeypatch.setattr(choose, "BATCH_MIN_BLOCK_USE", {})
    monkeypatch.setattr(choose, "TILES_BATCH_LAST_MAX_FLAT_USE", 0.0)  # small batches on the flat tiles too
    x = np.ones((4, 3, 12, 12), np.float32)
    w = np.ones((8, 3, 3, 3), np.float32)
    args = shapes.normalize_conv_args(x.shape, w.shape, 1, 1, 1, 1)

    def pool(*a, **k):
        return shapes.normalize_pool_args(args.out_shape, *a, **k)

    assert numba_conv.forward_max_pool(x, w, args, None, pool(2, 2)) is not None
    for other in (pool(3, 2), pool(2, 1), pool(2, 2, 1), pool(2, 2, 0, 2), pool(2, 3)):
        assert numba_conv.forward_max_pool(x, w, args, None, other) is None
    w4 = np.ones((8, 3, 4, 4), np.float32)
    odd = shapes.normalize_conv_args(x.shape, w4.shape, 1, 0, 1, 1)  # a 9x9 output: the last column, row left out
    floor, ceil = (shapes.normalize_pool_args(odd.out_shape, 2, 2, 0, 1, c) for c in (False, True))
    assert numba_conv.forward_max_pool(x, w4, odd, None, floor)[0].shape == (4, 8, 4, 4)
    assert numba_conv.forward_max_pool(x, w4, odd, None, ceil) is None  # ceil mode's windows past the edge
    strided = shapes.normalize_conv_args(x.shape, w.shape, 2, 1, 1, 1)  # not the tiles' layout
    assert numba_conv.forward_max_pool(x, w, strided, None, pool(2, 2)) is None
    for name in ("im2col", "direct"):
        assert K.get_kernel(name).forward_max_pool(x, w, args, None, pool(2, 2)) is None


@jit_only
def test_a_pooled_conv_without_bias_and_in_float64_through_the_functional_door(monkeypatch):
    monkeypatch.setattr(choose, "BLOCKED_TILES", "avx2")
    monkeypatch.setattr(choose, "MIN_BLOCK_USE", 0.0)
    monkeypatch.setattr(choose, "BATCH_MIN_BLOCK_USE", {})
    monkeypatch.setattr(choose, "TILES_BATCH_LAST_MAX_FLAT_USE", 0.0)
    calls = []
    real = blocked.forward_max_pool
    monkeypatch.setattr(blocked, "forward_max_pool", lambda *a: calls.append(a[-1]) or real(*a))
    rng = np.random.default_rng(3)
    x = tc.tensor(rng.standard_normal((5, 4, 21, 38)), requires_grad=True)
    w = tc.tensor(rng.standard_normal((7, 4, 3, 3)), requires_grad=True)
    fused = F.conv2d_relu_max_pool2d(x, w, None, padding=1, pool_kernel_size=2, kernel="numba")
    assert calls == ["avx2"] and fused.shape == (5, 7, 10, 19) and fused.dtype == tc.float64
    g = tc.tensor(rng.standard_normal(fused.shape))
    fused.backward(g)
    got = [fused.numpy(), x.grad.numpy().copy(), w.grad.numpy().copy()]
    x.grad, w.grad = None, None
    unfused = F.max_pool2d(F.relu(F.conv2d(x, w, None, padding=1, kernel="numba")), 2)
    unfused.backward(g)
    for a, b in zip(got, [unfused.numpy(), x.grad.numpy(), w.grad.numpy()]):
        assert np.array_equal(a, b)

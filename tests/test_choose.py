"""tinyconv.kernels.choose, the one place that decides which loop runs, tested by its properties: every choice is a
valid one and what runs agrees with ``direct``; the layout it names is the one that runs; the choice depends on the
shape alone (and the backward keeps the forward's); each named threshold is where the choice changes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinyconv as tc
import tinyconv.kernels as K
from tinyconv import functional as F
from tinyconv.kernels import choose, shapes
from tinyconv.kernels.numba_jit.fast import batch_last, blocked, blocked_batch_last, depthwise, flat_rows, simd
from tinyconv.kernels.numba_jit.fast import conv as numba_conv

from strategies_conv import conv_configs

jit_only = pytest.mark.skipif(not K.jit_enabled(), reason="without the JIT every operation goes to im2col")

LAYOUTS = {"forward": {"depthwise", "blocked", "blocked_batch_last", "batch_last", "flat_rows"},
           "grad_input": {"depthwise", "depthwise_as_forward", "blocked", "blocked_batch_last", "phases", "flat_rows"},
           "grad_weight": {"depthwise", "blocked", "blocked_batch_last", "batch_last", "flat_rows"}}
# thresholds that make every layout reachable on the small shapes hypothesis draws
SMALL = dict(BATCH_LAST_MIN_N=2, BATCH_LAST_MAX_POS=12, MIN_BLOCK_USE=0.0)


def _args(x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1):
    return shapes.normalize_conv_args(x_shape, w_shape, stride, padding, dilation, groups)


def _close(a, b, dtype, what):
    tol = 1e-10 if dtype == np.float64 else 1e-4
    scale = max(np.abs(b).max(initial=0.0), 1.0)
    assert np.abs(a - b).max(initial=0.0) <= tol * scale, what


@pytest.fixture(params=["default", "small"])
def thresholds(request, monkeypatch):
    """The rule as it is, and with thresholds that send small shapes down every path."""
    if request.param == "small":
        for name, value in SMALL.items():
            monkeypatch.setattr(choose, name, value)
    return request.param


# ----------------------------------------------------------------------------- valid, and agrees with direct

@jit_only
@pytest.mark.parametrize("tiles", [None, *blocked.TILES], ids=["no-tiles", *blocked.TILES])
@settings(deadline=None, max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=conv_configs(max_size=8), dtype=st.sampled_from([np.float64, np.float32]))
def test_every_choice_is_valid_and_agrees_with_direct(thresholds, tiles, cfg, dtype, monkeypatch):
    monkeypatch.setattr(choose, "BLOCKED_TILES", tiles)  # (every variant runs on any CPU, slowly where it spills)
    args = _args(cfg.x_shape, cfg.w_shape, *cfg.kernel_args)
    out_hw = args.out_shape[2:]
    for op in choose.CONV_OPS:
        assert choose.conv_backend(op, cfg.x_shape, cfg.w_shape, args) in ("numba", "im2col")
        assert choose.numba_layout(op, cfg.x_shape, cfg.w_shape, out_hw, args) in LAYOUTS[op]
    x, w, gy = cfg.arrays(dtype)
    ref = [f(*a) for f, a in ((K.direct.forward, (x.astype(np.float64), w.astype(np.float64), args)),
                              (K.direct.grad_input, (gy.astype(np.float64), w.astype(np.float64), (cfg.h, cfg.w),
                                                     args)),
                              (K.direct.grad_weight, (x.astype(np.float64), gy.astype(np.float64), args)))]
    for backend in (K.get_kernel("auto"), K.get_kernel("numba")):
        got = (backend.forward(x, w, args), backend.grad_input(gy, w, (cfg.h, cfg.w), args),
               backend.grad_weight(x, gy, args))
        for op, a, b in zip(choose.CONV_OPS, got, ref):
            assert a.dtype == dtype and a.shape == b.shape
            _close(a, b, dtype, f"{backend.name} {op}")


@jit_only
@pytest.mark.parametrize("tiles", [None, *blocked.TILES], ids=["no-tiles", *blocked.TILES])
@settings(deadline=None, max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=conv_configs(max_size=8))
def test_the_layout_named_is_the_one_that_runs(thresholds, tiles, cfg, monkeypatch):
    """The layout the chooser names is the one that runs, the blocked loops in the variant it names
    (``choose.BLOCKED_TILES``)."""
    ran = []

    def spy(module, name, label):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, **k: (ran.append(label), real(*a, **k))[1])

    def spy_tiles(name, module=blocked, label="blocked"):  # the tiles' last argument is the variant
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a: (ran.append((label, a[-1])), real(*a))[1])

    spy(depthwise, "forward", "depthwise"), spy(depthwise, "grad_input", "depthwise")
    spy(depthwise, "grad_weight", "depthwise")
    spy_tiles("forward"), spy_tiles("grad_input"), spy_tiles("grad_weight")
    for name in ("forward", "grad_input", "grad_weight"):
        spy_tiles(name, blocked_batch_last, "blocked_batch_last")
    spy(batch_last, "forward", "batch_last"), spy(batch_last, "grad_weight", "batch_last")
    spy(flat_rows, "forward_core", "flat_rows"), spy(flat_rows, "grad_input_core", "flat_rows")
    spy(flat_rows, "grad_weight_core", "flat_rows")
    monkeypatch.setattr(choose, "BLOCKED_TILES", tiles)
    args = _args(cfg.x_shape, cfg.w_shape, *cfg.kernel_args)
    x, w, gy = cfg.arrays()
    out_hw = args.out_shape[2:]
    for op, run in (("forward", lambda: numba_conv.forward(x, w, args)),
                    ("grad_input", lambda: numba_conv.grad_input(gy, w, (cfg.h, cfg.w), args)),
                    ("grad_weight", lambda: numba_conv.grad_weight(x, gy, args))):
        ran.clear()
        layout = choose.numba_layout(op, cfg.x_shape, cfg.w_shape, out_hw, args)
        run()
        # grad_input's phases and depthwise_as_forward run as forward convolutions, a phase in the forward's own
        # layout (a phase no tap reaches runs nothing: it is zero)
        want = {"phases": {"batch_last", ("blocked", tiles), ("blocked_batch_last", tiles)},
                "depthwise_as_forward": {"depthwise"}, "blocked": {("blocked", tiles)},
                "blocked_batch_last": {("blocked_batch_last", tiles)}}.get(layout, {layout})
        assert set(ran) <= want and (ran or layout == "phases"), (op, layout, ran)


def test_without_the_jit_everything_goes_to_im2col(monkeypatch):
    monkeypatch.setattr(choose, "jit_enabled", lambda: False)
    args = _args((128, 6, 14, 14), (16, 6, 5, 5))
    assert {choose.conv_backend(op, (128, 6, 14, 14), (16, 6, 5, 5), args) for op in choose.CONV_OPS} == {"im2col"}
    assert choose.pool_backend() == "numpy"
    assert choose.im2col_grad_input_layout(128, 150, 100, 4) == "chunks"
    with pytest.raises(ValueError, match="unknown conv op 'backward'"):
        choose.conv_backend("backward", (128, 6, 14, 14), (16, 6, 5, 5), args)


def test_an_unknown_op_is_refused():
    args = _args((8, 64, 16, 16), (64, 1, 3, 3), groups=64)
    with pytest.raises(ValueError, match=r"unknown conv op 'backward'; valid ops: \('forward'"):
        K.choose_kernel((8, 64, 16, 16), (64, 1, 3, 3), groups=64, op="backward", kernel="auto")
    with pytest.raises(ValueError, match="unknown conv op 'backward'"):
        choose.numba_layout("backward", (8, 64, 16, 16), (64, 1, 3, 3), (14, 14), args)


# ----------------------------------------------------------------------------- stable

@settings(deadline=None, max_examples=30)
@given(cfg=conv_configs(max_batch=40, max_size=16), others=st.lists(conv_configs(max_batch=40), max_size=3))
def test_the_choice_depends_on_the_shape_alone(cfg, others):
    """The same shape gets the same answers, whatever was asked in between (no state, no history)."""
    def answers(c):
        a = _args(c.x_shape, c.w_shape, *c.kernel_args)
        return ([choose.conv_backend(op, c.x_shape, c.w_shape, a) for op in choose.CONV_OPS]
                + [choose.numba_layout(op, c.x_shape, c.w_shape, a.out_shape[2:], a) for op in choose.CONV_OPS])

    first = answers(cfg)
    for other in others:
        answers(other)
    assert answers(cfg) == first
    assert [K.choose_kernel(cfg.x_shape, cfg.w_shape, *cfg.kernel_args, op=op, kernel="auto")
            for op in choose.CONV_OPS] == first[:3]


def test_the_backward_runs_what_the_forward_chose(monkeypatch):
    rng = np.random.default_rng(0)
    x = tc.tensor(rng.standard_normal((2, 3, 9, 9)), requires_grad=True)
    w = tc.tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
    y = F.conv2d(x, w, padding=1, kernel="auto")
    picked = {op: K.choose_kernel((2, 3, 9, 9), (4, 3, 3, 3), 1, 1, op=op, kernel="auto") for op in choose.CONV_OPS}

    def refuse(*a):
        raise AssertionError("chose again at backward")

    monkeypatch.setattr(choose, "conv_backend", refuse)
    calls = []
    for name in set(picked.values()):
        backend = K.get_kernel(name)
        for op in ("grad_input", "grad_weight"):
            real = getattr(backend, op)
            monkeypatch.setattr(backend, op, lambda *a, _r=real, _n=name, _op=op: (calls.append((_op, _n)), _r(*a))[1])
    y.sum().backward()
    assert sorted(calls) == [("grad_input", picked["grad_input"]), ("grad_weight", picked["grad_weight"])]
    ref = K.get_kernel("direct").conv2d_grad_weight(x.detach().numpy(), np.ones((2, 4, 9, 9)), (3, 3), 1, 1, 1, 1)
    np.testing.assert_allclose(w.grad.numpy(), ref, rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------- each threshold is the boundary

def _boundary(monkeypatch, name, value, pick, below, at, above, shapes_at):
    """With ``choose.<name>`` set to ``value``, ``pick(shape)`` gives ``below``, ``at`` and ``above`` for the three
    shapes ``shapes_at(value - 1)``, ``shapes_at(value)``, ``shapes_at(value + 1)``."""
    monkeypatch.setattr(choose, name, value)
    assert [pick(*shapes_at(v)) for v in (value - 1, value, value + 1)] == [below, at, above], name


def _backend(op, **kw):
    def pick(x_shape, w_shape):
        return choose.conv_backend(op, x_shape, w_shape, _args(x_shape, w_shape, **kw))
    return pick


def _layout(op, **kw):
    def pick(x_shape, w_shape):
        a = _args(x_shape, w_shape, **kw)
        return choose.numba_layout(op, x_shape, w_shape, a.out_shape[2:], a)
    return pick


@pytest.fixture
def no_tiles(monkeypatch):
    monkeypatch.setattr(choose, "BLOCKED_TILES", None)


@pytest.fixture
def tiles(monkeypatch):
    monkeypatch.setattr(choose, "BLOCKED_TILES", "avx512")


@jit_only
def test_im2col_min_k(monkeypatch, no_tiles):
    # forward at stride 1: numba below this many multiply-adds per output (a 1 x k kernel on one channel)
    _boundary(monkeypatch, "IM2COL_MIN_K", 8, _backend("forward"), "numba", "im2col", "im2col",
              lambda k: ((2, 1, 4, 12), (4, 1, 1, k)))


@jit_only
def test_numba_min_strided_taps(monkeypatch, no_tiles):
    # strided forward: numba from this many taps (a 1 x t kernel on one channel), where numba's vector unit has a
    # value and OpenBLAS's kernels are narrower; im2col at any count elsewhere
    monkeypatch.setattr(choose, "VECTOR_UNIT", "avx512")
    monkeypatch.setattr(choose.blas, "wide_kernels", lambda: False)
    monkeypatch.setattr(choose, "NUMBA_MIN_STRIDED_TAPS", {"avx512": 6})
    pick = _backend("forward", stride=2)
    assert [pick((2, 1, 4, 24), (4, 1, 1, t)) for t in (5, 6, 7)] == ["im2col", "numba", "numba"]
    monkeypatch.setattr(choose.blas, "wide_kernels", lambda: True)
    assert [pick((2, 1, 4, 24), (4, 1, 1, t)) for t in (5, 6, 7)] == ["im2col"] * 3
    monkeypatch.setattr(choose.blas, "wide_kernels", lambda: False)
    monkeypatch.setattr(choose, "VECTOR_UNIT", "avx2")
    assert [pick((2, 1, 4, 24), (4, 1, 1, t)) for t in (5, 6, 7)] == ["im2col"] * 3
    monkeypatch.setattr(choose, "VECTOR_UNIT", "avx512")
    monkeypatch.setattr(choose, "IM2COL_MIN_K", 6)  # ... below IM2COL_MIN_K multiply-adds
    assert [pick((2, 1, 4, 24), (4, 1, 1, t)) for t in (5, 6, 7)] == ["im2col", "im2col", "im2col"]


@jit_only
def test_blocked_one_tap(monkeypatch, tiles):
    # a 1x1 convolution whose plane suits the register tiles: on them where the vector unit is listed, whatever
    # OpenBLAS's kernels; im2col's product elsewhere
    monkeypatch.setattr(choose, "VECTOR_UNIT", "avx512")
    shapes = ((4, 256, 12, 12), (64, 256, 1, 1))
    ops = ("forward", "grad_input", "grad_weight")
    for wide in (False, True):
        monkeypatch.setattr(choose.blas, "wide_kernels", lambda wide=wide: wide)
        assert [_backend(op)(*shapes) for op in ops] == ["numba"] * 3
    monkeypatch.setattr(choose, "BLOCKED_ONE_TAP", ())
    assert [_backend(op)(*shapes) for op in ops] == ["im2col"] * 3


@jit_only
@pytest.mark.parametrize("variant", blocked.TILES)
def test_tiles_on_batch_last_planes(monkeypatch, variant):
    """Small planes in small batches take the register tiles on batch-last planes: GoogLeNet's and ResNet-18's
    6x6 layers at batch 16 (and 12x12 ones where the blocks are 32 positions long), not their 24x24 ones (whose
    flat blocks are well used), 3x3 planes only for the variants in TILES_BATCH_LAST_MIN_POS_TILES (elsewhere they
    have fewer than TILES_BATCH_LAST_MIN_POS positions: im2col's product), never 2x2 ones, not a batch of
    BATCH_LAST_MIN_N, and grad_weight only for the variants in TILES_BATCH_LAST_GW, with a whole tile of output
    channels."""
    monkeypatch.setattr(choose, "BLOCKED_TILES", variant)
    width = blocked.GRAD_WEIGHT_VECTORS[variant] * 16

    def layouts(x_shape, w_shape):
        a = _args(x_shape, w_shape, padding=w_shape[2] // 2)
        return [choose.numba_layout(op, x_shape, w_shape, a.out_shape[2:], a) for op in choose.CONV_OPS]

    bl = ["blocked_batch_last"] * 3
    assert layouts((16, 160, 6, 6), (320, 160, 3, 3)) == (bl if variant == "avx512" else bl[:2] + ["blocked"])
    monkeypatch.setattr(choose, "TILES_BATCH_LAST_GW", (variant,))  # grad_weight's tiles: avx512's, here either
    assert layouts((16, 160, 6, 6), (320, 160, 3, 3)) == bl
    # 12x12: 144 of 192 flat positions in 32-position blocks (avx512), of 176 in 16-position ones (avx2)
    assert layouts((16, 128, 12, 12), (128, 128, 3, 3)) == (bl if variant == "avx512" else ["blocked"] * 3)
    assert layouts((16, 64, 24, 24), (64, 64, 3, 3)) == ["blocked"] * 3
    three = layouts((16, 512, 3, 3), (512, 512, 3, 3))
    assert (three[:2] == bl[:2]) is (variant in choose.TILES_BATCH_LAST_MIN_POS_TILES)
    monkeypatch.setattr(choose, "TILES_BATCH_LAST_MIN_POS_TILES", {variant: 9})
    assert layouts((16, 512, 3, 3), (512, 512, 3, 3)) == bl
    assert "blocked_batch_last" not in layouts((16, 512, 2, 2), (512, 512, 3, 3))
    monkeypatch.setattr(choose, "TILES_BATCH_LAST_MIN_POS_TILES", {})
    assert "blocked_batch_last" not in layouts((16, 512, 3, 3), (512, 512, 3, 3))
    assert "blocked_batch_last" not in layouts((32, 160, 6, 6), (320, 160, 3, 3))
    assert layouts((16, 160, 6, 6), (width - 1, 160, 3, 3))[2] != "blocked_batch_last"
    deep = variant in choose.TILES_BATCH_LAST_MAX_K  # 4608 multiply-adds per output: im2col's there
    assert [_backend(op, padding=1)((16, 512, 6, 6), (512, 512, 3, 3)) for op in choose.CONV_OPS] == (
        ["im2col", "im2col", "numba"] if deep else ["numba"] * 3)
    # one row of outputs: its flat blocks half used, its batch-last ones fully
    _boundary(monkeypatch, "TILES_BATCH_LAST_MIN_POS", 36, _layout("forward", padding=1), "blocked",
              "blocked_batch_last", "blocked_batch_last", lambda pos: ((16, 64, 1, pos), (64, 64, 3, 3)))


@jit_only
def test_im2col_min_og(monkeypatch, no_tiles):
    # strided grad_input: numba below this many output channels per group
    _boundary(monkeypatch, "IM2COL_MIN_OG", 4, _backend("grad_input", stride=2), "numba", "im2col", "im2col",
              lambda og: ((2, 2, 8, 8), (og, 2, 3, 3)))


@jit_only
def test_numba_min_in_pos(monkeypatch, no_tiles):
    # strided grad_input with many output channels: numba from inputs of this many positions
    _boundary(monkeypatch, "NUMBA_MIN_IN_POS", 30, _backend("grad_input", stride=2, padding=1),
              "im2col", "numba", "numba", lambda pos: ((2, 8, 1, pos), (32, 8, 3, 3)))


@jit_only
def test_numba_min_in_pos_channels(monkeypatch, no_tiles):
    _boundary(monkeypatch, "NUMBA_MIN_IN_POS_CHANNELS", 8, _backend("grad_input", stride=2, padding=1),
              "im2col", "numba", "numba", lambda cg: ((2, cg, 32, 32), (32, cg, 3, 3)))


@jit_only
def test_numba_max_strided_out_pos(monkeypatch, no_tiles):
    # strided grad_weight of a big batch: numba's batch-last loops up to this many output positions (1 x P here)
    _boundary(monkeypatch, "NUMBA_MAX_STRIDED_OUT_POS", 10, _backend("grad_weight", stride=2),
              "numba", "numba", "im2col", lambda p: ((32, 2, 3, 2 * p + 1), (4, 2, 3, 3)))


@jit_only
def test_blocked_grad_weight_thresholds(monkeypatch, tiles):
    """grad_weight on the blocked tiles up to BLOCKED_GW_MAX_K multiply-adds per output for the variants it lists,
    at any length for the others (avx512: VGG's 4608)."""
    monkeypatch.setattr(choose, "FLAT_ROWS_GW_MAX_K", 0)  # leave the tiles as the only numba path at batch 2
    assert _backend("grad_weight")((2, 512, 16, 16), (32, 512, 3, 3)) == (
        "im2col" if "avx512" in choose.BLOCKED_GW_MAX_K else "numba")
    monkeypatch.setattr(choose, "BLOCKED_GW_MAX_K", {"avx512": 8})
    assert [_backend("grad_weight")((2, 1, 16, 16), (32, 1, 1, k)) for k in (7, 8, 9)] == ["numba"] * 2 + ["im2col"]


@jit_only
def test_flat_rows_gw_max_k(monkeypatch, no_tiles):
    _boundary(monkeypatch, "FLAT_ROWS_GW_MAX_K", 8, _backend("grad_weight"), "numba", "numba", "im2col",
              lambda k: ((2, 1, 4, 12), (4, 1, 1, k)))


def test_batch_last_min_n(monkeypatch, no_tiles):
    for op in ("forward", "grad_weight"):
        _boundary(monkeypatch, "BATCH_LAST_MIN_N", 32, _layout(op), "flat_rows", "batch_last", "batch_last",
                  lambda n: ((n, 2, 9, 9), (4, 2, 3, 3)))
    _boundary(monkeypatch, "BATCH_LAST_MIN_N", 32, _layout("grad_input"), "flat_rows", "phases", "phases",
              lambda n: ((n, 2, 9, 9), (4, 2, 3, 3)))
    monkeypatch.setattr(choose, "jit_enabled", lambda: True)
    _boundary(monkeypatch, "BATCH_LAST_MIN_N", 32, lambda n: choose.im2col_grad_input_layout(n, 18, 49, 4),
              "chunks", "batch_last", "batch_last", lambda n: (n,))


def test_batch_last_max_pos(monkeypatch, no_tiles):
    # a 1x1 kernel on planes of whole vectors leaves no garbage in the flat-rows layout: only the output's size
    # decides (63 positions, 64, and 80, the next size of whole vectors)
    monkeypatch.setattr(choose, "BATCH_LAST_MAX_POS", 64)
    picks = [_layout("forward")((32, 2, h, w), (4, 2, 1, 1)) for h, w in ((7, 9), (8, 8), (8, 10))]
    assert picks == ["batch_last", "batch_last", "flat_rows"]


def test_batch_last_min_garbage(monkeypatch, no_tiles):
    # outputs larger than BATCH_LAST_MAX_POS: batch-last only where more than this share of the flat-rows
    # layout's positions would be garbage
    monkeypatch.setattr(choose, "BATCH_LAST_MAX_POS", 0)
    x_shape, w_shape = (32, 1, 6, 9), (2, 1, 1, 2)
    args = _args(x_shape, w_shape)
    lay = flat_rows.Layout(6, 9, args.padding, args.stride, args.dilation, args.kernel_hw)
    garbage = 1 - 6 * 8 / lay.npos(6)     # 6 x 8 outputs
    assert 0 < garbage < 1
    for limit, want in ((garbage - 1e-9, "batch_last"), (garbage + 1e-9, "flat_rows")):
        monkeypatch.setattr(choose, "BATCH_LAST_MIN_GARBAGE", limit)
        assert _layout("forward")(x_shape, w_shape) == want


def test_im2col_batch_last_max_bytes(monkeypatch):
    monkeypatch.setattr(choose, "jit_enabled", lambda: True)
    # 32 images x 9 x 10 x 4 bytes = 11520: batch-last up to that size, chunks above
    for limit, want in ((11519, "chunks"), (11520, "batch_last"), (11521, "batch_last")):
        monkeypatch.setattr(choose, "IM2COL_BATCH_LAST_MAX_BYTES", limit)
        assert choose.im2col_grad_input_layout(32, 9, 10, 4) == want


@jit_only
def test_min_block_use(monkeypatch, tiles):
    x_shape, w_shape = (2, 8, 5, 5), (8, 8, 3, 3)
    args = _args(x_shape, w_shape, padding=1)
    use = blocked.block_use((5, 5), 7, "avx512")  # 25 outputs among 33 flat positions, in whole 32-position blocks
    assert 0 < use < 1
    for limit, want in ((use - 1e-9, True), (use, True), (use + 1e-9, False)):
        monkeypatch.setattr(choose, "MIN_BLOCK_USE", limit)
        assert choose.uses_blocked("forward", x_shape, w_shape, (5, 5), args) is want


@jit_only
def test_batch_min_block_use(monkeypatch):
    """From BATCH_LAST_MIN_N images a variant named in BATCH_MIN_BLOCK_USE needs that share of its blocks' positions
    (forward and grad_input); with fewer images, or another variant, MIN_BLOCK_USE decides."""
    monkeypatch.setattr(choose, "BLOCKED_TILES", "avx2")
    monkeypatch.setattr(choose, "MIN_BLOCK_USE", 0.0)
    w_shape = (8, 8, 3, 3)
    use = blocked.block_use((5, 5), 7, "avx2")   # 25 outputs among 33 flat positions, in whole 16-position blocks
    assert 0 < use < 1
    for limit, want in ((use - 1e-9, True), (use, True), (use + 1e-9, False)):
        monkeypatch.setattr(choose, "BATCH_MIN_BLOCK_USE", {"avx2": limit})
        for op in ("forward", "grad_input"):
            for n, want_n in ((32, want), (31, True)):
                x_shape = (n, 8, 5, 5)
                args = _args(x_shape, w_shape, padding=1)
                assert choose.uses_blocked(op, x_shape, w_shape, (5, 5), args) is want_n, (op, n, limit)
    monkeypatch.setattr(choose, "BLOCKED_TILES", "avx512")  # not named: MIN_BLOCK_USE alone
    args = _args((32, 8, 5, 5), w_shape, padding=1)
    assert choose.uses_blocked("forward", (32, 8, 5, 5), w_shape, (5, 5), args)


@jit_only
def test_batch_gw_min_pos(monkeypatch):
    """From BATCH_LAST_MIN_N images grad_weight takes the blocked loops from BATCH_GW_MIN_POS output positions for
    the variants named there, from BATCH_LAST_MAX_POS for the others; with fewer images, whatever the size."""
    monkeypatch.setattr(choose, "BLOCKED_TILES", "avx2")
    monkeypatch.setattr(choose, "BATCH_GW_MIN_POS", {"avx2": 64})
    monkeypatch.setattr(choose, "BATCH_LAST_MAX_POS", 100)

    def layouts(n):
        return [_layout("grad_weight", padding=1)((n, 8, 8, w), (8, 8, 3, 3)) for w in (7, 8, 9)]  # 56, 64, 72

    assert layouts(32) == ["batch_last", "blocked", "blocked"]
    assert layouts(31) == ["blocked"] * 3
    monkeypatch.setattr(choose, "BLOCKED_TILES", "avx512")
    assert layouts(32) == ["batch_last"] * 3
    monkeypatch.setattr(choose, "BATCH_LAST_MAX_POS", 64)
    assert layouts(32) == ["batch_last", "blocked", "blocked"]


@jit_only
def test_min_tile_fill(monkeypatch, tiles):
    """Tiles of 6 output channels for 1..6: 4 of 6 is two thirds (used), 3 of 6 is not."""
    monkeypatch.setattr(choose, "MIN_BLOCK_USE", 0.0)
    fills = {}
    for c in (3, 4, 5):
        args = _args((2, 2, 16, 16), (c, 2, 3, 3), padding=1)
        fills[c] = choose.uses_blocked("forward", (2, 2, 16, 16), (c, 2, 3, 3), (16, 16), args)
    assert blocked.tile_channels(4, "avx512") == 6
    assert fills == {3: False, 4: True, 5: True}
    monkeypatch.setattr(choose, "MIN_TILE_FILL", (5, 6))  # the named fraction is what decides
    args = _args((2, 2, 16, 16), (4, 2, 3, 3), padding=1)
    assert not choose.uses_blocked("forward", (2, 2, 16, 16), (4, 2, 3, 3), (16, 16), args)


# ----------------------------------------------------------------------------- the blocked loops' variant

X86, ARM = "x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"


@pytest.fixture(scope="module")
def llvm_targets():
    """LLVM's x86 and AArch64 code generators (numba itself sets up only the host's)."""
    from llvmlite import binding

    try:
        binding.initialize_all_targets()
        binding.initialize_all_asmprinters()
        for triple in (X86, ARM):
            binding.Target.from_triple(triple)
    except RuntimeError as e:
        pytest.skip(f"this llvmlite has no code generator for both x86 and AArch64: {e}")


@pytest.mark.parametrize("cpu, features, triple, unit", [
    ("haswell", "", X86, "avx2"),                          # AVX2 and FMA: 16 registers of 256 bits
    ("znver3", "", X86, "avx2"),
    ("haswell", "+avx2,+fma,+avx,+sse4.2", X86, "avx2"),
    ("skylake-avx512", "", X86, "avx512"),                 # AVX-512F: 32 registers of 512 bits
    ("znver5", "", X86, "avx512"),
    ("skylake-avx512", "-avx512f", X86, "avx2"),           # the features decide, not the name
    ("haswell", "+avx512f", X86, "avx512"),                # (what numba passes for NUMBA_CPU_NAME alone)
    ("sandybridge", "", X86, "generic"),                   # AVX without FMA
    ("x86-64", "", X86, "generic"),                        # SSE2
    ("neoverse-v1", "", ARM, "generic"),                   # NEON: 128-bit registers
    ("generic", "", ARM, "generic"),
])
def test_vector_unit_is_what_llvm_compiles_for(llvm_targets, cpu, features, triple, unit):
    assert simd.vector_unit(cpu, features, triple) == unit
    assert choose.blocked_tiles_for(unit) == (unit if unit != "generic" else None)


def test_the_variant_follows_numbas_target():
    """NUMBA_CPU_NAME / NUMBA_CPU_FEATURES pick the variant in a fresh process, whatever the host: an AVX2 CPU the
    avx2 tiles, a generic one none (the flat-rows and batch-last loops); importing compiles nothing."""
    root = Path(__file__).resolve().parents[1]
    code = ("from tinyconv.kernels import choose; from tinyconv.kernels.numba_jit.fast import simd; "
            "print(simd.compiled_vector_unit(), choose.BLOCKED_TILES)")
    got = {}
    for name, features in (("haswell", "+avx2,+fma,+avx,+sse4.2"), ("generic", None)):
        env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU")}
        env.update(NUMBA_CPU_NAME=name, PYTHONPATH=str(root) + os.pathsep + env.get("PYTHONPATH", ""))
        if features is not None:
            env["NUMBA_CPU_FEATURES"] = features
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=str(root),
                           timeout=300)
        assert r.returncode == 0, r.stderr
        got[name] = r.stdout.split()
    assert got == {"haswell": ["avx2", "avx2"], "generic": ["generic", "None"]}


@jit_only
def test_blocked_planes_in_l2(monkeypatch):
    """For a variant named in BLOCKED_PLANES_IN_L2, auto runs forward and grad_input on the flat-rows tiles only
    while one image's padded input planes (float32) are smaller than L2_BYTES, else im2col; other variants
    whatever their size."""
    monkeypatch.setattr(choose, "BLOCKED_TILES", "avx2")
    x_shape, w_shape = (2, 8, 16, 16), (8, 8, 3, 3)
    args = _args(x_shape, w_shape, padding=1)
    planes = 8 * 18 * 18 * 4  # forward: x's 8 channels padded to 18x18; grad_input: grad_y's 8, padded by 2
    for op in ("forward", "grad_input"):
        assert choose.uses_blocked(op, x_shape, w_shape, (16, 16), args)
        assert not choose.uses_blocked_batch_last(op, x_shape, w_shape, (16, 16), args)
        for l2, want in ((planes + 1, "numba"), (planes, "im2col")):
            monkeypatch.setattr(choose, "L2_BYTES", l2)
            assert choose.conv_backend(op, x_shape, w_shape, args) == want, (op, l2)
    monkeypatch.setattr(choose, "BLOCKED_PLANES_IN_L2", ())
    assert choose.conv_backend("forward", x_shape, w_shape, args) == "numba"


@jit_only
def test_wide_blas_deep_sums_on_large_planes(monkeypatch):
    """Where OpenBLAS runs 512-bit kernels, auto runs forward and grad_input on the flat-rows tiles only for sums
    under WIDE_BLAS_MIN_K multiply-adds per output (forward: C_in/groups * taps, grad_input: C_out/groups * taps)
    or planes of at most WIDE_BLAS_L2_SHARE of L2_BYTES (forward: x's channels padded, grad_input: grad_y's padded
    by the kernel's reach), else im2col; with narrower kernels, on the tiles whatever the sums."""
    monkeypatch.setattr(choose, "BLOCKED_TILES", "avx512")
    monkeypatch.setattr(choose, "BLOCKED_PLANES_IN_L2", ())
    x_shape, w_shape = (2, 16, 20, 20), (32, 16, 3, 3)
    args = _args(x_shape, w_shape, padding=1)
    for op, k, planes in (("forward", 16 * 9, 16 * 22 * 22 * 4), ("grad_input", 32 * 9, 32 * 22 * 22 * 4)):
        assert choose.uses_blocked(op, x_shape, w_shape, (20, 20), args), op
        assert not choose.uses_blocked_batch_last(op, x_shape, w_shape, (20, 20), args), op
        monkeypatch.setattr(choose.blas, "wide_kernels", lambda: True)
        for min_k, l2, want in ((k, 4 * planes, "numba"), (k, 4 * planes - 4, "im2col"),
                                (k + 1, 4 * planes - 4, "numba")):
            monkeypatch.setattr(choose, "WIDE_BLAS_MIN_K", min_k)
            monkeypatch.setattr(choose, "L2_BYTES", l2)
            assert choose.conv_backend(op, x_shape, w_shape, args) == want, (op, min_k, l2)
        monkeypatch.setattr(choose.blas, "wide_kernels", lambda: False)
        monkeypatch.setattr(choose, "WIDE_BLAS_MIN_K", k)
        assert choose.conv_backend(op, x_shape, w_shape, args) == "numba", op
    # grad_weight keeps its own rules
    monkeypatch.setattr(choose.blas, "wide_kernels", lambda: True)
    assert choose.conv_backend("grad_weight", x_shape, w_shape, args) == "numba"


@jit_only
@pytest.mark.parametrize("variant", blocked.TILES)
def test_blas_wider_than_numba(monkeypatch, variant):
    """Where OpenBLAS runs 512-bit kernels and numba compiles narrower vectors, an op of a multi-tap convolution
    whose product has BLAS_WIDER_MIN_ROWS rows (forward, grad_weight: C_out/groups; grad_input: C_in/groups) and
    sums of BLAS_WIDER_MIN_K (forward, grad_weight: C_in/groups * taps; grad_input: C_out/groups * taps) runs as
    im2col's product; other ops, and every op with numba's AVX-512 vectors or narrower BLAS kernels, as the other
    rules say."""
    monkeypatch.setattr(choose, "BLOCKED_TILES", variant)
    monkeypatch.setattr(choose, "BLAS_WIDER_MIN_ROWS", 128)
    monkeypatch.setattr(choose, "BLAS_WIDER_MIN_K", 512)

    def picks(x_shape, w_shape, unit, wide):
        monkeypatch.setattr(choose, "VECTOR_UNIT", unit)
        monkeypatch.setattr(choose.blas, "wide_kernels", lambda: wide)
        a = _args(x_shape, w_shape, padding=w_shape[2] // 2)
        return [choose.conv_backend(op, x_shape, w_shape, a) for op in choose.CONV_OPS]

    assert picks((4, 128, 10, 10), (128, 128, 3, 3), "avx2", True) == ["im2col"] * 3
    # grad_input's product has C_in/groups = 64 rows: the other rules
    other = picks((4, 64, 10, 10), (128, 64, 3, 3), "avx2", False)
    assert picks((4, 64, 10, 10), (128, 64, 3, 3), "avx2", True) == ["im2col", other[1], "im2col"]
    monkeypatch.setattr(choose, "BLAS_WIDER_MIN_K", 577)  # forward's and grad_weight's sums: 576
    assert picks((4, 64, 10, 10), (128, 64, 3, 3), "avx2", True) == other
    monkeypatch.setattr(choose, "BLAS_WIDER_MIN_K", 512)
    for x_shape, w_shape in (((4, 128, 10, 10), (128, 128, 3, 3)), ((4, 256, 10, 10), (256, 256, 1, 1))):
        assert picks(x_shape, w_shape, "avx512", True) == picks(x_shape, w_shape, "avx512", False)
        if w_shape[2] == 1:  # one tap: the other rules
            assert picks(x_shape, w_shape, "avx2", True) == picks(x_shape, w_shape, "avx2", False)


@jit_only
@pytest.mark.parametrize("variant", blocked.TILES)
def test_grad_weight_few_pairs_on_large_planes(monkeypatch, variant):
    """grad_weight on the position-major tiles (a tile's worth of output channels per group) goes to im2col where
    the (input channel, tap) pairs are at most GW_FEW_PAIRS and the output has more than GW_FEW_PAIRS_MAX_POS
    positions: VGG's first layer, not its second (576 pairs), nor the same layer on small planes, nor one with too
    few output channels for those tiles."""
    monkeypatch.setattr(choose, "BLOCKED_TILES", variant)
    width = blocked.GRAD_WEIGHT_VECTORS[variant] * 16

    def pick(x_shape, w_shape):
        a = _args(x_shape, w_shape, padding=1)
        assert choose.uses_blocked("grad_weight", x_shape, w_shape, a.out_shape[2:], a)
        return choose.conv_backend("grad_weight", x_shape, w_shape, a)

    first = ((4, 1, 80, 80), (width, 1, 3, 3))  # 9 pairs, 6400 positions
    narrow = ((4, 1, 80, 80), (width - 1, 1, 3, 3))  # too few output channels for the position-major tiles
    monkeypatch.setattr(choose, "GW_FEW_PAIRS_MAX_POS", 6400)
    assert pick(*first) == pick(*narrow) == "numba"
    monkeypatch.setattr(choose, "GW_FEW_PAIRS_MAX_POS", 6399)
    assert pick(*first) == "im2col"
    assert pick(*narrow) == "numba"
    monkeypatch.setattr(choose, "GW_FEW_PAIRS", 8)
    assert pick(*first) == "numba"


@jit_only
def test_tiles_batch_last_max_k(monkeypatch):
    """For a variant named in TILES_BATCH_LAST_MAX_K, auto runs forward and grad_input on the batch-last tiles up
    to that many multiply-adds per output (forward: C_in/groups * taps, grad_input: C_out/groups * taps)."""
    monkeypatch.setattr(choose, "BLOCKED_TILES", "avx2")
    x_shape, w_shape = (8, 6, 6, 6), (12, 6, 3, 3)
    args = _args(x_shape, w_shape, padding=1)
    for op, k in (("forward", 6 * 9), ("grad_input", 12 * 9)):
        assert choose.uses_blocked_batch_last(op, x_shape, w_shape, (6, 6), args), op
        for limit, want in ((k, "numba"), (k - 1, "im2col")):
            monkeypatch.setattr(choose, "TILES_BATCH_LAST_MAX_K", {"avx2": limit})
            assert choose.conv_backend(op, x_shape, w_shape, args) == want, (op, limit)
    monkeypatch.setattr(choose, "TILES_BATCH_LAST_MAX_K", {})
    assert choose.conv_backend("forward", x_shape, w_shape, args) == "numba"


@jit_only
def test_blocked_gw_min_pos_any_k(monkeypatch):
    """grad_weight on the blocked loops beyond BLOCKED_GW_MAX_K multiply-adds per output where the output has at
    least BLOCKED_GW_MIN_POS_ANY_K positions (for the variants named in both)."""
    monkeypatch.setattr(choose, "BLOCKED_TILES", "avx2")
    x_shape, w_shape = (2, 32, 12, 12), (8, 32, 3, 3)  # 288 multiply-adds per output, 144 output positions
    args = _args(x_shape, w_shape, padding=1)
    assert choose.uses_blocked("grad_weight", x_shape, w_shape, (12, 12), args)
    monkeypatch.setattr(choose, "BLOCKED_GW_MAX_K", {"avx2": 287})
    for least, want in ((144, "numba"), (145, "im2col")):
        monkeypatch.setattr(choose, "BLOCKED_GW_MIN_POS_ANY_K", {"avx2": least})
        assert choose.conv_backend("grad_weight", x_shape, w_shape, args) == want, least
    monkeypatch.setattr(choose, "BLOCKED_GW_MAX_K", {"avx2": 288})
    assert choose.conv_backend("grad_weight", x_shape, w_shape, args) == "numba"


def test_l2_bytes_reads_the_size_linux_reports(tmp_path):
    for index, (level, size) in enumerate((("1", "32K"), ("2", "1024K"), ("3", "32M"))):
        d = tmp_path / f"index{index}"
        d.mkdir()
        (d / "level").write_text(level + "\n")
        (d / "size").write_text(size + "\n")
    assert choose._l2_bytes(str(tmp_path)) == 1024 * 1024
    (tmp_path / "index1" / "size").write_text("garbage\n")
    assert choose._l2_bytes(str(tmp_path), default=123) == 123
    assert choose._l2_bytes(str(tmp_path / "missing"), default=456) == 456


def test_max_pool_planes_last(monkeypatch):
    """Max pooling windows other than 2x2 / stride 2 run many planes at a time on planes of at most
    MAX_POOL_PLANES_LAST_MAX_PIXELS pixels, and the numba backend's door takes that loop there."""
    assert choose.max_pool_planes_last((16, 16)) and not choose.max_pool_planes_last((16, 17))
    monkeypatch.setattr(choose, "MAX_POOL_PLANES_LAST_MAX_PIXELS", 20)
    assert choose.max_pool_planes_last((4, 5)) and not choose.max_pool_planes_last((3, 7))
    seen = []
    real = numba_conv.numba_pooling.max_pool
    monkeypatch.setattr(numba_conv.numba_pooling, "max_pool",
                        lambda x, args, flat=False, planes_last=False: seen.append(planes_last) or real(x, args))
    for shape in ((2, 3, 4, 5), (2, 3, 3, 7)):
        x = np.zeros(shape, np.float32)
        numba_conv.max_pool(x, shapes.normalize_pool_args(x.shape, 3, 1, 1))
    assert seen == [True, False]

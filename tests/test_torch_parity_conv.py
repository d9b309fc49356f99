"""Optional: conv2d, conv_transpose2d, max_pool2d and avg_pool2d against PyTorch, forward and every gradient,
for every kernel, on hypothesis-drawn configurations. float64 to 1e-9, float32 to 2e-4 relative.

Skipped when torch is not installed (see tests/test_torch_parity_core.py for how to run it with torch).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given

torch = pytest.importorskip("torch")  # before numba starts its OpenMP pool: the two runtimes must not clash

import tinyconv as tc  # noqa: E402
from tinyconv import functional as F  # noqa: E402

from strategies_conv import conv_configs, conv_transpose_configs, pool_configs  # noqa: E402

pytestmark = pytest.mark.torch

KERNELS = ["direct", "im2col", "numba"]
POOL_KERNELS = ["numpy", "numba"]
TOLERANCES = {np.float64: dict(rtol=1e-9, atol=1e-9), np.float32: dict(rtol=2e-4, atol=2e-4)}
DTYPES = [np.float64, np.float32]


def run_both(tc_fn, torch_fn, arrays, grad_out_seed=0):
    """Forward in both libraries, backward with the same random output gradient; return pairs to compare."""
    ours = [tc.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    y, ty = tc_fn(*ours), torch_fn(*theirs)
    g = np.random.default_rng(grad_out_seed).uniform(-1, 1, y.shape).astype(y.dtype)
    y.backward(tc.tensor(g))
    ty.backward(torch.tensor(g))
    pairs = [("output", y.numpy(), ty.detach().numpy())]
    pairs += [(f"grad {i}", a.grad.numpy(), b.grad.numpy()) for i, (a, b) in enumerate(zip(ours, theirs))]
    return pairs


def assert_pairs(pairs, dtype):
    for name, mine, ref in pairs:
        assert mine.shape == ref.shape, name
        np.testing.assert_allclose(mine, ref, err_msg=name, **TOLERANCES[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", KERNELS)
@given(cfg=conv_configs())
def test_conv2d_matches_pytorch(kernel, dtype, cfg):
    x, w, _ = cfg.arrays(dtype)
    b = np.random.default_rng(cfg.seed + 1).uniform(-1, 1, cfg.c_out).astype(dtype)
    args = dict(stride=cfg.stride, padding=cfg.padding_arg, dilation=cfg.dilation, groups=cfg.groups)
    pairs = run_both(lambda *t: F.conv2d(*t, kernel=kernel, **args),
                     lambda *t: torch.nn.functional.conv2d(*t, **args), [x, w, b])
    assert_pairs(pairs, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", KERNELS)
@given(cfg=conv_transpose_configs())
def test_conv_transpose2d_matches_pytorch(kernel, dtype, cfg):
    rng = np.random.default_rng(cfg.seed)
    x = rng.uniform(-1, 1, cfg.x_shape).astype(dtype)
    w = rng.uniform(-1, 1, cfg.w_shape).astype(dtype)
    b = rng.uniform(-1, 1, cfg.c_out).astype(dtype)
    args = dict(stride=cfg.stride, padding=cfg.padding, output_padding=cfg.output_padding, groups=cfg.groups,
                dilation=cfg.dilation)
    pairs = run_both(lambda *t: F.conv_transpose2d(*t, kernel=kernel, **args),
                     lambda *t: torch.nn.functional.conv_transpose2d(*t, **args), [x, w, b])
    assert_pairs(pairs, dtype)


def _every_window_touches_the_input(cfg) -> bool:
    """True when every pooling window, along both axes, has at least one tap inside the input."""
    for n_in, k, s, p, d, n_out in zip((cfg.h, cfg.w), cfg.kernel, cfg.stride, cfg.padding, cfg.dilation,
                                       cfg.out_shape[2:]):
        taps = (np.arange(n_out) * s - p)[:, None] + np.arange(k)[None, :] * d
        if not np.all(((taps >= 0) & (taps < n_in)).any(axis=1)):
            return False
    return True


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", POOL_KERNELS)
@given(cfg=pool_configs())
def test_max_pool2d_matches_pytorch(kernel, dtype, cfg):
    # A window made of padding only has no maximum; PyTorch then routes its gradient to an index computed past
    # the window, which can land in the next row or even the next channel's plane. Compare real windows only.
    assume(_every_window_touches_the_input(cfg))
    x, _ = cfg.arrays(dtype, integer=True)  # integers: many ties, so the first-maximum rule is exercised
    args = dict(kernel_size=cfg.kernel, stride=cfg.stride, padding=cfg.padding, dilation=cfg.dilation,
                ceil_mode=cfg.ceil_mode)
    pairs = run_both(lambda t: F.max_pool2d(t, kernel=kernel, **args),
                     lambda t: torch.nn.functional.max_pool2d(t, **args), [x])
    assert_pairs(pairs, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", POOL_KERNELS)
@given(cfg=pool_configs(with_dilation=False))
def test_avg_pool2d_matches_pytorch(kernel, dtype, cfg):
    x, _ = cfg.arrays(dtype)
    args = dict(kernel_size=cfg.kernel, stride=cfg.stride, padding=cfg.padding, ceil_mode=cfg.ceil_mode,
                count_include_pad=cfg.count_include_pad)
    pairs = run_both(lambda t: F.avg_pool2d(t, kernel=kernel, **args),
                     lambda t: torch.nn.functional.avg_pool2d(t, **args), [x])
    assert_pairs(pairs, dtype)

"""tinyconv.kernels.adam: the compiled Adam update gives the same bits as NumPy's reference, step after step."""
import math
import platform

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyconv.kernels import adam


@settings(deadline=None, max_examples=20)
@given(size=st.integers(1, 300), dtype=st.sampled_from([np.float32, np.float64]),
       beta1=st.floats(0.0, 0.99), beta2=st.floats(0.0, 0.9999), lr=st.floats(1e-5, 1.0),
       eps=st.sampled_from([1e-8, 1e-3, 0.0]), seed=st.integers(0, 2**16))
def test_same_bits_as_numpy(size, dtype, beta1, beta2, lr, eps, seed):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(size).astype(dtype)
    m, v = np.zeros_like(p), np.zeros_like(p)
    ref = [a.copy() for a in (p, m, v)]
    for t in range(1, 4):
        g = rng.standard_normal(size).astype(dtype)
        step, bc2 = lr / (1 - beta1**t), math.sqrt(1 - beta2**t)  # Python floats, as the optimizer passes
        adam.adam_update(p, g, m, v, beta1, beta2, step, bc2, eps)
        adam.adam_update_numpy(*ref[:1], g, *ref[1:], beta1, beta2, step, bc2, eps)
        for got, want in zip((p, m, v), ref):
            assert got.dtype == dtype
            np.testing.assert_array_equal(got, want)


@pytest.mark.skipif(numba.config.DISABLE_JIT, reason="the compiled pass needs numba's JIT")
def test_non_contiguous_gradient_same_bits(monkeypatch):
    """A transposed gradient (a Linear layer's) is copied and takes the compiled pass, with the same result."""
    rng = np.random.default_rng(1)
    p = rng.standard_normal((4, 6)).astype(np.float32)
    g = rng.standard_normal((6, 4)).astype(np.float32).T
    want = p.copy()
    adam.adam_update_numpy(want, g, np.zeros_like(p), np.zeros_like(p), 0.9, 0.999, 0.1, 0.5, 1e-8)
    monkeypatch.setattr(adam, "adam_update_numpy", None)  # the NumPy path must not be taken
    adam.adam_update(p, g, np.zeros_like(p), np.zeros_like(p), 0.9, 0.999, 0.1, 0.5, 1e-8)
    np.testing.assert_array_equal(p, want)


def test_non_contiguous_falls_back_to_numpy():
    p = np.arange(12, dtype=np.float32).reshape(3, 4).T  # a transposed view
    g, m, v = np.ones_like(p), np.zeros_like(p), np.zeros_like(p)
    want = p.copy()
    adam.adam_update_numpy(want, g.copy(), m.copy(), v.copy(), 0.9, 0.999, 0.1, 0.1, 1e-8)
    adam.adam_update(p, g, m, v, 0.9, 0.999, 0.1, 0.1, 1e-8)
    np.testing.assert_array_equal(p, want)
    assert not np.array_equal(p, np.arange(12, dtype=np.float32).reshape(3, 4).T)  # it did move


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_step_moves_against_the_gradient(dtype):
    p = np.zeros(5, dtype)
    adam.adam_update(p, np.array([1, -1, 2, -2, 0], dtype), np.zeros(5, dtype), np.zeros(5, dtype),
                     0.9, 0.999, 0.01 / (1 - 0.9), np.sqrt(1 - 0.999), 1e-8)
    np.testing.assert_allclose(p, [-0.01, 0.01, -0.01, 0.01, 0.0], rtol=1e-5)


@pytest.mark.skipif(numba.config.DISABLE_JIT or platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="the flush is the compiled pass's, on x86-64")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_subnormal_moments_are_flushed_inside_the_pass_only(dtype):
    """Moments decaying towards zero never turn subnormal in the compiled pass (subnormal intermediates are 0, so
    no slow subnormal arithmetic late in training), where NumPy's reference goes down through the subnormals; the
    thread's own floating-point setting is back afterwards (a subnormal product outside the kernel survives)."""
    tiny = np.finfo(dtype).tiny
    p, g = np.ones(4, dtype), np.zeros(4, dtype)
    m, v = np.full(4, 8 * tiny, dtype), np.full(4, 8 * tiny, dtype)
    m_ref, v_ref, p_ref = m.copy(), v.copy(), p.copy()
    for _ in range(6):  # halving: 8, 4, 2, 1 x tiny, then below
        adam.adam_update(p, g, m, v, 0.5, 0.5, 0.1, 0.5, 1e-8)
        adam.adam_update_numpy(p_ref, g, m_ref, v_ref, 0.5, 0.5, 0.1, 0.5, 1e-8)
    subnormal = lambda a: (a != 0) & (np.abs(a) < tiny)  # noqa: E731
    assert subnormal(m_ref).all() and subnormal(v_ref).all()   # the reference: IEEE subnormals
    assert not subnormal(m).any() and not subnormal(v).any()   # the compiled pass: none
    np.testing.assert_allclose(p, p_ref, rtol=0, atol=1e-30)
    assert dtype(tiny) * dtype(0.5) != 0                       # and this thread is IEEE again

"""Hypothesis strategies for tensor shapes and float64 data used across the core tests."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinyconv as tc

# Small shapes keep finite differences cheap; size-1 axes exercise broadcasting, no axis is empty.
shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=4)
nonscalar_shapes = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=4)


@st.composite
def broadcastable_pairs(draw, min_dims=0):
    """Two shapes that broadcast together (with size-1 and missing leading axes mixed in)."""
    a, b = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=min_dims, max_dims=4, max_side=4)).input_shapes
    return a, b


@st.composite
def arrays(draw, shape, low=-2.0, high=2.0, away_from_zero=False):
    """float64 arrays drawn from a seeded generator (fast) with values in [low, high]."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.uniform(low, high, size=shape)
    if away_from_zero:
        # Keep |x| >= 0.5 so ops with kinks or poles at 0 (abs, division, log) stay differentiable under eps.
        x = np.where(x >= 0, x + 0.5, x - 0.5)
    return x


@st.composite
def leaf(draw, shape, **kw):
    """A float64 leaf tensor that requires grad."""
    return tc.tensor(draw(arrays(shape, **kw)), requires_grad=True, dtype="float64")


@st.composite
def distinct_values(draw, shape):
    """Values with no ties (a random permutation scaled), so max/min gradients are well defined."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    return tc.tensor((rng.permutation(n) * 0.37 - n * 0.1).reshape(shape), requires_grad=True, dtype="float64")


@st.composite
def dims_for(draw, ndim):
    """None, a single axis (maybe negative) or a tuple of distinct axes of a tensor with ``ndim`` dims."""
    if ndim == 0:
        return None
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1))
    return tuple(draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True)))

"""The two window helpers every convolution and pooling kernel on NumPy arrays uses (as Chainer's
``utils/conv.py`` serves convolution, deconvolution and pooling alike).

A kernel (or pooling) window of ``k`` taps with dilation ``d``, moved with stride ``s`` over a padded axis,
reads at tap ``a`` the rows ``a*d, a*d + s, ..., a*d + s*(n_out - 1)`` for the ``n_out`` output positions:
one strided slice, :func:`tap`. So a loop over the ``kh*kw`` taps, each handling every image, channel and
output position at once with a slice of the :func:`pad`-ded input, is the whole algorithm of the direct
convolution, of col2im and of pooling.
"""
from __future__ import annotations

import numpy as np

__all__ = ["tap", "pad"]


def tap(a: int, d: int, s: int, n_out: int) -> slice:
    """Rows (or columns) of the padded input that tap ``a`` touches for the output positions
    ``0 .. n_out-1``: ``a*d, a*d + s, ..., a*d + s*(n_out-1)``."""
    return slice(a * d, a * d + s * (n_out - 1) + 1, s)


def pad(x: np.ndarray, padding, fill=0) -> np.ndarray:
    """``x`` (N, C, H, W) with ``padding = (top, bottom, left, right)`` rows/columns of ``fill`` added
    around its two spatial axes; ``x`` itself when there is nothing to add."""
    top, bottom, left, right = padding
    if top == bottom == left == right == 0:
        return x
    n, c, h, w = x.shape
    shape = (n, c, h + top + bottom, w + left + right)
    xp = np.zeros(shape, dtype=x.dtype) if fill == 0 else np.full(shape, fill, dtype=x.dtype)
    xp[:, :, top:top + h, left:left + w] = x
    return xp

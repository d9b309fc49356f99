"""``Normal``: the Gaussian with mean ``loc`` and standard deviation ``scale``."""
from __future__ import annotations

import math

import numpy as np

from ..autograd import no_grad
from ..random import default_generator
from ..tensor import Tensor, as_tensor
from .distribution import Distribution


class Normal(Distribution):
    """``Normal(loc, scale)``, batched over the broadcast shape of ``loc`` and ``scale`` (tensors or numbers).

    ``sample`` draws without a gradient, ``rsample`` with one (``loc + scale * eps``, the reparameterisation
    trick); ``log_prob`` is differentiable.
    """

    def __init__(self, loc, scale, validate_args=None):
        loc, scale = _as_float(loc), _as_float(scale)
        if np.any(scale.numpy() <= 0) or not np.all(np.isfinite(scale.numpy())):
            raise ValueError(f"Expected parameter scale (Tensor of shape {tuple(scale.shape)}) of distribution "
                             "Normal to be positive and finite, but found invalid values")
        shape = np.broadcast_shapes(loc.shape, scale.shape)
        self.loc, self.scale = loc, scale
        super().__init__(batch_shape=shape)

    @property
    def mean(self) -> Tensor:
        return self.loc

    @property
    def stddev(self) -> Tensor:
        return self.scale

    @property
    def variance(self) -> Tensor:
        return self.scale * self.scale

    def rsample(self, sample_shape=()) -> Tensor:
        """``loc + scale * eps`` with ``eps`` standard normal of shape ``sample_shape + batch_shape``."""
        shape = self._extended_shape(sample_shape)
        dtype = np.promote_types(self.loc.dtype, self.scale.dtype)
        eps = Tensor(default_generator().standard_normal(shape).astype(dtype))
        return self.loc + self.scale * eps

    def sample(self, sample_shape=()) -> Tensor:
        with no_grad():
            return self.rsample(sample_shape)

    def log_prob(self, value) -> Tensor:
        value = as_tensor(value)
        return -((value - self.loc) ** 2) / (2 * self.variance) - self.scale.log() - math.log(math.sqrt(2 * math.pi))

    def entropy(self) -> Tensor:
        return self.scale.log() + 0.5 + 0.5 * math.log(2 * math.pi)

    def __repr__(self) -> str:
        def show(t):  # PyTorch's rule: a one-element parameter by value, others by size
            return repr(t) if t.numel() == 1 else repr(t.size())

        return f"Normal(loc: {show(self.loc)}, scale: {show(self.scale)})"


def _as_float(x) -> Tensor:
    t = as_tensor(x)
    return t if t.dtype.kind == "f" else t.float()

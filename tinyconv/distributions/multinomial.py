"""``Multinomial``: counts of ``total_count`` independent draws among ``k`` categories."""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..random import default_generator
from ..tensor import Tensor, as_tensor, where
from .distribution import Distribution


class Multinomial(Distribution):
    """``Multinomial(total_count, probs)``: how often each of the ``probs.shape[-1]`` categories comes up in
    ``total_count`` draws. ``probs`` (non-negative, normalised along the last dimension) or ``logits`` (normalised
    with a softmax); leading dimensions of either are the batch. Samples are float tensors of counts, as in PyTorch.

        Multinomial(10, tc.ones(6) / 6).sample()        # shape (6,), summing to 10
        Multinomial(10, tc.ones(6) / 6).sample((500,))  # shape (500, 6)
    """

    def __init__(self, total_count=1, probs=None, logits=None, validate_args=None):
        if (probs is None) == (logits is None):
            raise ValueError("Either `probs` or `logits` must be specified, but not both.")
        if not isinstance(total_count, numbers.Integral) or isinstance(total_count, bool) or total_count < 0:
            raise ValueError(f"total_count must be a non-negative int, got {total_count!r}")
        if probs is not None:
            probs = as_tensor(probs)
            if probs.dtype.kind != "f":
                probs = probs.float()
            _check_probs(probs)
            self.probs = probs / probs.sum(-1, keepdim=True)
        else:
            logits = as_tensor(logits)
            if logits.dtype.kind != "f":
                logits = logits.float()
            if logits.ndim == 0:
                raise ValueError("logits must have at least one dimension (the categories)")
            self.probs = logits.softmax(-1)
        self.total_count = int(total_count)
        super().__init__(batch_shape=self.probs.shape[:-1], event_shape=self.probs.shape[-1:])

    @property
    def logits(self) -> Tensor:
        return self.probs.log()

    @property
    def mean(self) -> Tensor:
        return self.probs * self.total_count

    @property
    def variance(self) -> Tensor:
        return self.probs * (1 - self.probs) * self.total_count

    def sample(self, sample_shape=()) -> Tensor:
        """Counts of shape ``sample_shape + batch_shape + (k,)``, in ``probs``' dtype; no gradient."""
        shape = self._extended_shape(sample_shape)
        p = np.broadcast_to(self.probs.numpy().astype(np.float64), shape)
        p = p / p.sum(axis=-1, keepdims=True)  # float64 rounding: NumPy insists that sum(p[:-1]) <= 1
        counts = default_generator().multinomial(self.total_count, p)
        return Tensor(counts.astype(self.probs.dtype))

    def log_prob(self, value) -> Tensor:
        """log P(counts = ``value``); differentiable with respect to ``probs``."""
        value = as_tensor(value)
        if value.shape[-1:] != self.event_shape:
            raise ValueError(f"The value argument must have {self.event_shape[0]} categories in its last "
                             f"dimension, got shape {tuple(value.shape)}")
        counts = value.numpy().astype(np.float64)
        if np.any(counts < 0) or np.any(counts != np.round(counts)):
            raise ValueError("The value argument must hold non-negative whole counts")
        log_coefficient = (np.vectorize(math.lgamma)(counts.sum(-1) + 1)
                           - np.vectorize(math.lgamma)(counts + 1).sum(-1))
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = value.to(self.probs.dtype) * self.probs.log()
        terms = where(value == 0, 0.0, terms)  # a category never drawn adds nothing, even when its p is 0
        return terms.sum(-1) + Tensor(np.asarray(log_coefficient, dtype=self.probs.dtype))


def _check_probs(probs: Tensor) -> None:
    arr = probs.numpy()
    if arr.ndim == 0:
        raise ValueError("probs must have at least one dimension (the categories)")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr.sum(-1) <= 0):
        raise ValueError(f"Expected parameter probs (Tensor of shape {tuple(probs.shape)}) of distribution "
                         "Multinomial to be non-negative and finite with a positive sum along the last dimension, "
                         "but found invalid values")

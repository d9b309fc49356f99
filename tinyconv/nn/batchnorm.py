"""Batch normalization layers: ``BatchNorm1d`` for (N, C) / (N, C, L) and ``BatchNorm2d`` for (N, C, H, W).

PyTorch's semantics and state: learnable ``weight`` γ (ones) and ``bias`` β (zeros) when ``affine``; buffers
``running_mean`` (zeros), ``running_var`` (ones) and ``num_batches_tracked`` (int64) when
``track_running_stats``, saved in ``state_dict`` under those names, so checkpoints move to and from
``torch.nn.BatchNorm2d``. In ``train()`` mode the layer normalises with the batch's statistics and updates the
running ones (``momentum``: weight of the new batch; ``None``: cumulative average over all batches so far); in
``eval()`` mode it normalises with the running statistics (or still with the batch's, without running stats).
"""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..tensor import DEFAULT_DTYPE, Tensor
from .module import Module, Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d"]


class _BatchNorm(Module):
    _expected_dims: tuple = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, dtype=None):
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) or num_features <= 0:
            raise ValueError(f"{type(self).__name__}: num_features must be a positive integer, got {num_features!r}")
        self.num_features = int(num_features)
        self.eps, self.momentum = float(eps), (None if momentum is None else float(momentum))
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        dt = np.dtype(dtype or DEFAULT_DTYPE)
        if self.affine:
            self.weight = Parameter(np.ones(self.num_features, dtype=dt))
            self.bias = Parameter(np.zeros(self.num_features, dtype=dt))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(self.num_features, dtype=dt))
            self.register_buffer("running_var", np.ones(self.num_features, dtype=dt))
            self.register_buffer("num_batches_tracked", np.array(0, dtype=np.int64))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean._data[...] = 0
            self.running_var._data[...] = 1
            self.num_batches_tracked._data[...] = 0

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            self.weight._data[...] = 1
            self.bias._data[...] = 0

    def _check_input_dim(self, input: Tensor) -> None:
        if input.ndim not in self._expected_dims:
            wanted = " or ".join(f"{d}D" for d in self._expected_dims)
            raise ValueError(f"{type(self).__name__}: expected {wanted} input (got {input.ndim}D input of shape "
                             f"{tuple(input.shape)})")
        if input.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}): expected {self.num_features} channels "
                             f"in dimension 1, got input of shape {tuple(input.shape)}")

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked._data += 1  # in place: the buffer's array stays the one state_dict shares
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked._data)
        # Without running statistics the layer normalises with the batch's even in eval mode (as PyTorch).
        use_batch_stats = self.training or self.running_mean is None
        return F.batch_norm(input, self.running_mean, self.running_var, self.weight, self.bias, use_batch_stats,
                            factor, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) or (N, C, L) input: statistics per channel C over N (and L)."""

    _expected_dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W) input: statistics per channel C over N, H and W."""

    _expected_dims = (4,)

"""``Distribution``: the shapes every distribution shares (PyTorch's ``batch_shape`` and ``event_shape``)."""
from __future__ import annotations

from ..tensor import Size


class Distribution:
    """A family of random variables, one per entry of ``batch_shape``, each of shape ``event_shape``.

    ``sample(sample_shape)`` returns a tensor of shape ``sample_shape + batch_shape + event_shape``.
    """

    def __init__(self, batch_shape=(), event_shape=()):
        self._batch_shape, self._event_shape = Size(batch_shape), Size(event_shape)

    @property
    def batch_shape(self) -> Size:
        return self._batch_shape

    @property
    def event_shape(self) -> Size:
        return self._event_shape

    def _extended_shape(self, sample_shape=()) -> Size:
        return Size(_sample_shape(sample_shape)) + self._batch_shape + self._event_shape

    def sample(self, sample_shape=()):
        raise NotImplementedError(f"{type(self).__name__} does not implement sample()")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _sample_shape(sample_shape) -> tuple:
    """``sample_shape`` as a tuple of non-negative ints: PyTorch takes a ``Size`` or tuple such as ``(500,)``."""
    if isinstance(sample_shape, int) or not isinstance(sample_shape, (tuple, list)):
        raise TypeError(f"sample_shape must be a tuple of ints such as (500,), got {sample_shape!r}")
    if any(not isinstance(n, int) or isinstance(n, bool) or n < 0 for n in sample_shape):
        raise ValueError(f"sample_shape must hold non-negative ints, got {tuple(sample_shape)}")
    return tuple(sample_shape)

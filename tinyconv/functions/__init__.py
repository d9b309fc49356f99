"""The differentiable functions: every operation as an autograd :class:`~tinyconv.autograd.Function` on arrays,
each with a hand-written backward.

``ops`` (elementwise, reductions, shape ops, softmax), ``conv`` (convolutions), ``pooling``, ``batch_norm``,
``fused`` (conv + ReLU + max pool in one node). They import only the engine (:mod:`tinyconv.autograd`) and the
kernels; ``Tensor`` and :mod:`tinyconv.functional` stand above them.
"""
from . import batch_norm, conv, fused, ops, pooling

__all__ = ["ops", "conv", "pooling", "batch_norm", "fused"]

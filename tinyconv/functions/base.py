"""The base of the Functions whose forward runs a selectable kernel (convolution and pooling)."""
from __future__ import annotations

import numpy as np

from ..autograd import Function

__all__ = ["KernelFunction"]


class KernelFunction(Function):
    """A Function whose forward runs a selectable kernel: the grad_output its backward hands to the
    kernels, and the kernel shown in the graph (``Conv2dBackward(kernel=numba)``)."""

    @staticmethod
    def _grad_output(ctx, g):
        """grad_output batched (for an unbatched input) and C-contiguous, as the kernels expect."""
        return np.ascontiguousarray(g[None] if ctx.unbatched else g)

    def extra_repr(self) -> str:
        used = getattr(self, "kernel_used", None)
        return f"kernel={used}" if used else ""

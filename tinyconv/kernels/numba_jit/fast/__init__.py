"""The speed wing of the numba backend: the same convolution as :mod:`..plain`, in layouts and loop orders that
keep the vector units busy. Nothing in :mod:`..plain` needs anything here.

=============  ======================================================================================
module         what it holds
=============  ======================================================================================
conv           the ``numba`` backend: forward / grad_input / grad_weight, each running one layout below
flat_rows      flat padded rows: each tap a constant offset into a flattened padded plane (all three ops)
blocked        register-blocked tiles on the flat-rows layout at stride 1 (variants for AVX-512 and AVX2)
simd           explicit 64-byte vectors inside numba kernels: load, store, splat, fma, lane sum
batch_last     the batch innermost, for big batches (forward, grad_weight)
adjoint        grad_input as forward convolutions of grad_y, one per phase of the stride
depthwise      per-plane loops for ``groups == C_in == C_out``
workspace      scratch buffers reused between calls
columns        im2col's compiled column copies (:mod:`tinyconv.kernels.im2col`)
=============  ======================================================================================
"""
from . import adjoint, batch_last, blocked, columns, conv, depthwise, flat_rows, simd, workspace
from .conv import NumbaBackend, backend, clear_workspace, forward, grad_input, grad_weight

__all__ = ["NumbaBackend", "backend", "clear_workspace", "forward", "grad_input", "grad_weight", "adjoint",
           "batch_last", "blocked", "columns", "conv", "depthwise", "flat_rows", "simd", "workspace"]

"""Convolution as matrix multiplication: im2col + BLAS, col2im for the backward pass.

Every output position ``(i, j)`` of image ``n`` reads a ``C_g x kh x kw`` window of the padded input.
Unfolding the windows of a chunk of ``nb`` images into columns gives one matrix per group, channel-major::

    cols[(c, a, b), (n, i, j)] = x_pad[n, c, i*sh + a*dh, j*sw + b*dw]      (K, nb*P)

with ``K = C_g*kh*kw`` and ``P = H_out*W_out``, and the convolution of one group is a single matrix product::

    Y = W @ cols            W = w.reshape(C_out_g, K)          -> (C_out_g, nb*P)

Backward, on the same columns:

* ``grad_w = sum over chunks of  grad_Y @ cols.T``  (C_out_g, nb*P) @ (nb*P, K);
* ``grad_x``: ``dcols = W.T @ grad_Y`` (K, nb*P), then *col2im* adds every column entry back to the pixel it
  was read from.

Why this layout: the images of a chunk share one product whose long side is ``nb*P``, so small images (a ResNet's
7x7 and 4x4 stages, batch 128) still make a large, efficient BLAS call instead of ``N`` tiny ones, as batch-major
columns ``(N, K, P)`` would (``benchmarks/conv_cpu_time.py`` times the layers). A chunk holds as many images as fit
:data:`COLUMN_BYTES` of columns (at least one), so the column buffer stays in cache-sized pieces and is reused
(:mod:`.numba_jit.fast.workspace`) instead of being fresh memory every call. grad_weight's chunks are larger
where that would leave them fewer than :data:`GRAD_WEIGHT_MIN_POSITIONS` output positions (unless the whole
batch has fewer), so that each chunk's product sums long enough to repay writing its whole ``(C_out, K)`` part;
their columns then hold fewer than ``K * (2 * GRAD_WEIGHT_MIN_POSITIONS + P)`` values.

The chunks are independent (each writes its own images of ``y`` or ``grad_x``, or returns its own part of
``grad_w``, summed in chunk order), so they run on tinyconv's worker threads (:mod:`.workers`), each product on
one OpenBLAS thread; a single chunk splits its products over those threads instead. The column copies (serial
per chunk; im2col, col2im, the transposes between ``(N, C, P)`` arrays and ``(C, nb*P)`` matrices, with the bias
added on the way out) are compiled loops (:mod:`.numba_jit.fast.columns`) that read the unpadded input and test
the padding per row; with ``NUMBA_DISABLE_JIT=1`` they are NumPy strided copies of a padded copy
(windows viewed with ``as_strided``, one slice-add per tap for col2im). dtype is kept end to end.
Pooling: NumPy's (:mod:`.pooling`), inherited from :class:`~.backend.Backend`.
"""
from __future__ import annotations

import numpy as np
from numba import config as _numba_config
from numpy.lib.stride_tricks import as_strided

from . import choose, workers
from .backend import Backend
from .numba_jit.fast import batch_last, columns
from .numba_jit.fast.workspace import scratch_empty
from .threads import ensure_thread_pool
from .windows import pad, tap

__all__ = ["forward", "grad_input", "grad_weight", "Im2colBackend", "backend", "COLUMN_BYTES",
           "GRAD_WEIGHT_MIN_POSITIONS"]

COLUMN_BYTES = 2 * 2**20  # column buffer of one chunk: images per chunk = COLUMN_BYTES // (K*P*itemsize), >= 1
#: grad_weight's chunks sum over at least this many output positions (images x H_out*W_out) where the batch has
#: them, beyond COLUMN_BYTES where need be: each chunk writes a whole (C_out, K) part, and a short sum per part
#: (one 12x12 image of a 384-channel layer: 144 positions for a 384x3456 part) spends the product on memory traffic.
GRAD_WEIGHT_MIN_POSITIONS = 512


def _jit() -> bool:
    return not _numba_config.DISABLE_JIT


def _chunks(n, k, npos, itemsize, min_positions=0):
    """(first image, images) of each of the chunks of images 0..n-1 (n >= 1), in order: as many images as fit
    COLUMN_BYTES (at least one). Without ``min_positions`` the chunks are as equal as whole ``per`` can make them
    (the last may be shorter); with it, their sizes differ by at most one image and each chunk holds at least
    ``min_positions`` output positions (a single chunk when the whole batch has fewer), beyond COLUMN_BYTES where
    need be. A function of the shapes only, never of the thread count, so the sums over chunks are the same
    however many threads run them."""
    per = max(1, min(n, COLUMN_BYTES // max(1, k * npos * itemsize)))
    count = -(-n // per)
    if min_positions > 0:
        least = -(-min_positions // max(npos, 1))  # images that hold min_positions
        count = min(count, max(1, n // least))     # every chunk gets >= n // count >= least images
        size, extra = divmod(n, count)
        starts = [i * size + min(i, extra) for i in range(count + 1)]
        return [(starts[i], starts[i + 1] - starts[i]) for i in range(count)]
    per = -(-n // count)
    return [(n0, min(per, n - n0)) for n0 in range(0, n, per)]


def _product(chunks):
    """The matrix product for the chunks' loop: numpy's, one per thread, where the chunks keep the threads busy;
    with a single chunk (a small batch of small images: the whole batch's columns fit one), the product itself
    split over the threads (:func:`.workers.matmul`), so that the other cores are not idle. (A chunk on a worker
    thread never splits its product: the workers would wait for each other.)"""
    return workers.matmul if len(chunks) == 1 else np.matmul


def _windows(x_pad, kernel_hw, out_hw, stride, dilation):
    """View (N, C, kh, kw, H_out, W_out) of every window of the padded input (no copy)."""
    sn, sc, s_h, s_w = x_pad.strides
    (kh, kw), (ho, wo) = kernel_hw, out_hw
    (sh, sw), (dh, dw) = stride, dilation
    return as_strided(x_pad, shape=(x_pad.shape[0], x_pad.shape[1], kh, kw, ho, wo),
                      strides=(sn, sc, dh * s_h, dw * s_w, sh * s_h, sw * s_w),
                      writeable=False)


class _Columns:
    """Builds the column matrix of (chunk, group) for one input and one set of arguments."""

    def __init__(self, x, args, cg, out_hw):
        self.kh, self.kw = args.kernel_hw
        self.cg, self.args, self.out_hw = cg, args, out_hw
        if _jit():
            self.x = np.ascontiguousarray(x)
        else:
            self.win = _windows(np.ascontiguousarray(pad(x, args.padding)), args.kernel_hw, out_hw, args.stride,
                                args.dilation)

    def build(self, cols, n0, nb, g):
        """Fill ``cols`` (K, nb*P) with the windows of images n0..n0+nb-1, group g."""
        (sh, sw), (dh, dw), (ho, wo) = self.args.stride, self.args.dilation, self.out_hw
        c0 = g * self.cg
        if _jit():
            top, _, left, _ = self.args.padding
            columns.im2col_chunk(self.x, cols, c0, n0, nb, self.kh, self.kw, sh, sw, dh, dw, top, left, ho, wo)
        else:
            np.copyto(cols.reshape(self.cg, self.kh, self.kw, nb, ho, wo),
                      self.win[n0:n0 + nb, c0:c0 + self.cg].transpose(1, 2, 3, 0, 4, 5))
        return cols


def _to_matrix(a, out, n0, nb, o0):
    """out (rows, nb*P) = a[n0:n0+nb, o0:o0+rows] (N, C, P) with the channel first."""
    if _jit():
        columns.to_matrix(a, out, n0, nb, o0)
    else:
        np.copyto(out.reshape(out.shape[0], nb, a.shape[2]), a[n0:n0 + nb, o0:o0 + out.shape[0]].transpose(1, 0, 2))
    return out


def _from_matrix(mat, y, bias, n0, nb, o0):
    """y[n0:n0+nb, o0:o0+rows] (N, C, P) = mat (rows, nb*P) + bias[o0:o0+rows]."""
    rows = mat.shape[0]
    if _jit():
        columns.from_matrix(mat, y, bias, n0, nb, o0)
    else:
        y[n0:n0 + nb, o0:o0 + rows] = (mat.reshape(rows, nb, y.shape[2]).transpose(1, 0, 2)
                                       + bias[o0:o0 + rows, None])


def forward(x, w, args, bias=None):
    """y = conv2d(x, w) + bias.  x: (N, C_in, H, W), w: (C_out, C_in/groups, kh, kw), bias: (C_out,) or None."""
    dtype = x.dtype
    n, c_out, ho, wo = args.out_shape
    G = args.groups
    cg, og = w.shape[1], c_out // G
    k = cg * args.kernel_hw[0] * args.kernel_hw[1]
    npos = ho * wo
    y = np.empty((n, c_out, npos), dtype=dtype)
    if y.size == 0:
        return y.reshape(args.out_shape)
    bias = np.zeros(c_out, dtype=dtype) if bias is None else np.ascontiguousarray(bias, dtype=dtype)
    src = _Columns(x, args, cg, (ho, wo))
    wmat = np.ascontiguousarray(w).reshape(c_out, k)
    chunks = _chunks(n, k, npos, dtype.itemsize)
    matmul = _product(chunks)

    def chunk(c):  # images n0..n0+nb-1 -> y (disjoint per chunk)
        n0, nb = c
        cols = scratch_empty((k, nb * npos), dtype, "im2col.cols")
        out = scratch_empty((og, nb * npos), dtype, "im2col.out")
        for g in range(G):
            src.build(cols, n0, nb, g)
            matmul(wmat[g * og:(g + 1) * og], cols, out=out)
            _from_matrix(out, y, bias, n0, nb, g * og)

    workers.map_chunks(chunk, chunks)
    return y.reshape(args.out_shape)


def grad_input(grad_y, w, input_hw, args):
    """grad_x of conv2d (the adjoint of :func:`forward` for an input of size
    ``input_hw``, which may exceed the smallest one, as for output_padding)."""
    h, w_in = input_hw
    n, c_out = grad_y.shape[0], grad_y.shape[1]
    dtype = grad_y.dtype
    G = args.groups
    cg, og = w.shape[1], c_out // G
    kh, kw = args.kernel_hw
    (sh, sw), (dh, dw) = args.stride, args.dilation
    top, bottom, left, right = args.padding
    ho, wo = grad_y.shape[2], grad_y.shape[3]
    npos = ho * wo
    k = cg * kh * kw
    jit = _jit()
    if jit:
        gx = np.zeros((n, cg * G, h, w_in), dtype=dtype)
    else:
        gx = np.zeros((n, cg * G, h + top + bottom, w_in + left + right), dtype=dtype)
    if gx.size == 0 or npos == 0:
        return np.ascontiguousarray(gx if jit else gx[:, :, top:top + h, left:left + w_in])
    wmat = np.ascontiguousarray(w).reshape(c_out, k)
    if choose.im2col_grad_input_layout(n, k, npos, dtype.itemsize) == "batch_last":
        return _grad_input_batch_last(grad_y, wmat, gx, args, (ho, wo))
    gy = np.ascontiguousarray(grad_y).reshape(n, c_out, npos)
    chunks = _chunks(n, k, npos, dtype.itemsize)
    matmul = _product(chunks)

    def chunk(c):  # images n0..n0+nb-1 of gx (disjoint per chunk)
        n0, nb = c
        dcols = scratch_empty((k, nb * npos), dtype, "im2col.cols")
        gym = scratch_empty((og, nb * npos), dtype, "im2col.out")
        for g in range(G):
            _to_matrix(gy, gym, n0, nb, g * og)
            matmul(wmat[g * og:(g + 1) * og].T, gym, out=dcols)  # the gradient of every column entry
            if jit:
                columns.col2im_chunk(dcols, gx, g * cg, n0, nb, cg, kh, kw, sh, sw, dh, dw, top, left, ho, wo)
                continue
            d6 = dcols.reshape(cg, kh, kw, nb, ho, wo)
            gxg = gx[n0:n0 + nb, g * cg:(g + 1) * cg]
            for a in range(kh):           # col2im: one strided slice-add per tap
                for b in range(kw):
                    gxg[:, :, tap(a, dh, sh, ho), tap(b, dw, sw, wo)] += d6[:, a, b].transpose(1, 0, 2, 3)

    workers.map_chunks(chunk, chunks)
    if jit:
        return gx
    return np.ascontiguousarray(gx[:, :, top:top + h, left:left + w_in])


def _grad_input_batch_last(grad_y, wmat, gx, args, out_hw):
    """grad_input of a big batch in the batch-last column layout (:mod:`.numba_jit.fast.columns`): grad_y made
    batch-last is the (C_out, H_out*W_out*N) matrix as it is, one product gives every column gradient (its rows
    split over the worker threads), and col2im adds contiguous vectors of N values (the chunked layout's runs are
    only W_out values long). :func:`tinyconv.kernels.choose.im2col_grad_input_layout` decides when."""
    n, c_in, h, w_in = gx.shape
    G, c_out = args.groups, wmat.shape[0]
    cg, og, k = c_in // G, c_out // G, wmat.shape[1]
    kh, kw = args.kernel_hw
    (sh, sw), (dh, dw) = args.stride, args.dilation
    top, _, left, _ = args.padding
    ensure_thread_pool()  # the copies and col2im below are parallel numba loops
    gyt = batch_last.batch_last_copy(grad_y, (0, 0, 0, 0), "im2col.grad_y").reshape(c_out, -1)
    dcols = np.empty((k, gyt.shape[1]), dtype=gx.dtype)
    gxt = np.zeros((c_in, h, w_in, n), dtype=gx.dtype)
    rows = -(-k // workers.num_threads())
    for g in range(G):
        def product(r0, wt=wmat[g * og:(g + 1) * og].T, gyg=gyt[g * og:(g + 1) * og]):  # rows r0.. of dcols
            np.matmul(wt[r0:r0 + rows], gyg, out=dcols[r0:r0 + rows])

        workers.map_chunks(product, list(range(0, k, rows)))
        columns.col2im_batch_last(dcols, gxt, g * cg, kh, kw, sh, sw, dh, dw, top, left, *out_hw)
    columns.from_batch_last(gxt, gx)
    return gx


def grad_weight(x, grad_y, args):
    """grad_w of conv2d: (C_out, C_in/groups, kh, kw)."""
    c_out = grad_y.shape[1]
    w_shape = (c_out, x.shape[1] // args.groups) + args.kernel_hw
    dtype = x.dtype
    G = args.groups
    n = x.shape[0]
    _, cg, kh, kw = w_shape
    og = c_out // G
    ho, wo = grad_y.shape[2], grad_y.shape[3]
    npos = ho * wo
    k = cg * kh * kw
    if n == 0 or npos == 0:
        return np.zeros(w_shape, dtype=dtype)
    src = _Columns(x, args, cg, (ho, wo))
    gy = np.ascontiguousarray(grad_y).reshape(n, c_out, npos)
    chunks = _chunks(n, k, npos, dtype.itemsize, GRAD_WEIGHT_MIN_POSITIONS)
    matmul = _product(chunks)

    def chunk(c):  # this chunk's share of grad_w
        n0, nb = c
        part = np.empty((c_out, k), dtype=dtype)
        cols = scratch_empty((k, nb * npos), dtype, "im2col.cols")
        gym = scratch_empty((og, nb * npos), dtype, "im2col.out")
        for g in range(G):
            src.build(cols, n0, nb, g)
            _to_matrix(gy, gym, n0, nb, g * og)
            matmul(gym, cols.T, out=part[g * og:(g + 1) * og])
        return part

    parts = workers.map_chunks(chunk, chunks)
    grad_w = parts[0]
    for part in parts[1:]:  # in chunk order: the same sum whatever the thread count
        grad_w += part
    return grad_w.reshape(w_shape)


class Im2colBackend(Backend):
    """Windows unfolded into channel-major columns, one BLAS product per (chunk of images, group); NumPy pooling."""

    name = "im2col"
    forward = staticmethod(forward)
    grad_input = staticmethod(grad_input)
    grad_weight = staticmethod(grad_weight)


backend = Im2colBackend()

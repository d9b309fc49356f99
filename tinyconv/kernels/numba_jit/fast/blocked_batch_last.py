"""The register tiles of :mod:`.blocked` on batch-last planes: stride-1 convolutions of small planes.

On a small plane the flat-rows layout of :mod:`.blocked` computes many positions it drops: the garbage columns
``j >= Wo`` of every row and the tail of the last block (a 6x6 output in blocks of 32 positions uses 36 of 64).
With the batch innermost, ``xt[c, (h*Wp + w)*N + n]`` (``N`` images, padded planes, row stride ``Wp*N``), output
row ``i`` of every image is one run of ``Wo*N`` contiguous values, and tap ``(a, b)`` reads the run
``(a*d_h*Wp + b*d_w)*N`` further on. The tiles then walk each row's run only: for a batch of 16 float32 images a
block of 16 values is one output position of every image, and no block holds a garbage column.

* forward (and grad_input at stride 1, the adjoint being a stride-1 convolution of grad_y): a task is one output
  row of a tile's output channels; per block of the row, the tile of :mod:`.blocked` (``_tile_8x2`` or
  ``_tile_6x1``) sums over the input channels and taps in registers; the task then writes its row of ``y``.
  Tasks run row by row (every tile of a row, then the next row), so a thread's consecutive tasks read the same
  input rows while they are in its cache. On avx512, rows whose values fill blocks of 48 better than blocks of 32
  (a 3x3 output of 16 images: rows of 48) take an 8 x 3 tile (:func:`row_vectors`).
* grad_weight, ``gw[o, c, t] = sum_{i, j, n} gy[n, o, i, j] * xt[c, (i*Wp + j)*N + n + off[t]]``: grad_y is
  copied once, a tile of output channels at a time, position-major (``gt[tile, (i*Wo + j)*N + n, o]``); a task
  (a tile of channels, 8 or 6 (input channel, tap) pairs) holds the tile of vector sums of :mod:`.blocked`'s
  position-major kernels over every position of every image, and stores it once: no per-image parts to add.

Which layers take these loops is decided in :mod:`tinyconv.kernels.choose` (:func:`~tinyconv.kernels.choose.
uses_blocked_batch_last`).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .batch_last import batch_last_copy
from .blocked import (
    TILE_VECTORS,
    _pair_input,
    _tile_6x1,
    _tile_8x2,
    _tile_groups,
    _tile_task,
    adjoint,
    grad_weight_tile_channels,
    pack_weights,
    tile_channels,
)
from .simd import fma, lanes, load, splat, store

__all__ = ["forward", "grad_input", "grad_weight", "block_use", "row_vectors"]

_JIT = dict(cache=True)


def block_use(out_hw, n, tiles) -> float:
    """The share of the computed values that are outputs: each output row's ``Wo*N`` values rounded up to whole
    float32 blocks of the ``tiles`` variant (compare :func:`.blocked.block_use`)."""
    run = out_hw[1] * n
    return _run_use(run, row_vectors(run, tiles)) if out_hw[0] else 0.0


def _run_use(run, vectors) -> float:
    """The share of a row's ``run`` values among those computed in blocks of ``vectors`` float32 vectors."""
    blk = vectors * 16
    return run / (-(-run // blk) * blk) if run else 0.0


def row_vectors(run, tiles) -> int:
    """Vectors of a block along an output row of ``run`` float32 values (``Wo*N``): the variant's tile
    (:data:`.blocked.TILE_VECTORS`), or for avx512 the 8 x 3 tile where its blocks of 48 waste fewer values than
    blocks of 32 (a 3x3 output of 16 images: rows of 48, two blocks of 32 with a quarter dropped)."""
    vectors = TILE_VECTORS[tiles]
    if tiles == "avx512" and _run_use(run, 3) > _run_use(run, vectors):
        return 3
    return vectors


@njit(inline="always", fastmath={"contract"}, **_JIT)
def _forward_row(task, xt, wpack, bias, offs, y, wp, cg, vectors):
    """Task ``task`` of :func:`_forward_rows_8x2` (``vectors`` 2), :func:`_forward_rows_8x3` (3) or
    :func:`_forward_rows_6x1` (1): one output row
    of one tile of output channels, block by block of the row's run, then written to y with the bias (inlined
    with ``vectors`` a constant, so each kernel compiles one tile's code)."""
    n_img, wo = y.shape[0], y.shape[3]
    tc = wpack.shape[2]
    groups, og, nob = _tile_groups(xt.shape[0], cg, y.shape[1], tc)
    blk = vectors * lanes(xt[0])
    nblk = (wo * n_img + blk - 1) // blk
    i, tile, g, o0 = _tile_task(task, groups, nob, og, tc)  # row-major: a thread's tasks share input rows
    out = np.empty((tc, nblk * blk), dtype=y.dtype)
    for q in range(nblk):
        if vectors == 3:
            _tile_8x3(xt, g * cg, cg, i * wp * n_img + q * blk, wpack[tile], offs, out, q * blk)
        elif vectors == 2:
            _tile_8x2(xt, g * cg, cg, i * wp * n_img + q * blk, wpack[tile], offs, out, q * blk)
        else:
            _tile_6x1(xt, g * cg, cg, i * wp * n_img + q * blk, wpack[tile], offs, out, q * blk)
    for k in range(min(tc, (g + 1) * og - o0)):
        b = bias[o0 + k]
        ok = out[k]
        for j in range(wo):
            for n in range(n_img):
                y[n, o0 + k, i, j] = ok[j * n_img + n] + b


@njit(inline="always", **_JIT)
def _forward_row_tasks(xt, wpack, y, cg):
    """Tasks of the forward kernels: output rows x groups x tiles of output channels."""
    groups, _, nob = _tile_groups(xt.shape[0], cg, y.shape[1], wpack.shape[2])
    return groups * nob * y.shape[2]


@njit(parallel=True, fastmath={"contract"}, **_JIT)
def _forward_rows_8x2(xt, wpack, bias, offs, y, wp, cg):
    """y[n, o, i, j] = bias[o] + sum_{c, t} w[o, c, t] * xt[g*cg + c, (i*wp + j)*N + n + offs[t]] on the 8 x 2
    tiles of the avx512 variant.

    xt: (C_in, L) batch-last padded planes, row stride wp*N, with at least a block of slack past the last value a
    tap reads; wpack: (groups * tiles, cg * T, tc) as :func:`.blocked.pack_weights`; offs: the taps' offsets in
    xt's rows; y: (N, C_out, Ho, Wo)."""
    for task in prange(_forward_row_tasks(xt, wpack, y, cg)):
        _forward_row(task, xt, wpack, bias, offs, y, wp, cg, 2)


@njit(parallel=True, fastmath={"contract"}, **_JIT)
def _forward_rows_6x1(xt, wpack, bias, offs, y, wp, cg):
    """:func:`_forward_rows_8x2` on the 6 x 1 tiles of the avx2 variant."""
    for task in prange(_forward_row_tasks(xt, wpack, y, cg)):
        _forward_row(task, xt, wpack, bias, offs, y, wp, cg, 1)


@njit(parallel=True, fastmath={"contract"}, **_JIT)
def _forward_rows_8x3(xt, wpack, bias, offs, y, wp, cg):
    """:func:`_forward_rows_8x2` on 8 x 3 tiles (avx512: 24 sums, 3 input vectors and a broadcast weight fill 28
    of the 32 registers), for rows of 48 values (:func:`row_vectors`)."""
    for task in prange(_forward_row_tasks(xt, wpack, y, cg)):
        _forward_row(task, xt, wpack, bias, offs, y, wp, cg, 3)


@njit(fastmath={"contract"}, inline="always", **_JIT)
def _tile_8x3(rows, c0, cg, base, wk, offs, out, p0):
    """:func:`.blocked._tile_8x2` with 3 vectors of positions: per (channel, tap), 3 vector loads and 8 weights
    broadcast feed 24 vector multiply-adds. wk: (cg*T, 8 or 6)."""
    ntap = offs.shape[0]
    vl = lanes(out[0])
    eight = wk.shape[1] == 8
    z = splat(out, 0.0)
    a0, a1, a2, a3, a4, a5, a6, a7 = z, z, z, z, z, z, z, z
    b0, b1, b2, b3, b4, b5, b6, b7 = z, z, z, z, z, z, z, z
    d0, d1, d2, d3, d4, d5, d6, d7 = z, z, z, z, z, z, z, z
    for c in range(cg):
        xc = rows[c0 + c]
        for t in range(ntap):
            u = load(xc, base + offs[t])
            v = load(xc, base + offs[t] + vl)
            s = load(xc, base + offs[t] + 2 * vl)
            wr = wk[c * ntap + t]
            w = splat(out, wr[0])
            a0, b0, d0 = fma(w, u, a0), fma(w, v, b0), fma(w, s, d0)
            w = splat(out, wr[1])
            a1, b1, d1 = fma(w, u, a1), fma(w, v, b1), fma(w, s, d1)
            w = splat(out, wr[2])
            a2, b2, d2 = fma(w, u, a2), fma(w, v, b2), fma(w, s, d2)
            w = splat(out, wr[3])
            a3, b3, d3 = fma(w, u, a3), fma(w, v, b3), fma(w, s, d3)
            w = splat(out, wr[4])
            a4, b4, d4 = fma(w, u, a4), fma(w, v, b4), fma(w, s, d4)
            w = splat(out, wr[5])
            a5, b5, d5 = fma(w, u, a5), fma(w, v, b5), fma(w, s, d5)
            if eight:  # (loop-invariant: the compiler makes one loop of each kind)
                w = splat(out, wr[6])
                a6, b6, d6 = fma(w, u, a6), fma(w, v, b6), fma(w, s, d6)
                w = splat(out, wr[7])
                a7, b7, d7 = fma(w, u, a7), fma(w, v, b7), fma(w, s, d7)
    for k, (lo, mid, hi) in enumerate(((a0, b0, d0), (a1, b1, d1), (a2, b2, d2), (a3, b3, d3), (a4, b4, d4),
                                       (a5, b5, d5), (a6, b6, d6), (a7, b7, d7))):
        if k < wk.shape[1]:
            store(out[k], p0, lo)
            store(out[k], p0 + vl, mid)
            store(out[k], p0 + 2 * vl, hi)


@njit(parallel=True, **_JIT)
def _tile_major(gy, gt, og):
    """gt[g*nov + v, (i*Wo + j)*N + n, l] = gy[n, g*og + v*width + l, i, j], zero for channels past the group's
    last (width = gt.shape[2], nov tiles per group)."""
    n_img, c_out, ho, wo = gy.shape
    ntile, _, width = gt.shape
    nov = ntile // (c_out // og)
    for task in prange(ntile * ho):
        tile = task // ho
        i = task % ho
        o0 = (tile // nov) * og + (tile % nov) * width
        count = min(width, (tile // nov + 1) * og - o0)
        dst = gt[tile]
        for j in range(wo):
            for n in range(n_img):
                p = (i * wo + j) * n_img + n
                for k in range(count):
                    dst[p, k] = gy[n, o0 + k, i, j]
                for k in range(count, width):
                    dst[p, k] = 0


@njit(inline="always", **_JIT)
def _store_sums(sums, gw, tile, nov, og, r0):
    """gw[g*og + v*width + l, r0 + k] = sums[k, l] for tile = g*nov + v (width = sums.shape[1]): the tile's real
    channels l (those past its group's last dropped) and the pairs r0 + k < cg*T."""
    g, v = tile // nov, tile % nov
    o0 = g * og + v * sums.shape[1]
    pairs = min(sums.shape[0], gw.shape[1] - r0)
    for lane in range(min(sums.shape[1], (g + 1) * og - o0)):  # a run of pairs per row of gw
        row = gw[o0 + lane]
        for k in range(pairs):
            row[r0 + k] = sums[k, lane]


@njit(parallel=True, fastmath={"contract"}, **_JIT)
def _grad_weight_2x8(xt, gt, offs, gw, cg, wp, ho, wo):
    """gw[g*og + v*width + l, r] = sum_{i, j, n} gt[tile, (i*Wo + j)*N + n, l] * xt[g*cg + r // T,
    (i*wp + j)*N + n + offs[r % T]] for the pairs r = c*T + t, tile = g*nov + v, width = 2 vectors; gw (C_out,
    cg*T), og = C_out / groups.

    A task (a tile of 2 vectors of output channels, 8 pairs) holds 2 x 8 vector sums over every position of every
    image: per position, 2 loads of the tile's copy of grad_y and 8 input values broadcast feed 16 multiply-adds
    (pairs past the last repeat it, dropped); its sums go to gw through a small buffer (channels past the group's
    last dropped), so grad_w needs no transposed copy. Sized for 32 registers of 512 bits (AVX-512)."""
    ntile, npos, width = gt.shape
    ntap = offs.shape[0]
    groups = xt.shape[0] // cg
    nov = ntile // groups
    n_img = npos // (ho * wo)
    vl = lanes(xt[0])
    kr = cg * ntap
    nrb = (kr + 7) // 8
    run = wo * n_img
    for task in prange(ntile * nrb):
        tile = task // nrb
        r0 = 8 * (task % nrb)
        c0 = (tile // nov) * cg
        gtt = gt[tile].reshape(-1)
        x0, x1 = _pair_input(xt, c0, r0, kr, offs), _pair_input(xt, c0, r0 + 1, kr, offs)
        x2, x3 = _pair_input(xt, c0, r0 + 2, kr, offs), _pair_input(xt, c0, r0 + 3, kr, offs)
        x4, x5 = _pair_input(xt, c0, r0 + 4, kr, offs), _pair_input(xt, c0, r0 + 5, kr, offs)
        x6, x7 = _pair_input(xt, c0, r0 + 6, kr, offs), _pair_input(xt, c0, r0 + 7, kr, offs)
        z = splat(xt, 0.0)
        a0, a1, a2, a3, a4, a5, a6, a7 = z, z, z, z, z, z, z, z
        b0, b1, b2, b3, b4, b5, b6, b7 = z, z, z, z, z, z, z, z
        for i in range(ho):
            xb = i * wp * n_img
            gb = i * run
            for p in range(run):
                u = load(gtt, (gb + p) * width)
                v = load(gtt, (gb + p) * width + vl)
                s = splat(xt, x0[xb + p])
                a0, b0 = fma(u, s, a0), fma(v, s, b0)
                s = splat(xt, x1[xb + p])
                a1, b1 = fma(u, s, a1), fma(v, s, b1)
                s = splat(xt, x2[xb + p])
                a2, b2 = fma(u, s, a2), fma(v, s, b2)
                s = splat(xt, x3[xb + p])
                a3, b3 = fma(u, s, a3), fma(v, s, b3)
                s = splat(xt, x4[xb + p])
                a4, b4 = fma(u, s, a4), fma(v, s, b4)
                s = splat(xt, x5[xb + p])
                a5, b5 = fma(u, s, a5), fma(v, s, b5)
                s = splat(xt, x6[xb + p])
                a6, b6 = fma(u, s, a6), fma(v, s, b6)
                s = splat(xt, x7[xb + p])
                a7, b7 = fma(u, s, a7), fma(v, s, b7)
        sums = np.empty((8, width), dtype=gw.dtype)
        for k, (lo, hi) in enumerate(((a0, b0), (a1, b1), (a2, b2), (a3, b3), (a4, b4), (a5, b5), (a6, b6),
                                      (a7, b7))):
            store(sums[k], 0, lo)
            store(sums[k], vl, hi)
        _store_sums(sums, gw, tile, nov, gw.shape[0] // groups, r0)


@njit(parallel=True, fastmath={"contract"}, **_JIT)
def _grad_weight_1x6(xt, gt, offs, gw, cg, wp, ho, wo):
    """:func:`_grad_weight_2x8` with the tile for 16 registers of 256 bits (AVX2), where a vector takes two: a tile
    of 1 vector of output channels x 6 pairs (12 registers); per position, 1 load of the copy and 6 input values
    broadcast feed 6 multiply-adds."""
    ntile, npos, width = gt.shape
    ntap = offs.shape[0]
    groups = xt.shape[0] // cg
    nov = ntile // groups
    n_img = npos // (ho * wo)
    kr = cg * ntap
    nrb = (kr + 5) // 6
    run = wo * n_img
    for task in prange(ntile * nrb):
        tile = task // nrb
        r0 = 6 * (task % nrb)
        c0 = (tile // nov) * cg
        gtt = gt[tile].reshape(-1)
        x0, x1 = _pair_input(xt, c0, r0, kr, offs), _pair_input(xt, c0, r0 + 1, kr, offs)
        x2, x3 = _pair_input(xt, c0, r0 + 2, kr, offs), _pair_input(xt, c0, r0 + 3, kr, offs)
        x4, x5 = _pair_input(xt, c0, r0 + 4, kr, offs), _pair_input(xt, c0, r0 + 5, kr, offs)
        z = splat(xt, 0.0)
        a0, a1, a2, a3, a4, a5 = z, z, z, z, z, z
        for i in range(ho):
            xb = i * wp * n_img
            gb = i * run
            for p in range(run):
                u = load(gtt, (gb + p) * width)
                a0 = fma(u, splat(xt, x0[xb + p]), a0)
                a1 = fma(u, splat(xt, x1[xb + p]), a1)
                a2 = fma(u, splat(xt, x2[xb + p]), a2)
                a3 = fma(u, splat(xt, x3[xb + p]), a3)
                a4 = fma(u, splat(xt, x4[xb + p]), a4)
                a5 = fma(u, splat(xt, x5[xb + p]), a5)
        sums = np.empty((6, width), dtype=gw.dtype)
        for k, a in enumerate((a0, a1, a2, a3, a4, a5)):
            store(sums[k], 0, a)
        _store_sums(sums, gw, tile, nov, gw.shape[0] // groups, r0)


def _planes(x, kernel_hw, padding, dilation, role, vectors):
    """(xt, wp, offs): x's zero-padded batch-last planes flat, (C, L), row stride wp*N, with zero rows below the
    last enough for a block of ``vectors`` vectors of slack; and the taps' offsets."""
    n = x.shape[0]
    (kh, kw), (top, bottom, left, right), (dh, dw) = kernel_hw, padding, dilation
    wp = x.shape[3] + left + right
    slack = vectors * 64 // x.dtype.itemsize
    extra = -(-slack // (wp * n))  # zero rows past the last a tap reads: the tail of a row's last block
    xt = batch_last_copy(x, (top, bottom + extra, left, right), role)
    offs = np.array([(a * dh * wp + b * dw) * n for a in range(kh) for b in range(kw)], dtype=np.int64)
    return xt.reshape(xt.shape[0], -1), wp, offs


def _row_kernel(vectors):
    """The forward kernel for tiles of ``vectors`` vectors, looked up when called (a table built at import would
    hold the dispatchers themselves, out of reach of :func:`tinyconv.kernels.precompile.record`)."""
    if vectors == 1:
        return _forward_rows_6x1
    return _forward_rows_8x2 if vectors == 2 else _forward_rows_8x3


def _conv(x, wpack, kernel_hw, bias, padding, dilation, groups, y, role, vectors):
    """y (N, C_out, Ho, Wo) = stride-1 conv of x with the packed weights ``wpack`` (:func:`.blocked.pack_weights`),
    zero padding (top, bottom, left, right), on the tiles of ``vectors`` vectors."""
    xt, wp, offs = _planes(x, kernel_hw, padding, dilation, role, vectors)
    _row_kernel(vectors)(xt, wpack, bias, offs, y, wp, x.shape[1] // groups)
    return y


def forward(x, w, bias, args, y, tiles, vectors=None):
    """y = conv2d(x, w) + bias at stride 1 (args.stride == (1, 1)); bias: (C_out,). ``vectors``: the tile's
    vectors of positions, by default :func:`row_vectors`' (tests set each the variant has)."""
    wpack = pack_weights(w, args.groups, tile_channels(w.shape[0] // args.groups, tiles))
    vectors = vectors or row_vectors(y.shape[3] * x.shape[0], tiles)
    return _conv(x, wpack, w.shape[2:], bias, args.padding, args.dilation, args.groups, y, "blocked_bl.x", vectors)


def grad_input(grad_y, w, input_hw, args, tiles, vectors=None):
    """grad_x (N, C_in, H, W) of a stride-1 conv2d: grad_y convolved with the flipped, channel-swapped kernel
    (:func:`.blocked.adjoint`); ``vectors`` as for :func:`forward`."""
    wpack, padding, gx = adjoint(grad_y, w, input_hw, args, tiles)
    vectors = vectors or row_vectors(input_hw[1] * grad_y.shape[0], tiles)
    return _conv(grad_y, wpack, w.shape[2:], np.zeros(gx.shape[1], dtype=grad_y.dtype), padding, args.dilation,
                 args.groups, gx, "blocked_bl.grad_y", vectors)


def grad_weight(x, grad_y, args, w_shape, tiles):
    """grad_w (C_out, C_in/groups, kh, kw) of a stride-1 conv2d with at least one tile of output channels per group
    (:func:`.blocked.grad_weight_tile_channels`)."""
    c_out, cg, kh, kw = w_shape
    n, ho, wo = grad_y.shape[0], grad_y.shape[2], grad_y.shape[3]
    xt, wp, offs = _planes(x, (kh, kw), args.padding, args.dilation, "blocked_bl.x", TILE_VECTORS[tiles])
    groups, og = args.groups, c_out // args.groups
    width = grad_weight_tile_channels(tiles, x.dtype.itemsize)
    nov = -(-og // width)
    gt = np.empty((groups * nov, ho * wo * n, width), dtype=x.dtype)
    _tile_major(np.ascontiguousarray(grad_y), gt, og)
    gw = np.empty((c_out, cg * kh * kw), dtype=x.dtype)
    kernel = _grad_weight_2x8 if tiles == "avx512" else _grad_weight_1x6
    kernel(xt, gt, offs, gw, cg, wp, ho, wo)
    return gw.reshape(w_shape)

"""Register-blocked convolution at stride 1 (the numba backend's kernel for wide layers), in two variants: tiles
sized for 32 registers of 512 bits (``"avx512"``) and for 16 registers of 256 bits (``"avx2"``, where each of the
64-byte vectors of :mod:`.simd` takes two). :mod:`tinyconv.kernels.choose` picks the variant for the CPU numba
compiles for; either runs anywhere (a tile that does not fit the registers spills: slow, still exact).

The flat-rows layout (:mod:`.flat_rows`) makes every tap ``(a, b)`` of a stride-1 convolution a constant offset
into an image's zero-padded channel plane, stored flat with row stride ``Wp``: output position ``p = i*Wp + j``
reads ``x_flat[c, p + off[t]]``. Its loops keep the accumulators in memory, one pass over a plane of outputs per
few taps, so wide layers (64 channels, 576 multiply-adds per output) spend their time loading and storing them.

Here a task (one image, a tile's output channels of one group) walks the plane in blocks of positions and holds
the block's tile of vector sums in registers while the whole sum over input channels and taps runs, then stores
it once, with the bias. avx512: 8 output channels x 2 vectors (32 float32 positions, 16 float64): per (channel,
tap), 2 vector loads of the input and 8 weights broadcast feed 16 vector multiply-adds. avx2: 6 x 1 (12
registers for the sums, 2 for the input, 1 broadcast weight: the shape of OpenBLAS's Haswell sgemm kernel). Each
has a narrower tile (6, 4 channels) for layers it fits better (:func:`tile_channels`). Positions past the last
output (``j >= Wo`` in a row, the tail of the last block) are computed from the zero slack and dropped. Why 8 x 2
on AVX-512: a 4 x 4 tile loads twice the input per multiply-add, which costs wherever the input outgrows L1; a
16 x 1 tile has blocks too long for small planes. Why 6 x 1 on AVX2: the largest tile whose sums, input and
broadcast fit 16 registers (``benchmarks/bench_conv.py`` times the layers these were decided on).

The fused ``Conv2d, ReLU, MaxPool2d`` node asks for the conv's 2x2 max pooling instead of the conv
(:func:`forward_max_pool`): the same tasks pool each plane of a tile's outputs while it is still in cache
(:func:`.simd.max_2x2`, a vector of windows at a time), so the conv's output, four times the pooled one, is never
written out and read back.

The same kernel gives grad_input at stride 1: the adjoint of a stride-1 convolution is a stride-1 convolution of
grad_y, padded by ``(k - 1)*d - padding`` on each side, with the kernel flipped and its channel axes swapped.

grad_weight, ``gw[o, c, t] = sum_p gy[o, p] * x[c, p + off[t]]``, is a sum over positions. With at least a tile's
worth of output channels per group (2 vectors on avx512, 1 on avx2) it holds the same kind of tile with vectors
over output channels: a task copies its channels of one image's grad_y position-major (``gy_t[p, o]``, channels
contiguous) into a buffer of its own, which stays in cache while it sweeps the (input channel, tap) pairs; per
position, the tile's loads of that row and one input value per pair broadcast feed its multiply-adds (2 vectors
x 8 pairs on avx512, 1 x 6 on avx2). The copies cost less than the dot products they replace. A task takes every
S-th image (:data:`GRAD_WEIGHT_SLOTS`) and adds each image's tile into its slot's part of grad_w. Narrower layers
take tiles of dot products, vectors along the positions, summed across lanes at the end (4 channels x 4 pairs on
avx512, 2 x 3 on avx2).
"""
from __future__ import annotations

import numpy as np
from numba import config as numba_config
from numba import njit, prange

from ... import workers
from .simd import fma, hsum, lanes, load, max_2x2, splat, store
from .workspace import scratch_empty, scratch_zeros

__all__ = ["forward", "forward_max_pool", "grad_input", "grad_weight", "adjoint", "block_use", "tile_channels",
           "grad_weight_tile_channels", "TILES", "TILE_VECTORS",
           "TILE_CHANNELS"]

_JIT = dict(cache=True)
TILES = ("avx512", "avx2")  # the variants: tiles for 32 registers of 512 bits, for 16 of 256 bits
TILE_VECTORS = {"avx512": 2, "avx2": 1}    # forward: vectors of positions per tile (a block of 32 or 16 float32)
TILE_CHANNELS = {"avx512": (8, 6), "avx2": (6, 4)}  # ... output channels per tile: the widest, a narrower one
GRAD_WEIGHT_VECTORS = {"avx512": 2, "avx2": 1}  # grad_weight's position-major tiles: vectors of output channels
GRAD_WEIGHT_PAIRS = {"avx512": 8, "avx2": 6}    # ... x (input channel, tap) pairs
MIN_TASKS = 8  # grad_weight splits an image's pairs into runs where fewer tasks would leave threads idle
GRAD_WEIGHT_SLOTS = 4  # grad_weight's position-major tiles sum the images into this many parts, not one per image
                       # (a batch-sized array per call); fixed, so the sums do not depend on the thread count
PACK_SPLIT = 1 << 20  # pack_weights splits packings of at least this many values over the worker threads
PACK_NUMPY_MAX = 1 << 15  # ... and leaves weights up to this many values to NumPy's copies, a few microseconds:
                          # small models (LeNet's, the MNIST ResNet's) then never compile its loop on a cold start


def block_use(out_hw, padded_width, tiles) -> float:
    """The share of the computed positions that are outputs: Ho*Wo over the flat positions (row stride Wp,
    garbage columns included) rounded up to whole float32 blocks of the ``tiles`` variant (float64's are half as
    long, so use more).
    Small planes waste most of a block (a 4x4 output uses a quarter of it); :mod:`tinyconv.kernels.choose` leaves
    those to other loops."""
    ho, wo = out_hw
    if ho * wo == 0:
        return 0.0
    blk = TILE_VECTORS[tiles] * 16
    npos = (ho - 1) * padded_width + wo
    return ho * wo / (-(-npos // blk) * blk)


@njit(parallel=True, **_JIT)
def _pad_planes(x, xp, top, left, wp):
    """xp[n, c, (i + top)*wp + j + left] = x[n, c, i, j]; the rest of xp (pre-zeroed) stays zero."""
    n_img, c_all, h, w = x.shape
    for task in prange(n_img * c_all):
        d = xp[task // c_all, task % c_all]
        s = x[task // c_all, task % c_all]
        for i in range(h):
            base = (i + top) * wp + left
            d[base:base + w] = s[i]  # a row slice: numba copies it as one block (an element loop did not vectorise)


@njit(fastmath={"contract"}, inline="always", **_JIT)
def _tile_8x2(rows, c0, cg, base, wk, offs, out, p0):
    """out[k, p0 + p] = sum_{c < cg, t} wk[c*T + t, k] * rows[c0 + c, base + offs[t] + p] for k < 8 (or 6) and
    p < 2 vectors: the 8 x 2 vector tile held in registers for the whole sum (per (channel, tap): 2 loads, 8
    weights broadcast, 16 multiply-adds), stored once. rows: (C, L) flat planes; wk: (cg*T, 8 or 6) the weights of
    8 (6) output channels side by side; out: (8 or 6, P)."""
    ntap = offs.shape[0]
    vl = lanes(out[0])
    tc = wk.shape[1]
    eight = tc == 8
    z = splat(out, 0.0)
    a0, a1, a2, a3, a4, a5, a6, a7 = z, z, z, z, z, z, z, z
    b0, b1, b2, b3, b4, b5, b6, b7 = z, z, z, z, z, z, z, z
    for c in range(cg):
        xc = rows[c0 + c]
        for t in range(ntap):
            u = load(xc, base + offs[t])
            v = load(xc, base + offs[t] + vl)
            wr = wk[c * ntap + t]
            w = splat(out, wr[0])
            a0, b0 = fma(w, u, a0), fma(w, v, b0)
            w = splat(out, wr[1])
            a1, b1 = fma(w, u, a1), fma(w, v, b1)
            w = splat(out, wr[2])
            a2, b2 = fma(w, u, a2), fma(w, v, b2)
            w = splat(out, wr[3])
            a3, b3 = fma(w, u, a3), fma(w, v, b3)
            w = splat(out, wr[4])
            a4, b4 = fma(w, u, a4), fma(w, v, b4)
            w = splat(out, wr[5])
            a5, b5 = fma(w, u, a5), fma(w, v, b5)
            if eight:  # (loop-invariant: the compiler makes one loop of each kind)
                w = splat(out, wr[6])
                a6, b6 = fma(w, u, a6), fma(w, v, b6)
                w = splat(out, wr[7])
                a7, b7 = fma(w, u, a7), fma(w, v, b7)
    for k, (lo, hi) in enumerate(((a0, b0), (a1, b1), (a2, b2), (a3, b3), (a4, b4), (a5, b5), (a6, b6), (a7, b7))):
        if k < tc:
            store(out[k], p0, lo)
            store(out[k], p0 + vl, hi)


@njit(fastmath={"contract"}, inline="always", **_JIT)
def _tile_6x1(rows, c0, cg, base, wk, offs, out, p0):
    """out[k, p0 + p] = sum_{c < cg, t} wk[c*T + t, k] * rows[c0 + c, base + offs[t] + p] for k < 6 (or 4) and
    p < 1 vector: the 6 x 1 vector tile for 16 registers of 256 bits (AVX2), where a 64-byte vector takes two:
    12 accumulators, 2 for the input and 1 broadcast weight (the shape of OpenBLAS's Haswell sgemm kernel). Per
    (channel, tap): 1 vector load, 6 weights broadcast, 6 vector multiply-adds. wk: (cg*T, 6 or 4)."""
    ntap = offs.shape[0]
    six = wk.shape[1] == 6
    z = splat(out, 0.0)
    a0, a1, a2, a3, a4, a5 = z, z, z, z, z, z
    for c in range(cg):
        xc = rows[c0 + c]
        for t in range(ntap):
            u = load(xc, base + offs[t])
            wr = wk[c * ntap + t]
            a0 = fma(splat(out, wr[0]), u, a0)
            a1 = fma(splat(out, wr[1]), u, a1)
            a2 = fma(splat(out, wr[2]), u, a2)
            a3 = fma(splat(out, wr[3]), u, a3)
            if six:  # (loop-invariant: the compiler makes one loop of each kind)
                a4 = fma(splat(out, wr[4]), u, a4)
                a5 = fma(splat(out, wr[5]), u, a5)
    store(out[0], p0, a0)
    store(out[1], p0, a1)
    store(out[2], p0, a2)
    store(out[3], p0, a3)
    if six:
        store(out[4], p0, a4)
        store(out[5], p0, a5)


@njit(inline="always", **_JIT)
def _tile_task(task, groups, nob, og, width):
    """Task ``task`` of a loop over (image, group, tile of ``width`` output channels), ``nob`` tiles a group of
    ``og`` channels: ``(n, tile, g, o0)``, the image, the tile's index over all groups, the group and its first
    output channel."""
    n = task // (groups * nob)
    tile = task % (groups * nob)
    g = tile // nob
    return n, tile, g, g * og + width * (tile % nob)


@njit(inline="always", **_JIT)
def _tile_groups(c_in, cg, c_out, tc):
    """(groups, output channels per group, tiles of tc output channels per group) of the forward kernels here
    and in :mod:`.blocked_batch_last`."""
    groups = c_in // cg
    og = c_out // groups
    return groups, og, (og + tc - 1) // tc


@njit(inline="always", fastmath={"contract"}, **_JIT)
def _forward_task(task, xp, wpack, bias, offs, y, argmax, wp, cg, ho, wo, vectors):
    """Task ``task`` of :func:`_forward_tiles_8x2` (``vectors`` 2) or :func:`_forward_tiles_6x1` (1): one image's
    outputs (Ho x Wo) of one tile of output channels, block by block of positions, then written to y with the bias;
    or, where ``argmax`` has rows, their 2x2 max pooling (:func:`_max_pool_planes`). Inlined into each kernel with
    ``vectors`` a constant, so each compiles one tile's code (a cold start's compile time)."""
    tc = wpack.shape[2]
    groups, og, nob = _tile_groups(xp.shape[1], cg, y.shape[1], tc)
    blk = vectors * lanes(xp[0, 0])
    nblk = ((ho - 1) * wp + wo + blk - 1) // blk
    n, rest, g, o0 = _tile_task(task, groups, nob, og, tc)
    out = np.empty((tc, nblk * blk + 2 * lanes(xp[0, 0])), dtype=y.dtype)  # slack: _max_pool_planes' reads
    for q in range(nblk):
        if vectors == 2:
            _tile_8x2(xp[n], g * cg, cg, q * blk, wpack[rest], offs, out, q * blk)
        else:
            _tile_6x1(xp[n], g * cg, cg, q * blk, wpack[rest], offs, out, q * blk)
    count = min(tc, (g + 1) * og - o0)
    if argmax.shape[2] > 0:
        _max_pool_planes(out, bias, y, argmax, n, o0, count, wp, wo)
    else:
        for k in range(count):
            b = bias[o0 + k]
            for i in range(ho):
                yo = y[n, o0 + k, i]
                row = out[k, i * wp:]
                for j in range(wo):
                    yo[j] = row[j] + b


@njit(**_JIT)
def _max_pool_planes(out, bias, y, argmax, n, o0, count, wp, wo):
    """y[n, o0 + k] (Ho // 2, Wo // 2), for k < count, = the 2x2 max pooling of the plane ``out[k, i*wp + j] +
    bias[o0 + k]`` (Wo wide, row stride wp), and argmax[n, o0 + k] where each maximum was, as max_pool2d numbers it
    (``2*i*Wo + 2*j`` plus 0, 1, Wo or Wo + 1): a vector of windows at a time along each row (:func:`.simd.max_2x2`).
    A vector that reaches past its row is stored whole where the plane has room (the next rows overwrite the
    excess), else into scratch and copied. ``out`` needs two vectors of slack past ``(Ho - 1)*wp + Wo``. Not
    inlined: compiled once, apart from the forward kernels (their compile time on a cold start)."""
    ho2, wo2 = y.shape[2], y.shape[3]
    plane = ho2 * wo2
    vl = lanes(out[0])
    best, index = np.empty(vl, dtype=y.dtype), np.empty(vl, dtype=np.int32)
    # y and argmax flat, once: a reshape per plane (a call into numba's runtime each) cost more than the pooling
    yf, af = y.reshape(-1), argmax.reshape(-1)
    for k in range(count):
        ok, b = out[k], bias[o0 + k]
        p0 = (n * y.shape[1] + o0 + k) * plane  # the plane's first value in yf and af
        for i in range(ho2):
            for j0 in range(0, wo2, vl):
                f = i * wo2 + j0
                if f + vl <= plane:
                    max_2x2(ok, 2 * (i * wp + j0), wp, b, yf, af, p0 + f, 2 * (i * wo + j0), wo)
                else:
                    max_2x2(ok, 2 * (i * wp + j0), wp, b, best, index, 0, 2 * (i * wo + j0), wo)
                    for j in range(min(vl, wo2 - j0)):
                        yf[p0 + f + j] = best[j]
                        af[p0 + f + j] = index[j]


@njit(inline="always", **_JIT)
def _forward_tasks(xp, wpack, y, cg):
    """Tasks of the forward kernels: images x groups x tiles of output channels."""
    groups, _, nob = _tile_groups(xp.shape[1], cg, y.shape[1], wpack.shape[2])
    return y.shape[0] * groups * nob


@njit(parallel=True, fastmath={"contract"}, **_JIT)
def _forward_tiles_8x2(xp, wpack, bias, offs, y, argmax, wp, cg, ho, wo):
    """y[n, o, i, j] = bias[o] + sum_{c, t} w[o, c, t] * xp[n, g*cg + c, i*wp + j + offs[t]] on the 8 x 2 tiles
    (tc 8 or 6) of the avx512 variant.

    xp: (N, C_in, L) padded planes, row stride wp, with at least one block of zero slack past the last position
    a tap reads; wpack: (groups * tiles, cg * T, tc) the weights of a tile's tc output channels side by side
    (:func:`pack_weights`; zero past a group's last channel); y: (N, C_out, Ho, Wo), or with an ``argmax`` of
    rows (not (0, 0, 0, 0)) y and argmax (N, C_out, Ho // 2, Wo // 2): the conv's 2x2 max pooling."""
    for task in prange(_forward_tasks(xp, wpack, y, cg)):
        _forward_task(task, xp, wpack, bias, offs, y, argmax, wp, cg, ho, wo, 2)


@njit(parallel=True, fastmath={"contract"}, **_JIT)
def _forward_tiles_6x1(xp, wpack, bias, offs, y, argmax, wp, cg, ho, wo):
    """:func:`_forward_tiles_8x2` on the 6 x 1 tiles (tc 6 or 4) of the avx2 variant."""
    for task in prange(_forward_tasks(xp, wpack, y, cg)):
        _forward_task(task, xp, wpack, bias, offs, y, argmax, wp, cg, ho, wo, 1)


@njit(inline="always", **_JIT)
def _pair_input(planes, c0, r, kr, offs):
    """The input that (channel, tap) pair r = c*T + t reads, from its first position: planes[c0 + c, offs[t]:]
    (a pair past the last, kr - 1, stands for the last: its sums are computed and dropped)."""
    r = min(r, kr - 1)
    ntap = offs.shape[0]
    return planes[c0 + r // ntap, offs[r % ntap]:]


@njit(parallel=True, fastmath={"contract"}, **_JIT)
def _grad_weight_4x4(xp, gyf, offs, part, cg):
    """part[n, o, r] = sum_p gyf[n, o, p] * xp[n, g*cg + r // T, p + offs[r % T]] for the pairs r = c*T + t.

    xp: (N, C_in, L) padded planes as in :func:`_forward_tiles_8x2`; gyf: (N, C_out, P) grad_y with the same row
    stride, zero past each row's Wo outputs, P a whole number of vectors; part: (N, C_out, cg*T), one image's
    share of grad_w per image (summed by the caller, in image order). A task (image, 4 output channels) holds
    a 4 x 4 tile of vector sums, 4 channels x 4 (input channel, tap) pairs, over the whole plane."""
    n_img, c_out, npr = gyf.shape
    ntap = offs.shape[0]
    groups = xp.shape[1] // cg
    og = c_out // groups
    nob = (og + 3) // 4
    kr = cg * ntap
    vl = lanes(xp[0, 0])
    nvec = npr // vl
    for task in prange(n_img * groups * nob):
        n, _, g, o0 = _tile_task(task, groups, nob, og, 4)
        last = (g + 1) * og - 1  # past it, a tile repeats the group's last channel and drops the copies
        g0 = gyf[n, o0]
        g1 = gyf[n, min(o0 + 1, last)]
        g2 = gyf[n, min(o0 + 2, last)]
        g3 = gyf[n, min(o0 + 3, last)]
        sums = np.empty((4, 4), dtype=part.dtype)
        for r0 in range(0, kr, 4):
            x0, x1 = _pair_input(xp[n], g * cg, r0, kr, offs), _pair_input(xp[n], g * cg, r0 + 1, kr, offs)
            x2, x3 = _pair_input(xp[n], g * cg, r0 + 2, kr, offs), _pair_input(xp[n], g * cg, r0 + 3, kr, offs)
            z = splat(xp, 0.0)
            a00, a01, a02, a03 = z, z, z, z
            a10, a11, a12, a13 = z, z, z, z
            a20, a21, a22, a23 = z, z, z, z
            a30, a31, a32, a33 = z, z, z, z
            for v in range(nvec):
                p = v * vl
                u0 = load(g0, p)
                u1 = load(g1, p)
                u2 = load(g2, p)
                u3 = load(g3, p)
                v0 = load(x0, p)
                a00 = fma(u0, v0, a00)
                a10 = fma(u1, v0, a10)
                a20 = fma(u2, v0, a20)
                a30 = fma(u3, v0, a30)
                v1 = load(x1, p)
                a01 = fma(u0, v1, a01)
                a11 = fma(u1, v1, a11)
                a21 = fma(u2, v1, a21)
                a31 = fma(u3, v1, a31)
                v2 = load(x2, p)
                a02 = fma(u0, v2, a02)
                a12 = fma(u1, v2, a12)
                a22 = fma(u2, v2, a22)
                a32 = fma(u3, v2, a32)
                v3 = load(x3, p)
                a03 = fma(u0, v3, a03)
                a13 = fma(u1, v3, a13)
                a23 = fma(u2, v3, a23)
                a33 = fma(u3, v3, a33)
            sums[0, 0], sums[0, 1], sums[0, 2], sums[0, 3] = hsum(a00), hsum(a01), hsum(a02), hsum(a03)
            sums[1, 0], sums[1, 1], sums[1, 2], sums[1, 3] = hsum(a10), hsum(a11), hsum(a12), hsum(a13)
            sums[2, 0], sums[2, 1], sums[2, 2], sums[2, 3] = hsum(a20), hsum(a21), hsum(a22), hsum(a23)
            sums[3, 0], sums[3, 1], sums[3, 2], sums[3, 3] = hsum(a30), hsum(a31), hsum(a32), hsum(a33)
            for k in range(min(4, last - o0 + 1)):
                for m in range(min(4, kr - r0)):
                    part[n, o0 + k, r0 + m] = sums[k, m]


@njit(parallel=True, fastmath={"contract"}, **_JIT)
def _grad_weight_2x3(xp, gyf, offs, part, cg):
    """:func:`_grad_weight_4x4` with the tile for 16 registers of 256 bits (AVX2), where a vector takes two: 2
    output channels x 3 pairs, 6 vector sums in 12 registers; per vector of positions, 2 loads of grad_y and 3 of
    the input feed 6 multiply-adds."""
    n_img, c_out, npr = gyf.shape
    ntap = offs.shape[0]
    groups = xp.shape[1] // cg
    og = c_out // groups
    nob = (og + 1) // 2
    kr = cg * ntap
    vl = lanes(xp[0, 0])
    nvec = npr // vl
    for task in prange(n_img * groups * nob):
        n, _, g, o0 = _tile_task(task, groups, nob, og, 2)
        last = (g + 1) * og - 1
        g0 = gyf[n, o0]
        g1 = gyf[n, min(o0 + 1, last)]
        for r0 in range(0, kr, 3):
            x0 = _pair_input(xp[n], g * cg, r0, kr, offs)
            x1 = _pair_input(xp[n], g * cg, r0 + 1, kr, offs)
            x2 = _pair_input(xp[n], g * cg, r0 + 2, kr, offs)
            z = splat(xp, 0.0)
            a00, a01, a02, a10, a11, a12 = z, z, z, z, z, z
            for v in range(nvec):
                p = v * vl
                u0 = load(g0, p)
                u1 = load(g1, p)
                v0 = load(x0, p)
                a00 = fma(u0, v0, a00)
                a10 = fma(u1, v0, a10)
                v1 = load(x1, p)
                a01 = fma(u0, v1, a01)
                a11 = fma(u1, v1, a11)
                v2 = load(x2, p)
                a02 = fma(u0, v2, a02)
                a12 = fma(u1, v2, a12)
            sums = (hsum(a00), hsum(a01), hsum(a02), hsum(a10), hsum(a11), hsum(a12))
            for k in range(min(2, last - o0 + 1)):
                for m in range(min(3, kr - r0)):
                    part[n, o0 + k, r0 + m] = sums[3 * k + m]


@njit(inline="always", fastmath={"contract"}, **_JIT)
def _add_into(row, col, v, first):
    """row[col:col + lanes] = v (``first``) or += v: a tile's sums over one image into its slot's part."""
    if first:
        store(row, col, v)
    else:
        store(row, col, fma(load(row, col), splat(row, 1.0), v))  # x*1 + v: the sum, rounded once


@njit(inline="always", **_JIT)
def _position_major(gy, n, o0, count, wp, width):
    """buf[(i*wp + j)*width + o] = gy[n, o0 + o, i, j] for o < count: ``width`` output channels of one image's grad_y
    position-major (channels contiguous) with row stride wp, zero in the garbage columns and past the last
    channel."""
    ho, wo = gy.shape[2], gy.shape[3]
    buf = np.zeros(((ho - 1) * wp + wo) * width, dtype=gy.dtype)
    for o in range(count):
        src = gy[n, o0 + o]
        for i in range(ho):
            for j in range(wo):
                buf[(i * wp + j) * width + o] = src[i, j]
    return buf


@njit(parallel=True, fastmath={"contract"}, **_JIT)
def _grad_weight_2x8(xp, gy, offs, part, cg, wp, chunks):
    """part[s, r, g*ogp + o] = sum_{n = s, s + S, ...} sum_p gy[n, g*og + o, p] * xp[n, g*cg + r // T,
    p + offs[r % T]] for the pairs r = c*T + t (p over the flat positions, row stride wp): slot s's share of
    grad_w, every S-th image from the s-th (S = part.shape[0]; the caller sums the slots in order), channels padded
    to ogp = part.shape[2] // groups, a whole number of 2 vectors.

    A task (slot, 2 vectors of output channels, one of ``chunks`` runs of pairs) takes its images in turn: copies
    its channels of the image's grad_y position-major (:func:`_position_major`), then, per 8 pairs, holds a 2 x 8
    tile of vector sums, 2 vectors of channels x 8 pairs, over the whole plane (per position, 2 loads of the copy
    and 8 input values broadcast feed 16 multiply-adds; pairs past the last repeat it, dropped) and adds it into
    the slot's part. Sized for 32 registers of 512 bits (AVX-512)."""
    n_img, c_out, ho, wo = gy.shape
    ntap = offs.shape[0]
    groups = xp.shape[1] // cg
    og = c_out // groups
    ogp = part.shape[2] // groups
    vl = lanes(xp[0, 0])
    nov = ogp // (2 * vl)
    kr = cg * ntap
    npos = (ho - 1) * wp + wo
    run = -(-((kr + 7) // 8) // chunks) * 8  # pairs per chunk
    slots = part.shape[0]
    per_slot = groups * nov * chunks
    for task in prange(slots * per_slot):
        slot = task // per_slot
        rest = task % per_slot
        g = rest // (nov * chunks)
        v0 = 2 * vl * ((rest // chunks) % nov)  # the tile's first channel within the group
        c0 = g * cg
        pn = part[slot]
        col = g * ogp + v0
        for n in range(slot, n_img, slots):
            gt = _position_major(gy, n, g * og + v0, min(2 * vl, og - v0), wp, 2 * vl)
            for r0 in range(run * (rest % chunks), min(kr, run * (rest % chunks + 1)), 8):
                x0, x1 = _pair_input(xp[n], c0, r0, kr, offs), _pair_input(xp[n], c0, r0 + 1, kr, offs)
                x2, x3 = _pair_input(xp[n], c0, r0 + 2, kr, offs), _pair_input(xp[n], c0, r0 + 3, kr, offs)
                x4, x5 = _pair_input(xp[n], c0, r0 + 4, kr, offs), _pair_input(xp[n], c0, r0 + 5, kr, offs)
                x6, x7 = _pair_input(xp[n], c0, r0 + 6, kr, offs), _pair_input(xp[n], c0, r0 + 7, kr, offs)
                z = splat(xp, 0.0)
                a0, a1, a2, a3, a4, a5, a6, a7 = z, z, z, z, z, z, z, z
                b0, b1, b2, b3, b4, b5, b6, b7 = z, z, z, z, z, z, z, z
                for p in range(npos):
                    u = load(gt, p * 2 * vl)
                    v = load(gt, p * 2 * vl + vl)
                    s = splat(xp, x0[p])
                    a0, b0 = fma(u, s, a0), fma(v, s, b0)
                    s = splat(xp, x1[p])
                    a1, b1 = fma(u, s, a1), fma(v, s, b1)
                    s = splat(xp, x2[p])
                    a2, b2 = fma(u, s, a2), fma(v, s, b2)
                    s = splat(xp, x3[p])
                    a3, b3 = fma(u, s, a3), fma(v, s, b3)
                    s = splat(xp, x4[p])
                    a4, b4 = fma(u, s, a4), fma(v, s, b4)
                    s = splat(xp, x5[p])
                    a5, b5 = fma(u, s, a5), fma(v, s, b5)
                    s = splat(xp, x6[p])
                    a6, b6 = fma(u, s, a6), fma(v, s, b6)
                    s = splat(xp, x7[p])
                    a7, b7 = fma(u, s, a7), fma(v, s, b7)
                for k, (lo, hi) in enumerate(((a0, b0), (a1, b1), (a2, b2), (a3, b3), (a4, b4), (a5, b5), (a6, b6),
                                              (a7, b7))):
                    if r0 + k < kr:
                        _add_into(pn[r0 + k], col, lo, n == slot)
                        _add_into(pn[r0 + k], col + vl, hi, n == slot)


@njit(parallel=True, fastmath={"contract"}, **_JIT)
def _grad_weight_1x6(xp, gy, offs, part, cg, wp, chunks):
    """:func:`_grad_weight_2x8` with the tile for 16 registers of 256 bits (AVX2), where a vector takes two: a
    task's channels are 1 vector (ogp a whole number of vectors), its tile 1 vector of channels x 6 pairs (12
    registers); per position, 1 load of the copy and 6 input values broadcast feed 6 multiply-adds."""
    n_img, c_out, ho, wo = gy.shape
    ntap = offs.shape[0]
    groups = xp.shape[1] // cg
    og = c_out // groups
    ogp = part.shape[2] // groups
    vl = lanes(xp[0, 0])
    nov = ogp // vl
    kr = cg * ntap
    npos = (ho - 1) * wp + wo
    run = -(-((kr + 5) // 6) // chunks) * 6  # pairs per chunk
    slots = part.shape[0]
    per_slot = groups * nov * chunks
    for task in prange(slots * per_slot):
        slot = task // per_slot
        rest = task % per_slot
        g = rest // (nov * chunks)
        v0 = vl * ((rest // chunks) % nov)  # the tile's first channel within the group
        c0 = g * cg
        pn = part[slot]
        col = g * ogp + v0
        for n in range(slot, n_img, slots):
            gt = _position_major(gy, n, g * og + v0, min(vl, og - v0), wp, vl)
            for r0 in range(run * (rest % chunks), min(kr, run * (rest % chunks + 1)), 6):
                x0, x1 = _pair_input(xp[n], c0, r0, kr, offs), _pair_input(xp[n], c0, r0 + 1, kr, offs)
                x2, x3 = _pair_input(xp[n], c0, r0 + 2, kr, offs), _pair_input(xp[n], c0, r0 + 3, kr, offs)
                x4, x5 = _pair_input(xp[n], c0, r0 + 4, kr, offs), _pair_input(xp[n], c0, r0 + 5, kr, offs)
                z = splat(xp, 0.0)
                a0, a1, a2, a3, a4, a5 = z, z, z, z, z, z
                for p in range(npos):
                    u = load(gt, p * vl)
                    a0 = fma(u, splat(xp, x0[p]), a0)
                    a1 = fma(u, splat(xp, x1[p]), a1)
                    a2 = fma(u, splat(xp, x2[p]), a2)
                    a3 = fma(u, splat(xp, x3[p]), a3)
                    a4 = fma(u, splat(xp, x4[p]), a4)
                    a5 = fma(u, splat(xp, x5[p]), a5)
                for k, a in enumerate((a0, a1, a2, a3, a4, a5)):
                    if r0 + k < kr:
                        _add_into(pn[r0 + k], col, a, n == slot)


def grad_weight_tile_channels(tiles, itemsize=4) -> int:
    """Output channels of one position-major grad_weight tile of the ``tiles`` variant, for values of ``itemsize``
    bytes (:data:`GRAD_WEIGHT_VECTORS` 64-byte vectors): groups with fewer take the dot-product tiles."""
    return GRAD_WEIGHT_VECTORS[tiles] * 64 // itemsize


def tile_channels(og, tiles) -> int:
    """Output channels per forward tile of the ``tiles`` variant for ``og`` per group: the variant's widest tile, or
    its narrower one where that computes at least a tenth fewer channels (a narrower tile does less work per load
    of the input): avx512 8, or 6 for LeNet's 6 channels, 12; avx2 6, or 4 for 16."""
    widest, narrower = TILE_CHANNELS[tiles]
    return narrower if 10 * (-(-og // narrower) * narrower) <= 9 * (-(-og // widest) * widest) else widest


def pack_weights(w, groups, tc, adjoint=False):
    """The weights of each tile's tc output channels side by side, zero past a group's last channel:
    (C_out, cg, kh, kw) -> (groups * tiles, cg*kh*kw, tc), ``packed[g*tiles + b, c*T + t, l] = w[g*og + b*tc + l,
    c, t]``. With ``adjoint``, those of grad_input's convolution (:func:`adjoint`), read from ``w`` itself:
    (groups * tiles, og*kh*kw, tc), ``packed[g*tiles + b, o*T + t, l] = w[g*og + o, b*tc + l, T-1-t]``, tiles
    over the input channels. One pass over the weights (no flipped, transposed copy first); large weights are
    split over tinyconv's worker threads."""
    c_out, cg, kh, kw = w.shape
    og, ntap = c_out // groups, kh * kw
    lanes_real, pairs = (cg, og) if adjoint else (og, cg)
    nob = -(-lanes_real // tc)
    if numba_config.DISABLE_JIT or w.size <= PACK_NUMPY_MAX:  # NumPy's copies (interpreted, the loop is slow)
        w5 = np.asarray(w).reshape(groups, og, cg, ntap)
        if adjoint:
            w5 = w5[..., ::-1].transpose(0, 2, 1, 3)  # (groups, cg, og, T), taps flipped
        packed = np.zeros((groups, nob * tc, pairs * ntap), dtype=w.dtype)
        packed[:, :lanes_real] = w5.reshape(groups, lanes_real, pairs * ntap)
        return np.ascontiguousarray(packed.reshape(groups, nob, tc, -1).transpose(0, 1, 3, 2)).reshape(
            groups * nob, pairs * ntap, tc)
    w4 = np.ascontiguousarray(w).reshape(groups, og, cg, ntap)
    packed = np.empty((groups * nob, pairs * ntap, tc), dtype=w.dtype)
    # what _pack_tiles' outer loop runs over, and the threads share: pairs (grad_input's, several taps) or tiles
    outer = pairs if adjoint and ntap > 1 else groups * nob

    def pack(first, last=outer):
        _pack_tiles(w4, packed, first, min(last, outer), adjoint)

    if packed.size < PACK_SPLIT or outer < 2:
        pack(0)
    else:
        step = -(-outer // workers.num_threads())
        workers.map_chunks(lambda first: pack(first, first + step), list(range(0, outer, step)))
    return packed


@njit(nogil=True, **_JIT)
def _pack_tiles(w4, packed, first, last, adjoint):
    """:func:`pack_weights` from w4 (groups, og, cg, T): the forward's tiles ``first .. last - 1``, or with
    ``adjoint`` grad_input's rows of the pairs (output channels) ``first .. last - 1`` in every tile (of the tiles
    ``first .. last - 1`` for a single tap). Serial (one pass where NumPy's zero-fill, copy and transpose took
    three), releasing the GIL so that :func:`pack_weights` can run parts side by side."""
    og, cg, ntap = w4.shape[1], w4.shape[2], w4.shape[3]
    tc = packed.shape[2]
    lanes_real = cg if adjoint else og
    nob = -(-lanes_real // tc)
    if adjoint and ntap == 1:  # a tile's row o is tc contiguous weights of w4[g, o]: one run copied per row
        for task in range(first, last):
            g, c0 = task // nob, (task % nob) * tc
            real = min(tc, cg - c0)
            dst = packed[task]
            for o in range(og):
                row = dst[o]
                for lane in range(real):
                    row[lane] = w4[g, o, c0 + lane, 0]
                for lane in range(real, tc):
                    row[lane] = 0
    elif adjoint:  # w4[g, o] (contiguous) feeds the rows of pair o in every tile: read each in turn
        for o in range(first, last):
            for task in range(packed.shape[0]):
                g, c0 = task // nob, (task % nob) * tc
                real = min(tc, cg - c0)
                for t in range(ntap):
                    row = packed[task, o * ntap + t]
                    for lane in range(real):
                        row[lane] = w4[g, o, c0 + lane, ntap - 1 - t]
                    for lane in range(real, tc):
                        row[lane] = 0
    else:  # a tile's tc output channels: tc contiguous runs, each copied down its lane
        for task in range(first, last):
            g, o0 = task // nob, (task % nob) * tc
            dst = packed[task]
            for lane in range(tc):
                if o0 + lane < og:
                    src = w4[g, o0 + lane].reshape(-1)
                    for r in range(cg * ntap):
                        dst[r, lane] = src[r]
                else:
                    for r in range(cg * ntap):
                        dst[r, lane] = 0


def _padded_planes(x, kernel_hw, padding, dilation, role):
    """(xp, wp, offs): x's zero-padded planes (N, C, Hp*Wp + slack), row stride wp, and the taps' offsets."""
    n, c_in, h, wd = x.shape
    (kh, kw), (top, bottom, left, right), (dh, dw) = kernel_hw, padding, dilation
    # at stride 1 the padded size is also the output's plus the kernel's reach (grad_input pads grad_y to make it so)
    hp, wp = h + top + bottom, wd + left + right
    slack = max(TILE_VECTORS.values()) * 64 // x.dtype.itemsize  # a block of positions past the last a tap reads
    xp = scratch_zeros((n, c_in, hp * wp + slack), x.dtype, ("blocked." + role, x.shape, tuple(padding)))
    _pad_planes(np.ascontiguousarray(x), xp, top, left, wp)
    offs = np.array([a * dh * wp + b * dw for a in range(kh) for b in range(kw)], dtype=np.int64)
    return xp, wp, offs


_NO_ARGMAX = np.empty((0, 0, 0, 0), dtype=np.int32)  # "no pooling" to the forward kernels (same type as an argmax)


def _conv(x, wpack, kernel_hw, bias, padding, dilation, groups, y, role, tiles, argmax=_NO_ARGMAX, out_hw=None):
    """y (N, C_out, Ho, Wo) = stride-1 conv of x with the packed weights ``wpack`` (:func:`pack_weights`), zero
    padding (top, bottom, left, right). With an ``argmax`` and the conv's ``out_hw``, y and argmax (N, C_out,
    Ho // 2, Wo // 2) get the conv's 2x2 max pooling instead (:func:`forward_max_pool`)."""
    xp, wp, offs = _padded_planes(x, kernel_hw, padding, dilation, role)
    if (argmax is _NO_ARGMAX) != (out_hw is None):
        raise ValueError("_conv pools into argmax with the conv's out_hw, or neither")
    ho, wo = y.shape[2:] if out_hw is None else out_hw
    kernel = _forward_tiles_8x2 if TILE_VECTORS[tiles] == 2 else _forward_tiles_6x1
    kernel(xp, wpack, bias, offs, y, argmax, wp, x.shape[1] // groups, ho, wo)
    return y


def forward(x, w, bias, args, y, tiles):
    """y = conv2d(x, w) + bias at stride 1 (args.stride == (1, 1)); bias: (C_out,)."""
    wpack = pack_weights(w, args.groups, tile_channels(w.shape[0] // args.groups, tiles))
    return _conv(x, wpack, w.shape[2:], bias, args.padding, args.dilation, args.groups, y, "x", tiles)


def forward_max_pool(x, w, bias, args, tiles):
    """``(y, argmax)``: the 2x2 / stride-2 max pooling (no padding, floor mode) of conv2d(x, w) + bias at stride 1,
    pooled in the forward's tasks (the conv's output is never written); y (N, C_out, Ho // 2, Wo // 2), argmax int32
    flat indices into the conv's (Ho, Wo) planes, both as max_pool2d gives them."""
    n, c_out = x.shape[0], w.shape[0]
    ho, wo = args.out_shape[2], args.out_shape[3]
    y = np.empty((n, c_out, ho // 2, wo // 2), dtype=x.dtype)
    argmax = np.empty(y.shape, dtype=np.int32)
    if y.size:
        wpack = pack_weights(w, args.groups, tile_channels(c_out // args.groups, tiles))
        _conv(x, wpack, w.shape[2:], bias, args.padding, args.dilation, args.groups, y, "x", tiles, argmax, (ho, wo))
    return y, argmax


def adjoint(grad_y, w, input_hw, args, tiles):
    """The stride-1 convolution whose output is grad_x (N, C_in, H, W): ``(wpack, padding, gx)``, the kernel
    flipped with its channel axes swapped (``wt[g*cg + c, o, a, b] = w[g*og + o, c, kh-1-a, kw-1-b]``), packed for
    the ``tiles`` variant (:func:`pack_weights` with ``adjoint``); grad_y's padding (top, bottom, left, right),
    ``(k - 1)*d - padding`` before and, below and right, the rows grad_x reads past the output; and gx,
    uninitialised. (:func:`grad_input` and :mod:`.blocked_batch_last`'s.)"""
    c_out, cg, kh, kw = w.shape
    (dh, dw), (top, _, left, _) = args.dilation, args.padding
    h, wd = input_hw
    ho, wo = grad_y.shape[2], grad_y.shape[3]
    wpack = pack_weights(w, args.groups, tile_channels(cg, tiles), adjoint=True)
    pt, pl = (kh - 1) * dh - top, (kw - 1) * dw - left
    padding = (pt, h + (kh - 1) * dh - ho - pt, pl, wd + (kw - 1) * dw - wo - pl)
    return wpack, padding, np.empty((grad_y.shape[0], cg * args.groups, h, wd), dtype=grad_y.dtype)


def grad_input(grad_y, w, input_hw, args, tiles):
    """grad_x (N, C_in, H, W) of a stride-1 conv2d: grad_y convolved with the flipped, channel-swapped kernel."""
    wpack, padding, gx = adjoint(grad_y, w, input_hw, args, tiles)
    return _conv(grad_y, wpack, w.shape[2:], np.zeros(gx.shape[1], dtype=grad_y.dtype), padding, args.dilation,
                 args.groups, gx, "grad_y", tiles)


def grad_weight(x, grad_y, args, w_shape, tiles):
    """grad_w (C_out, C_in/groups, kh, kw) of a stride-1 conv2d."""
    c_out, cg, kh, kw = w_shape
    n, ho, wo = grad_y.shape[0], grad_y.shape[2], grad_y.shape[3]
    xp, wp, offs = _padded_planes(x, (kh, kw), args.padding, args.dilation, "x")
    vl = 64 // x.dtype.itemsize
    groups, og = args.groups, c_out // args.groups
    width = grad_weight_tile_channels(tiles, x.dtype.itemsize)
    if og >= width:
        ogp = -(-og // width) * width  # channels per group, padded to whole tiles
        slots = min(n, GRAD_WEIGHT_SLOTS)
        part = scratch_empty((slots, cg * kh * kw, groups * ogp), x.dtype, "blocked.grad_weight")
        # runs of pairs per (slot, channels) task: enough tasks for the threads where slots are few
        tasks = slots * groups * (ogp // width)
        chunks = max(1, min(-(-cg * kh * kw // GRAD_WEIGHT_PAIRS[tiles]), -(-MIN_TASKS // tasks)))
        kernel = _grad_weight_2x8 if tiles == "avx512" else _grad_weight_1x6
        kernel(xp, np.ascontiguousarray(grad_y), offs, part, cg, wp, chunks)
        total = (part[0] if slots == 1 else part.sum(axis=0)).reshape(cg * kh * kw, groups, ogp)[:, :, :og]
        return np.ascontiguousarray(total.transpose(1, 2, 0)).reshape(w_shape)
    npr = -(-((ho - 1) * wp + wo) // vl) * vl
    gyf = scratch_zeros((n, c_out, npr), x.dtype, ("blocked.grad_y", grad_y.shape, wp))
    _pad_planes(np.ascontiguousarray(grad_y), gyf, 0, 0, wp)
    part = np.empty((n, c_out, cg * kh * kw), dtype=x.dtype)
    kernel = _grad_weight_4x4 if tiles == "avx512" else _grad_weight_2x3
    kernel(xp, gyf, offs, part, cg)
    return part.sum(axis=0).reshape(w_shape)

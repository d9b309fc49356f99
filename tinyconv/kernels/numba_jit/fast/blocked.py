"""Register-blocked convolution at stride 1 (the numba backend's kernel for wide layers).

The flat-rows layout (:mod:`.flat_rows`) makes every tap ``(a, b)`` of a stride-1 convolution a constant offset
into an image's zero-padded channel plane, stored flat with row stride ``Wp``: output position ``p = i*Wp + j``
reads ``x_flat[c, p + off[t]]``. Its loops keep the accumulators in memory, one pass over a plane of outputs per
few taps, so wide layers (64 channels, 576 multiply-adds per output) spend their time loading and storing them.

Here a task (one image, 8 output channels of one group; 6 where that wastes fewer, :func:`tile_channels`) walks
the plane in blocks of 2 vectors of positions (32 float32, 16 float64; :mod:`.simd`) and holds the block's 8 x 2
vector tile in registers while the whole sum over input channels and taps runs: per (channel, tap), 2 vector
loads of the input and 8 weights broadcast feed 16 vector multiply-adds, and the tile is stored once, with the
bias, at the end. Positions past the last output
(``j >= Wo`` in a row, the tail of the last block) are computed from the zero slack and dropped. Why 8 x 2: a
4 x 4 tile loads twice the input per multiply-add, which costs wherever the input outgrows L1; a 16 x 1 tile has
blocks too long for small planes (``benchmarks/bench_conv.py`` times the layers this was decided on).

The same kernel gives grad_input at stride 1: the adjoint of a stride-1 convolution is a stride-1 convolution of
grad_y, padded by ``(k - 1)*d - padding`` on each side, with the kernel flipped and its channel axes swapped.

grad_weight, ``gw[o, c, t] = sum_p gy[o, p] * x[c, p + off[t]]``, is a sum over positions. With at least
``2 * lanes`` output channels per group it holds the same kind of tile, vectors over output channels: grad_y is
copied position-major (``gy_t[p, o]``, channels contiguous) and per position 2 vector loads of it and 8 input
values broadcast feed 16 multiply-adds into the sums of 32 channels x 8 (channel, tap) pairs; the copies cost
less than the dot products they replace. Narrower layers take a 4 x 4 tile of dot products, vectors along the
positions, summed across lanes at the end.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .simd import fma, hsum, lanes, load, splat, store, wide_registers
from .workspace import scratch_zeros

__all__ = ["forward", "grad_input", "grad_weight", "block_use", "tile_channels", "ENABLED",
           "TILE_VECTORS"]

_JIT = dict(cache=True)
TILE_VECTORS = 2  # vectors of positions per tile: a block of 32 float32 (16 float64) positions
ENABLED = wide_registers()  # only where the tiles fit in the registers (AVX-512); the flat-rows loops else


def block_use(out_hw, padded_width) -> float:
    """The share of the computed positions that are outputs: Ho*Wo over the flat positions (row stride Wp,
    garbage columns included) rounded up to whole float32 blocks (float64's are half as long, so use more).
    Small planes waste most of a block (a 4x4 output uses a quarter of it); :mod:`tinyconv.kernels.choose` leaves
    those to other loops."""
    ho, wo = out_hw
    if ho * wo == 0:
        return 0.0
    blk = TILE_VECTORS * 16
    npos = (ho - 1) * padded_width + wo
    return ho * wo / (-(-npos // blk) * blk)


@njit(parallel=True, **_JIT)
def _pad_planes(x, xp, top, left, wp):
    """xp[n, c, (i + top)*wp + j + left] = x[n, c, i, j]; the rest of xp (pre-zeroed) stays zero."""
    n_img, c_all, h, w = x.shape
    for task in prange(n_img * c_all):
        n = task // c_all
        c = task % c_all
        d = xp[n, c]
        for i in range(h):
            base = (i + top) * wp + left
            for j in range(w):
                d[base + j] = x[n, c, i, j]


@njit(fastmath={"contract"}, inline="always", **_JIT)
def _tile(rows, c0, cg, base, wk, offs, out, p0):
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


@njit(parallel=True, fastmath={"contract"}, **_JIT)
def _forward_tiles(xp, wpack, bias, offs, y, wp, cg):
    """y[n, o, i, j] = bias[o] + sum_{c, t} w[o, c, t] * xp[n, g*cg + c, i*wp + j + offs[t]].

    xp: (N, C_in, L) padded planes, row stride wp, with at least one block of zero slack past the last position
    a tap reads; wpack: (groups * tiles, cg * T, 8 or 6) the weights of a tile's output channels side by side
    (:func:`pack_weights`; zero past a group's last channel); y: (N, C_out, Ho, Wo)."""
    n_img, c_out, ho, wo = y.shape
    groups = xp.shape[1] // cg
    og = c_out // groups
    tc = wpack.shape[2]
    nob = (og + tc - 1) // tc
    blk = TILE_VECTORS * lanes(xp[0, 0])
    npos = (ho - 1) * wp + wo
    nblk = (npos + blk - 1) // blk
    for task in prange(n_img * groups * nob):
        n = task // (groups * nob)
        rest = task % (groups * nob)
        g = rest // nob
        o0 = g * og + tc * (rest % nob)
        nb = min(tc, (g + 1) * og - o0)
        out = np.empty((tc, nblk * blk), dtype=y.dtype)
        for q in range(nblk):
            _tile(xp[n], g * cg, cg, q * blk, wpack[rest], offs, out, q * blk)
        for k in range(nb):
            b = bias[o0 + k]
            for i in range(ho):
                yo = y[n, o0 + k, i]
                ok = out[k, i * wp:]
                for j in range(wo):
                    yo[j] = ok[j] + b


@njit(inline="always", **_JIT)
def _pair_input(planes, c0, r, kr, offs):
    """The input that (channel, tap) pair r = c*T + t reads, from its first position: planes[c0 + c, offs[t]:]
    (a pair past the last, kr - 1, stands for the last: its sums are computed and dropped)."""
    r = min(r, kr - 1)
    ntap = offs.shape[0]
    return planes[c0 + r // ntap, offs[r % ntap]:]


@njit(parallel=True, fastmath={"contract"}, **_JIT)
def _grad_weight_tiles(xp, gyf, offs, part, cg):
    """part[n, o, r] = sum_p gyf[n, o, p] * xp[n, g*cg + r // T, p + offs[r % T]] for the pairs r = c*T + t.

    xp: (N, C_in, L) padded planes as in :func:`_forward_tiles`; gyf: (N, C_out, P) grad_y with the same row
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
        n = task // (groups * nob)
        rest = task % (groups * nob)
        g = rest // nob
        o0 = g * og + 4 * (rest % nob)
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


@njit(parallel=True, **_JIT)
def _to_position_major(gy, gyt, wp, ogp):
    """gyt[n, (i*wp + j)*C + g*ogp + o] = gy[n, g*og + o, i, j], C = groups*ogp; the rest (pre-zeroed: garbage
    columns, padding channels) stays zero."""
    n_img, c_out, ho, wo = gy.shape
    ctot = gyt.shape[1] // ((ho - 1) * wp + wo)
    og = c_out // (ctot // ogp)
    for task in prange(n_img * ho):
        n = task // ho
        i = task % ho
        d = gyt[n]
        for c in range(c_out):
            col = (c // og) * ogp + c % og
            for j in range(wo):
                d[(i * wp + j) * ctot + col] = gy[n, c, i, j]


@njit(parallel=True, fastmath={"contract"}, **_JIT)
def _grad_weight_wide(xp, gyt, offs, part, cg, npos):
    """part[n, r, g*ogp + o] = sum_p gyt[n, p*C + g*ogp + o] * xp[n, g*cg + r // T, p + offs[r % T]] for the pairs
    r = c*T + t: one image's share of grad_w (summed by the caller, in image order), channels padded to ogp.

    A task (image, 2 vectors of output channels, 8 pairs) holds a 2 x 8 tile of vector sums for the whole plane;
    per position, 2 loads of grad_y's row and 8 input values broadcast (pairs past the last repeat it, dropped)."""
    n_img = xp.shape[0]
    ntap = offs.shape[0]
    groups = xp.shape[1] // cg
    ctot = part.shape[2]
    ogp = ctot // groups
    vl = lanes(xp[0, 0])
    nov = ogp // (2 * vl)
    kr = cg * ntap
    nrb = (kr + 7) // 8
    per_img = groups * nov * nrb
    for task in prange(n_img * per_img):
        n = task // per_img
        rest = task % per_img
        g = rest // (nov * nrb)
        o0 = g * ogp + 2 * vl * ((rest // nrb) % nov)
        r0 = 8 * (rest % nrb)
        c0 = g * cg
        gn = gyt[n]
        x0, x1 = _pair_input(xp[n], c0, r0, kr, offs), _pair_input(xp[n], c0, r0 + 1, kr, offs)
        x2, x3 = _pair_input(xp[n], c0, r0 + 2, kr, offs), _pair_input(xp[n], c0, r0 + 3, kr, offs)
        x4, x5 = _pair_input(xp[n], c0, r0 + 4, kr, offs), _pair_input(xp[n], c0, r0 + 5, kr, offs)
        x6, x7 = _pair_input(xp[n], c0, r0 + 6, kr, offs), _pair_input(xp[n], c0, r0 + 7, kr, offs)
        z = splat(xp, 0.0)
        a0, a1, a2, a3, a4, a5, a6, a7 = z, z, z, z, z, z, z, z
        b0, b1, b2, b3, b4, b5, b6, b7 = z, z, z, z, z, z, z, z
        for p in range(npos):
            q = p * ctot + o0
            u = load(gn, q)
            v = load(gn, q + vl)
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
        pn = part[n]
        for k, (lo, hi) in enumerate(((a0, b0), (a1, b1), (a2, b2), (a3, b3), (a4, b4), (a5, b5), (a6, b6), (a7, b7))):
            if r0 + k < kr:
                store(pn[r0 + k], o0, lo)
                store(pn[r0 + k], o0 + vl, hi)


def tile_channels(og) -> int:
    """Output channels per tile for ``og`` per group: 8, or 6 where that wastes fewer (LeNet's 6 channels, 12)."""
    return 6 if -(-og // 6) * 6 < -(-og // 8) * 8 else 8


def pack_weights(w, groups):
    """(C_out, cg, kh, kw) -> (groups * tiles, cg*kh*kw, tc): the tc = :func:`tile_channels` output channels of a
    tile side by side, zero past a group's last channel."""
    c_out, cg, kh, kw = w.shape
    og, k = c_out // groups, cg * kh * kw
    tc = tile_channels(og)
    nob = -(-og // tc)
    packed = np.zeros((groups, nob * tc, k), dtype=w.dtype)
    packed[:, :og] = np.asarray(w).reshape(groups, og, k)
    return np.ascontiguousarray(packed.reshape(groups, nob, tc, k).transpose(0, 1, 3, 2)).reshape(groups * nob, k, tc)


def _padded_planes(x, kernel_hw, padding, dilation, role):
    """(xp, wp, offs): x's zero-padded planes (N, C, Hp*Wp + slack), row stride wp, and the taps' offsets."""
    n, c_in, h, wd = x.shape
    (kh, kw), (top, bottom, left, right), (dh, dw) = kernel_hw, padding, dilation
    # at stride 1 the padded size is also the output's plus the kernel's reach (grad_input pads grad_y to make it so)
    hp, wp = h + top + bottom, wd + left + right
    slack = TILE_VECTORS * 64 // x.dtype.itemsize  # one block of positions past the last one a tap reads
    xp = scratch_zeros((n, c_in, hp * wp + slack), x.dtype, ("blocked." + role, x.shape, tuple(padding)))
    _pad_planes(np.ascontiguousarray(x), xp, top, left, wp)
    offs = np.array([a * dh * wp + b * dw for a in range(kh) for b in range(kw)], dtype=np.int64)
    return xp, wp, offs


def _conv(x, w, bias, padding, dilation, groups, y, role):
    """y (N, C_out, Ho, Wo) = stride-1 conv of x with w, zero padding (top, bottom, left, right)."""
    xp, wp, offs = _padded_planes(x, w.shape[2:], padding, dilation, role)
    _forward_tiles(xp, pack_weights(w, groups), bias, offs, y, wp, w.shape[1])
    return y


def forward(x, w, bias, args, y):
    """y = conv2d(x, w) + bias at stride 1 (args.stride == (1, 1)); bias: (C_out,)."""
    return _conv(x, w, bias, args.padding, args.dilation, args.groups, y, "x")


def grad_input(grad_y, w, input_hw, args):
    """grad_x (N, C_in, H, W) of a stride-1 conv2d: grad_y convolved with the flipped, channel-swapped kernel."""
    c_out, cg, kh, kw = w.shape
    groups = args.groups
    og = c_out // groups
    (dh, dw), (top, _, left, _) = args.dilation, args.padding
    h, wd = input_hw
    ho, wo = grad_y.shape[2], grad_y.shape[3]
    # wt[g*cg + c, o, a, b] = w[g*og + o, c, kh-1-a, kw-1-b]
    wt = np.asarray(w)[:, :, ::-1, ::-1].reshape(groups, og, cg, kh, kw).transpose(0, 2, 1, 3, 4).reshape(
        groups * cg, og, kh, kw)
    pt, pl = (kh - 1) * dh - top, (kw - 1) * dw - left
    # rows past the output that grad_x reads are zero padding below (and right of) grad_y
    pb = h + (kh - 1) * dh - ho - pt
    pr = wd + (kw - 1) * dw - wo - pl
    gx = np.empty((grad_y.shape[0], cg * groups, h, wd), dtype=grad_y.dtype)
    return _conv(grad_y, wt, np.zeros(cg * groups, dtype=grad_y.dtype), (pt, pb, pl, pr), (dh, dw), groups, gx,
                 "grad_y")


def grad_weight(x, grad_y, args, w_shape):
    """grad_w (C_out, C_in/groups, kh, kw) of a stride-1 conv2d."""
    c_out, cg, kh, kw = w_shape
    n, ho, wo = grad_y.shape[0], grad_y.shape[2], grad_y.shape[3]
    xp, wp, offs = _padded_planes(x, (kh, kw), args.padding, args.dilation, "x")
    vl = 64 // x.dtype.itemsize
    groups, og = args.groups, c_out // args.groups
    if og >= 2 * vl:
        ogp = -(-og // (2 * vl)) * 2 * vl  # channels per group, padded to whole tiles
        npos = (ho - 1) * wp + wo
        gyt = scratch_zeros((n, npos * groups * ogp), x.dtype, ("blocked.grad_y_t", grad_y.shape, wp, groups))
        _to_position_major(np.ascontiguousarray(grad_y), gyt, wp, ogp)
        part = np.empty((n, cg * kh * kw, groups * ogp), dtype=x.dtype)
        _grad_weight_wide(xp, gyt, offs, part, cg, npos)
        total = part.sum(axis=0).reshape(cg * kh * kw, groups, ogp)[:, :, :og]
        return np.ascontiguousarray(total.transpose(1, 2, 0)).reshape(w_shape)
    npr = -(-((ho - 1) * wp + wo) // vl) * vl
    gyf = scratch_zeros((n, c_out, npr), x.dtype, ("blocked.grad_y", grad_y.shape, wp))
    _pad_planes(np.ascontiguousarray(grad_y), gyf, 0, 0, wp)
    part = np.empty((n, c_out, cg * kh * kw), dtype=x.dtype)
    _grad_weight_tiles(xp, gyf, offs, part, cg)
    return part.sum(axis=0).reshape(w_shape)

"""Which loop runs: every rule that chooses between convolution (and pooling) implementations is here, and only here
(the ``tune`` kernel, :mod:`.tune`, times ``numba`` against ``im2col`` instead of asking :func:`conv_backend`).

Each a function of the shapes and arguments only (so a shape always gets the same answer):

* :func:`conv_backend`: what ``kernel="auto"`` runs for one operation, ``"numba"`` or ``"im2col"``.
* :func:`numba_layout`: the ``numba`` backend's loops for one operation: ``"depthwise"`` (per-plane loops,
  ``"depthwise_as_forward"`` for a stride-1 grad_input), ``"blocked"`` (register tiles, stride 1, in the variant
  :data:`BLOCKED_TILES` sized for the registers numba compiles for), ``"blocked_batch_last"`` (the same tiles on
  batch-last planes, for small planes in small batches),
  ``"batch_last"`` (the batch innermost), ``"phases"`` (grad_input as batch-last forward convolutions of grad_y,
  one per phase of the stride) or ``"flat_rows"`` (the general layout).
* :func:`im2col_grad_input_layout`: im2col's grad_input in ``"batch_last"`` columns or in ``"chunks"`` of images.
* :func:`pool_backend`, :func:`max_pool_flat` and :func:`max_pool_planes_last`: what pools, the numba 2x2 max
  pooling's loop (per row or per plane) and the other windows' (a plane at a time, or many small ones).

The thresholds below are named; the values come from timing each implementation on layers of LeNet, a ResNet and
wider synthetic ones (``benchmarks/bench_conv.py`` measures them; ``benchmarks/README.md`` says how). A conv
Function asks :func:`conv_backend` (through the ``auto`` backend) once, at forward, for all three operations and
keeps the answers on the graph node, so the backward runs what the forward chose. With ``NUMBA_DISABLE_JIT=1`` every
operation goes to im2col, whose column copies then are NumPy's (the numba loops would run as Python).
"""
from __future__ import annotations

import os

from numba import config as _numba_config

from . import blas
from .numba_jit.fast import adjoint, blocked, blocked_batch_last, flat_rows, simd
from .shapes import conv_out_hw

__all__ = ["CONV_OPS", "jit_enabled", "is_depthwise", "conv_backend", "pool_backend", "numba_layout",
           "numba_grad_input_layout", "grad_input_phases", "uses_blocked", "uses_blocked_batch_last",
           "uses_batch_last_forward", "TILES_BATCH_LAST_MAX_FLAT_USE", "TILES_BATCH_LAST_MIN_POS",
           "TILES_BATCH_LAST_MIN_POS_TILES",
           "TILES_BATCH_LAST_GW",
           "im2col_grad_input_layout", "blocked_tiles_for", "VECTOR_UNIT", "BLOCKED_TILES", "BATCH_LAST_MIN_N",
           "BATCH_LAST_MAX_POS", "BATCH_LAST_MIN_GARBAGE", "MIN_BLOCK_USE", "MIN_TILE_FILL", "BATCH_MIN_BLOCK_USE",
           "BATCH_GW_MIN_POS", "BLOCKED_ONE_TAP", "WIDE_BLAS_MIN_K", "WIDE_BLAS_L2_SHARE",
           "BLAS_WIDER_MIN_ROWS", "BLAS_WIDER_MIN_K", "GW_FEW_PAIRS", "GW_FEW_PAIRS_MAX_POS", "IM2COL_MIN_K",
           "NUMBA_MIN_STRIDED_TAPS", "IM2COL_MIN_OG",
           "NUMBA_MIN_IN_POS",
           "NUMBA_MIN_IN_POS_CHANNELS", "NUMBA_MAX_STRIDED_OUT_POS", "BLOCKED_GW_MAX_K", "FLAT_ROWS_GW_MAX_K",
           "IM2COL_BATCH_LAST_MAX_BYTES", "MAX_POOL_FLAT_OUT_W", "max_pool_flat", "BLOCKED_PLANES_IN_L2", "L2_BYTES",
           "TILES_BATCH_LAST_MAX_K", "BLOCKED_GW_MIN_POS_ANY_K", "MAX_POOL_PLANES_LAST_MAX_PIXELS",
           "max_pool_planes_last"]

CONV_OPS = ("forward", "grad_input", "grad_weight")


def blocked_tiles_for(vector_unit):
    """The register-blocked loops' variant (:data:`.blocked.TILES`) for a vector unit (:func:`.simd.vector_unit`):
    the tiles sized for its registers, or None where none is (other CPUs, ARM included, take the flat-rows and
    batch-last loops)."""
    return vector_unit if vector_unit in blocked.TILES else None


# -- what numba compiles for (asked from LLVM, not from a table of CPUs): the vector unit, and the register-blocked
#    loops' variant for it (tests set that to run every variant on any CPU: correct everywhere, slow where it spills)
VECTOR_UNIT = simd.compiled_vector_unit()
BLOCKED_TILES = blocked_tiles_for(VECTOR_UNIT)

# -- the numba backend's layouts
BATCH_LAST_MIN_N = 32           # batch-last loops (numba, and im2col's grad_input columns) from this many images
BATCH_LAST_MAX_POS = 784        # forward: batch-last whatever the garbage up to this many output positions (28x28)
BATCH_LAST_MIN_GARBAGE = 0.2    # forward on larger outputs: batch-last only if more flat-rows positions are garbage
MIN_BLOCK_USE = 0.5             # register-blocked tiles where at least this share of a block's positions are outputs
MIN_TILE_FILL = (2, 3)          # ... and (forward, grad_input) at least 2/3 of a tile's output channels are real
# ... and from BATCH_LAST_MIN_N images, where the batch-last loops are the other choice, per variant of the tiles:
BATCH_MIN_BLOCK_USE = {"avx2": 0.6}  # forward, grad_input: at least this share (else MIN_BLOCK_USE)
BATCH_GW_MIN_POS = {"avx2": 100}     # grad_weight: outputs of at least this many positions (else BATCH_LAST_MAX_POS)
# register tiles on batch-last planes, below BATCH_LAST_MIN_N images: where the flat-rows blocks are used less than
TILES_BATCH_LAST_MAX_FLAT_USE = 0.8  # this (small planes: 12x12 and below) ...
TILES_BATCH_LAST_MIN_POS = 16        # ... on outputs of at least this many positions (3x3 planes: im2col's product) ...
TILES_BATCH_LAST_MIN_POS_TILES = {"avx512": 9}  # ... or this many for these variants (3x3 planes on the tiles)
TILES_BATCH_LAST_GW = ("avx512",)    # ... grad_weight too, for these variants (AVX2's 1 x 6 tile: im2col's product)

# -- auto: numba or im2col
BLOCKED_PLANES_IN_L2 = ("avx2",)  # forward and grad_input on the flat-rows tiles only where one image's padded input
                                  # planes (float32) fit the core's L2 cache (:data:`L2_BYTES`), for these variants:
                                  # every tile of output channels (6 on 16 registers) reads them again, from L3
                                  # beyond it, where im2col's packed product does not
TILES_BATCH_LAST_MAX_K = {"avx2": 2048}  # forward and grad_input on the batch-last tiles up to this many multiply-adds
                                         # per output for these variants (deeper sums: im2col's product)
BLOCKED_ONE_TAP = ("avx512",)   # 1x1 convolutions on the register tiles (where they fit) for these vector units,
                                # whatever OpenBLAS's kernels (else im2col: one plain matrix product)
BLAS_WIDER_MIN_ROWS = 128      # where OpenBLAS's vectors are wider than numba's (512-bit kernels, narrower tiles):
BLAS_WIDER_MIN_K = 512          # im2col for multi-tap ops whose product has this many rows and sums this long
WIDE_BLAS_MIN_K = 1024          # forward and grad_input on the flat-rows tiles, where OpenBLAS runs 512-bit kernels:
WIDE_BLAS_L2_SHARE = 0.25       # im2col from this many multiply-adds per output on planes (one image's, float32)
                                # larger than this share of L2_BYTES: its packed product then outruns the tiles
IM2COL_MIN_K = 512              # forward: im2col from this many multiply-adds per output (C_in/groups * kh * kw)
NUMBA_MIN_STRIDED_TAPS = {"avx512": 49}  # forward, strided: numba from this many taps (7x7) where numba's vectors
                                         # are 512 bits and OpenBLAS's 256 (elsewhere im2col)
IM2COL_MIN_OG = 32              # grad_input: im2col from this many output channels per group ...
NUMBA_MIN_IN_POS = 1024         # ... unless the input has this many positions ...
NUMBA_MIN_IN_POS_CHANNELS = 8   # ... and at least this many input channels per group
NUMBA_MAX_STRIDED_OUT_POS = 256  # grad_weight, strided: numba's batch-last loops up to this many output positions
BLOCKED_GW_MAX_K = {"avx2": 1024}  # grad_weight: numba's blocked loops up to this many multiply-adds per
                                  # output for these variants (any number for the others) ...
BLOCKED_GW_MIN_POS_ANY_K = {"avx2": 144}  # ... whatever the number on outputs of this many positions (12x12)
FLAT_ROWS_GW_MAX_K = 160        # grad_weight at stride 1: numba's flat-rows loops up to this many multiply-adds
GW_FEW_PAIRS = 32               # grad_weight on the position-major tiles (output channels in vectors): im2col for up
GW_FEW_PAIRS_MAX_POS = 4096     # to this many (input channel, tap) pairs on outputs of more positions than this
                                # (a 224x224 first layer): the position-major copy of grad_y each task makes is
                                # large, and so few pairs do not repay it

# -- pooling
MAX_POOL_FLAT_OUT_W = {"avx2": 24}  # 2x2 max pooling in one loop per plane below this output width, per vector
                                    # unit (its row loop runs shorter rows value by value, a branch per select)

MAX_POOL_PLANES_LAST_MAX_PIXELS = 256  # other max pooling windows many planes at a time (batch-last) on planes of
                                      # up to this many pixels (16x16), where one plane's passes are short

# -- im2col's grad_input
IM2COL_BATCH_LAST_MAX_BYTES = 64 * 2**20  # batch-last columns of the whole batch up to this size


def _l2_bytes(root="/sys/devices/system/cpu/cpu0/cache", default=512 * 1024) -> int:
    """The size of one core's L2 cache, as Linux reports it under ``root`` (``default`` where it does not)."""
    try:
        for index in sorted(os.listdir(root)):
            with open(os.path.join(root, index, "level")) as f:
                if f.read().strip() != "2":
                    continue
            with open(os.path.join(root, index, "size")) as f:
                size = f.read().strip().upper()
            scale = {"K": 1024, "M": 1024 ** 2}.get(size[-1:], 1)
            return int(size.rstrip("KM")) * scale
    except (OSError, ValueError):
        pass
    return default


L2_BYTES = _l2_bytes()


def jit_enabled() -> bool:
    """False when numba runs in pure-Python mode (``NUMBA_DISABLE_JIT=1``)."""
    return not _numba_config.DISABLE_JIT


def is_depthwise(c_in, c_out, cg, groups) -> bool:
    """One filter per channel (groups == C_in == C_out, more than one group)."""
    return groups > 1 and cg == 1 and c_out == groups == c_in


def pool_backend() -> str:
    """What ``auto`` pools with: ``"numba"``, or ``"numpy"`` without the JIT."""
    return "numba" if jit_enabled() else "numpy"


def max_pool_flat(out_w) -> bool:
    """Whether the numba 2x2 max pooling runs one loop per plane (:func:`.numba_pooling._max_fwd_2x2_flat`) for
    outputs ``out_w`` wide: below :data:`MAX_POOL_FLAT_OUT_W` of the vector unit numba compiles for (the row loop
    elsewhere)."""
    return out_w < MAX_POOL_FLAT_OUT_W.get(VECTOR_UNIT, 0)


def max_pool_planes_last(in_hw) -> bool:
    """Whether the numba max pooling of windows other than 2x2 / stride 2 runs many planes at a time
    (:func:`.numba_pooling._max_fwd_planes_last`): on input planes of at most
    :data:`MAX_POOL_PLANES_LAST_MAX_PIXELS` pixels."""
    return in_hw[0] * in_hw[1] <= MAX_POOL_PLANES_LAST_MAX_PIXELS


def conv_backend(op, x_shape, w_shape, args) -> str:
    """``"numba"`` or ``"im2col"``: what ``kernel="auto"`` runs for ``op`` of the convolution of an input of
    ``x_shape`` with a weight of ``w_shape``. numba's loops where they keep up (one tap is a plain matrix product:
    im2col, except on the register tiles where :func:`_one_tap_numba` says), im2col's one large BLAS product for
    reductions too long for them. On the tiles of the variants so named, im2col also where an image's planes
    overflow the L2 cache (:data:`BLOCKED_PLANES_IN_L2`) or the batch-last tiles' sums are deep
    (:data:`TILES_BATCH_LAST_MAX_K`); where OpenBLAS's kernels are as wide as the tiles, also for deep sums on
    large planes (:data:`WIDE_BLAS_MIN_K`); where they are wider, for every large product
    (:data:`BLAS_WIDER_MIN_ROWS`). grad_weight of few pairs on large outputs too (:data:`GW_FEW_PAIRS`)."""
    if op not in CONV_OPS:
        raise ValueError(f"unknown conv op {op!r}; valid ops: {CONV_OPS}")
    if not jit_enabled():
        return "im2col"
    c_out, cg, kh, kw = w_shape
    unit_stride = args.stride[0] == 1 and args.stride[1] == 1
    taps, k = kh * kw, cg * kh * kw
    og = c_out * cg // max(1, x_shape[1])  # output channels per group
    if is_depthwise(x_shape[1], c_out, cg, x_shape[1] // max(1, cg)):
        return "numba"
    out_hw = conv_out_hw(x_shape, w_shape, args)
    tiles_ok = taps > 1 or _one_tap_numba()
    sum_k = og * taps if op == "grad_input" else k  # multiply-adds per output value of the op
    rows = cg if op == "grad_input" else og  # ... and rows of im2col's product (its output channels per group)
    if taps > 1 and _blas_wider() and rows >= BLAS_WIDER_MIN_ROWS and sum_k >= BLAS_WIDER_MIN_K:
        return "im2col"
    if tiles_ok and uses_blocked_batch_last(op, x_shape, w_shape, out_hw, args):
        deep = op != "grad_weight" and sum_k > TILES_BATCH_LAST_MAX_K.get(BLOCKED_TILES, sum_k)
        return "im2col" if deep else "numba"
    blocked_ = tiles_ok and uses_blocked(op, x_shape, w_shape, out_hw, args)
    if blocked_ and op != "grad_weight" and not _tiles_keep_up(op, x_shape, w_shape, args, sum_k):
        return "im2col"
    if (blocked_ and op == "grad_weight" and og >= blocked.grad_weight_tile_channels(BLOCKED_TILES)
            and k <= GW_FEW_PAIRS and out_hw[0] * out_hw[1] > GW_FEW_PAIRS_MAX_POS):
        return "im2col"
    if op == "forward":
        fast = blocked_ or (taps > 1 and (
            (k < IM2COL_MIN_K and (unit_stride or _strided_numba(taps)))
            or uses_batch_last_forward(x_shape, out_hw, args)))
    elif op == "grad_input":
        gy_shape = (x_shape[0], c_out) + out_hw
        fast = blocked_ or (taps > 1 and (
            og < IM2COL_MIN_OG
            or (x_shape[2] * x_shape[3] >= NUMBA_MIN_IN_POS and cg >= NUMBA_MIN_IN_POS_CHANNELS)
            or (unit_stride and grad_input_phases(gy_shape, x_shape[2:], args) is not None)))
    else:
        batch_last = x_shape[0] >= BATCH_LAST_MIN_N and (
            unit_stride or out_hw[0] * out_hw[1] <= NUMBA_MAX_STRIDED_OUT_POS)
        max_k = BLOCKED_GW_MAX_K.get(BLOCKED_TILES)
        if out_hw[0] * out_hw[1] >= BLOCKED_GW_MIN_POS_ANY_K.get(BLOCKED_TILES, out_hw[0] * out_hw[1] + 1):
            max_k = None
        fast = ((blocked_ and (max_k is None or k <= max_k)) or (taps > 1 and batch_last)
                or (unit_stride and k <= FLAT_ROWS_GW_MAX_K))
    return "numba" if fast else "im2col"


def _tiles_keep_up(op, x_shape, w_shape, args, sum_k) -> bool:
    """Whether ``op`` (forward or grad_input, ``sum_k`` multiply-adds per output) on the flat-rows tiles keeps up
    with im2col's product: its planes (:func:`_plane_bytes`) fit :data:`L2_BYTES` for the variants in
    :data:`BLOCKED_PLANES_IN_L2`, and, where OpenBLAS runs 512-bit kernels, :data:`WIDE_BLAS_L2_SHARE` of it for
    sums of :data:`WIDE_BLAS_MIN_K` and more."""
    if BLOCKED_TILES in BLOCKED_PLANES_IN_L2 and _plane_bytes(op, x_shape, w_shape, args) >= L2_BYTES:
        return False
    if sum_k >= WIDE_BLAS_MIN_K and blas.wide_kernels():
        return _plane_bytes(op, x_shape, w_shape, args) <= WIDE_BLAS_L2_SHARE * L2_BYTES
    return True


def _plane_bytes(op, x_shape, w_shape, args) -> int:
    """The size of one image's padded input planes of ``op`` on the flat-rows tiles (forward: x's channels of a
    group; grad_input: grad_y's, padded by the kernel's reach), in float32 (strictly: the tile's weights and
    outputs need room in the cache too)."""
    c_out, cg, kh, kw = w_shape
    (dh, dw), (top, bottom, left, right) = args.dilation, args.padding
    if op == "grad_input":
        channels, h, w = c_out // args.groups, x_shape[2] + (kh - 1) * dh, x_shape[3] + (kw - 1) * dw
    else:
        channels, h, w = cg, x_shape[2] + top + bottom, x_shape[3] + left + right
    return channels * h * w * 4


def _blas_wider() -> bool:
    """OpenBLAS runs 512-bit kernels where numba compiles narrower vectors (AVX2 told to numba on an AVX-512 CPU,
    or a CPU without the register tiles)."""
    return VECTOR_UNIT != "avx512" and blas.wide_kernels()


def _one_tap_numba() -> bool:
    """1x1 convolutions run faster on numba's register tiles than as im2col's product (where the tiles fit the
    plane) for a vector unit in :data:`BLOCKED_ONE_TAP` (against OpenBLAS's 256-bit kernels and its 512-bit
    ones alike)."""
    return VECTOR_UNIT in BLOCKED_ONE_TAP


def _strided_numba(taps) -> bool:
    """A strided forward of this many taps runs faster on numba's loops than on im2col's product: from
    :data:`NUMBA_MIN_STRIDED_TAPS` taps where numba compiles vectors twice as wide as OpenBLAS's kernels."""
    least = NUMBA_MIN_STRIDED_TAPS.get(VECTOR_UNIT)
    return least is not None and taps >= least and not blas.wide_kernels()


def numba_layout(op, x_shape, w_shape, out_hw, args) -> str:
    """The ``numba`` backend's loops for ``op`` (see the module docstring). ``x_shape``: the convolution's input
    (for grad_input, grad_x's shape); ``out_hw``: its output size (for grad_input, grad_y's)."""
    if op == "grad_input":
        return numba_grad_input_layout(x_shape, w_shape, out_hw, args)[0]
    if op not in CONV_OPS:
        raise ValueError(f"unknown conv op {op!r}; valid ops: {CONV_OPS}")
    c_out, cg = w_shape[0], w_shape[1]
    if is_depthwise(x_shape[1], c_out, cg, args.groups):
        return "depthwise"
    if uses_blocked_batch_last(op, x_shape, w_shape, out_hw, args):
        return "blocked_batch_last"
    if uses_blocked(op, x_shape, w_shape, out_hw, args):
        return "blocked"
    if op == "forward":
        return "batch_last" if uses_batch_last_forward(x_shape, out_hw, args) else "flat_rows"
    return "batch_last" if x_shape[0] >= BATCH_LAST_MIN_N else "flat_rows"


def numba_grad_input_layout(gx_shape, w_shape, gy_hw, args):
    """``(layout, phases)`` of the numba backend's grad_input: ``phases`` is :func:`grad_input_phases`' answer
    where the layout is ``"phases"``, else None."""
    c_out, cg, kh, kw = w_shape
    if is_depthwise(gx_shape[1], c_out, cg, args.groups):
        (dh, dw), (top, bottom, left, right) = args.dilation, args.padding
        if args.stride == (1, 1) and max(top, bottom) <= (kh - 1) * dh and max(left, right) <= (kw - 1) * dw:
            return "depthwise_as_forward", None
        return "depthwise", None
    if uses_blocked_batch_last("grad_input", gx_shape, w_shape, gy_hw, args):
        return "blocked_batch_last", None
    if uses_blocked("grad_input", gx_shape, w_shape, gy_hw, args):
        return "blocked", None
    phases = grad_input_phases((gx_shape[0], c_out) + tuple(gy_hw), gx_shape[2:], args)
    return ("flat_rows", None) if phases is None else ("phases", phases)


def uses_blocked(op, x_shape, w_shape, out_hw, args) -> bool:
    """Whether ``op`` runs on the register-blocked loops (:mod:`.numba_jit.fast.blocked`): JIT on, a variant of
    tiles for the CPU numba compiles for (:data:`BLOCKED_TILES`), stride 1, not depthwise, at least
    :data:`MIN_BLOCK_USE` of the computed positions (in the variant's blocks) are outputs and (forward,
    grad_input) :data:`MIN_TILE_FILL` of the tiles' output channels are real. grad_input also needs a padding of at
    most ``(k - 1) * dilation`` on every side (its grad_y is padded by the difference). From
    :data:`BATCH_LAST_MIN_N` images (where the batch-last loops are the other choice), per variant: forward and
    grad_input at least :data:`BATCH_MIN_BLOCK_USE` of the positions, grad_weight outputs of at least
    :data:`BATCH_GW_MIN_POS` positions."""
    if not (jit_enabled() and BLOCKED_TILES) or args.stride != (1, 1):
        return False
    c_out, cg, kh, kw = w_shape
    if is_depthwise(x_shape[1], c_out, cg, args.groups):
        return False
    (dh, dw), (top, bottom, left, right) = args.dilation, args.padding
    batch = x_shape[0] >= BATCH_LAST_MIN_N
    min_use = max(MIN_BLOCK_USE, BATCH_MIN_BLOCK_USE.get(BLOCKED_TILES, 0.0)) if batch else MIN_BLOCK_USE
    if op == "grad_input":
        if max(top, bottom) > (kh - 1) * dh or max(left, right) > (kw - 1) * dw or not _fills_tile(cg):
            return False
        # the loops' output is grad_x, their planes grad_y padded to x's width plus the kernel's reach
        return blocked.block_use(x_shape[2:], x_shape[3] + (kw - 1) * dw, BLOCKED_TILES) >= min_use
    if op == "forward" and not _fills_tile(c_out // args.groups):
        return False
    if op == "grad_weight":
        if batch and out_hw[0] * out_hw[1] < BATCH_GW_MIN_POS.get(BLOCKED_TILES, BATCH_LAST_MAX_POS):
            return False
        min_use = MIN_BLOCK_USE
    return blocked.block_use(out_hw, x_shape[3] + left + right, BLOCKED_TILES) >= min_use


def uses_blocked_batch_last(op, x_shape, w_shape, out_hw, args) -> bool:
    """Whether ``op`` runs on the register tiles on batch-last planes (:mod:`.numba_jit.fast.blocked_batch_last`):
    JIT on, a variant of tiles (:data:`BLOCKED_TILES`), stride 1, not depthwise, fewer than :data:`BATCH_LAST_MIN_N`
    images, an output (grad_input: grad_x) of at least :data:`TILES_BATCH_LAST_MIN_POS` positions (per variant:
    :data:`TILES_BATCH_LAST_MIN_POS_TILES`) whose flat-rows blocks would be used less than
    :data:`TILES_BATCH_LAST_MAX_FLAT_USE` and less than the batch-last ones, and
    whole tiles of channels: (forward, grad_input) :data:`MIN_TILE_FILL` of a tile's output channels real,
    (grad_weight, for the variants in :data:`TILES_BATCH_LAST_GW`) at least one tile of output channels per group.
    grad_input also needs a padding of at most ``(k - 1) * dilation`` on every side, as on the flat planes."""
    if not (jit_enabled() and BLOCKED_TILES) or args.stride != (1, 1) or x_shape[0] >= BATCH_LAST_MIN_N:
        return False
    c_out, cg, kh, kw = w_shape
    if is_depthwise(x_shape[1], c_out, cg, args.groups):
        return False
    (dh, dw), (top, bottom, left, right) = args.dilation, args.padding
    if op == "grad_input":
        if max(top, bottom) > (kh - 1) * dh or max(left, right) > (kw - 1) * dw or not _fills_tile(cg):
            return False
        hw, width = x_shape[2:], x_shape[3] + (kw - 1) * dw
    else:
        hw, width = out_hw, x_shape[3] + left + right
        og = c_out // args.groups
        if op == "forward" and not _fills_tile(og):
            return False
        if op == "grad_weight" and (BLOCKED_TILES not in TILES_BATCH_LAST_GW
                                    or og < blocked.grad_weight_tile_channels(BLOCKED_TILES)):
            return False
    if hw[0] * hw[1] < TILES_BATCH_LAST_MIN_POS_TILES.get(BLOCKED_TILES, TILES_BATCH_LAST_MIN_POS):
        return False
    flat = blocked.block_use(hw, width, BLOCKED_TILES)
    return flat < TILES_BATCH_LAST_MAX_FLAT_USE and blocked_batch_last.block_use(hw, x_shape[0], BLOCKED_TILES) > flat


def _fills_tile(channels) -> bool:
    """At least :data:`MIN_TILE_FILL` of the output channels a blocked tile computes (whole tiles) are real."""
    tc = blocked.tile_channels(channels, BLOCKED_TILES)
    num, den = MIN_TILE_FILL
    return den * channels >= num * (-(-channels // tc) * tc)


def uses_batch_last_forward(x_shape, out_hw, args) -> bool:
    """Whether the numba forward takes the batch-last loops: at least :data:`BATCH_LAST_MIN_N` images, and an output
    of at most :data:`BATCH_LAST_MAX_POS` positions or more than :data:`BATCH_LAST_MIN_GARBAGE` of the flat-rows
    layout's positions garbage."""
    if x_shape[0] < BATCH_LAST_MIN_N:
        return False
    if out_hw[0] * out_hw[1] <= BATCH_LAST_MAX_POS:
        return True
    lay = flat_rows.Layout(x_shape[2], x_shape[3], args.padding, args.stride, args.dilation, args.kernel_hw)
    return out_hw[0] * out_hw[1] < (1 - BATCH_LAST_MIN_GARBAGE) * lay.npos(out_hw[0])


def grad_input_phases(gy_shape, input_hw, args):
    """The phases (:mod:`.numba_jit.fast.adjoint`) in which the numba grad_input runs as forward convolutions of
    grad_y, when each of those takes the batch-last loops; else None."""
    if gy_shape[0] < BATCH_LAST_MIN_N:
        return None
    (sh, sw), (dh, dw), (kh, kw) = args.stride, args.dilation, args.kernel_hw
    top, _, left, _ = args.padding
    rows = adjoint.axis_phases(input_hw[0], gy_shape[2], kh, sh, dh, top)
    cols = adjoint.axis_phases(input_hw[1], gy_shape[3], kw, sw, dw, left)
    for ph in rows:
        for pw in cols:
            if ph.taps and pw.taps:
                a = adjoint.phase_args(ph, pw, gy_shape[0], 1, 1)
                gy_hw = (gy_shape[2] - ph.crop_lo - ph.crop_hi, gy_shape[3] - pw.crop_lo - pw.crop_hi)
                if not uses_batch_last_forward((gy_shape[0], 1) + gy_hw, a.out_shape[2:], a):
                    return None
    return rows, cols


def im2col_grad_input_layout(n, k, npos, itemsize) -> str:
    """im2col's grad_input for ``n`` images, ``k`` multiply-adds per output and ``npos`` output positions:
    ``"batch_last"`` columns of the whole batch (one product, col2im by vectors of n values) from
    :data:`BATCH_LAST_MIN_N` images while they fit :data:`IM2COL_BATCH_LAST_MAX_BYTES`, else ``"chunks"``."""
    if jit_enabled() and n >= BATCH_LAST_MIN_N and k * npos * n * itemsize <= IM2COL_BATCH_LAST_MAX_BYTES:
        return "batch_last"
    return "chunks"

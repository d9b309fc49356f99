"""grad_input as forward convolutions, so that it runs on the forward's register-blocked batch-last kernel.

Along one axis (stride s, dilation d, padding p before, kernel k) input position h gets::

    gx[h] = sum of w[a] * gy[(h + p - a*d) / s]   over the taps a for which (h + p - a*d) / s is a whole number

Split the input positions by phase, h = r + s*u with r < s. Tap a reaches phase r when (r + p - a*d) is a
multiple of s, and then reads gy[u + e_a] with e_a = (r + p - a*d) / s. Listed by increasing e_a (decreasing a:
the kernel flipped), the offsets step by d' = d / gcd(s, d), so::

    gx[r + s*u] = sum_k w[a_k] * gy[u + e_0 + k*d']

is a stride-1 forward convolution of gy with that sub-kernel, dilation d' and padding -e_0 before (a negative
padding crops gy instead), producing the phase's ceil((H - r) / s) positions. With stride 1 there is one phase
and the sub-kernel is the whole kernel flipped, padding (k-1)*d - p. In 2-D a phase is a pair (r_h, r_w); the
weight is also transposed (C_out and C_in/groups swap within each group). Every phase computes only products
that contribute (no zeros stuffed between gy's values, as the transposed convolution written as one forward
over a dilated gy would); a phase that no tap reaches gets zero.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ...shapes import ConvArgs

__all__ = ["AxisPhase", "axis_phases", "phase_args", "phase_weight"]


class AxisPhase(NamedTuple):
    """One phase of one axis: input positions first, first + s, ... (``count`` of them)."""
    first: int
    count: int
    taps: tuple       # the kernel taps that reach it, in the forward's order (decreasing)
    crop_lo: int      # grad_y positions dropped before the forward (a negative padding) ...
    crop_hi: int      # ... and after
    pad_lo: int       # the forward's padding
    pad_hi: int
    dilation: int


def axis_phases(n_in: int, n_out: int, k: int, s: int, d: int, p: int) -> list[AxisPhase]:
    """The phases of an axis of ``n_in`` input positions (grad_y has ``n_out``), kernel k, stride s, dilation
    d, padding p before. A phase no tap reaches (or whose taps read only outside grad_y) has ``taps == ()``."""
    phases = []
    step = d // math.gcd(s, d)
    for r in range(min(s, n_in)):
        count = (n_in - r + s - 1) // s
        taps = tuple(a for a in range(k - 1, -1, -1) if (r + p - a * d) % s == 0)
        if not taps:
            phases.append(AxisPhase(r, count, (), 0, 0, 0, 0, 1))
            continue
        e0 = (r + p - taps[0] * d) // s
        span = step * (len(taps) - 1)
        pad_lo = -e0
        pad_hi = count - n_out + span - pad_lo  # so that the output has `count` positions
        crop_lo, crop_hi = max(0, -pad_lo), max(0, -pad_hi)
        if n_out - crop_lo - crop_hi <= 0:  # every tap reads outside grad_y
            phases.append(AxisPhase(r, count, (), 0, 0, 0, 0, 1))
            continue
        phases.append(AxisPhase(r, count, taps, crop_lo, crop_hi, max(0, pad_lo), max(0, pad_hi), step))
    return phases


def phase_args(ph: AxisPhase, pw: AxisPhase, n: int, c_in: int, groups: int) -> ConvArgs:
    """The ConvArgs of the forward convolution that computes phase (ph, pw) of grad_x (N, C_in, ...)."""
    return ConvArgs((1, 1), (ph.pad_lo, ph.pad_hi, pw.pad_lo, pw.pad_hi), (ph.dilation, pw.dilation), groups,
                    (len(ph.taps), len(pw.taps)), (n, c_in, ph.count, pw.count))


def phase_weight(w: np.ndarray, ph: AxisPhase, pw: AxisPhase, groups: int) -> np.ndarray:
    """(G*cg, og, len(ph.taps), len(pw.taps)): w's taps of the phase, in the forward's order, with C_out and
    C_in/groups swapped within each group."""
    c_out, cg = w.shape[0], w.shape[1]
    og = c_out // groups
    sub = np.asarray(w)[:, :, list(ph.taps)][:, :, :, list(pw.taps)]
    sub = sub.reshape(groups, og, cg, len(ph.taps), len(pw.taps)).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(sub).reshape(groups * cg, og, len(ph.taps), len(pw.taps))

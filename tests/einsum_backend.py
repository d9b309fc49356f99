"""A fourth convolution backend in one file: every tap window as a strided view, one ``np.einsum`` per group.

It shows what adding a backend takes (docs/architecture.md): subclass ``tinyconv.kernels.Backend``, give it a
name, implement ``forward`` / ``grad_input`` / ``grad_weight`` on arrays with normalised arguments, and register
one instance (``tests/conftest.py`` does, so the kernel agreement tests and the layer tests run it too). Pooling
is inherited (NumPy's).
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from tinyconv.kernels import Backend
from tinyconv.kernels.windows import pad, tap


def _windows(x_pad, args, out_hw):
    """(N, C, kh, kw, H_out, W_out) view of every window of the padded input."""
    sn, sc, sh_, sw_ = x_pad.strides
    (kh, kw), (sh, sw), (dh, dw) = args.kernel_hw, args.stride, args.dilation
    return as_strided(x_pad, shape=x_pad.shape[:2] + (kh, kw) + tuple(out_hw),
                      strides=(sn, sc, dh * sh_, dw * sw_, sh * sh_, sw * sw_), writeable=False)


class EinsumBackend(Backend):
    name = "einsum"

    def forward(self, x, w, args, bias=None):
        g, (c_out, cg) = args.groups, w.shape[:2]
        og = c_out // g
        win = _windows(pad(x, args.padding), args, args.out_shape[2:])
        y = np.concatenate([np.einsum("ncabhw,ocab->nohw", win[:, i * cg:(i + 1) * cg], w[i * og:(i + 1) * og])
                            for i in range(g)], axis=1)
        return y if bias is None else y + bias.reshape(1, -1, 1, 1)

    def grad_input(self, grad_y, w, input_hw, args):
        (h, w_in), (top, bottom, left, right) = input_hw, args.padding
        (kh, kw), (sh, sw), (dh, dw), g = args.kernel_hw, args.stride, args.dilation, args.groups
        c_out, cg = w.shape[:2]
        og, (n, _, ho, wo) = c_out // g, grad_y.shape
        gx = np.zeros((n, cg * g, h + top + bottom, w_in + left + right), dtype=grad_y.dtype)
        for i in range(g):
            taps = np.einsum("nohw,ocab->ncabhw", grad_y[:, i * og:(i + 1) * og], w[i * og:(i + 1) * og])
            for a in range(kh):
                for b in range(kw):
                    gx[:, i * cg:(i + 1) * cg, tap(a, dh, sh, ho), tap(b, dw, sw, wo)] += taps[:, :, a, b]
        return np.ascontiguousarray(gx[:, :, top:top + h, left:left + w_in])

    def grad_weight(self, x, grad_y, args):
        g, c_out = args.groups, grad_y.shape[1]
        cg, og = x.shape[1] // g, c_out // g
        win = _windows(pad(x, args.padding), args, grad_y.shape[2:])
        return np.concatenate([np.einsum("nohw,ncabhw->ocab", grad_y[:, i * og:(i + 1) * og],
                                         win[:, i * cg:(i + 1) * cg]) for i in range(g)], axis=0)

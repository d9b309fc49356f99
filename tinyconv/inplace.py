"""The in-place half of ``Tensor``: item assignment and the in-place methods (``+=``, ``add_``, ``zero_``,
``normal_``, ``copy_`` ...), and the version counts that keep them honest with autograd.

Each in-place operation is computed out of place (``t[idx] = v`` is a ``SetItem`` node, PyTorch's CopySlices) and
its result then becomes the tensor's storage and ``grad_fn`` (``_commit_inplace``). ``_version`` counts those
writes, shared by the views of one storage, so the engine can refuse a backward through a tensor modified after
it was saved; a node that saved arrays aliasing the storage about to be overwritten gets private copies first.
``Tensor`` (``tinyconv.tensor``) inherits all of it from :class:`InPlaceWrites`.
"""
from __future__ import annotations

import weakref

import numpy as np

from . import autograd
from .errors import _KIND_RANK, ShapeError, _type_word
from .functions import ops
from .random import default_generator


class InPlaceWrites:
    """Mixed into ``Tensor``: needs ``_data``, ``_base``, ``_ver``, ``grad_fn``, ``requires_grad`` and the
    out-of-place operators (``+``, ``clamp``, ``relu`` ...) of the class it is mixed into."""

    @property
    def _version(self) -> int:
        """How often the storage was modified in place (shared by the views of one tensor), as PyTorch's."""
        return (self if self._base is None else self._base)._ver

    def _bump_version(self) -> None:
        """Count one in-place write of the storage (optimizers call it after updating the storage)."""
        (self if self._base is None else self._base)._ver += 1

    def _view(self, out: "InPlaceWrites") -> "InPlaceWrites":
        """Mark ``out`` as a view of this tensor's storage when it is one, so both count versions together."""
        if out._data is self._data or (out._data.base is not None and np.may_share_memory(out._data, self._data)):
            out._base = self if self._base is None else self._base
        return out

    def _check_inplace(self, value=None, *, indexing: bool = False) -> None:
        """Refuse, with PyTorch's words, an in-place write autograd could not account for."""
        if not autograd.is_grad_enabled():
            return
        if self.requires_grad and self.grad_fn is None:
            view = "a view of " if indexing else ""
            raise RuntimeError(f"{view}a leaf Variable that requires grad is being used in an in-place operation.")
        if self._base is not None and (self.requires_grad or getattr(value, "requires_grad", False)):
            if self._base.requires_grad and self._base.grad_fn is None:
                raise RuntimeError("a view of a leaf Variable that requires grad is being used in an in-place "
                                   "operation.")
            raise RuntimeError("tinyconv does not track in-place operations on a view (a tensor made by indexing, "
                               "reshape, transpose, ...) that takes part in autograd: assign into the tensor it "
                               "views (t[idx] = value) or modify a .clone()")

    def _commit_inplace(self, result: "InPlaceWrites") -> "InPlaceWrites":
        """Make ``result`` (computed out of place, same shape) this tensor's new value and autograd history."""
        if result.shape != self.shape:
            raise ShapeError(f"output with shape {list(self.shape)} doesn't match the broadcast shape "
                             f"{list(result.shape)}")
        node = result.grad_fn
        if result._data is not self._data:
            if _KIND_RANK[result.dtype.kind] > _KIND_RANK[self.dtype.kind]:
                raise RuntimeError(f"result type {_type_word(result.dtype)} can't be cast to the desired output "
                                   f"type {_type_word(self.dtype)}")
            if node is not None and node._saved:
                # The node kept arrays that alias the storage about to be overwritten: it gets its own copies.
                mine = self._data
                node._saved = tuple(a.copy() if isinstance(a, np.ndarray) and np.may_share_memory(a, mine) else a
                                    for a in node._saved)
                # Watched entries for those copies, and for the saved output (``result``, now private), go.
                node.saved_versions = tuple(e for e in node.saved_versions
                                            if e[0] is not None and not np.may_share_memory(e[0]._data, mine))
            np.copyto(self._data, result._data, casting="unsafe")
        if node is not None:
            self.grad_fn, self.requires_grad = node, True
            node.output_ref = weakref.ref(self)
            node.output_meta = (self.shape, self.dtype)
        self._bump_version()
        return self

    def _inplace(self, compute, value=None) -> "InPlaceWrites":
        self._check_inplace(value)
        return self._commit_inplace(compute())

    def _assign(self, index, value, indexing: bool) -> "InPlaceWrites":
        self._check_inplace(value, indexing=indexing)
        if not isinstance(value, InPlaceWrites):
            value = np.asarray(value)
            if value.dtype.kind not in "biuf":
                raise TypeError(f"can't assign a {type(value).__name__} of dtype {value.dtype} to a tensor")
        elif value.dtype.kind == "f" and self.dtype.kind != "f" and value.requires_grad:
            raise RuntimeError(f"assigning a {value.dtype.name} tensor that requires grad into a "
                               f"{self.dtype.name} tensor would drop its gradient")
        try:
            out = ops.SetItem.apply(self, value, index=index)
        except ValueError as e:  # NumPy checks shapes before writing anything
            target = np.empty(self.shape, dtype=np.bool_)[index].shape
            raise ShapeError(f"shape mismatch: value tensor of shape {list(np.shape(value))} cannot be broadcast "
                             f"to indexing result of shape {list(target)}") from e
        return self._commit_inplace(out)

    def __iadd__(self, other):
        return self._inplace(lambda: self + other, other)

    def __isub__(self, other):
        return self._inplace(lambda: self - other, other)

    def __imul__(self, other):
        return self._inplace(lambda: self * other, other)

    def __itruediv__(self, other):
        return self._inplace(lambda: self / other, other)

    def add_(self, other, *, alpha=1):
        return self._inplace(lambda: self + (other if alpha == 1 else other * alpha), other)

    def sub_(self, other, *, alpha=1):
        return self._inplace(lambda: self - (other if alpha == 1 else other * alpha), other)

    def mul_(self, other):
        return self._inplace(lambda: self * other, other)

    def div_(self, other):
        return self._inplace(lambda: self / other, other)

    def clamp_(self, min=None, max=None):
        return self._inplace(lambda: self.clamp(min, max))

    clip_ = clamp_

    def relu_(self):
        return self._inplace(self.relu)

    def fill_(self, value):
        return self._assign(Ellipsis, value, indexing=False)

    def zero_(self):
        return self._assign(Ellipsis, 0, indexing=False)

    def normal_(self, mean: float = 0.0, std: float = 1.0, *, generator=None):
        """Fill with samples of N(``mean``, ``std``²) from tinyconv's generator (``w.data.normal_(0, 0.01)``)."""
        if std < 0:
            raise RuntimeError(f"normal_ expects std >= 0.0, but found std {std}")
        draw = (generator or default_generator()).normal(mean, std, self.shape)
        return self._assign(Ellipsis, draw.astype(self.dtype, copy=False), indexing=False)

    def uniform_(self, a: float = 0.0, b: float = 1.0, *, generator=None):
        """Fill with samples of U[``a``, ``b``) from tinyconv's generator."""
        if a > b:
            raise RuntimeError(f"uniform_ expects to return a [from, to) range, but found from={a} > to={b}")
        draw = (generator or default_generator()).uniform(a, b, self.shape)
        return self._assign(Ellipsis, draw.astype(self.dtype, copy=False), indexing=False)

    def copy_(self, src, non_blocking: bool = False):
        """Copy ``src`` (broadcast to this shape, cast to this dtype) into this tensor; gradients reach ``src``."""
        return self._assign(Ellipsis, src, indexing=False)

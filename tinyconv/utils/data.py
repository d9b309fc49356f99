"""``tinyconv.utils.data``: PyTorch's ``Dataset``, ``TensorDataset`` and ``DataLoader``, yielding Tensors.

This is the general loader PyTorch code expects (d2l's ``load_array``)::

    dataset = data.TensorDataset(features, labels)
    for X, y in data.DataLoader(dataset, batch_size=10, shuffle=True):
        ...   # X, y: Tensors of the first 10 (shuffled) rows

Shuffling draws from tinyconv's global generator, so ``tc.manual_seed`` makes it repeatable. For MNIST training
with augmentation and exactly resumable epochs, :class:`tinyconv.data.DataLoader` (NumPy batches) stays the tool.
"""
from __future__ import annotations

import operator
from collections.abc import Callable, Iterator

import numpy as np

from ..creation import from_numpy
from ..random import default_generator
from ..tensor import Tensor, stack

__all__ = ["Dataset", "TensorDataset", "DataLoader", "default_collate"]


class Dataset:
    """Base class of map-style datasets: define ``__getitem__(i)`` and ``__len__()``."""

    def __getitem__(self, index):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")


class TensorDataset(Dataset):
    """Samples ``(t[i] for t in tensors)``: every tensor has the same first dimension (the sample count)."""

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        self.tensors = tuple(t if isinstance(t, Tensor) else Tensor(np.asarray(t)) for t in tensors)
        n = len(self.tensors[0])
        for i, t in enumerate(self.tensors):
            if t.ndim == 0 or t.shape[0] != n:
                raise ValueError(f"Size mismatch between tensors: tensor 0 has {n} samples, tensor {i} has shape "
                                 f"{tuple(t.shape)}")

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self) -> int:
        return len(self.tensors[0])


def default_collate(batch):
    """Stack a list of samples: Tensors and arrays into one Tensor with a new first dimension, numbers into a
    1-D Tensor (ints int64, floats float64, as PyTorch), tuples/lists/dicts field by field."""
    first = batch[0]
    if isinstance(first, Tensor):
        return stack(batch, 0).detach()
    if isinstance(first, (np.ndarray, np.generic)):
        return from_numpy(np.stack([np.asarray(b) for b in batch]))
    if isinstance(first, bool):
        return from_numpy(np.asarray(batch, dtype=np.bool_))
    if isinstance(first, int):
        return from_numpy(np.asarray(batch, dtype=np.int64))
    if isinstance(first, float):
        return from_numpy(np.asarray(batch, dtype=np.float64))
    if isinstance(first, dict):
        return {k: default_collate([b[k] for b in batch]) for k in first}
    if isinstance(first, (tuple, list)):
        if any(len(b) != len(first) for b in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        return [default_collate(list(field)) for field in zip(*batch)]
    raise TypeError(f"default_collate: batch must contain Tensors, NumPy arrays, numbers, dicts or lists; found "
                    f"{type(first).__name__}")


class DataLoader:
    """Batches of a dataset, as PyTorch's ``DataLoader(dataset, batch_size=1, shuffle=False, drop_last=False)``.

    Each batch is what ``collate_fn`` makes of the samples (by default :func:`default_collate`: for a
    TensorDataset of ``(X, y)``, the list ``[X_batch, y_batch]``). ``len(loader)`` is the number of batches.
    """

    def __init__(self, dataset, batch_size: int | None = 1, shuffle: bool = False, sampler=None,
                 batch_sampler=None, num_workers: int = 0, collate_fn: Callable | None = None,
                 pin_memory: bool = False, drop_last: bool = False, generator: np.random.Generator | None = None,
                 **kwargs):
        if sampler is not None or batch_sampler is not None:
            raise NotImplementedError("DataLoader: custom samplers are not supported; use shuffle=True/False")
        if batch_size is None:
            raise NotImplementedError("DataLoader: batch_size=None (no batching) is not supported")
        self.batch_size = operator.index(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size should be a positive integer value, but got batch_size={batch_size}")
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise TypeError(f"DataLoader needs a map-style dataset with __len__ and __getitem__, got "
                            f"{type(dataset).__name__}")
        self.dataset = dataset
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.collate_fn = default_collate if collate_fn is None else collate_fn
        self.generator = generator
        # num_workers, pin_memory, persistent_workers, prefetch_factor ...: accepted and ignored (one process, CPU)
        self.num_workers = num_workers

    def __len__(self) -> int:
        n, b = len(self.dataset), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def _fetch(self, idx: np.ndarray):
        if type(self.dataset) is TensorDataset and self.collate_fn is default_collate:
            # What default_collate would make of the samples, with one fancy-indexing copy per tensor.
            return [from_numpy(t._data[idx]) for t in self.dataset.tensors]
        return self.collate_fn([self.dataset[int(i)] for i in idx])

    def __iter__(self) -> Iterator:
        n = len(self.dataset)
        order = (self.generator or default_generator()).permutation(n) if self.shuffle else np.arange(n)
        for b in range(len(self)):
            yield self._fetch(order[b * self.batch_size:(b + 1) * self.batch_size])

    def __repr__(self) -> str:
        return (f"DataLoader(dataset={type(self.dataset).__name__}, n={len(self.dataset)}, "
                f"batch_size={self.batch_size}, shuffle={self.shuffle}, drop_last={self.drop_last})")

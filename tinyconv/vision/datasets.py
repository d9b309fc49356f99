"""torchvision's data set classes over tinyconv's data: ``MNIST`` and ``FashionMNIST``.

``datasets.FashionMNIST(root, train=True, transform=None, target_transform=None, download=False)`` is
torchvision's signature; the files come from (or go to) ``root/fashion-mnist/`` (``root/mnist/`` for MNIST) by
:class:`tinyconv.data.FashionMNIST`'s machinery. ``dataset[i]`` is ``(transform(image), target_transform(label))``
where the image is a uint8 NumPy array ``(28, 28)``, tinyconv's stand-in for the PIL image torchvision gives
(see :mod:`tinyconv.vision.transforms`), and the label an int. ``data`` (uint8 ``(N, 28, 28)``) and ``targets``
(int64 ``(N,)``) are Tensors, as torchvision's.
"""
from __future__ import annotations

import operator

from .. import data as _data
from ..creation import from_numpy

__all__ = ["MNIST", "FashionMNIST"]


class _IDXVisionDataset:
    _source = None  # the tinyconv.data class that finds and checks the files

    def __init__(self, root, train: bool = True, transform=None, target_transform=None, download: bool = False):
        for name, fn in (("transform", transform), ("target_transform", target_transform)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{type(self).__name__}: {name} must be callable or None, got {type(fn).__name__}")
        self.root, self.train = root, bool(train)
        self.transform, self.target_transform = transform, target_transform
        source = self._source(root, train=self.train, download=download, progress=download)
        self.classes = list(source.classes)
        self._images, self._labels = source.data, source.targets
        self.data, self.targets = from_numpy(source.data), from_numpy(source.targets)

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, index):
        i = operator.index(index)
        img, target = self._images[i], int(self._labels[i])
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target

    @property
    def class_to_idx(self) -> dict:
        return {c: i for i, c in enumerate(self.classes)}

    def __repr__(self) -> str:
        lines = [f"Dataset {type(self).__name__}", f"    Number of datapoints: {len(self)}",
                 f"    Root location: {self.root}", f"    Split: {'Train' if self.train else 'Test'}"]
        if self.transform is not None:
            lines.append("    StandardTransform")
            lines.append("Transform: " + repr(self.transform).replace("\n", "\n           "))
        return "\n".join(lines)


class MNIST(_IDXVisionDataset):
    """The MNIST digits (cache ``root/mnist/``), as ``torchvision.datasets.MNIST``."""

    _source = _data.MNIST


class FashionMNIST(_IDXVisionDataset):
    """Fashion-MNIST (cache ``root/fashion-mnist/``), as ``torchvision.datasets.FashionMNIST``."""

    _source = _data.FashionMNIST

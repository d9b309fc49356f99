"""``tinyconv.vision``: the part of torchvision that course code calls, so that code written for
``import torchvision`` runs with that name resolving here (``datasets.FashionMNIST``, ``datasets.MNIST``,
``transforms.ToTensor`` / ``Resize`` / ``Normalize`` / ``Compose``).

Named after torchvision, less the "torch": it is to tinyconv what torchvision is to PyTorch, a companion package of
data sets and image transforms on top of the core (its data sets are thin wrappers of :mod:`tinyconv.data`, which
owns the files). Batching is ``tinyconv.utils.data.DataLoader``, PyTorch's path, as in torchvision code.
"""
from . import datasets, transforms

__all__ = ["datasets", "transforms"]

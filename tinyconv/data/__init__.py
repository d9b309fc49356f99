"""Data: the IDX file format, the MNIST dataset, and a NumPy DataLoader.

This is the bottom layer of tinyconv: it depends on NumPy, the standard library and tqdm
only, and never imports tensors, layers or functional code.

    from tinyconv.data import MNIST, DataLoader
    for x, y in DataLoader(MNIST(train=True), batch_size=128, shuffle=True, seed=0):
        ...  # x float32 (128, 1, 28, 28) normalised, y int64 (128,)
"""

from . import idx, loader, mnist
from .idx import IDXError, read_idx, write_idx
from .loader import DataLoader, random_shift
from .mnist import MNIST, MNISTUnavailable

__all__ = ["idx", "mnist", "loader", "IDXError", "read_idx", "write_idx",
           "MNIST", "MNISTUnavailable", "DataLoader", "random_shift"]

"""Data: the IDX file format, the MNIST and Fashion-MNIST datasets, and a NumPy DataLoader.

This is the bottom layer of tinyconv: it depends on NumPy, the standard library and tqdm
only, and never imports tensors, layers or functional code.

    from tinyconv.data import MNIST, DataLoader
    for x, y in DataLoader(MNIST(train=True), batch_size=128, shuffle=True, seed=0):
        ...  # x float32 (128, 1, 28, 28) normalised, y int64 (128,)
"""

from . import fashion_mnist, idx, loader, mnist
from .fashion_mnist import FashionMNIST, FashionMNISTUnavailable
from .idx import IDXError, read_idx, write_idx
from .loader import DataLoader, random_shift
from .mnist import MNIST, MNISTUnavailable

__all__ = ["idx", "mnist", "fashion_mnist", "loader", "IDXError", "read_idx", "write_idx",
           "MNIST", "MNISTUnavailable", "FashionMNIST", "FashionMNISTUnavailable", "DataLoader", "random_shift"]

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
           "MNIST", "MNISTUnavailable", "FashionMNIST", "FashionMNISTUnavailable", "DataLoader", "random_shift",
           "DATASETS", "NORMALIZATION", "load_split"]

#: The data sets ``tinyconv train --dataset`` offers, by name: each a class with MNIST's interface.
DATASETS = {"mnist": MNIST, "fashion-mnist": FashionMNIST}
#: Each data set's pixel mean and standard deviation (of the training images scaled to [0, 1]): what its
#: DataLoader normalises with.
NORMALIZATION = {"mnist": (0.1307, 0.3081), "fashion-mnist": (0.2860, 0.3530)}


def load_split(dataset: str, root=None, train: bool = True, *, custom: bool = False, limit: int | None = None):
    """``(images uint8 (N, 28, 28), labels int64 (N,))`` of a split of ``DATASETS[dataset]``, its first ``limit``
    samples if given. ``custom``: the files in the cache are the user's own data set in the same format, used as
    they are (no checksum, never fetched or replaced)."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown data set {dataset!r}; valid: {', '.join(DATASETS)}")
    if dataset == "mnist":
        ds = MNIST(root, train=train, verify=not custom, download=not custom)
    else:
        ds = DATASETS[dataset](root, train=train, download=not custom)
    x, y = ds.data, ds.targets
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return x, y

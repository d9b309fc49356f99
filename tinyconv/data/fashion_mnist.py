"""Fashion-MNIST (Zalando's 28x28 grey images of ten kinds of clothing), in MNIST's format and by MNIST's
machinery: the cache is ``<root>/fashion-mnist/`` holding the same four file names as MNIST's
(``train-images-idx3-ubyte.gz`` ...), files are fetched from the data set's official mirrors (``MIRRORS``) and
each download is checked against the md5 its publishers list (``MD5``) before it enters the cache.

The publishers give checksums of the compressed files only, so a cached file (which may be a decompressed copy put
there by hand) is checked by format, shape (60000 / 10000 images of 28x28) and label range, not by content hash.
There is no PyPI copy to fall back on: without network access the "not available" message lists the four files
and the folder to put them in.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .mnist import MNIST, SIZES, IDXDataSet, MNISTUnavailable, default_root, load_idx_data_set

__all__ = ["FashionMNIST", "FashionMNISTUnavailable", "FASHION_MNIST_DATA", "MIRRORS", "MD5", "CLASSES"]

#: Base URLs tried in order: the data set's own server (torchvision's mirror), then its GitHub repository.
MIRRORS: tuple[str, ...] = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
#: md5 of each gzip-compressed file, as published in the data set's README (and in torchvision).
MD5: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

FASHION_MNIST_DATA = IDXDataSet(
    name="Fashion-MNIST", folder="fashion-mnist", mirrors=MIRRORS, mirrors_env="TINYCONV_FASHION_MNIST_MIRRORS",
    md5=MD5, sha256=None, sizes=SIZES, classes=CLASSES, home="https://github.com/zalandoresearch/fashion-mnist",
)


class FashionMNISTUnavailable(MNISTUnavailable):
    """No source could provide Fashion-MNIST; the message lists every source tried and where to put the files."""


class FashionMNIST(MNIST):
    """Fashion-MNIST as NumPy arrays: the same interface as :class:`MNIST` (``data`` uint8 (N, 28, 28),
    ``targets`` int64 (N,), ``classes``, ``dataset[i] = (image, label)``).

    Args:
        root: data root; the files live in ``root/fashion-mnist/`` (default ``$TINYCONV_DATA`` or
            ``~/.cache/tinyconv``).
        train: the 60000-image training split if True, else the 10000-image test split.
        download: if False, only the cache is used.
        mirrors: base URLs to try (default ``$TINYCONV_FASHION_MNIST_MIRRORS`` or ``MIRRORS``); empty: none.
        timeout: seconds per connection/read for a mirror.
        md5, sizes: overrides of the checksums and split sizes, for tests.
        progress: show a progress bar on stderr while fetching.
    """

    classes = CLASSES

    def __init__(self, root: str | os.PathLike | None = None, train: bool = True, *, download: bool = True,
                 mirrors: Sequence[str] | None = None, timeout: float | None = None,
                 md5: Mapping[str, str] | None = None, sizes: Mapping[str, int] | None = None,
                 progress: bool = True):
        self.root = default_root() if root is None else Path(root).expanduser()
        self.train = bool(train)
        images, labels = load_idx_data_set(FASHION_MNIST_DATA, self.root, self.train, download=download,
                                           mirrors=mirrors, timeout=timeout, md5=md5, sizes=sizes,
                                           progress=progress, error=FashionMNISTUnavailable)
        self.data = images
        self.targets = labels.astype(np.int64)

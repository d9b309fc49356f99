"""Edge detection with a hand-made kernel (d2l 6.2, examples B and C).

    python examples/edge_detection.py [--kernel direct|im2col|numba]

A 6x8 white image with a black band in columns 2..5; the kernel [1, -1] marks the white-to-black edge with 1
and the black-to-white edge with -1, and finds nothing on the transposed image (it only sees vertical edges).
On the identity matrix it marks the diagonal; the transposed kernel [[1], [-1]] marks it the other way round.
"""
import argparse

import numpy as np

import tinyconv as tc
from tinyconv import functional as F


def conv(X, K, kernel=None):
    """Cross-correlate one 2-D array with one 2-D kernel through tinyconv's conv2d (shapes (1, 1, H, W))."""
    x = tc.tensor(np.asarray(X, dtype=np.float32)[None, None])
    k = tc.tensor(np.asarray(K, dtype=np.float32)[None, None])
    kw = {} if kernel is None else {"kernel": kernel}
    return F.conv2d(x, k, **kw).numpy()[0, 0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernel", default=None, help="convolution algorithm (default: tinyconv's choice)")
    args = parser.parse_args(argv)

    X = np.ones((6, 8), dtype=np.float32)
    X[:, 2:6] = 0
    K = np.array([[1.0, -1.0]])
    print("image X (6x8):")
    print(X.astype(int))
    Y = conv(X, K, args.kernel)
    print("\nedges, corr(X, [1, -1]) (6x7):")
    print(Y.astype(int))
    assert (Y[:, 1] == 1).all() and (Y[:, 5] == -1).all() and np.count_nonzero(Y) == 12

    Yt = conv(X.T, K, args.kernel)
    print(f"\non the transposed image {Yt.shape}: all zero? {not Yt.any()}")

    E = np.eye(8, dtype=np.float32)
    print("\ncorr(eye(8), [1, -1]) (8x7):")
    print(conv(E, K, args.kernel).astype(int))
    print("\ncorr(eye(8), [[1], [-1]]) (7x8):")
    print(conv(E, K.T, args.kernel).astype(int))


if __name__ == "__main__":
    main()

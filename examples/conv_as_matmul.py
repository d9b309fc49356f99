"""Convolution as matrix multiplication, forward and backward.

    python examples/conv_as_matmul.py

1. im2col: unfold every kh x kw window of the input into a row; one matrix product with the flattened kernel
   then computes the whole output (this is tinyconv's "im2col" kernel).
2. The same convolution as a matrix C acting on the flattened image: y = C x. Backpropagation then gives
   dL/dx = C^T dL/dy -- the "transposed convolution" -- which is what F.conv_transpose2d computes, and what
   autograd returns as the input gradient of F.conv2d.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import tinyconv as tc
from tinyconv import functional as F


def im2col(X, kh, kw):
    """(H, W) -> (H_out * W_out, kh * kw): one row per window position."""
    windows = sliding_window_view(X, (kh, kw))  # (H_out, W_out, kh, kw), no copy
    return windows.reshape(-1, kh * kw)


def conv_matrix(K, h, w):
    """The (H_out*W_out, H*W) matrix C with corr(X, K).ravel() == C @ X.ravel()."""
    kh, kw = K.shape
    ho, wo = h - kh + 1, w - kw + 1
    C = np.zeros((ho * wo, h * w))
    for i in range(ho):
        for j in range(wo):
            window = np.zeros((h, w))
            window[i:i + kh, j:j + kw] = K
            C[i * wo + j] = window.ravel()
    return C


def main():
    np.set_printoptions(linewidth=120)
    X = np.array([[1, 2, 0, 2], [1, 0, 3, -1], [2, 2, 2, 0], [3, 1, -2, 0]], dtype=np.float64)  # example D
    K = np.array([[0, 1, -1], [-1, 0, 1], [1, 0, 1]], dtype=np.float64)
    x = tc.tensor(X[None, None], requires_grad=True)
    k = tc.tensor(K[None, None], requires_grad=True)
    y = F.conv2d(x, k)
    print("conv2d(X, K):\n", y.numpy()[0, 0].astype(int))

    cols = im2col(X, 3, 3)
    print(f"\nim2col: {cols.shape[0]} windows of {cols.shape[1]} values each:\n", cols.astype(int))
    by_im2col = (cols @ K.ravel()).reshape(2, 2)
    print("im2col @ K.ravel():\n", by_im2col.astype(int))
    assert np.array_equal(by_im2col, y.numpy()[0, 0])

    C = conv_matrix(K, 4, 4)
    print(f"\nthe {C.shape[0]}x{C.shape[1]} matrix C (each row: the kernel at one window position):\n", C.astype(int))
    assert np.array_equal(C @ X.ravel(), y.numpy().ravel())

    G = np.array([[1.0, 2.0], [-1.0, 3.0]])  # pretend dL/dy
    y.backward(tc.tensor(G[None, None]))
    by_transpose = (C.T @ G.ravel()).reshape(4, 4)
    print("\ndL/dx = C^T dL/dy:\n", by_transpose.astype(int))
    print("autograd's x.grad:\n", x.grad.numpy()[0, 0].astype(int))
    print("F.conv_transpose2d(dL/dy, K):\n", F.conv_transpose2d(tc.tensor(G[None, None]), k.detach()).numpy()[0, 0]
          .astype(int))
    assert np.allclose(by_transpose, x.grad.numpy()[0, 0])
    # and dL/dK is the correlation of the input with dL/dy: the rows of im2col weighted by G
    assert np.allclose(cols.T @ G.ravel(), k.grad.numpy().ravel())
    print("\ndL/dK = im2col(X)^T @ dL/dy.ravel():\n", (cols.T @ G.ravel()).reshape(3, 3).astype(int))
    print("all checks passed")


if __name__ == "__main__":
    main()

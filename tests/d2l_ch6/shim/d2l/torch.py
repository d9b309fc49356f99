"""d2l's helpers that chapter 6 calls, copied from the d2l package's torch.py (PyTorch code; ``torch`` is whichever
library the runner put under that name). Plotting and timing are reduced to what the tests need: Animator draws
nothing, the data loader reads a slice of MNIST instead of downloading Fashion-MNIST."""
import time

import numpy as np
import torch
from torch.utils import data


def corr2d(X, K):  #@save
    """Compute 2D cross-correlation."""
    h, w = K.shape
    Y = torch.zeros((X.shape[0] - h + 1, X.shape[1] - w + 1))
    for i in range(Y.shape[0]):
        for j in range(Y.shape[1]):
            Y[i, j] = (X[i:i + h, j:j + w] * K).sum()
    return Y


class Accumulator:  #@save
    """For accumulating sums over `n` variables."""
    def __init__(self, n):
        self.data = [0.0] * n

    def add(self, *args):
        self.data = [a + float(b) for a, b in zip(self.data, args)]

    def reset(self):
        self.data = [0.0] * len(self.data)

    def __getitem__(self, idx):
        return self.data[idx]


def accuracy(y_hat, y):  #@save
    """Compute the number of correct predictions."""
    if len(y_hat.shape) > 1 and y_hat.shape[1] > 1:
        y_hat = y_hat.argmax(axis=1)
    cmp = y_hat.type(y.dtype) == y
    return float(cmp.type(y.dtype).sum())


def try_gpu(i=0):  #@save
    """Return gpu(i) if exists, otherwise return cpu()."""
    if torch.cuda.device_count() >= i + 1:
        return torch.device(f'cuda:{i}')
    return torch.device('cpu')


def load_array(data_arrays, batch_size, is_train=True):  #@save
    """Construct a PyTorch data iterator."""
    dataset = data.TensorDataset(*data_arrays)
    return data.DataLoader(dataset, batch_size, shuffle=is_train)


class Timer:  #@save
    """Record multiple running times."""
    def __init__(self):
        self.times = []
        self.start()

    def start(self):
        self.tik = time.time()

    def stop(self):
        self.times.append(time.time() - self.tik)
        return self.times[-1]

    def sum(self):
        return sum(self.times)


class Animator:
    """d2l plots the curves; here the points are only kept."""
    def __init__(self, *args, **kwargs):
        self.points = []

    def add(self, x, y):
        self.points.append((x, y))


def load_data_mnist_slice(batch_size, n_train=1536, n_test=512):
    """Stands in for d2l.load_data_fashion_mnist (no download here): the first images of MNIST's two splits,
    scaled to [0, 1] as ToTensor() does, through load_array."""
    from tinyconv.data import MNIST

    def arrays(train, n):
        ds = MNIST(train=train, download=False, progress=False)
        x = torch.tensor(ds.data[:n, None].astype(np.float32) / 255)
        y = torch.tensor(ds.targets[:n].astype(np.int64))
        return x, y

    return (load_array(arrays(True, n_train), batch_size), load_array(arrays(False, n_test), batch_size, False))

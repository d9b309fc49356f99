"""Learn the edge-detection kernel from examples (d2l 6.2.4).

    python examples/learn_kernel.py [--steps 10] [--lr 0.03] [--seed 0]

Input X: the 6x8 image with a black band; target Y: its edges, corr(X, [1, -1]). A Conv2d(1, 1, (1, 2)) without
bias starts from a random kernel and takes plain gradient-descent steps on the squared error; the kernel it finds
is close to [1, -1].
"""
import argparse
import sys

import numpy as np

import tinyconv as tc
from tinyconv import functional as F
from tinyconv import nn


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--lr", type=float, default=3e-2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    tc.manual_seed(args.seed)
    X = np.ones((1, 1, 6, 8), dtype=np.float32)
    X[..., 2:6] = 0
    x = tc.tensor(X)
    y = F.conv2d(x, tc.tensor([[[[1.0, -1.0]]]]))  # the edges we want the layer to reproduce

    conv = nn.Conv2d(1, 1, kernel_size=(1, 2), bias=False)
    print("initial kernel:", np.round(conv.weight.numpy().reshape(2), 4))
    for step in range(1, args.steps + 1):
        loss = ((conv(x) - y) ** 2).sum()
        conv.zero_grad()
        loss.backward()
        conv.weight.data -= args.lr * conv.weight.grad  # plain gradient descent
        if step % 2 == 0 or step == args.steps:
            print(f"step {step:3d}  loss {loss.item():.4f}")
    learned = conv.weight.numpy().reshape(2)
    print("learned kernel:", np.round(learned, 4), "(target [1, -1])")
    if args.steps >= 10 and np.abs(learned - [1.0, -1.0]).max() > 0.2:
        print("the kernel did not get close to [1, -1]", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

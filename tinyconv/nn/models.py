"""Ready-made models: ``LeNet`` in d2l's original form and in the modern (ReLU, max-pool) form.

    model = nn.models.LeNet()               # 'modern': ReLU + MaxPool2d, PyTorch's default init
    model = nn.models.LeNet("d2l")          # d2l §6.6: sigmoid + AvgPool2d, Xavier-uniform weights

Both take (N, 1, 28, 28) images and return (N, 10) class scores, and have 61,706 parameters.
"""
from __future__ import annotations

from collections import OrderedDict

from . import init
from .conv import AvgPool2d, Conv2d, MaxPool2d
from .layers import Flatten, Linear, ReLU, Sequential, Sigmoid

__all__ = ["LeNet", "LENET_VARIANTS"]

LENET_VARIANTS = ("modern", "d2l")


class LeNet(Sequential):
    """LeNet-5 for 28×28 single-channel images, as in d2l (Dive into Deep Learning, §6.6 / §7.6).

    Layers, with the shape of one example after each (N is the batch)::

        conv1    Conv2d(1, 6, 5, padding=2)   (N, 6, 28, 28)
        act1     Sigmoid | ReLU
        pool1    AvgPool2d(2, 2) | MaxPool2d(2, 2)   (N, 6, 14, 14)
        conv2    Conv2d(6, 16, 5)             (N, 16, 10, 10)
        act2     Sigmoid | ReLU
        pool2    AvgPool2d(2, 2) | MaxPool2d(2, 2)   (N, 16, 5, 5)
        flatten  Flatten                      (N, 400)
        fc1      Linear(400, 120)             (N, 120)
        act3     Sigmoid | ReLU
        fc2      Linear(120, 84)              (N, 84)
        act4     Sigmoid | ReLU
        fc3      Linear(84, 10)               (N, 10)

    It is a ``Sequential`` with those names, so ``state_dict`` keys read like PyTorch's (``conv1.weight``,
    ``fc3.bias``), ``model.conv1`` and ``model[0]`` are the same layer, and hooks/summaries see each step.

    Args:
        variant: ``'d2l'`` — sigmoid activations, average pooling, Xavier-uniform weights and zero biases
            (d2l trains it with SGD, lr 0.9, batch 256, 10 epochs); ``'modern'`` — ReLU, max pooling,
            PyTorch's default initialisation (trains well with Adam, lr 1e-3).
        kernel: convolution algorithm for both conv layers (a name from ``tinyconv.kernels``); None uses the
            default.
        num_classes: size of the last layer (10 for MNIST).
    """

    def __init__(self, variant: str = "modern", kernel: str | None = None, num_classes: int = 10):
        if variant not in LENET_VARIANTS:
            raise ValueError(f"unknown LeNet variant {variant!r}; valid variants are "
                             + ", ".join(repr(v) for v in LENET_VARIANTS))
        Act = Sigmoid if variant == "d2l" else ReLU
        Pool = AvgPool2d if variant == "d2l" else MaxPool2d
        conv_kw = {} if kernel is None else {"kernel": kernel}
        super().__init__(OrderedDict([
            ("conv1", Conv2d(1, 6, kernel_size=5, padding=2, **conv_kw)),
            ("act1", Act()),
            ("pool1", Pool(kernel_size=2, stride=2)),
            ("conv2", Conv2d(6, 16, kernel_size=5, **conv_kw)),
            ("act2", Act()),
            ("pool2", Pool(kernel_size=2, stride=2)),
            ("flatten", Flatten()),
            ("fc1", Linear(16 * 5 * 5, 120)),
            ("act3", Act()),
            ("fc2", Linear(120, 84)),
            ("act4", Act()),
            ("fc3", Linear(84, num_classes)),
        ]))
        self.variant, self.kernel = variant, kernel
        if variant == "d2l":
            for m in self.modules():
                if isinstance(m, (Conv2d, Linear)):
                    init.xavier_uniform_(m.weight)
                    if m.bias is not None:
                        init.zeros_(m.bias)

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}" + ("" if self.kernel is None else f", kernel={self.kernel!r}")

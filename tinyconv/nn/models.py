"""Ready-made models: ``LeNet`` in d2l's original form, the modern (ReLU, max-pool) form and with batch norm,
and a small ``ResNet`` for 28×28 single-channel images.

    model = nn.models.LeNet()               # 'modern': ReLU + MaxPool2d, PyTorch's default init
    model = nn.models.LeNet("d2l")          # d2l §6.6: sigmoid + AvgPool2d, Xavier-uniform weights
    model = nn.models.LeNet("bn")           # 'modern' with BatchNorm after each conv and hidden linear layer
    model = nn.models.ResNet()              # 3 stages of residual blocks (3×3 convs + BN), global average pool

All take (N, 1, 28, 28) images and return (N, 10) class scores. The LeNets have 61,706 parameters ('bn':
62,158, its batch norms' γ and β, plus their running statistics).
"""
from __future__ import annotations

from collections import OrderedDict

from . import init
from .batchnorm import BatchNorm1d, BatchNorm2d
from .conv import AdaptiveAvgPool2d, AvgPool2d, Conv2d, MaxPool2d
from .layers import Flatten, Linear, ReLU, Sequential, Sigmoid
from .module import Module

__all__ = ["LeNet", "LENET_VARIANTS", "ResNet", "BasicBlock"]

LENET_VARIANTS = ("modern", "d2l", "bn")


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
            PyTorch's default initialisation (trains well with Adam, lr 1e-3); ``'bn'`` — 'modern' with batch
            normalization after each conv and hidden linear layer, before its activation (``bn1`` … ``bn4``:
            BatchNorm2d after conv1/conv2, BatchNorm1d after fc1/fc2), where d2l §8.5 puts it (d2l's version
            is built on the sigmoid net; here it is added to the modern one, so 'bn' vs 'modern' isolates it).
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
        bn = variant == "bn"
        layers = [
            ("conv1", Conv2d(1, 6, kernel_size=5, padding=2, **conv_kw)),
            ("bn1", BatchNorm2d(6)) if bn else None,
            ("act1", Act()),
            ("pool1", Pool(kernel_size=2, stride=2)),
            ("conv2", Conv2d(6, 16, kernel_size=5, **conv_kw)),
            ("bn2", BatchNorm2d(16)) if bn else None,
            ("act2", Act()),
            ("pool2", Pool(kernel_size=2, stride=2)),
            ("flatten", Flatten()),
            ("fc1", Linear(16 * 5 * 5, 120)),
            ("bn3", BatchNorm1d(120)) if bn else None,
            ("act3", Act()),
            ("fc2", Linear(120, 84)),
            ("bn4", BatchNorm1d(84)) if bn else None,
            ("act4", Act()),
            ("fc3", Linear(84, num_classes)),
        ]
        super().__init__(OrderedDict(layer for layer in layers if layer is not None))
        self.variant, self.kernel = variant, kernel
        if variant == "d2l":
            for m in self.modules():
                if isinstance(m, (Conv2d, Linear)):
                    init.xavier_uniform_(m.weight)
                    if m.bias is not None:
                        init.zeros_(m.bias)

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}" + ("" if self.kernel is None else f", kernel={self.kernel!r}")


class BasicBlock(Module):
    """A residual block: two 3×3 convs with batch norm, and the input added back before the last ReLU::

        out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))

    ``conv1`` has the block's ``stride``. The shortcut is the identity when the shape is kept, else
    ``downsample``: a strided 1×1 conv + BatchNorm2d projecting to ``out_channels`` (torchvision's layout and
    names, so ``state_dict`` keys match ``torchvision.models.resnet.BasicBlock``). Convs have no bias: the
    batch norm after each one has it. (N, C_in, H, W) → (N, C_out, ⌈H/stride⌉, ⌈W/stride⌉).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, kernel: str | None = None):
        super().__init__()
        conv_kw = {} if kernel is None else {"kernel": kernel}
        self.conv1 = Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False, **conv_kw)
        self.bn1 = BatchNorm2d(out_channels)
        self.relu = ReLU()
        self.conv2 = Conv2d(out_channels, out_channels, 3, padding=1, bias=False, **conv_kw)
        self.bn2 = BatchNorm2d(out_channels)
        if stride != 1 or in_channels != out_channels:
            self.downsample = Sequential(Conv2d(in_channels, out_channels, 1, stride=stride, bias=False, **conv_kw),
                                         BatchNorm2d(out_channels))
        else:
            self.add_module("downsample", None)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)  # the residual add: a join in the autograd graph


class ResNet(Module):
    """A small ResNet for 28×28 single-channel images (MNIST).

    Layers, with the shape of one example after each for the defaults::

        conv1, bn1, relu   Conv2d(1, 16, 3, padding=1) + BN + ReLU          (N, 16, 28, 28)
        maxpool            MaxPool2d(2, 2)                                   (N, 16, 14, 14)
        layer1             BasicBlock(16 → 16), identity shortcut            (N, 16, 14, 14)
        layer2             BasicBlock(16 → 32, stride 2), 1×1 projection     (N, 32, 7, 7)
        layer3             BasicBlock(32 → 64, stride 2), 1×1 projection     (N, 64, 4, 4)
        avgpool, flatten   AdaptiveAvgPool2d(1): global average pooling      (N, 64)
        fc                 Linear(64, 10)                                    (N, 10)

    77,754 parameters and 2.64 M multiply-adds per image (``tinyconv summary --model resnet``): the stem's
    max pool keeps the 3×3 stages at 14/7/4 so that an MNIST epoch stays short on 2 cores
    (``stem_pool=False`` runs them at 28/14/7, 3.5× the multiply-adds).

    Args:
        channels: output channels of each stage.
        blocks: residual blocks per stage.
        strides: stride of each stage's first block (its shortcut is then a strided 1×1 projection).
        stem_pool: 2×2 max pooling after the stem.
        in_channels, num_classes: 1 and 10 for MNIST.
        kernel: convolution algorithm for every conv (None: tinyconv's default).

    Convs get Kaiming-normal weights (fan_out, ReLU gain) and batch norms γ = 1, β = 0, as torchvision does.
    """

    def __init__(self, channels=(16, 32, 64), blocks=(1, 1, 1), strides=(1, 2, 2), stem_pool: bool = True,
                 in_channels: int = 1, num_classes: int = 10, kernel: str | None = None):
        super().__init__()
        channels, blocks, strides = tuple(channels), tuple(blocks), tuple(strides)
        if not (len(channels) == len(blocks) == len(strides) >= 1):
            raise ValueError(f"ResNet: channels, blocks and strides need one entry per stage, got {channels}, "
                             f"{blocks} and {strides}")
        if any(int(b) < 1 for b in blocks) or any(int(c) < 1 for c in channels) or any(int(s) < 1 for s in strides):
            raise ValueError(f"ResNet: channels, blocks and strides must be positive, got {channels}, {blocks}, "
                             f"{strides}")
        self.channels, self.blocks, self.strides, self.kernel = channels, blocks, strides, kernel
        self.stem_pool = bool(stem_pool)
        conv_kw = {} if kernel is None else {"kernel": kernel}
        self.conv1 = Conv2d(in_channels, channels[0], 3, padding=1, bias=False, **conv_kw)
        self.bn1 = BatchNorm2d(channels[0])
        self.relu = ReLU()
        if self.stem_pool:
            self.maxpool = MaxPool2d(2, 2)
        else:
            self.add_module("maxpool", None)
        width = channels[0]
        for i, (c, n, stride) in enumerate(zip(channels, blocks, strides)):
            stage = [BasicBlock(width, c, stride, kernel)] + [BasicBlock(c, c, 1, kernel) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", Sequential(*stage))
            width = c
        self.avgpool = AdaptiveAvgPool2d(1)
        self.flatten = Flatten()
        self.fc = Linear(width, num_classes)
        for m in self.modules():
            if isinstance(m, Conv2d):
                init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        if self.maxpool is not None:
            x = self.maxpool(x)
        for i in range(len(self.channels)):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(self.flatten(self.avgpool(x)))

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, blocks={self.blocks}, strides={self.strides}, "
                f"stem_pool={self.stem_pool}"
                + ("" if self.kernel is None else f", kernel={self.kernel!r}"))

"""Chapter 7's networks (d2l, Chinese edition's explicit-channel code) for one input channel, written once against
a PyTorch-like API so that the same function builds them in tinyconv and in PyTorch: ``build(name, nn, cat,
width=1)`` with ``nn`` being ``torch.nn`` or ``tinyconv.nn`` and ``cat`` the matching concatenation. ``width``
divides every channel and hidden-layer count (1: the book's networks; the benchmark's ``--quick`` run uses 16).
Imports neither framework, so each benchmark worker holds only its own.

Input sides: AlexNet, VGG-11 and NiN at 224, GoogLeNet, ResNet-18 and DenseNet at 96 (``SIDES``)."""
from __future__ import annotations

SIDES = {"alexnet": 224, "vgg11": 224, "nin": 224, "googlenet": 96, "resnet18": 96, "densenet": 96}


def _alexnet(nn, cat, w, side):
    c = [96 // w, 256 // w, 384 // w, 384 // w, 256 // w]
    hidden = 4096 // w
    s = (side + 2 - 11) // 4 + 1  # conv 11/4, padding 1
    for _ in range(3):  # the three 3/2 max pools (the 5x5 and 3x3 convolutions keep the size)
        s = (s - 3) // 2 + 1
    return nn.Sequential(
        nn.Conv2d(1, c[0], kernel_size=11, stride=4, padding=1), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(c[0], c[1], kernel_size=5, padding=2), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(c[1], c[2], kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(c[2], c[3], kernel_size=3, padding=1), nn.ReLU(),
        nn.Conv2d(c[3], c[4], kernel_size=3, padding=1), nn.ReLU(), nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Flatten(), nn.Linear(c[4] * s * s, hidden), nn.ReLU(), nn.Dropout(p=0.5),
        nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(p=0.5), nn.Linear(hidden, 10))


def _vgg11(nn, cat, w, side):
    blocks, in_channels = [], 1
    for num_convs, out_channels in ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512)):
        out_channels //= w
        layers = []
        for _ in range(num_convs):
            layers += [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1), nn.ReLU()]
            in_channels = out_channels
        blocks.append(nn.Sequential(*layers, nn.MaxPool2d(kernel_size=2, stride=2)))
    hidden, s = 4096 // w, side // 32
    return nn.Sequential(*blocks, nn.Flatten(), nn.Linear(in_channels * s * s, hidden), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(0.5), nn.Linear(hidden, 10))


def _nin(nn, cat, w, side):
    def block(i, o, k, s, p):
        return nn.Sequential(nn.Conv2d(i, o, k, s, p), nn.ReLU(), nn.Conv2d(o, o, kernel_size=1), nn.ReLU(),
                             nn.Conv2d(o, o, kernel_size=1), nn.ReLU())

    c = [96 // w, 256 // w, 384 // w]
    return nn.Sequential(
        block(1, c[0], 11, 4, 0), nn.MaxPool2d(3, stride=2), block(c[0], c[1], 5, 1, 2), nn.MaxPool2d(3, stride=2),
        block(c[1], c[2], 3, 1, 1), nn.MaxPool2d(3, stride=2), nn.Dropout(0.5), block(c[2], 10, 3, 1, 1),
        nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())


def _googlenet(nn, cat, w, side):
    class Inception(nn.Module):
        def __init__(self, in_channels, c1, c2, c3, c4):
            super().__init__()
            c1, c4, c2, c3 = c1 // w, c4 // w, (c2[0] // w, c2[1] // w), (c3[0] // w, c3[1] // w)
            self.p1_1 = nn.Conv2d(in_channels, c1, kernel_size=1)
            self.p2_1 = nn.Conv2d(in_channels, c2[0], kernel_size=1)
            self.p2_2 = nn.Conv2d(c2[0], c2[1], kernel_size=3, padding=1)
            self.p3_1 = nn.Conv2d(in_channels, c3[0], kernel_size=1)
            self.p3_2 = nn.Conv2d(c3[0], c3[1], kernel_size=5, padding=2)
            self.p4_1 = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)
            self.p4_2 = nn.Conv2d(in_channels, c4, kernel_size=1)
            self.relu = nn.ReLU()
            self.out_channels = c1 + c2[1] + c3[1] + c4

        def forward(self, x):
            r = self.relu
            return cat((r(self.p1_1(x)), r(self.p2_2(r(self.p2_1(x)))), r(self.p3_2(r(self.p3_1(x)))),
                        r(self.p4_2(self.p4_1(x)))), dim=1)

    def inceptions(in_channels, specs):
        mods = []
        for spec in specs:
            mods.append(Inception(in_channels, *spec))
            in_channels = mods[-1].out_channels
        return mods, in_channels

    b1 = nn.Sequential(nn.Conv2d(1, 64 // w, kernel_size=7, stride=2, padding=3), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    b2 = nn.Sequential(nn.Conv2d(64 // w, 64 // w, kernel_size=1), nn.ReLU(),
                       nn.Conv2d(64 // w, 192 // w, kernel_size=3, padding=1), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    m3, c = inceptions(192 // w, [(64, (96, 128), (16, 32), 32), (128, (128, 192), (32, 96), 64)])
    m4, c = inceptions(c, [(192, (96, 208), (16, 48), 64), (160, (112, 224), (24, 64), 64),
                           (128, (128, 256), (24, 64), 64), (112, (144, 288), (32, 64), 64),
                           (256, (160, 320), (32, 128), 128)])
    m5, c = inceptions(c, [(256, (160, 320), (32, 128), 128), (384, (192, 384), (48, 128), 128)])
    pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    return nn.Sequential(b1, b2, nn.Sequential(*m3, pool), nn.Sequential(*m4, nn.MaxPool2d(3, 2, 1)),
                         nn.Sequential(*m5, nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten()), nn.Linear(c, 10))


def _resnet18(nn, cat, w, side):
    class Residual(nn.Module):
        def __init__(self, input_channels, num_channels, use_1x1conv=False, strides=1):
            super().__init__()
            self.conv1 = nn.Conv2d(input_channels, num_channels, kernel_size=3, padding=1, stride=strides)
            self.conv2 = nn.Conv2d(num_channels, num_channels, kernel_size=3, padding=1)
            self.conv3 = nn.Conv2d(input_channels, num_channels, kernel_size=1, stride=strides) if use_1x1conv \
                else None
            self.bn1 = nn.BatchNorm2d(num_channels)
            self.bn2 = nn.BatchNorm2d(num_channels)
            self.relu = nn.ReLU()

        def forward(self, X):
            Y = self.relu(self.bn1(self.conv1(X)))
            Y = self.bn2(self.conv2(Y))
            if self.conv3 is not None:
                X = self.conv3(X)
            return self.relu(Y + X)

    def stage(i, o, first=False):
        return nn.Sequential(Residual(i, o, use_1x1conv=not first, strides=1 if first else 2), Residual(o, o))

    c = [64 // w, 128 // w, 256 // w, 512 // w]
    b1 = nn.Sequential(nn.Conv2d(1, c[0], kernel_size=7, stride=2, padding=3), nn.BatchNorm2d(c[0]), nn.ReLU(),
                       nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
    return nn.Sequential(b1, stage(c[0], c[0], True), stage(c[0], c[1]), stage(c[1], c[2]), stage(c[2], c[3]),
                         nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(c[3], 10))


def _densenet(nn, cat, w, side):
    def conv_block(i, o):
        return nn.Sequential(nn.BatchNorm2d(i), nn.ReLU(), nn.Conv2d(i, o, kernel_size=3, padding=1))

    class DenseBlock(nn.Module):
        def __init__(self, num_convs, input_channels, num_channels):
            super().__init__()
            self.net = nn.Sequential(*[conv_block(num_channels * i + input_channels, num_channels)
                                       for i in range(num_convs)])

        def forward(self, X):
            for blk in self.net:
                X = cat((X, blk(X)), dim=1)
            return X

    def transition(i, o):
        return nn.Sequential(nn.BatchNorm2d(i), nn.ReLU(), nn.Conv2d(i, o, kernel_size=1),
                             nn.AvgPool2d(kernel_size=2, stride=2))

    c, growth = 64 // w, max(32 // w, 1)
    blks = [nn.Sequential(nn.Conv2d(1, c, kernel_size=7, stride=2, padding=3), nn.BatchNorm2d(c), nn.ReLU(),
                          nn.MaxPool2d(kernel_size=3, stride=2, padding=1))]
    for i, num_convs in enumerate([4, 4, 4, 4]):
        blks.append(DenseBlock(num_convs, c, growth))
        c += num_convs * growth
        if i != 3:
            blks.append(transition(c, c // 2))
            c //= 2
    return nn.Sequential(*blks, nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
                         nn.Linear(c, 10))


BUILDERS = {"alexnet": _alexnet, "vgg11": _vgg11, "nin": _nin, "googlenet": _googlenet, "resnet18": _resnet18,
            "densenet": _densenet}


def build(name: str, nn, cat, width: int = 1):
    """The network ``name`` (a key of ``SIDES``) in the framework whose ``nn`` and ``cat`` are given."""
    return BUILDERS[name](nn, cat, width, SIDES[name])

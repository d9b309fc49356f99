"""Devices: tinyconv computes on the CPU, and says so when code asks for anything else.

``tc.device('cpu')``, ``Tensor.device``, ``tensor.to(device)``, ``module.to(device)`` and the factories' ``device=``
exist so that PyTorch code written for any device runs unchanged on the CPU; ``tc.cuda.is_available()`` is False
(so ``'cuda' if torch.cuda.is_available() else 'cpu'`` picks the CPU), and naming a GPU gives a clear error.
"""
from __future__ import annotations

__all__ = ["device", "check_device", "CPU"]

# The device types PyTorch's parser knows; any of them makes a device object, only 'cpu' can hold tensors.
_KNOWN_TYPES = ("cpu", "cuda", "mps", "xpu", "xla", "meta", "hip", "ipu", "hpu", "mtia", "vulkan")


class device:
    """A device name, as in PyTorch: ``device('cpu')``, ``device('cuda:0')``, ``device('cuda', 1)``."""

    __slots__ = ("type", "index")

    def __init__(self, type, index=None):
        if isinstance(type, device):
            type, index = type.type, type.index if index is None else index
        if not isinstance(type, str):
            raise TypeError(f"device() expects a device string such as 'cpu', got {type.__class__.__name__}")
        name = type.strip()
        if ":" in name:
            if index is not None:
                raise ValueError(f"device(): the string {type!r} already has an index, and index={index} was given")
            name, _, idx = name.partition(":")
            if not idx.isdigit():
                raise ValueError(f"device(): invalid device index {idx!r} in {type!r} (expected e.g. 'cpu:0')")
            index = int(idx)
        if name not in _KNOWN_TYPES:
            raise RuntimeError(f"Expected one of {', '.join(_KNOWN_TYPES)} device type at start of device string: "
                               f"{type}")
        if index is not None and (not isinstance(index, int) or isinstance(index, bool) or index < 0):
            raise ValueError(f"device(): index must be a non-negative int, got {index!r}")
        self.type, self.index = name, index

    def __repr__(self) -> str:
        return f"device(type='{self.type}')" if self.index is None else \
            f"device(type='{self.type}', index={self.index})"

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __eq__(self, other) -> bool:
        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self) -> int:
        return hash((self.type, self.index))


CPU = device("cpu")


def check_device(dev) -> device:
    """``dev`` (None, a string, or a device) as the CPU device; any other device is an error naming it."""
    if dev is None or dev is CPU:
        return CPU
    d = dev if isinstance(dev, device) else device(dev)
    if d.type != "cpu":
        raise RuntimeError(f"tinyconv runs on the CPU only: device '{d}' is not available "
                           f"(tinyconv.cuda.is_available() is False); use 'cpu'")
    return CPU

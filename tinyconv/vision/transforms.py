"""Image transforms with torchvision's names and results: ``ToTensor``, ``Resize``, ``Normalize``, ``Compose``.

torchvision's data sets hand out PIL images; tinyconv has no PIL, so its data sets hand out the image as a uint8
NumPy array, ``(H, W)`` for grey images or ``(H, W, C)``, which the transforms treat as torchvision treats a PIL
image:

- ``ToTensor()``: uint8 ``(H, W[, C])`` → float32 Tensor ``(C, H, W)`` in [0, 1] (divided by 255); an array of
  another dtype keeps its values and dtype, as torchvision's.
- ``Resize(size)``: on a uint8 image, PIL's bilinear resampling (what torchvision's ``Resize`` runs on a PIL
  image): a triangle filter widened by the scale factor when shrinking (antialiasing), coefficients in PIL's
  22-bit fixed point, the horizontal pass first, each pass rounded to uint8. That is PIL's result bit for bit
  when both sides grow (28 → 224 or 96, the course's case) or both shrink by similar factors; where one side
  grows and the other shrinks, recent Pillow may run the vertical pass first, and pixels can differ by one grey
  level. On a float Tensor
  ``(..., H, W)``: the same filter in floating point, as torchvision's tensor path with ``antialias=True``
  (``antialias=False`` keeps the filter unwidened when shrinking).
- ``Normalize(mean, std)``: ``(x - mean[c]) / std[c]`` on a float Tensor ``(..., C, H, W)``.
"""
from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

import numpy as np

from ..tensor import Tensor, tensor

__all__ = ["Compose", "ToTensor", "Resize", "Normalize", "InterpolationMode"]

_PRECISION_BITS = 32 - 8 - 2  # PIL's fixed point for 8-bit images


class InterpolationMode(Enum):
    """torchvision's interpolation names; ``Resize`` implements ``BILINEAR`` (its default)."""

    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


class Compose:
    """Apply ``transforms`` one after the other: ``Compose([Resize(224), ToTensor()])``."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self) -> str:
        return "Compose(\n" + "".join(f"    {t}\n" for t in self.transforms) + ")"


def _check_image(pic, who: str) -> np.ndarray:
    if isinstance(pic, Tensor) or not isinstance(pic, np.ndarray):
        raise TypeError(f"{who}: pic should be an image (a uint8 NumPy array (H, W) or (H, W, C), tinyconv's "
                        f"stand-in for a PIL Image) or an ndarray. Got {type(pic)}")
    if pic.ndim not in (2, 3):
        raise ValueError(f"{who}: pic should be 2 or 3 dimensional (H, W) or (H, W, C). Got {pic.ndim} dimensions")
    return pic


class ToTensor:
    """An image ``(H, W)`` / ``(H, W, C)`` → a Tensor ``(C, H, W)``; uint8 values scaled to [0, 1] float32."""

    def __call__(self, pic) -> Tensor:
        arr = _check_image(pic, "ToTensor")
        if arr.ndim == 2:
            arr = arr[:, :, None]
        chw = np.ascontiguousarray(arr.transpose(2, 0, 1))
        if chw.dtype == np.uint8:
            return tensor(chw.astype(np.float32) / np.float32(255))
        return tensor(chw)

    def __repr__(self) -> str:
        return "ToTensor()"


def _filter_weights(in_size: int, out_size: int, antialias: bool) -> np.ndarray:
    """(out_size, in_size) normalised bilinear (triangle) weights, computed as PIL's ``precompute_coeffs``: output
    pixel i is centred at input coordinate (i + 0.5)·scale; shrinking widens the triangle by the scale."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0) if antialias else 1.0
    support = 1.0 * filterscale  # the bilinear filter's support is 1
    weights = np.zeros((out_size, in_size))
    for i in range(out_size):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        x = np.arange(lo, hi, dtype=np.float64)
        w = np.maximum(0.0, 1.0 - np.abs((x - center + 0.5) * (1.0 / filterscale)))  # PIL's operation order
        total = w.sum()
        weights[i, lo:hi] = w / total if total != 0.0 else w
    return weights


def _fixed_point(weights: np.ndarray) -> np.ndarray:
    """PIL's ``normalize_coeffs_8bpc``: round each weight half away from zero to 22 fractional bits."""
    scaled = weights * (1 << _PRECISION_BITS)
    return np.trunc(np.where(scaled < 0, scaled - 0.5, scaled + 0.5)).astype(np.int64)


def _pass_8bit(image: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
    """One resampling pass over ``axis`` (1: horizontal, 0: vertical) of an (H, W) uint8 image, rounded as PIL."""
    k = _fixed_point(weights)
    acc = (image.astype(np.int64) @ k.T) if axis == 1 else (k @ image.astype(np.int64))
    acc += 1 << (_PRECISION_BITS - 1)
    return np.clip(acc >> _PRECISION_BITS, 0, 255).astype(np.uint8)


def _resize_uint8(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    def one_band(band):
        h, w = band.shape
        if out_w != w:
            band = _pass_8bit(band, _filter_weights(w, out_w, True), 1)
        if out_h != h:
            band = _pass_8bit(band, _filter_weights(h, out_h, True), 0)
        return band.copy() if band is image else band

    if image.ndim == 2:
        return one_band(image)
    return np.stack([one_band(image[:, :, c]) for c in range(image.shape[2])], axis=2)


def _resize_float(x: np.ndarray, out_h: int, out_w: int, antialias: bool) -> np.ndarray:
    h, w = x.shape[-2:]
    dt = x.dtype
    if out_w != w:
        x = x @ _filter_weights(w, out_w, antialias).T.astype(dt)
    if out_h != h:
        x = np.swapaxes(np.swapaxes(x, -1, -2) @ _filter_weights(h, out_h, antialias).T.astype(dt), -1, -2)
    return np.ascontiguousarray(x, dtype=dt)


def _output_size(h: int, w: int, size, max_size) -> tuple[int, int]:
    """torchvision's rule: an int (or a one-element sequence) is the new shorter side, keeping the aspect ratio
    (the longer side rounded down); a pair is (height, width)."""
    if isinstance(size, Sequence) and len(size) == 2:
        if max_size is not None:
            raise ValueError(f"max_size = {max_size} must be None when size is a pair (height, width); got "
                             f"size={list(size)}")
        return int(size[0]), int(size[1])
    short, long = (w, h) if w <= h else (h, w)
    new_short = int(size if isinstance(size, int) else size[0])
    new_long = int(new_short * long / short)
    if max_size is not None:
        if max_size <= new_short:
            raise ValueError(f"max_size = {max_size} must be strictly greater than the requested size for the "
                             f"smaller edge size = {size}")
        if new_long > max_size:
            new_short, new_long = int(max_size * new_short / new_long), max_size
    return (new_long, new_short) if w <= h else (new_short, new_long)


class Resize:
    """Resize an image (uint8 ``(H, W[, C])``) or a float Tensor ``(..., H, W)`` to ``size``, bilinearly.

    ``size``: an int (the shorter side's new length, keeping the aspect ratio) or ``(height, width)``.
    ``max_size``: with an int size, the longest the longer side may become. ``antialias``: for Tensors, widen
    the filter when shrinking (True, torchvision's default); images are always antialiased, as PIL's.
    """

    def __init__(self, size, interpolation=InterpolationMode.BILINEAR, max_size=None, antialias: bool = True):
        ok_int = isinstance(size, int) and not isinstance(size, bool) and size > 0
        ok_seq = isinstance(size, Sequence) and len(size) in (1, 2) and all(
            isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
        if not (ok_int or ok_seq):
            raise ValueError(f"Resize: size should be a positive int or a sequence of one or two positive ints "
                             f"(height, width). Got {size!r}")
        if InterpolationMode(getattr(interpolation, "value", interpolation)) is not InterpolationMode.BILINEAR:
            raise NotImplementedError(f"Resize: only bilinear interpolation is implemented, got {interpolation}")
        self.size = size if isinstance(size, int) else list(size)
        self.max_size, self.antialias = max_size, bool(antialias)
        self.interpolation = InterpolationMode.BILINEAR

    def __call__(self, img):
        if isinstance(img, Tensor):
            x = img.numpy()
            if x.ndim < 2 or x.dtype.kind != "f":
                raise TypeError(f"Resize: a Tensor should be floating point with at least 2 dimensions (..., H, W), "
                                f"got {x.dtype} of shape {x.shape}")
            out_h, out_w = _output_size(*x.shape[-2:], self.size, self.max_size)
            return tensor(_resize_float(x, out_h, out_w, self.antialias))
        arr = _check_image(img, "Resize")
        if arr.dtype != np.uint8:
            raise TypeError(f"Resize: an image should be uint8 (a float image is a Tensor: resize after ToTensor), "
                            f"got {arr.dtype}")
        out_h, out_w = _output_size(*arr.shape[:2], self.size, self.max_size)
        return _resize_uint8(arr, out_h, out_w)

    def __repr__(self) -> str:
        return (f"Resize(size={self.size}, interpolation={self.interpolation.value}, max_size={self.max_size}, "
                f"antialias={self.antialias})")


class Normalize:
    """``(x - mean[c]) / std[c]`` per channel of a float Tensor ``(..., C, H, W)``; ``inplace`` writes into x."""

    def __init__(self, mean, std, inplace: bool = False):
        self.mean, self.std, self.inplace = list(np.atleast_1d(mean)), list(np.atleast_1d(std)), bool(inplace)
        if any(s == 0 for s in self.std):
            raise ValueError(f"std evaluated to zero after conversion to float, leading to division by zero: "
                             f"std={self.std}")

    def __call__(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"Input tensor should be a tinyconv Tensor. Got {type(x)}.")
        arr = x.numpy()
        if arr.dtype.kind != "f":
            raise TypeError(f"Input tensor should be a float tensor. Got {arr.dtype}.")
        if arr.ndim < 3:
            raise ValueError(f"Expected tensor to be a tensor image of size (..., C, H, W). Got shape {arr.shape}.")
        c = arr.shape[-3]
        if len(self.mean) not in (1, c) or len(self.std) not in (1, c):
            raise ValueError(f"Normalize: {len(self.mean)} means and {len(self.std)} stds for a tensor with {c} "
                             f"channels (shape {arr.shape})")
        mean = np.asarray(self.mean, dtype=arr.dtype).reshape(-1, 1, 1)
        std = np.asarray(self.std, dtype=arr.dtype).reshape(-1, 1, 1)
        out = (arr - mean) / std
        if self.inplace:
            arr[...] = out
            return x
        return tensor(out)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"

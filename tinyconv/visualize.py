"""Pictures of a CNN (PNG files through matplotlib, an optional extra) and per-layer gradient norms.

* :func:`plot_first_conv` writes one PNG with the kernels of the first conv layer (top) and the feature maps that
  layer makes from one image (bottom); :func:`plot_filters` and :func:`plot_feature_maps` write each half alone.
* :func:`grad_norms` returns ``{parameter name: L2 norm of its .grad}`` after a backward pass: the numbers to log
  while training (``tinyconv train --log-grads``) to see whether gradients vanish in the first layers (the d2l
  sigmoid LeNet) or explode. :func:`plot_grad_norms` draws them as bars.

matplotlib is imported only when a picture is drawn, with the non-interactive Agg canvas (no display needed, no
global backend switched); without it those functions raise an ImportError that says how to install it::

    pip install "tinyconv[plot]"        # or: pip install matplotlib
"""
from __future__ import annotations

import math
import os

import numpy as np

from .autograd import no_grad
from .tensor import Tensor

__all__ = ["grad_norms", "first_conv", "plot_filters", "plot_feature_maps", "plot_first_conv", "plot_grad_norms"]


# ------------------------------------------------------------------------------------------ gradient norms
def grad_norms(model, norm_type: float = 2.0, by: str = "parameter") -> dict:
    """Norms of the gradients currently stored in ``model``'s parameters, as ``{name: float}`` in model order.

    ``by="parameter"`` (default) keys by parameter name (``conv1.weight``, ``conv1.bias`` ...);
    ``by="module"`` combines the parameters of each module (``conv1``: the norm of weight and bias together).
    Parameters whose ``.grad`` is None (not used, frozen, or before the first backward) are left out.
    ``norm_type`` is the p of the p-norm (``float('inf')`` for the largest absolute value).
    """
    if by not in ("parameter", "module"):
        raise ValueError(f"grad_norms: by must be 'parameter' or 'module', got {by!r}")
    p_norm = float(norm_type)
    if p_norm <= 0:
        raise ValueError(f"grad_norms: norm_type must be positive, got {norm_type}")
    groups: dict = {}
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        key = name if by == "parameter" else (name.rsplit(".", 1)[0] if "." in name else "")
        groups.setdefault(key, []).append(np.asarray(p.grad._data, dtype=np.float64).ravel())
    out = {}
    for key, arrays in groups.items():
        flat = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
        if math.isinf(p_norm):
            out[key] = float(np.max(np.abs(flat))) if flat.size else 0.0
        else:
            out[key] = float(np.sum(np.abs(flat) ** p_norm) ** (1.0 / p_norm))
    return out


# ------------------------------------------------------------------------------------------------ pictures
def _matplotlib():
    """(Figure, FigureCanvasAgg) from matplotlib, or an ImportError saying how to get it."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(
            "tinyconv.visualize needs matplotlib to draw pictures, and it is not installed: "
            "pip install 'tinyconv[plot]' (or: pip install matplotlib)"
        ) from e
    return Figure, FigureCanvasAgg


def _save(fig, canvas_cls, path) -> str:
    path = os.fspath(path)
    canvas_cls(fig)
    fig.savefig(path, format="png", dpi=fig.dpi)
    return path


def first_conv(model):
    """``(name, module)`` of the first module (in definition order) with a 4-D weight: the first conv layer."""
    for name, m in model.named_modules():
        w = getattr(m, "weight", None)
        if w is not None and getattr(w, "ndim", 0) == 4 and "Transpose" not in type(m).__name__:
            return name, m
    raise ValueError(f"{type(model).__name__} has no convolution layer (no module with a 4-D weight)")


def _grid(n: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def _image_array(image) -> np.ndarray:
    arr = np.asarray(getattr(image, "data", image), dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None, None]
    elif arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[0] != 1:
        raise ValueError(f"expected one image of shape (H, W), (C, H, W) or (1, C, H, W), got {tuple(arr.shape)}")
    return arr


def _draw_maps(fig, spec, maps, titles, cmap, symmetric):
    """Draw each 2-D array of ``maps`` in its own cell of the sub-grid ``spec``."""
    rows, cols = _grid(len(maps))
    inner = spec.subgridspec(rows, cols, wspace=0.15, hspace=0.35)
    for k, (m, title) in enumerate(zip(maps, titles)):
        ax = fig.add_subplot(inner[k // cols, k % cols])
        if symmetric:
            lim = float(np.max(np.abs(m))) or 1.0
            ax.imshow(m, cmap=cmap, vmin=-lim, vmax=lim, interpolation="nearest")
        else:
            ax.imshow(m, cmap=cmap, interpolation="nearest")
        ax.set_title(title, fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])


def _filters(module):
    w = np.asarray(module.weight._data, dtype=np.float32)  # (C_out, C_in/groups, kh, kw)
    maps, titles = [], []
    for o in range(w.shape[0]):
        for c in range(w.shape[1]):
            maps.append(w[o, c])
            titles.append(f"out {o}" if w.shape[1] == 1 else f"out {o} / in {c}")
    return maps, titles


def _feature_maps(model, module, image):
    captured = []
    handle = module.register_forward_hook(lambda m, args, out: captured.append(np.array(out._data, copy=True)))
    training = {id(m): m.training for m in model.modules()}
    try:
        model.eval()
        with no_grad():
            model(Tensor(_image_array(image)))
    finally:
        handle.remove()
        for m in model.modules():
            object.__setattr__(m, "training", training[id(m)])
    if not captured:
        raise RuntimeError("the conv layer was not called during the forward pass")
    fm = captured[0][0]  # (C_out, H_out, W_out) of the first (only) image
    return [fm[c] for c in range(fm.shape[0])], [f"channel {c}" for c in range(fm.shape[0])]


def plot_filters(model, path, layer=None, title: str | None = None) -> str:
    """Write a PNG of the kernels of ``layer`` (a module, or its name; default the first conv layer)."""
    Figure, Canvas = _matplotlib()
    name, module = _pick(model, layer)
    maps, titles = _filters(module)
    fig = Figure(figsize=(6, 6), dpi=100)
    spec = fig.add_gridspec(1, 1)[0]
    _draw_maps(fig, spec, maps, titles, "RdBu_r", True)
    fig.suptitle(title or f"{name or type(module).__name__}: weights {tuple(module.weight.shape)}")
    return _save(fig, Canvas, path)


def plot_feature_maps(model, image, path, layer=None, title: str | None = None) -> str:
    """Write a PNG of the output channels of ``layer`` (default: the first conv layer) for one ``image``."""
    Figure, Canvas = _matplotlib()
    name, module = _pick(model, layer)
    maps, titles = _feature_maps(model, module, image)
    fig = Figure(figsize=(6, 6), dpi=100)
    spec = fig.add_gridspec(1, 1)[0]
    _draw_maps(fig, spec, maps, titles, "viridis", False)
    fig.suptitle(title or f"{name or type(module).__name__}: feature maps of one image")
    return _save(fig, Canvas, path)


def plot_first_conv(model, image, path, layer=None) -> str:
    """Write one PNG: the input image, the first conv layer's kernels and its feature maps for that image.

    ``image`` is one image as (H, W), (C, H, W) or (1, C, H, W) (a Tensor or an array). Returns the path.
    """
    Figure, Canvas = _matplotlib()
    name, module = _pick(model, layer)
    img = _image_array(image)
    w_maps, w_titles = _filters(module)
    f_maps, f_titles = _feature_maps(model, module, image)
    fig = Figure(figsize=(10, 6), dpi=100)
    spec = fig.add_gridspec(1, 3, width_ratios=[1, 2, 2], wspace=0.25)
    ax = fig.add_subplot(spec[0])
    ax.imshow(img[0, 0] if img.shape[1] == 1 else np.moveaxis(img[0, :3], 0, -1), cmap="gray")
    ax.set_title("input", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    _draw_maps(fig, spec[1], w_maps, w_titles, "RdBu_r", True)
    _draw_maps(fig, spec[2], f_maps, f_titles, "viridis", False)
    label = name or type(module).__name__
    fig.suptitle(f"{label}: kernels {tuple(module.weight.shape)} (middle) and feature maps (right)")
    return _save(fig, Canvas, path)


def plot_grad_norms(norms, path, title: str = "gradient norm per parameter", log: bool = True) -> str:
    """Write a bar chart of ``norms`` (a dict from :func:`grad_norms`, or a list of them to overlay steps)."""
    Figure, Canvas = _matplotlib()
    series = [norms] if isinstance(norms, dict) else list(norms)
    if not series or not series[0]:
        raise ValueError("plot_grad_norms: no gradient norms to plot (did you call backward()?)")
    names = list(series[0])
    fig = Figure(figsize=(max(6, 0.5 * len(names)), 4), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(series)
    x = np.arange(len(names))
    for i, s in enumerate(series):
        ax.bar(x + i * width, [s.get(n, 0.0) for n in names], width=width, label=f"step {i}" if len(series) > 1
               else None)
    ax.set_xticks(x + 0.4 - width / 2)
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel("‖grad‖")
    ax.set_title(title)
    if len(series) > 1:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, Canvas, path)


def _pick(model, layer):
    if layer is None:
        return first_conv(model)
    if isinstance(layer, str):
        modules = dict(model.named_modules())
        if layer not in modules:
            raise KeyError(f"no module named {layer!r} in {type(model).__name__}; names: {sorted(modules)[:20]}")
        return layer, modules[layer]
    for name, m in model.named_modules():
        if m is layer:
            return name, m
    return "", layer

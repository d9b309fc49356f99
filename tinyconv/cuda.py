"""``tc.cuda``: there is no GPU in tinyconv, so code that checks for one (``torch.cuda.is_available()``,
d2l's ``try_gpu``) falls back to the CPU."""
from __future__ import annotations

__all__ = ["is_available", "device_count"]


def is_available() -> bool:
    """Always False: tinyconv computes on the CPU."""
    return False


def device_count() -> int:
    """Always 0."""
    return 0

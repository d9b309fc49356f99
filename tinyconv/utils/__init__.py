"""``tinyconv.utils``: PyTorch's ``torch.utils`` paths (``from torch.utils import data``)."""
from . import data

__all__ = ["data"]

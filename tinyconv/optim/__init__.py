"""Optimizers and learning-rate schedules (``tc.optim``), named like ``torch.optim``.

    opt = tc.optim.Adam(model.parameters(), lr=1e-3)
    sched = tc.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
"""
from . import lr_scheduler
from .optimizer import SGD, Adam, AdamW, Optimizer

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler"]

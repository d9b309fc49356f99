"""Learning-rate schedules (``tc.optim.lr_scheduler``), named and stepped like ``torch.optim.lr_scheduler``.

A scheduler sets ``group['lr']`` of its optimizer's parameter groups. Construction already applies step 0 (so the
optimizer's lr is the schedule's first value); each ``scheduler.step()`` after ``optimizer.step()`` advances it::

    sched = StepLR(opt, step_size=3, gamma=0.1)
    for epoch in range(epochs):
        train_one_epoch(...)     # calls opt.step() per batch
        sched.step()

Values come from closed forms of the schedule at ``last_epoch`` (PyTorch's chainable forms give the same numbers
up to float rounding). ``state_dict()`` holds plain numbers and lists only, for ``tc.save``.
"""
from __future__ import annotations

import math

from .optimizer import Optimizer

__all__ = ["LRScheduler", "LambdaLR", "StepLR", "MultiStepLR", "ConstantLR", "CosineAnnealingLR", "OneCycleLR"]


class LRScheduler:
    """Base class: subclasses define ``get_lr()`` (the lrs for ``self.last_epoch``, one per parameter group).

    Args:
        optimizer: the optimizer whose groups' ``lr`` this schedule sets. On first use each group gets
            ``initial_lr`` (its lr at that moment), which the schedule is computed from (``base_lrs``).
        last_epoch: index of the last step taken; -1 starts a fresh schedule. To rebuild a schedule in the
            middle, prefer ``load_state_dict``.
    """

    _state_keys = ("base_lrs", "last_epoch", "_last_lr")

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not an Optimizer")
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"param 'initial_lr' is not specified in param_groups[{i}] when resuming an "
                                   "optimizer")
        self.base_lrs = [float(group["initial_lr"]) for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._last_lr: list[float] = []
        self.step()  # step 0: the optimizer starts at the schedule's first value

    def get_lr(self) -> list[float]:
        raise NotImplementedError(f"{type(self).__name__} must define get_lr()")

    def get_last_lr(self) -> list[float]:
        """The learning rate of each group as set by the latest ``step()``."""
        return list(self._last_lr)

    def step(self) -> None:
        """Advance the schedule by one step and write the new lrs into the optimizer."""
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = float(lr)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        """Everything but the optimizer: plain numbers and lists."""
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self.__dict__.items()
                if k != "optimizer" and not callable(v)}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a ``state_dict()`` (the optimizer's own state, lrs included, is restored separately)."""
        unknown = sorted(set(state_dict) - set(self.state_dict()))
        if unknown:
            raise ValueError(f"{type(self).__name__}.load_state_dict: unexpected key(s) {unknown}; expected "
                             f"{sorted(self.state_dict())}")
        for k, v in state_dict.items():
            setattr(self, k, list(v) if isinstance(v, (list, tuple)) else v)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, last_lr={self._last_lr})"


class LambdaLR(LRScheduler):
    """lr = base_lr · lr_lambda(step). ``lr_lambda`` is a function (not saved in ``state_dict``)."""

    def __init__(self, optimizer: Optimizer, lr_lambda, last_epoch: int = -1):
        n = len(optimizer.param_groups)
        self.lr_lambdas = list(lr_lambda) if isinstance(lr_lambda, (list, tuple)) else [lr_lambda] * n
        if len(self.lr_lambdas) != n:
            raise ValueError(f"Expected {n} lr_lambdas, but got {len(self.lr_lambdas)}")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [base * f(self.last_epoch) for base, f in zip(self.base_lrs, self.lr_lambdas)]

    def state_dict(self) -> dict:
        state = super().state_dict()
        state.pop("lr_lambdas", None)
        return state


class StepLR(LRScheduler):
    """lr = base_lr · gamma ^ ⌊step / step_size⌋: divide by 1/gamma every ``step_size`` steps."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        if isinstance(step_size, bool) or not isinstance(step_size, int) or step_size <= 0:
            raise ValueError(f"step_size must be a positive integer, got {step_size!r}")
        self.step_size, self.gamma = step_size, float(gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]


class MultiStepLR(LRScheduler):
    """lr = base_lr · gamma ^ (number of milestones ≤ step)."""

    def __init__(self, optimizer: Optimizer, milestones, gamma: float = 0.1, last_epoch: int = -1):
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = float(gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        passed = sum(1 for m in self.milestones if m <= self.last_epoch)
        return [base * self.gamma**passed for base in self.base_lrs]


class ConstantLR(LRScheduler):
    """lr = base_lr · factor for the first ``total_iters`` steps, then base_lr."""

    def __init__(self, optimizer: Optimizer, factor: float = 1.0 / 3, total_iters: int = 5, last_epoch: int = -1):
        if not 0 < factor <= 1:
            raise ValueError(f"Constant multiplicative factor expected to be between 0 and 1, got {factor}")
        self.factor, self.total_iters = float(factor), int(total_iters)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        f = self.factor if self.last_epoch < self.total_iters else 1.0
        return [base * f for base in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base_lr − eta_min) · (1 + cos(π · step / T_max)) / 2 (SGDR without restarts).

    Reaches ``eta_min`` at step ``T_max``; beyond it the cosine continues (rises again), as in PyTorch.
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):
        if isinstance(T_max, bool) or not isinstance(T_max, int) or T_max <= 0:
            raise ValueError(f"T_max must be a positive integer, got {T_max!r}")
        self.T_max, self.eta_min = T_max, float(eta_min)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        c = (1.0 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2.0
        return [self.eta_min + (base - self.eta_min) * c for base in self.base_lrs]


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topin, 2018), stepped once per batch, with PyTorch's parameters.

    The lr rises from ``max_lr / div_factor`` to ``max_lr`` over the first ``pct_start`` of ``total_steps``, then
    anneals to ``max_lr / div_factor / final_div_factor``. With ``cycle_momentum`` the momentum (SGD) or β1 (Adam)
    moves the opposite way, between ``max_momentum`` and ``base_momentum``. Give ``total_steps``, or ``epochs``
    and ``steps_per_epoch``. Stepping past ``total_steps`` is an error.
    """

    def __init__(self, optimizer: Optimizer, max_lr, total_steps: int | None = None, epochs: int | None = None,
                 steps_per_epoch: int | None = None, pct_start: float = 0.3, anneal_strategy: str = "cos",
                 cycle_momentum: bool = True, base_momentum: float = 0.85, max_momentum: float = 0.95,
                 div_factor: float = 25.0, final_div_factor: float = 1e4, last_epoch: int = -1):
        if total_steps is None:
            if epochs is None or steps_per_epoch is None:
                raise ValueError("You must define either total_steps OR (epochs AND steps_per_epoch)")
            if epochs <= 0 or steps_per_epoch <= 0:
                raise ValueError(f"epochs and steps_per_epoch must be positive, got {epochs} and {steps_per_epoch}")
            total_steps = int(epochs) * int(steps_per_epoch)
        if total_steps <= 0:
            raise ValueError(f"Expected positive integer total_steps, but got {total_steps}")
        if not 0 <= pct_start <= 1:
            raise ValueError(f"Expected float between 0 and 1 pct_start, but got {pct_start}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy must be one of 'cos' or 'linear', instead got {anneal_strategy!r}")
        self.total_steps = int(total_steps)
        self.anneal_strategy = anneal_strategy
        self.phase_ends = [float(pct_start * total_steps) - 1, float(total_steps - 1)]
        n = len(optimizer.param_groups)
        max_lrs = list(max_lr) if isinstance(max_lr, (list, tuple)) else [max_lr] * n
        if len(max_lrs) != n:
            raise ValueError(f"expected {n} values for max_lr, got {len(max_lrs)}")
        if last_epoch == -1:
            for group, m in zip(optimizer.param_groups, max_lrs):
                group["initial_lr"] = float(m) / div_factor
                group["max_lr"] = float(m)
                group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = bool(cycle_momentum)
        if self.cycle_momentum:
            defaults = optimizer.defaults
            if "momentum" not in defaults and "betas" not in defaults:
                raise ValueError("optimizer must support momentum or beta1 with `cycle_momentum` option enabled")
            self.use_beta1 = "betas" in defaults
            if last_epoch == -1:
                for group in optimizer.param_groups:
                    group["max_momentum"], group["base_momentum"] = float(max_momentum), float(base_momentum)
                    self._set_momentum(group, float(max_momentum))
        super().__init__(optimizer, last_epoch)

    def _set_momentum(self, group: dict, value: float) -> None:
        if self.use_beta1:
            group["betas"] = (value, *tuple(group["betas"])[1:])
        else:
            group["momentum"] = value

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self):
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(f"Tried to step {step} times. The specified number of total steps is "
                             f"{self.total_steps}")
        lrs = []
        for group in self.optimizer.param_groups:
            start = 0.0
            for i, end in enumerate(self.phase_ends):
                if step <= end or i == len(self.phase_ends) - 1:
                    pct = (step - start) / (end - start) if end > start else 1.0
                    if i == 0:
                        lr = self._anneal(group["initial_lr"], group["max_lr"], pct)
                        mom = (group.get("max_momentum"), group.get("base_momentum"))
                    else:
                        lr = self._anneal(group["max_lr"], group["min_lr"], pct)
                        mom = (group.get("base_momentum"), group.get("max_momentum"))
                    break
                start = end
            if self.cycle_momentum:
                self._set_momentum(group, self._anneal(mom[0], mom[1], pct))
            lrs.append(lr)
        return lrs

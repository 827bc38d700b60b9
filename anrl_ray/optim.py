"""Optimizer and epoch LR schedules, the same as timm's factories build them, without importing timm.

``timm.optim.create_optimizer_v2`` and ``timm.scheduler.create_scheduler_v2`` (the reference wires
timm's step scheduler) import all of timm's models: about two seconds of CPU in every Ray Train
worker of every trial. For the names a trial config allows, what they build is small:

- the optimizer is a plain ``torch.optim`` class (``adam`` -> Adam, ``adamw`` -> AdamW, ``sgd`` ->
  SGD with Nesterov momentum) over timm's two parameter groups: no weight decay for biases and
  1-d parameters (norm affines) or names the model lists in ``no_weight_decay()``, the configured
  decay for the rest (one group without decay when the decay is 0);
- the schedules are timm's ``StepLRScheduler`` / ``CosineLRScheduler`` stepped once per epoch,
  with linear warm-up from ``warmup_lr`` inside the schedule (``warmup_prefix=False``), no noise,
  one cosine cycle down to 0.

``tests/test_optim.py`` checks both against timm itself (groups, hyper-parameters, every epoch's
learning rate) for every optimizer x schedule x warm-up x weight decay; a scheduler's
``state_dict`` loads into timm's and back.
"""

from __future__ import annotations

import fnmatch
import math
from typing import Any

import torch

OPTIMIZERS = {
    "adam": (torch.optim.Adam, {}),
    "adamw": (torch.optim.AdamW, {}),
    "sgd": (torch.optim.SGD, {"nesterov": True}),  # timm's "sgd" is Nesterov SGD ("momentum" is the classical one)
}
WITH_MOMENTUM = {"sgd"}


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """timm's ``param_groups_weight_decay`` (1-d parameters and biases excluded from the decay)."""
    patterns = getattr(model, "no_weight_decay", lambda: set())()
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        excluded = param.ndim <= 1 or name.endswith(".bias") or any(fnmatch.fnmatch(name, p) for p in patterns)
        (no_decay if not weight_decay or excluded else decay).append(param)
    groups = []
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    return groups


def create_optimizer(model: torch.nn.Module, name: str, *, lr: float, weight_decay: float, momentum: float) -> torch.optim.Optimizer:
    """``timm.optim.create_optimizer_v2(model, opt=name, lr=lr, weight_decay=weight_decay, momentum=momentum)``."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer {name!r}: expected one of {sorted(OPTIMIZERS)}")
    cls, defaults = OPTIMIZERS[name]
    kwargs: dict[str, Any] = {"weight_decay": 0.0, "lr": lr, **defaults}  # the decay lives in the groups
    if name in WITH_MOMENTUM:
        kwargs["momentum"] = momentum
    return cls(param_groups(model, weight_decay), **kwargs)


class EpochLRSchedule:
    """A learning rate per epoch, written into the optimizer's groups by :meth:`step` (timm's epoch
    schedulers; ``step(epoch)`` after an epoch sets the rate of ``epoch``)."""

    def __init__(self, optimizer: torch.optim.Optimizer, *, warmup_epochs: int, warmup_lr: float) -> None:
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_values = [group["initial_lr"] for group in optimizer.param_groups]
        self.warmup_t = warmup_epochs
        self.warmup_lr_init = warmup_lr
        self.warmup_steps = [(v - warmup_lr) / warmup_epochs for v in self.base_values] if warmup_epochs else [1] * len(self.base_values)
        self._set(self.base_values)
        if warmup_epochs:
            self._set([warmup_lr] * len(self.base_values))

    def lrs(self, t: int) -> list[float]:
        if t < self.warmup_t:
            return [self.warmup_lr_init + t * s for s in self.warmup_steps]
        return self._decayed(t)

    def _decayed(self, t: int) -> list[float]:
        raise NotImplementedError

    def step(self, epoch: int) -> None:
        self._set(self.lrs(epoch))

    def _set(self, values: list[float]) -> None:
        for group, value in zip(self.optimizer.param_groups, values):
            group["lr"] = value * group["lr_scale"] if "lr_scale" in group else value

    def state_dict(self) -> dict[str, Any]:
        """Every attribute but the optimizer (as timm's, whose state loads here and vice versa)."""
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.__dict__.update({k: v for k, v in state.items() if k in self.__dict__})


class StepLR(EpochLRSchedule):
    """timm's ``StepLRScheduler``: ``lr * decay_rate ** (epoch // decay_epochs)``."""

    def __init__(self, optimizer, *, decay_epochs: int, decay_rate: float, warmup_epochs: int = 0, warmup_lr: float = 0.0) -> None:
        self.decay_t, self.decay_rate = decay_epochs, decay_rate
        super().__init__(optimizer, warmup_epochs=warmup_epochs, warmup_lr=warmup_lr)

    def _decayed(self, t: int) -> list[float]:
        return [v * (self.decay_rate ** (t // self.decay_t)) for v in self.base_values]


class CosineLR(EpochLRSchedule):
    """timm's ``CosineLRScheduler`` with one cycle of ``epochs`` down to 0 (then 0)."""

    def __init__(self, optimizer, *, epochs: int, warmup_epochs: int = 0, warmup_lr: float = 0.0) -> None:
        if epochs < 1:
            raise ValueError(f"a cosine schedule needs epochs >= 1, got {epochs}")
        self.t_initial = epochs
        super().__init__(optimizer, warmup_epochs=warmup_epochs, warmup_lr=warmup_lr)

    def _decayed(self, t: int) -> list[float]:
        if t >= self.t_initial:
            return [0.0 for _ in self.base_values]
        return [0.5 * v * (1 + math.cos(math.pi * t / self.t_initial)) for v in self.base_values]


def create_scheduler(optimizer: torch.optim.Optimizer, name: str, *, epochs: int, decay_epochs: int, decay_rate: float,
                     warmup_epochs: int, warmup_lr: float) -> EpochLRSchedule | None:
    """``timm.scheduler.create_scheduler_v2(optimizer, sched=name, num_epochs=epochs, ...)[0]``; None for "none"."""
    warmup = {"warmup_epochs": warmup_epochs, "warmup_lr": warmup_lr}
    if name == "step":
        return StepLR(optimizer, decay_epochs=decay_epochs, decay_rate=decay_rate, **warmup)
    if name == "cosine":
        return CosineLR(optimizer, epochs=epochs, **warmup)
    if name == "none":
        return None
    raise ValueError(f"scheduler {name!r}: expected one of 'step', 'cosine', 'none'")

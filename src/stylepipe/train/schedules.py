"""Learning-rate schedules selectable in params (`lr_schedule`), all stepped once per training step.

Every one is a torch.optim.lr_scheduler class (the official AdaIN inverse decay is a LambdaLR), so its
state goes into the checkpoint and a resumed run continues the same curve.
"""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim import lr_scheduler as sched

from stylepipe.core.config import TrainBase


def inverse_decay(decay: float):
    """The official AdaIN schedule: lr / (1 + decay * step)."""
    return lambda step: 1.0 / (1.0 + decay * step)


def build_scheduler(optimiser: Optimizer, cfg: TrainBase) -> sched.LRScheduler:
    """The scheduler named by cfg.lr_schedule, configured from the cfg.lr_* knobs."""
    name, total = cfg.lr_schedule, cfg.iterations
    if name == "constant":
        return sched.LambdaLR(optimiser, lambda step: 1.0)
    if name == "inverse":
        return sched.LambdaLR(optimiser, inverse_decay(cfg.lr_decay))
    if name == "step":
        return sched.StepLR(optimiser, step_size=cfg.lr_step_size, gamma=cfg.lr_gamma)
    if name == "cosine":
        return sched.CosineAnnealingLR(optimiser, T_max=total, eta_min=cfg.lr_min)
    if name == "exponential":
        return sched.ExponentialLR(optimiser, gamma=cfg.lr_gamma)
    if name == "polynomial":
        return sched.PolynomialLR(optimiser, total_iters=total, power=cfg.lr_power)
    if name == "sgdr":
        return sched.CosineAnnealingWarmRestarts(optimiser, T_0=cfg.lr_restart_every, T_mult=2, eta_min=cfg.lr_min)
    if name == "onecycle":
        return sched.OneCycleLR(optimiser, max_lr=cfg.lr, total_steps=total, pct_start=cfg.lr_warmup_fraction)
    raise ValueError(f"lr_schedule {name!r} is not one of the known schedules")

"""Learning-rate schedules, stepped once per training batch. The peak lr is the optimizer's lr."""

from torch.optim import Optimizer
from torch.optim.lr_scheduler import (ConstantLR, CosineAnnealingLR, LinearLR, LRScheduler,
                                      OneCycleLR, SequentialLR)


def peak_lrs(optimizer: Optimizer) -> list[float]:
    return [group["lr"] for group in optimizer.param_groups]


def one_cycle(optimizer: Optimizer, total_steps: int, pct_start: float = 0.25, div_factor: float = 25.0,
              final_div_factor: float = 1e4) -> LRScheduler:
    """Warm up from peak/div_factor to the peak, then anneal (cosine) to a tiny lr.

    Very short runs (debug, tests) keep at least one step in each phase; under 4 steps the lr is constant.
    """
    if total_steps < 4:
        return constant(optimizer, total_steps)
    pct_start = min(max(pct_start, 1.5 / total_steps), 1 - 1.5 / total_steps)
    return OneCycleLR(optimizer, max_lr=peak_lrs(optimizer), total_steps=total_steps, pct_start=pct_start,
                      div_factor=div_factor, final_div_factor=final_div_factor)


def cosine(optimizer: Optimizer, total_steps: int, warmup_pct: float = 0.05,
           min_lr_ratio: float = 0.0) -> LRScheduler:
    """Linear warmup over `warmup_pct` of the steps, then cosine decay to peak * min_lr_ratio."""
    warmup = max(1, round(total_steps * warmup_pct))
    decay = max(1, total_steps - warmup)
    min_lr = min(peak_lrs(optimizer)) * min_lr_ratio
    return SequentialLR(optimizer, [LinearLR(optimizer, start_factor=1e-3, total_iters=warmup),
                                    CosineAnnealingLR(optimizer, T_max=decay, eta_min=min_lr)],
                        milestones=[warmup])


def flat_cos(optimizer: Optimizer, total_steps: int, pct_start: float = 0.72) -> LRScheduler:
    """The peak lr for `pct_start` of the steps, then cosine annealing to 0 (fastai's fit_flat_cos,
    the Imagenette leaderboard's schedule)."""
    flat = min(max(1, round(total_steps * pct_start)), max(1, total_steps - 1))
    return SequentialLR(optimizer, [ConstantLR(optimizer, factor=1.0, total_iters=flat),
                                    CosineAnnealingLR(optimizer, T_max=max(1, total_steps - flat), eta_min=0.0)],
                        milestones=[flat])


def constant(optimizer: Optimizer, total_steps: int) -> LRScheduler:
    """The optimizer's lr throughout."""
    return ConstantLR(optimizer, factor=1.0, total_iters=total_steps)

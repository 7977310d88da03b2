"""Optimizers beyond torch's own classes, as builders of the optimizer group: RAdam inside
Lookahead (fastai's "ranger", timm's `lookahead_radam`), the Imagenette leaderboard's optimizer."""

from collections.abc import Iterable, Sequence

import torch
from timm.optim import Lookahead


def lookahead_radam(params: Iterable, lr: float = 4e-3, weight_decay: float = 1e-2,
                    betas: Sequence[float] = (0.95, 0.99), eps: float = 1e-6, alpha: float = 0.5,
                    k: int = 6) -> torch.optim.Optimizer:
    """torch's RAdam (decoupled weight decay, as AdamW's) wrapped in timm's Lookahead: every k steps
    the slow weights move alpha of the way to the fast ones, and the fast ones restart there. The
    slow weights live in the optimizer's state, so a resumed run continues them."""
    base = torch.optim.RAdam(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                             decoupled_weight_decay=True)
    return Lookahead(base, alpha=alpha, k=k)

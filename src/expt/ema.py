"""An exponential moving average of a model's weights: timm's ModelEmaV3 (parameters and float
buffers, so BatchNorm's running statistics follow the average too), with the count of updates
that its warm-up reads and a resumed run continues."""

import torch
from timm.utils import ModelEmaV3
from torch import nn


class WeightAverage:
    """ema_k = d ema_{k-1} + (1 - d) w_k after each optimizer step k, from ema_0 = the weights at
    the start. `warmup`: timm's decay d_k = min(decay, 1 - k^(-2/3)) (the first update copies the
    weights, and the average forgets the random start quickly); else d_k = decay."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True):
        self.average = ModelEmaV3(model, decay=decay, use_warmup=warmup)
        self.warmup, self.steps = warmup, 0

    @property
    def module(self) -> nn.Module:
        """The averaged model (eval mode): what validates and what the checkpoints hold."""
        return self.average.module

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.steps += 1
        self.average.update(model, step=self.steps if self.warmup else None)

    def state_dict(self) -> dict:
        return {"weights": self.module.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["weights"])
        self.steps = int(state["steps"])

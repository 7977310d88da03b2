"""Small callbacks that change what a training step does."""

from collections.abc import Callable

import torch

from ..learner import Callback


class ScheduleCB(Callback):
    """Steps a learning-rate schedule after every optimizer step."""

    def __init__(self, scheduler: torch.optim.lr_scheduler.LRScheduler):
        self.scheduler = scheduler

    def after_step(self, learn) -> None:
        self.scheduler.step()


class AugmentCB(Callback):
    """Applies a batch transform on the device to training batches only."""

    order = -10  # before anything looks at the batch

    def __init__(self, transform: Callable[[torch.Tensor], torch.Tensor]):
        self.transform = transform

    def before_batch(self, learn) -> None:
        if learn.training:
            learn.xb = self.transform(learn.xb)

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


class FreezeCB(Callback):
    """Fine-tuning: the `frozen` parameters get no gradients for the first `epochs` epochs."""

    def __init__(self, frozen: list[torch.nn.Parameter], epochs: int):
        self.frozen, self.epochs = frozen, epochs

    def before_epoch(self, learn) -> None:
        trainable = learn.epoch >= self.epochs
        for p in self.frozen:
            p.requires_grad_(trainable)

    def after_fit(self, learn) -> None:
        for p in self.frozen:
            p.requires_grad_(True)

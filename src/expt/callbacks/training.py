"""Small callbacks that change what a training step does."""

import warnings
from collections.abc import Callable

import torch

from ..learner import Callback


class ScheduleCB(Callback):
    """Steps a learning-rate schedule after every optimizer step."""

    def __init__(self, scheduler: torch.optim.lr_scheduler.LRScheduler):
        self.scheduler = scheduler
        self.first = True

    def after_step(self, learn) -> None:
        if not self.first:
            self.scheduler.step()
            return
        self.first = False
        with warnings.catch_warnings():  # torch warns when a schedule's first step precedes its optimizer's: a
            # GAN's critic turn, or an fp16 step skipped for overflow; the schedule moves every batch regardless
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
            self.scheduler.step()


class AugmentCB(Callback):
    """Applies a batch transform on the device to training batches only. `paired`: the targets are
    images of the same size, moved by the same crop and flip (input and target channels are
    transformed as one image, then split)."""

    order = -10  # before anything looks at the batch (the anchor the others' orders are written from)

    def __init__(self, transform: Callable[[torch.Tensor], torch.Tensor], paired: bool = False):
        self.transform, self.paired = transform, paired

    def before_batch(self, learn) -> None:
        if learn.training:
            learn.xb, learn.yb = augmented(self.transform, learn.xb, learn.yb, self.paired)


def augmented(transform: Callable[[torch.Tensor], torch.Tensor], xb: torch.Tensor, yb: torch.Tensor,
              paired: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A training batch after augmentation: the inputs, or (paired) inputs and target images as one."""
    if not paired:
        return transform(xb), yb
    both = transform(torch.cat([xb, yb], 1))
    return tuple(both.split([xb.shape[1], yb.shape[1]], 1))


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

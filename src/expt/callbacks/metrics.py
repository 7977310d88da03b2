"""Loss and accuracy per epoch, accumulated on the device (one host sync per epoch)."""

import math
import time

import torch

from ..learner import Callback, CancelFitException


class MetricsCB(Callback):
    """Builds `learn.row` (epoch, train/loss, val/loss, val/acc, lr, seconds) after each epoch
    and appends it to `self.history`. Stops the fit when the training loss is NaN or infinite,
    before later callbacks (checkpointing) see the epoch."""

    order = -5
    check_every = 50  # batches between NaN checks during training (each check syncs the host)

    def __init__(self, history: list[dict] | None = None):
        self.history = list(history or [])

    def before_fit(self, learn) -> None:
        learn.stop_reason = None

    def before_epoch(self, learn) -> None:
        self.start = time.perf_counter()

    def before_train(self, learn) -> None:
        self.loss_sum = self.correct = None
        self.count = 0

    before_validate = before_train

    def after_loss(self, learn) -> None:
        n = len(learn.yb)
        loss = learn.loss.detach().float() * n
        if self.loss_sum is None:
            self.loss_sum = torch.zeros_like(loss)
            self.correct = torch.zeros((), device=loss.device, dtype=torch.long)
        self.loss_sum += loss
        if not learn.training:
            self.correct += (learn.preds.argmax(dim=1) == learn.yb).sum()
        self.count += n
        if learn.training and learn.iter % self.check_every == self.check_every - 1:
            self._check_finite(learn)

    def _check_finite(self, learn) -> None:
        value = self.loss_sum.item()
        if not math.isfinite(value):
            learn.stop_reason = f"training loss became {value} in epoch {learn.epoch + 1}"
            raise CancelFitException()

    def after_train(self, learn) -> None:
        if learn.stop_reason is None:
            self._check_finite(learn)
        self.train_loss = self.loss_sum.item() / max(self.count, 1)

    def after_validate(self, learn) -> None:
        self.val_loss = self.loss_sum.item() / max(self.count, 1)
        self.val_acc = self.correct.item() / max(self.count, 1)

    def after_epoch(self, learn) -> None:
        learn.row = {"epoch": learn.epoch + 1, "train/loss": self.train_loss, "val/loss": self.val_loss,
                     "val/acc": self.val_acc, "lr": learn.opt.param_groups[0]["lr"],
                     "seconds": time.perf_counter() - self.start}
        self.history.append(learn.row)

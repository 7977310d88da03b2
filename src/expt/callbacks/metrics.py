"""Loss and accuracy per epoch, accumulated on the device (one host sync per epoch)."""

import math
import time

import torch

from ..distributed import all_reduce_sums
from ..learner import Callback, CancelFitException


class MetricsCB(Callback):
    """Builds `learn.row` after each epoch and appends it to `self.history`: epoch, train/loss,
    val/loss, the task's metric columns (classification: val/acc and val/error_rate of the
    headline target, and each head's losses and accuracy), lr, seconds. Stops the fit when the
    training loss is NaN or infinite, before later callbacks (checkpointing) see the epoch.
    Under torchrun every rank's sums are added up first, so the means are the whole data's and
    every rank stops together."""

    order = -5
    check_every = 50  # batches between NaN checks during training (each check syncs the host)

    def __init__(self, task, history: list[dict] | None = None):
        self.task = task
        self.history = list(history or [])

    def before_fit(self, learn) -> None:
        learn.stop_reason = None

    def before_epoch(self, learn) -> None:
        self.start = time.perf_counter()

    def before_train(self, learn) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    before_validate = before_train

    def _add(self, name: str, value: torch.Tensor) -> None:
        if name in self.sums:
            self.sums[name] += value
        else:
            self.sums[name] = value.clone()

    def after_loss(self, learn) -> None:
        n = len(learn.yb)
        self._add("loss", learn.loss.detach().float() * n)
        for name, value in self.task.batch_sums(learn.preds, learn.yb, learn.loss_func, learn.training).items():
            self._add(name, value)
        self.count += n
        if learn.training and learn.iter % self.check_every == self.check_every - 1:
            self._check_finite(learn)

    def _check_finite(self, learn) -> None:
        if "loss" not in self.sums:  # no batch has had a loss yet (a GAN epoch of critic steps so far)
            return
        value = all_reduce_sums({"loss": self.sums["loss"]}, 0)[0]["loss"].item()
        if not math.isfinite(value):
            learn.stop_reason = f"training loss became {value} in epoch {learn.epoch + 1}"
            raise CancelFitException()

    def _means(self) -> dict[str, float]:
        sums, count = all_reduce_sums(self.sums, self.count)
        return {name: total.item() / max(count, 1) for name, total in sums.items()}

    def after_train(self, learn) -> None:
        if learn.stop_reason is None:
            self._check_finite(learn)
        self.train = self._means()

    def after_validate(self, learn) -> None:
        self.valid = self._means()

    def after_epoch(self, learn) -> None:
        nan = float("nan")  # a GAN epoch whose steps all trained the critic has no generator loss
        row = {"epoch": learn.epoch + 1, "train/loss": self.train.get("loss", nan), "val/loss": self.valid["loss"],
               **self.task.epoch_metrics(self.train, self.valid)}
        learn.row = row | {"lr": learn.opt.param_groups[-1]["lr"], "seconds": time.perf_counter() - self.start}
        self.history.append(learn.row)

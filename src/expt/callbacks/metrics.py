"""Loss and metrics per epoch, accumulated on the device (one host sync per epoch)."""

import math
import time

import torch

from ..distributed import all_reduce_sums, world
from ..learner import Callback
from .training import AugmentCB


class MetricsCB(Callback):
    """Builds each epoch's `learn.row` and appends it to `learn.history`: epoch, train/loss, val/loss,
    the task's metric columns (classification: val/acc and val/error_rate of the headline target,
    and each head's losses and accuracy), lr, seconds, then `train/<part>` for each of the training
    step's own loss parts (`step_parts`: a GAN's critic loss, ...), the mean over the steps that had
    it. Stops the fit when the training loss is NaN or infinite, before later callbacks
    (checkpointing) see the epoch. Under torchrun every rank's sums are added up first, so the
    means are the whole data's and every rank stops together."""

    order = AugmentCB.order + 5  # before the callbacks that extend, print and save its row
    check_every = 50  # batches between NaN checks during training (each check syncs the host)

    def __init__(self, task, step_parts: tuple[str, ...] = ()):
        self.task, self.step_parts = task, step_parts

    def before_epoch(self, learn) -> None:
        self.start = time.perf_counter()

    def before_train(self, learn) -> None:
        self.sums: dict[str, torch.Tensor] = {}  # weighted by images: the loss and the task's batch sums
        self.count = 0
        self.step_sums: dict[str, torch.Tensor] = {}  # one value a step: the step's own parts
        self.steps: dict[str, int] = {}

    before_validate = before_train

    @staticmethod
    def _add(sums: dict[str, torch.Tensor], name: str, value: torch.Tensor) -> None:
        if name in sums:
            sums[name] += value
        else:
            sums[name] = value.clone()

    def after_loss(self, learn) -> None:
        for name, value in learn.loss_parts.items():
            if name == "loss":
                self._add_loss(learn, value)
            else:
                self._add(self.step_sums, name, value.detach().float())
                self.steps[name] = self.steps.get(name, 0) + 1
        if learn.training and learn.iter % self.check_every == self.check_every - 1:
            self._check_finite(learn)

    def _add_loss(self, learn, loss: torch.Tensor) -> None:
        n = len(learn.yb)
        self._add(self.sums, "loss", loss.detach().float() * n)
        for name, value in self.task.batch_sums(learn.preds, learn.yb, learn.loss_func, learn.training).items():
            self._add(self.sums, name, value)
        self.count += n

    def _check_finite(self, learn) -> None:
        if "loss" not in self.sums:  # no batch has had a loss yet (a GAN epoch of critic steps so far)
            return
        value = all_reduce_sums({"loss": self.sums["loss"]}, 0)[0]["loss"].item()
        if not math.isfinite(value):
            learn.stop(f"training loss became {value} in epoch {learn.epoch + 1}")

    def _means(self) -> dict[str, float]:
        sums, count = all_reduce_sums(self.sums, self.count)
        return {name: total.item() / max(count, 1) for name, total in sums.items()}

    def _step_means(self) -> dict[str, float]:
        sums, _ = all_reduce_sums(self.step_sums, 0)
        return {f"train/{name}": sums[name].item() / (self.steps[name] * world()) if name in sums else math.nan
                for name in self.step_parts}

    def after_train(self, learn) -> None:
        if learn.stop_reason is None:
            self._check_finite(learn)
        self.train, self.train_steps = self._means(), self._step_means()

    def after_validate(self, learn) -> None:
        self.valid = self._means()

    def after_epoch(self, learn) -> None:
        nan = float("nan")  # a GAN epoch whose steps all trained the critic has no generator loss
        row = {"epoch": learn.epoch + 1, "train/loss": self.train.get("loss", nan), "val/loss": self.valid["loss"],
               **self.task.epoch_metrics(self.train, self.valid)}
        learn.row = row | {"lr": learn.opt.param_groups[-1]["lr"], "seconds": time.perf_counter() - self.start,
                           **self.train_steps}
        learn.history.append(learn.row)

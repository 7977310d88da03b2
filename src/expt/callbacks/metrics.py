"""Loss and accuracy per epoch, accumulated on the device (one host sync per epoch)."""

import math
import time

import torch

from ..learner import Callback, CancelFitException


class MetricsCB(Callback):
    """Builds `learn.row` after each epoch and appends it to `self.history`: epoch, train/loss,
    val/loss, val/acc (of the headline target), val/error_rate, lr, seconds; with several target
    heads also each head's train and val loss and val accuracy. Stops the fit when the training
    loss is NaN or infinite, before later callbacks (checkpointing) see the epoch."""

    order = -5
    check_every = 50  # batches between NaN checks during training (each check syncs the host)

    def __init__(self, history: list[dict] | None = None, heads: dict[str, int] | None = None):
        self.history = list(history or [])
        self.heads = heads or {}
        self.multi = len(self.heads) > 1

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
        if self.multi:
            for name, loss in learn.loss_func.components.items():
                self._add(f"{name}_loss", loss.float() * n)
        if not learn.training:
            if self.multi:
                for i, (name, logits) in enumerate(zip(self.heads, learn.preds.split(list(self.heads.values()), 1))):
                    self._add(f"{name}_correct", (logits.argmax(1) == learn.yb[:, i]).sum())
            else:
                self._add("correct", (learn.preds.argmax(1) == learn.yb).sum())
        self.count += n
        if learn.training and learn.iter % self.check_every == self.check_every - 1:
            self._check_finite(learn)

    def _check_finite(self, learn) -> None:
        value = self.sums["loss"].item()
        if not math.isfinite(value):
            learn.stop_reason = f"training loss became {value} in epoch {learn.epoch + 1}"
            raise CancelFitException()

    def _means(self) -> dict[str, float]:
        return {name: total.item() / max(self.count, 1) for name, total in self.sums.items()}

    def after_train(self, learn) -> None:
        if learn.stop_reason is None:
            self._check_finite(learn)
        self.train = self._means()

    def after_validate(self, learn) -> None:
        self.valid = self._means()

    def after_epoch(self, learn) -> None:
        first = next(iter(self.heads), None)
        acc = self.valid[f"{first}_correct"] if self.multi else self.valid["correct"]
        row = {"epoch": learn.epoch + 1, "train/loss": self.train["loss"], "val/loss": self.valid["loss"],
               "val/acc": acc, "val/error_rate": 1 - acc}
        if self.multi:
            for name in self.heads:
                row |= {f"train/{name}_loss": self.train[f"{name}_loss"], f"val/{name}_loss": self.valid[f"{name}_loss"],
                        f"val/{name}_acc": self.valid[f"{name}_correct"]}
        learn.row = row | {"lr": learn.opt.param_groups[-1]["lr"], "seconds": time.perf_counter() - self.start}
        self.history.append(learn.row)

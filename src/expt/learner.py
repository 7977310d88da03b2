"""The training loop, its events, the parts of a training step, and the state callbacks share.

Events, in order: before_fit, (before_epoch, before_train, [before_batch, after_loss, before_step,
after_step, after_batch]*, after_train, before_validate, [before_batch, after_loss, after_batch]*,
after_validate, after_epoch)*, after_fit. Raise a Cancel*Exception from any of them to skip the
rest of that batch, epoch, or the whole fit: the matching after_* event still runs. Any other
exception (a higher-level cancel, an error, Ctrl-C) skips the after_* events it passes through.

A training batch is a step object's two halves, with the learner's events between them:
`step.forward(learn)` (the loss and its parts), after_loss, `step.update(learn)` (the optimizer
step), after_step. With `accumulate` N, the optimizer steps once every N batches (and on an
epoch's last) on the gradients of their mean loss: `stepped` says whether this batch's did, and
under DDP the batches that do not step skip the gradients' all-reduce (`no_sync`). `TrainStep`
is one model and one optimizer; another step (a GAN's) reuses the learner's parts:
`forward_and_loss` and `optimizer_step` (backward of the scaled loss, the step through the
gradient scaler, zero_grad). Validation batches are always `forward_and_loss`.
"""

from collections.abc import Callable, Iterable
from contextlib import nullcontext
from operator import attrgetter

import torch
from torch import nn


class CancelFitException(Exception):
    """Stop training now (after_fit still runs)."""


class CancelEpochException(Exception):
    """Skip the rest of this epoch's training or validation."""


class CancelBatchException(Exception):
    """Skip the rest of this batch."""


class Callback:
    """`order`: lower runs first. A callback that must follow another says so with that one's
    order (`order = MetricsCB.order + 1`), not with a number of its own."""

    order = 0


class TrainStep:
    """The training step of one model and one optimizer: forward and loss, then the optimizer step."""

    def forward(self, learn: "Learner") -> None:
        learn.forward_and_loss()

    def update(self, learn: "Learner") -> None:
        learn.optimizer_step(learn.loss)


class Learner:
    """Fits `model` with `opt` on `train_dl`, validating on `valid_dl` after each epoch.

    State that callbacks share, declared here:
    - `loss_parts`: the current batch's loss and its parts, device tensors by name (`loss` is the
      model's training loss; a GAN's critic steps have `critic_loss`, ...): MetricsCB sums them.
    - `history`: one row per finished epoch (a resumed run's earlier rows first); MetricsCB
      appends each epoch's `row`, later callbacks add their columns to it (GAN columns, val/fid),
      ProgressCB prints it, CheckpointCB saves the history (and drops a row whose epoch went bad).
    - `stop(reason, status)`: ends the fit with a reason and a status (diverged, early_stopped), which
      `stop_reason` and `stop_status` keep.
    - `autocast` and `scaler`: set by PrecisionCB; full precision and a pass-through scaler by default.
    """

    def __init__(self, model: nn.Module, train_dl: Iterable, valid_dl: Iterable, loss_func: nn.Module,
                 opt: torch.optim.Optimizer, callbacks: Iterable[Callback] = (), step: TrainStep | None = None,
                 history: Iterable[dict] = (), accumulate: int = 1):
        self.model, self.train_dl, self.valid_dl = model, train_dl, valid_dl
        self.loss_func, self.opt = loss_func, opt
        self.step = step or TrainStep()
        self.callbacks = sorted(callbacks, key=attrgetter("order"))
        self.autocast = nullcontext()
        self.scaler = torch.amp.GradScaler(enabled=False)
        self.history: list[dict] = list(history)
        self.accumulate, self.group, self.stepping, self.stepped = accumulate, 1, True, True
        self.row: dict = {}
        self.loss_parts: dict[str, torch.Tensor] = {}
        self.stop_reason: str | None = None
        self.stop_status: str | None = None
        self.epoch, self.epochs, self.start_epoch = 0, 0, 0
        self.training = False

    def stop(self, reason: str, status: str = "diverged") -> None:
        """End the fit now, saying why and how it ended (`status`: diverged, early_stopped); after_fit
        still runs and the run's summary reports both."""
        self.stop_reason, self.stop_status = reason, status
        raise CancelFitException()

    def callback(self, event: str) -> None:
        for cb in self.callbacks:
            method = getattr(cb, event, None)
            if method is not None:
                method(self)

    def _stage(self, name: str, cancel: type[Exception], body: Callable[[], None]) -> None:
        """before_{name}, body, after_{name}; `cancel` ends the stage early but keeps after_{name}."""
        try:
            self.callback(f"before_{name}")
            body()
        except cancel:
            pass
        self.callback(f"after_{name}")

    def fit(self, epochs: int, start_epoch: int = 0) -> "Learner":
        """Train for epochs start_epoch..epochs-1, validating after each."""
        self.epochs, self.start_epoch, self.stop_reason, self.stop_status = epochs, start_epoch, None, None
        self._stage("fit", CancelFitException, self._epochs)
        return self

    def _epochs(self) -> None:
        for self.epoch in range(self.start_epoch, self.epochs):
            self._stage("epoch", CancelEpochException, self._train_and_validate)

    def _train_and_validate(self) -> None:
        self.one_epoch(train=True)
        self.one_epoch(train=False)

    def one_epoch(self, train: bool) -> None:
        self.training = train
        self.model.train(train)
        self.dl = self.train_dl if train else self.valid_dl
        with torch.set_grad_enabled(train):
            self._stage("train" if train else "validate", CancelEpochException, self._batches)

    def _batches(self) -> None:
        batch = self.train_batch if self.training else self.valid_batch
        for self.iter, (self.xb, self.yb) in enumerate(self.dl):
            self._stage("batch", CancelBatchException, batch)

    def one_batch(self) -> None:
        """The batch in xb, yb: a training step when `training`, else a validation batch."""
        (self.train_batch if self.training else self.valid_batch)()

    def train_batch(self) -> None:
        if self.accumulate > 1:
            start = self.iter - self.iter % self.accumulate  # this optimizer step's first batch
            self.group = min(self.accumulate, len(self.dl) - start)  # its batches (an epoch's last step may have fewer)
            self.stepping = self.iter + 1 == start + self.group
        no_sync = getattr(self.model, "no_sync", None)
        with nullcontext() if self.stepping or no_sync is None else no_sync():
            self.step.forward(self)
            self.callback("after_loss")
            self.step.update(self)
        self.callback("after_step")

    def valid_batch(self) -> None:
        self.forward_and_loss()
        self.callback("after_loss")

    def forward_and_loss(self) -> None:
        """The model's predictions for the batch and their loss, in the run's precision."""
        with self.autocast:
            self.preds = self.model(self.xb)
            self.loss = self.loss_func(self.preds, self.yb)
        self.loss_parts = {"loss": self.loss}

    def optimizer_step(self, loss: torch.Tensor, opt: torch.optim.Optimizer | None = None,
                       scaler: torch.amp.GradScaler | None = None) -> None:
        """Backward of the scaled loss, before_step (the gradients are there: `step_opt` and
        `step_scaler` name the optimizer and scaler of this step), the optimizer's step through the
        scaler (which skips it when fp16 gradients overflowed, and unscales them first unless a
        callback did), the scaler's update, zero_grad. `opt` and `scaler` default to the learner's (a
        GAN's critic has its own)."""
        opt, scaler = opt or self.opt, scaler or self.scaler
        scaler.scale(loss / self.group if self.group > 1 else loss).backward()
        self.stepped = self.stepping
        if not self.stepping:  # accumulating: the gradients add up until the group's last batch
            return
        self.step_opt, self.step_scaler = opt, scaler  # what before_step's callbacks act on (gradient clipping)
        self.callback("before_step")
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

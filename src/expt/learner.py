"""The training loop and its events. Behaviour lives in callbacks; the loop stays small and fast.

Events, in order: before_fit, (before_epoch, before_train, [before_batch, after_loss, after_step,
after_batch]*, after_train, before_validate, [before_batch, after_loss, after_batch]*,
after_validate, after_epoch)*, after_fit. Raise a Cancel*Exception from any of them to skip the
rest of that batch, epoch, or the whole fit: the matching after_* event still runs. Any other
exception (a higher-level cancel, an error, Ctrl-C) skips the after_* events it passes through.
"""

from collections.abc import Callable, Iterable
from contextlib import nullcontext
from functools import partial
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
    order = 0  # lower runs first


class Learner:
    def __init__(self, model: nn.Module, train_dl: Iterable, valid_dl: Iterable, loss_func: nn.Module,
                 opt: torch.optim.Optimizer, callbacks: Iterable[Callback] = (),
                 train_step: Callable[["Learner"], None] | None = None):
        self.model, self.train_dl, self.valid_dl = model, train_dl, valid_dl
        # A training step other than one_batch's (a GAN's: two models in turns); it runs the
        # after_loss and after_step events itself. Validation batches always use one_batch.
        self.train_step = train_step
        self.loss_func, self.opt = loss_func, opt
        self.callbacks = sorted(callbacks, key=attrgetter("order"))
        # Set by a precision callback; by default full precision with a pass-through scaler.
        self.autocast = nullcontext()
        self.scaler = torch.amp.GradScaler(enabled=False)
        self.epoch, self.epochs, self.start_epoch = 0, 0, 0
        self.training = False

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
        self.epochs, self.start_epoch = epochs, start_epoch
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
        step = partial(self.train_step, self) if self.training and self.train_step is not None else self.one_batch
        for self.iter, (self.xb, self.yb) in enumerate(self.dl):
            self._stage("batch", CancelBatchException, step)

    def one_batch(self) -> None:
        """One model, one optimizer: forward, loss, and on training batches backward and step."""
        with self.autocast:
            self.preds = self.model(self.xb)
            self.loss = self.loss_func(self.preds, self.yb)
        self.callback("after_loss")
        if self.training:
            self.scaler.scale(self.loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
            self.opt.zero_grad(set_to_none=True)
            self.callback("after_step")

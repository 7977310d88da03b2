"""The learning-rate range test as a callback: exponential lr per batch, stop on divergence."""

import copy
import math

import torch

from ..learner import Callback, CancelEpochException, CancelFitException
from .precision import PrecisionCB


class LRFinderCB(Callback):
    """Raises the lr from `start` to `end` exponentially over `steps` training batches (a group with an
    `lr_mult` gets that share of it, as in training, so the lr found is the head's), recording the
    loss smoothed by a debiased moving average. Stops when the smoothed loss passes `stop_factor`
    times its minimum or is not finite; then puts model, optimizer, loader and RNG back as they were.
    """

    order = PrecisionCB.order + 1  # after the step's own callbacks (precision, augmentation)

    def __init__(self, start: float = 1e-7, end: float = 10.0, steps: int = 100, beta: float = 0.98,
                 stop_factor: float = 4.0, stateful: tuple = ()):
        self.start, self.end, self.steps, self.beta, self.stop_factor = start, end, steps, beta, stop_factor
        self.stateful = stateful  # more objects with state_dict()/load_state_dict() to restore (loaders)
        self.lrs: list[float] = []
        self.losses: list[float] = []  # smoothed
        self.stop_reason = f"reached {steps} steps"

    def before_fit(self, learn) -> None:
        self.saved = copy.deepcopy({"model": learn.model.state_dict(), "opt": learn.opt.state_dict(),
                                    "rng": torch.get_rng_state(),
                                    "stateful": [obj.state_dict() for obj in self.stateful]})
        self.avg, self.best, self.step = 0.0, math.inf, 0

    def before_batch(self, learn) -> None:
        if not learn.training:
            return
        lr = self.start * (self.end / self.start) ** (self.step / max(self.steps - 1, 1))
        for group in learn.opt.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)  # fine-tuning keeps the body's share of the lr
        self.lrs.append(lr)

    def after_loss(self, learn) -> None:
        if not learn.training:
            return
        loss = learn.loss.item()  # one sync per batch: fine for a hundred batches
        self.step += 1
        self.avg = self.beta * self.avg + (1 - self.beta) * loss
        smooth = self.avg / (1 - self.beta ** self.step)
        self.losses.append(smooth)
        self.best = min(self.best, smooth)
        if not math.isfinite(smooth) or smooth > self.stop_factor * self.best:
            self.stop_reason = f"loss diverged at lr {self.lrs[-1]:.2e}"
            raise CancelFitException()

    def after_step(self, learn) -> None:
        if self.step >= self.steps:
            raise CancelFitException()

    def before_validate(self, learn) -> None:
        raise CancelEpochException()  # the range test only trains

    def after_fit(self, learn) -> None:
        learn.model.load_state_dict(self.saved["model"])
        learn.opt.load_state_dict(self.saved["opt"])
        torch.set_rng_state(self.saved["rng"])
        for obj, state in zip(self.stateful, self.saved["stateful"]):
            obj.load_state_dict(state)

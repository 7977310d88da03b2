"""Small callbacks that change what a training step does."""

import warnings
from collections.abc import Callable

import torch

from .. import distributed
from ..learner import Callback
from .checkpoint import CheckpointCB, best_epoch


class ScheduleCB(Callback):
    """Steps a learning-rate schedule after every optimizer step."""

    def __init__(self, scheduler: torch.optim.lr_scheduler.LRScheduler):
        self.scheduler = scheduler
        self.first = True

    def after_step(self, learn) -> None:
        if not learn.stepped:  # accumulating gradients: the optimizer did not step
            return
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


class MixCB(Callback):
    """mixup and CutMix (augment.Mix) on training batches, after the other augmentations: the
    targets become the task's float targets (`mix_targets`: one-hot classes, 0/1 labels), mixed as
    the images are, until the Mix's off_epoch."""

    order = AugmentCB.order + 1

    def __init__(self, mix, targets: Callable[[torch.Tensor], torch.Tensor]):
        self.mix, self.targets = mix, targets

    def before_batch(self, learn) -> None:
        if learn.training and self.mix.active(learn.epoch):
            learn.xb, learn.yb = self.mix(learn.xb, self.targets(learn.yb))


class ResizeCB(Callback):
    """Progressive resizing (data.sizes, data.size_epochs): before each training epoch the loader
    gets the training images at that epoch's size (`train_at(size)`: the same images in the same
    order, each size from its own cache); a resumed run starts at its epoch's size."""

    def __init__(self, stages: list[tuple[int, int]], train_at: Callable, loader):
        self.stages, self.train_at, self.loader = stages, train_at, loader
        self.size: int | None = None

    def size_for(self, epoch: int) -> int:
        return [size for first, size in self.stages if first <= epoch][-1]

    def before_train(self, learn) -> None:
        size = self.size_for(learn.epoch)
        if size != self.size:
            self.loader.replace_images(self.train_at(size))
            self.size = size


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


def stale_epochs(history: list[dict], metric: str, higher_is_better: bool, min_delta: float = 0.0) -> int:
    """How many epochs at the end of `history` have not improved `metric` by more than min_delta on
    the best before them (the count a resumed run replays from its restored history)."""
    best_at, _ = best_epoch(history, metric, higher_is_better, min_delta)
    return len(history) if best_at is None else history[-1]["epoch"] - best_at  # epochs are 1, 2, ... in order


class EarlyStopCB(Callback):
    """Ends the fit when the headline metric has not improved (by more than `min_delta`) for
    `patience` epochs, after the checkpoint kept the last one; `learn.stop_reason` says so and
    `stopped` is the epoch it stopped after. The count comes from the history, so a resumed run
    goes on counting where it was."""

    order = CheckpointCB.order + 2  # after the checkpoint and the loggers have the epoch

    def __init__(self, metric: str, higher_is_better: bool, patience: int, min_delta: float = 0.0):
        self.metric, self.higher_is_better, self.patience, self.min_delta = metric, higher_is_better, patience, min_delta
        self.stopped: int | None = None

    def after_epoch(self, learn) -> None:
        stale = stale_epochs(learn.history, self.metric, self.higher_is_better, self.min_delta)
        if stale >= self.patience and learn.epoch + 1 < learn.epochs:
            self.stopped = learn.epoch + 1
            learn.stop(f"{self.metric} has not improved for {stale} epochs (early_stop.patience={self.patience})",
                       "early_stopped")


class GradClipCB(Callback):
    """Clips each step's gradients before the optimizer uses them: their total norm to `max_value`
    (`mode="norm"`), or each element to +-max_value (`"value"`), after unscaling fp16's scaled
    gradients (the scaler then steps without unscaling them twice)."""

    MODES = ("norm", "value")

    def __init__(self, max_value: float, mode: str = "norm"):
        self.max_value, self.mode = max_value, mode

    def before_step(self, learn) -> None:
        learn.step_scaler.unscale_(learn.step_opt)
        params = [p for group in learn.step_opt.param_groups for p in group["params"] if p.grad is not None]
        if self.mode == "norm":
            torch.nn.utils.clip_grad_norm_(params, self.max_value, foreach=True)
        else:
            torch.nn.utils.clip_grad_value_(params, self.max_value, foreach=True)


class EmaCB(Callback):
    """An exponential moving average of the weights (ema.WeightAverage), updated after every
    optimizer step; validation runs the average (under torchrun with rank 0's BatchNorm
    statistics, as the trained model does), and CheckpointCB saves it as the model."""

    def __init__(self, average, model: torch.nn.Module):
        self.average, self.model = average, model
        self.trained: torch.nn.Module | None = None

    def after_step(self, learn) -> None:
        if learn.stepped:
            self.average.update(self.model)

    def before_validate(self, learn) -> None:
        self.trained, learn.model = learn.model, self.average.module.eval()
        if distributed.world() > 1:
            for buffer in self.average.module.buffers():
                torch.distributed.broadcast(buffer, src=0)

    def after_validate(self, learn) -> None:
        learn.model = self.trained

"""metrics.png in the run folder: the losses and the headline metric over the epochs, rewritten as
the run goes (after an epoch that ends at least `every` seconds after the fit began or after the
last drawing, and after the last epoch: a drawing takes 0.2 s on a 2-core CPU, which a 0.4 s GPU
epoch should not pay each time), so a run can be looked at while it trains."""

import math
import time
from pathlib import Path

import torch

from ..learner import Callback
from ..plots import png
from .checkpoint import CheckpointCB

BATCH_PARTS = ("loss", "critic_loss")  # drawn per batch: the model's training loss, and a GAN's critic's
ACCURACIES = ("train/acc", "train/critic_real_acc", "train/critic_fake_acc")  # beside the headline, where a run has them


def column_values(history: list[dict], column: str) -> list[float] | None:
    """A column's value per epoch (NaN where a row lacks it or it is not finite), or None when no row has it."""
    values = [row.get(column) for row in history]
    if not any(v is not None and math.isfinite(v) for v in values):
        return None
    return [v if v is not None and math.isfinite(v) else math.nan for v in values]


def smoothed(values: list[float], beta: float = 0.98) -> list[float]:
    """A debiased exponential moving average (the lr finder's), so single noisy batches do not hide the trend."""
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta ** i))
    return out


class CurvesCB(Callback):
    """Left: the training loss per batch (smoothed; a GAN's critic loss too) and per epoch, and the
    validation loss per epoch. Right: the headline metric per epoch (and train/acc where there is
    one). The per-batch losses stay on the device until the epoch ends (one host sync an epoch); a
    resumed run draws its earlier epochs from the history and its batches from the resume on."""

    order = CheckpointCB.order + 1  # after the checkpoint kept the epoch: an epoch it drops is not drawn

    def __init__(self, path: Path, headline: str, every: float = 10.0):
        self.path, self.headline, self.every = Path(path), headline, every
        self.batches: dict[str, list[tuple[float, float]]] = {name: [] for name in BATCH_PARTS}  # (epoch, loss)
        self.drawn_at, self.drawn = -math.inf, True

    def before_fit(self, learn) -> None:
        self.drawn_at = time.monotonic()

    def before_train(self, learn) -> None:
        self.epoch_losses: dict[str, list[torch.Tensor]] = {name: [] for name in BATCH_PARTS}

    def after_loss(self, learn) -> None:
        if not learn.training:
            return
        for name in BATCH_PARTS:
            if name in learn.loss_parts:
                self.epoch_losses[name].append(learn.loss_parts[name].detach())

    def after_train(self, learn) -> None:
        for name, losses in self.epoch_losses.items():
            if losses:  # (epoch + fraction of it, loss) of each batch that had this part
                values = torch.stack(losses).float().cpu().tolist()
                self.batches[name] += [(learn.epoch + (i + 1) / len(values), v) for i, v in enumerate(values)]

    def after_epoch(self, learn) -> None:
        self.drawn = False
        if time.monotonic() - self.drawn_at >= self.every or learn.epoch == learn.epochs - 1:
            self.draw(learn.history)

    def after_fit(self, learn) -> None:
        if not self.drawn:
            self.draw(learn.history)

    def draw(self, history: list[dict]) -> None:
        epochs = [row["epoch"] for row in history]
        with png(self.path, figsize=(11, 4), ncols=2) as (losses, metric):
            for name, points in self.batches.items():
                if points:
                    label = "train/loss per batch" if name == "loss" else f"train/{name} per batch"
                    losses.plot([x for x, _ in points], smoothed([v for _, v in points]), lw=1, alpha=0.6,
                                label=f"{label} (smoothed)")
            for column, marker in (("train/loss", "o-"), ("val/loss", "s-"), ("train/critic_loss", "^-")):
                values = column_values(history, column)
                if values is not None and any(v != 0 for v in values):  # loss=none (from noise) is all zeros
                    losses.plot(epochs, values, marker, label=column)
            losses.set(xlabel="epoch", ylabel="loss", title="losses")
            losses.legend(fontsize=8)
            for column in (self.headline, *ACCURACIES):
                values = column_values(history, column)
                if values is not None:
                    metric.plot(epochs, values, "o-", label=column)
            headline = column_values(history, self.headline) is not None
            metric.set(xlabel="epoch", title=self.headline if headline else f"accuracies (no {self.headline} in this run)")
            if metric.lines:
                metric.legend(fontsize=8)
            for ax in (losses, metric):
                ax.grid(alpha=0.3)
                if epochs:
                    ax.set_xlim(0, max(epochs) + 0.2)
        self.drawn_at, self.drawn = time.monotonic(), True

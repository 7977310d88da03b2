"""Classification: y holds class indices, (N,) for one target or (N, targets) for several, whose
logits sit side by side in the model's output (one head per target on a shared body)."""

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..losses import FeatureLoss, MultiLabelBCE, MultiTask, NoPixelLoss, PatchBCE

TOP5_ABOVE = 10  # val/top5 for data of more classes than this (top-5 of 10 classes says little)


@dataclass
class Classify:
    heads: dict[str, list[str]]  # target -> its class names; the first target is the headline
    headline: str = "val/acc"    # the metric that "best", sweeps and leaderboards rank by
    higher_is_better: bool = True
    paired: bool = False         # augmentation changes the image, not the class
    image_output: bool = False   # TTA averages class probabilities as they come, whatever the view

    @classmethod
    def of(cls, n_classes: int) -> "Classify":
        """One target of n classes named by their indices (for code that has no class names)."""
        return cls({"label": [str(i) for i in range(n_classes)]})

    @property
    def sizes(self) -> dict[str, int]:
        return {name: len(classes) for name, classes in self.heads.items()}

    @property
    def n_outputs(self) -> int:
        """One logit per class of every target."""
        return sum(self.sizes.values())

    @property
    def multi(self) -> bool:
        return len(self.heads) > 1

    def check_loss(self, loss: nn.Module) -> None:
        if isinstance(loss, MultiLabelBCE):
            raise ConfigError("loss=bce is for several labels per image (data=csv data.label_delim=' '), and this "
                              "data has one class per image; use loss=auto (or cross_entropy, label_smoothing)")
        if isinstance(loss, (nn.L1Loss, nn.MSELoss, FeatureLoss, PatchBCE, NoPixelLoss)):
            what = ("scores a critic's patches" if isinstance(loss, PatchBCE) else "is for GANs from noise"
                    if isinstance(loss, NoPixelLoss) else "compares images")
            raise ConfigError(f"loss={type(loss).__name__} {what}, and this data's targets are classes; "
                              "use loss=auto (or cross_entropy, label_smoothing, multi_task)")
        if self.multi and not isinstance(loss, MultiTask):
            raise ConfigError(f"the data has {len(self.heads)} targets ({', '.join(self.heads)}): use "
                              "loss=multi_task, or data.targets=[label] for one")

    def default_loss(self) -> nn.Module:
        """loss=auto: cross entropy, one per head for several heads (multi_task, weighed equally)."""
        return MultiTask(self.sizes) if self.multi else nn.CrossEntropyLoss()

    def check_data(self, data) -> None:
        """Refuse training data of a single class."""
        labels = data.train_y if data.train_y.ndim == 1 else data.train_y[:, 0]
        if len(data.classes) < 2 or len(labels.unique()) < 2:
            raise ConfigError(f"the training images all have one class ({data.classes[int(labels[0])]}); a "
                              "classifier needs at least two (check the data, or data.train_subset)")

    def mix_targets(self, y: torch.Tensor) -> torch.Tensor:
        """Class indices (N,) as one-hot float targets (N, classes), which mixup and CutMix blend
        (cross entropy, label smoothing too, takes class probabilities as they are)."""
        return nn.functional.one_hot(y, self.n_outputs).float()

    def batch_sums(self, preds: torch.Tensor, y: torch.Tensor, loss: nn.Module, training: bool) -> dict:
        """What one batch adds to the epoch's sums (on the device; the loss itself is summed by
        MetricsCB): each head's loss and correct predictions (training batches as augmented: a
        mixed image's class is its larger share), and with more than 10 classes validation's top-5
        hits of the headline target."""
        n = len(y)
        sums = {f"{name}_loss": part.float() * n for name, part in loss.components.items()} if self.multi else {}
        if self.multi:
            for i, (name, logits) in enumerate(zip(self.heads, preds.split(list(self.sizes.values()), 1))):
                sums[f"{name}_correct"] = (logits.argmax(1) == y[:, i]).sum()
        else:
            y = y.argmax(1) if y.is_floating_point() else y  # mixed targets: the class with the larger share
            sums["correct"] = (preds.argmax(1) == y).sum()
        first = next(iter(self.sizes.values()))
        if not training and first > TOP5_ABOVE:
            target = y[:, 0] if self.multi else y
            sums["top5"] = (preds[:, :first].topk(5, 1).indices == target[:, None]).any(1).sum()
        return sums

    def epoch_metrics(self, train: dict[str, float], valid: dict[str, float]) -> dict[str, float]:
        """An epoch's metric columns from the means of batch_sums: val/acc and val/error_rate of the
        headline target, train/acc (on the augmented training batches: how far training fits), then
        each head's losses and accuracy."""
        correct = f"{next(iter(self.heads))}_correct" if self.multi else "correct"
        row = {"val/acc": valid[correct], "val/error_rate": 1 - valid[correct], "train/acc": train.get(correct, float("nan"))}
        if "top5" in valid:
            row["val/top5"] = valid["top5"]
        if self.multi:
            for name in self.heads:
                row |= {f"train/{name}_loss": train[f"{name}_loss"], f"val/{name}_loss": valid[f"{name}_loss"],
                        f"val/{name}_acc": valid[f"{name}_correct"]}
        return row

    def baseline(self, data) -> dict[str, float]:
        """No reference score to print before training (chance is 1 / classes)."""
        return {}

    def callbacks(self, run_dir) -> list:
        """Nothing beyond the metrics."""
        return []

    def average_space(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities of each head: the space in which TTA views and ensembles average."""
        if not self.multi:
            return logits.softmax(-1)
        return torch.cat([part.softmax(-1) for part in logits.split(list(self.sizes.values()), -1)], -1)

    def labels(self, probs: torch.Tensor) -> tuple[str, list[str]]:
        """The headline target and its predicted class names (what `expt predict` writes)."""
        target, classes = next(iter(self.heads.items()))
        return target, [classes[i] for i in probs[:, : len(classes)].argmax(1).tolist()]

    def names(self, y: torch.Tensor) -> list[str]:
        """Each image's class name from its targets; with several heads, each head's, joined by ' / '."""
        heads = list(self.heads.values())
        return [" / ".join(heads[i][c] for i, c in enumerate(row)) for row in y.view(len(y), -1).tolist()]

    def meta(self) -> dict:
        """What a checkpoint stores to rebuild the task."""
        return {"task": "classify", "classes": self.heads[next(iter(self.heads))], "heads": self.heads}

    @classmethod
    def from_data(cls, data) -> "Classify":
        return cls(data.heads)

    @classmethod
    def from_meta(cls, meta: dict) -> "Classify":
        return cls(meta.get("heads") or {"label": meta["classes"]})

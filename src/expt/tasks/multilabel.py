"""Several labels per image (data=csv data.label_delim=" ": the Planet workflow): y is (N, labels)
of 0/1, the model gives one logit per label, a label is predicted when its sigmoid is above the
threshold (data.threshold). Metrics: val/acc_multi (the labels right, fastai's accuracy_multi) and
per-sample F1 (the headline) and F2 (Planet's score), over the images of the split."""

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..losses import MultiLabelBCE


def fbeta_per_sample(predicted: torch.Tensor, actual: torch.Tensor, beta: float) -> torch.Tensor:
    """F-beta of each image's predicted label set against its actual one, both (N, labels) bool
    (scikit-learn's fbeta_score(average="samples", zero_division=1): an image with no label that is
    predicted none scores 1)."""
    tp = (predicted & actual).sum(1).float()
    fp, fn = (predicted & ~actual).sum(1).float(), (~predicted & actual).sum(1).float()
    b2 = beta * beta
    denominator = (1 + b2) * tp + b2 * fn + fp
    return torch.where(denominator > 0, (1 + b2) * tp / denominator.clamp_min(1e-12), torch.ones_like(tp))


@dataclass
class MultiLabel:
    classes: list[str]          # the labels, sorted
    threshold: float = 0.5      # a label is predicted when its probability is above this
    headline: str = "val/f1"
    higher_is_better: bool = True
    paired: bool = False        # augmentation changes the image, not its labels
    image_output: bool = False

    @property
    def heads(self) -> dict[str, list[str]]:
        return {"labels": self.classes}

    @property
    def sizes(self) -> dict[str, int]:
        return {"labels": len(self.classes)}

    @property
    def n_outputs(self) -> int:
        return len(self.classes)

    def default_loss(self) -> nn.Module:
        """loss=auto: binary cross-entropy per label."""
        return MultiLabelBCE()

    def check_loss(self, loss: nn.Module) -> None:
        if not isinstance(loss, MultiLabelBCE):
            raise ConfigError(f"loss={type(loss).__name__} does not fit several labels per image; use loss=auto "
                              "(or loss=bce)")

    def check_data(self, data) -> None:
        if len(self.classes) < 2:
            raise ConfigError(f"the data has one label ({', '.join(self.classes)}); several labels per image need at "
                              "least two (or drop data.label_delim)")

    def mix_targets(self, y: torch.Tensor) -> torch.Tensor:
        """0/1 labels as float targets, which mixup and CutMix blend (BCE takes them as they are; a
        mixed image counts a label as its own above 0.5)."""
        return y.float()

    def predicted(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits.float()) > self.threshold

    def batch_sums(self, preds: torch.Tensor, y: torch.Tensor, loss: nn.Module, training: bool) -> dict:
        """Per image: the share of labels right, F1 and F2, summed over the batch (on the device)."""
        predicted, actual = self.predicted(preds), y > 0.5
        sums = {"acc_multi": (predicted == actual).float().mean(1).sum()}
        if not training:
            sums |= {"f1": fbeta_per_sample(predicted, actual, 1.0).sum(),
                     "f2": fbeta_per_sample(predicted, actual, 2.0).sum()}
        return sums

    def epoch_metrics(self, train: dict[str, float], valid: dict[str, float]) -> dict[str, float]:
        return {"val/f1": valid["f1"], "val/f2": valid["f2"], "val/acc_multi": valid["acc_multi"],
                "train/acc_multi": train.get("acc_multi", float("nan"))}

    def baseline(self, data) -> dict[str, float]:
        return {}

    def callbacks(self, run_dir) -> list:
        return []

    def average_space(self, logits: torch.Tensor) -> torch.Tensor:
        """Each label's probability: TTA views and ensembles average them."""
        return torch.sigmoid(logits.float())

    def labels(self, probs: torch.Tensor) -> tuple[str, list[str]]:
        """Every label above the threshold, joined by spaces, for each image."""
        return "labels", self.names((probs > self.threshold).float())

    def names(self, y: torch.Tensor) -> list[str]:
        """Each image's labels from its 0/1 targets, joined by spaces."""
        return [" ".join(c for c, on in zip(self.classes, row) if on > 0.5) for row in y.tolist()]

    def meta(self) -> dict:
        return {"task": "multilabel", "classes": self.classes, "threshold": self.threshold}

    @classmethod
    def from_data(cls, data) -> "MultiLabel":
        return cls(list(data.classes), data.threshold)

    @classmethod
    def from_meta(cls, meta: dict) -> "MultiLabel":
        return cls(list(meta["classes"]), float(meta.get("threshold", 0.5)))

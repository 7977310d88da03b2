"""Losses beyond torch's: one cross-entropy per target head, combined with weights."""

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError


class MultiTask(nn.Module):
    """Sum of weight x cross-entropy over heads whose logits sit side by side in the output.

    y is (N, heads) class indices (or (N,) for one head). After each call, `components` holds each
    head's loss (detached), for the metrics."""

    def __init__(self, heads: dict[str, int], weights: dict[str, float] | None = None, label_smoothing: float = 0.0):
        super().__init__()
        unknown = set(weights or {}) - set(heads)
        if unknown:
            raise ConfigError(f"loss.weights names {', '.join(sorted(unknown))}, but the targets are "
                              f"{', '.join(heads)}")
        self.names, self.sizes = list(heads), list(heads.values())
        self.weights = [float((weights or {}).get(name, 1.0)) for name in self.names]
        self.label_smoothing = label_smoothing
        self.components: dict[str, torch.Tensor] = {}

    def forward(self, preds: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y = y.view(len(y), -1)
        total = 0.0
        for i, (name, logits, w) in enumerate(zip(self.names, preds.split(self.sizes, dim=1), self.weights)):
            loss = F.cross_entropy(logits, y[:, i], label_smoothing=self.label_smoothing)
            self.components[name] = loss.detach()
            total = total + w * loss
        return total


def multi_task(heads: dict[str, int], weights: dict[str, float] | None = None,
               label_smoothing: float = 0.0) -> MultiTask:
    """The loss group's builder: `heads` (target -> classes) comes from the data."""
    return MultiTask(heads, weights, label_smoothing)

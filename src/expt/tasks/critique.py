"""A GAN critic's pretraining: real images (y = 1) against a generator's outputs (y = 0). The
model scores every patch, (N, positions) logits; the loss expands each image's target over them.
It reads as a two-class classifier (generated, real) whose probability of "real" is the mean of
its patches', so accuracy, TTA, sweeps and "best" work as for any classifier."""

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import ConfigError
from .classify import Classify
from ..losses import PatchBCE

CRITIC_CLASSES = ("generated", "real")


@dataclass
class Critique(Classify):
    heads: dict[str, list[str]] = field(default_factory=lambda: {"label": list(CRITIC_CLASSES)})

    @property
    def n_outputs(self) -> int:
        """One logit per patch: the critic's builder gets 1."""
        return 1

    def check_loss(self, loss: nn.Module) -> None:
        if not isinstance(loss, PatchBCE):
            raise ConfigError(f"loss={type(loss).__name__} does not fit a critic, whose output is a map of patch "
                              "scores; use loss=patch_bce")

    def default_loss(self) -> nn.Module:
        """loss=auto: binary cross-entropy of every patch's score."""
        return PatchBCE()

    def batch_sums(self, preds: torch.Tensor, y: torch.Tensor, loss: nn.Module, training: bool) -> dict:
        """The images classified right: real when the patches' mean probability of real is above 1/2
        (as average_space reads them, so tta's plain score matches val/acc)."""
        return {"correct": (self.average_space(preds).argmax(-1) == y).sum()}

    def average_space(self, logits: torch.Tensor) -> torch.Tensor:
        """(generated, real) probabilities: the patches' mean probability of real, and its complement."""
        real = torch.sigmoid(logits.float()).mean(-1)
        return torch.stack([1 - real, real], -1)

    def meta(self) -> dict:
        return {"task": "critic", "classes": list(CRITIC_CLASSES)}

    @classmethod
    def from_data(cls, data) -> "Critique":
        return cls()

    @classmethod
    def from_meta(cls, meta: dict) -> "Critique":
        return cls()

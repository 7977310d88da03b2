"""An unconditional generator (a GAN from noise, experiment=fmnist_gan): the model turns noise
(N, nz, 1, 1) into images like the data's. Batches are (noise, real images); the generator learns
from a critic alone (loss=none), and its quality is val/fid (lower is better) when gan.fid_features
names a classifier of the same data."""

from dataclasses import dataclass

import torch
from torch import nn

from ..callbacks.samples import NoiseSamplesCB
from ..errors import ConfigError
from ..losses import NoPixelLoss


@dataclass
class Generate:
    channels: int = 1
    headline: str = "val/fid"
    higher_is_better: bool = False
    paired: bool = False
    image_output: bool = True

    @property
    def n_outputs(self) -> int:
        return self.channels

    def check_loss(self, loss: nn.Module) -> None:
        if not isinstance(loss, NoPixelLoss):
            raise ConfigError(f"loss={type(loss).__name__} compares a prediction with a target, and a generator from "
                              "noise has none; use loss=none (the critic alone trains it)")

    def default_loss(self) -> nn.Module:
        """loss=auto: no pixel loss (the critic alone trains the generator)."""
        return NoPixelLoss()

    def check_data(self, data) -> None:
        """Any images will do; their labels are not used."""

    def batch_sums(self, preds: torch.Tensor, y: torch.Tensor, loss: nn.Module, training: bool) -> dict:
        return {}

    def epoch_metrics(self, train: dict[str, float], valid: dict[str, float]) -> dict[str, float]:
        return {}

    def baseline(self, data) -> dict[str, float]:
        return {}

    def callbacks(self, run_dir) -> list:
        """samples.png: a grid of images from the same noise after every epoch."""
        return [NoiseSamplesCB(run_dir / "samples.png")]

    def average_space(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs

    def meta(self) -> dict:
        return {"task": "generate", "channels": self.channels}

    @classmethod
    def from_data(cls, data) -> "Generate":
        return cls(channels=data.n_channels)

    @classmethod
    def from_meta(cls, meta: dict) -> "Generate":
        return cls(channels=meta["channels"])

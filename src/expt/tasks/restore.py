"""Image restoration (super-resolution, denoising): y holds the target images, uint8 like the
inputs, and the model's output is an image of the same size. Metrics: PSNR (the headline) and SSIM
on 0..1 images; augmentation moves input and target together."""

from dataclasses import dataclass

import torch
from torch import nn

from ..callbacks import SamplesCB
from ..errors import ConfigError
from ..losses import MultiLabelBCE, MultiTask, NoPixelLoss, PatchBCE
from ..metrics import image_sums, mean_scores


@dataclass
class Restore:
    channels: int = 3            # of the target images, which the model outputs
    headline: str = "val/psnr"
    higher_is_better: bool = True
    paired: bool = True          # augmentation applies the same crop and flip to input and target
    image_output: bool = True    # TTA brings each view's output back through the view's inverse

    @property
    def n_outputs(self) -> int:
        return self.channels

    def check_loss(self, loss: nn.Module) -> None:
        if isinstance(loss, NoPixelLoss):
            raise ConfigError("loss=none trains nothing here: a restoration run needs a pixel loss; use loss=l1, "
                              "loss=mse or loss=feature")
        if isinstance(loss, (nn.CrossEntropyLoss, MultiTask, PatchBCE, MultiLabelBCE)):
            raise ConfigError(f"loss={type(loss).__name__} needs class labels, and this data's targets are "
                              "images; use loss=l1, loss=mse or loss=feature")

    def default_loss(self) -> nn.Module:
        """loss=auto: the mean absolute pixel error."""
        return nn.L1Loss()

    def check_data(self, data) -> None:
        """Nothing beyond the batch size: every image is its own target."""

    def batch_sums(self, preds: torch.Tensor, y: torch.Tensor, loss: nn.Module, training: bool) -> dict:
        """The parts of a loss that has them (loss=feature: pixel, feature, gram), and on validation
        batches the sums of PSNR and SSIM."""
        sums = {f"{name}_loss": part.float() * len(y) for name, part in getattr(loss, "components", {}).items()}
        return sums if training else sums | image_sums(preds, y)

    def epoch_metrics(self, train: dict[str, float], valid: dict[str, float]) -> dict[str, float]:
        row = {"val/psnr": valid["psnr"], **({"val/ssim": valid["ssim"]} if "ssim" in valid else {})}
        for key in (k for k in train if k.endswith("_loss")):
            row |= {f"train/{key}": train[key], f"val/{key}": valid[key]}
        return row

    def baseline(self, data) -> dict[str, float]:
        """PSNR and SSIM of the validation inputs themselves (resized back to the target size:
        bicubic for pets) against their targets: what a model must beat."""
        scores = mean_scores(data.valid_x, data.valid_y)
        return {f"baseline/{k}": v for k, v in scores.items()}

    def callbacks(self, run_dir) -> list:
        """samples.png (input | prediction | target) after every epoch."""
        return [SamplesCB(run_dir / "samples.png")]

    def average_space(self, outputs: torch.Tensor) -> torch.Tensor:
        """Images average as they are."""
        return outputs

    def meta(self) -> dict:
        return {"task": "restore", "channels": self.channels}

    @classmethod
    def from_data(cls, data) -> "Restore":
        return cls(channels=data.train_y.shape[1])

    @classmethod
    def from_meta(cls, meta: dict) -> "Restore":
        return cls(channels=meta["channels"])

"""Image restoration (super-resolution, denoising): y holds the target images, uint8 like the
inputs, and the model's output is an image of the same size. Metrics: PSNR (the headline) and SSIM
on 0..1 images; augmentation moves input and target together."""

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..metrics import psnr, ssim

SSIM_MIN_SIZE = 11  # pytorch-msssim's window


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
        if isinstance(loss, nn.CrossEntropyLoss) or hasattr(loss, "components"):
            raise ConfigError(f"loss={type(loss).__name__} needs class labels, and this data's targets are "
                              "images; use loss=l1 or loss=mse")

    def check_data(self, data) -> None:
        """Nothing beyond the batch size: every image is its own target."""

    def batch_sums(self, preds: torch.Tensor, y: torch.Tensor, loss: nn.Module, training: bool) -> dict:
        if training:
            return {}
        sums = {"psnr": psnr(preds, y).sum()}
        if min(y.shape[-2:]) >= SSIM_MIN_SIZE:
            sums["ssim"] = ssim(preds, y).sum()
        return sums

    def epoch_metrics(self, train: dict[str, float], valid: dict[str, float]) -> dict[str, float]:
        return {"val/psnr": valid["psnr"], **({"val/ssim": valid["ssim"]} if "ssim" in valid else {})}

    @torch.no_grad()
    def baseline(self, data, chunk: int = 256) -> dict[str, float]:
        """PSNR and SSIM of the validation inputs themselves (resized back to the target size:
        bicubic for pets) against their targets: what a model must beat."""
        total = {"psnr": 0.0, "ssim": 0.0}
        for i in range(0, len(data.valid_x), chunk):
            x, y = (t[i: i + chunk].float() / 255 for t in (data.valid_x, data.valid_y))
            total["psnr"] += psnr(x, y).sum().item()
            if min(y.shape[-2:]) >= SSIM_MIN_SIZE:
                total["ssim"] += ssim(x, y).sum().item()
        return {f"baseline/{k}": v / max(len(data.valid_x), 1) for k, v in total.items()}

    def callbacks(self, run_dir) -> list:
        """samples.png (input | prediction | target) after every epoch."""
        from ..callbacks import SamplesCB
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

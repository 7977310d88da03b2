"""samples.png after each epoch of an image-to-image run: a few validation images, each row
input | prediction | target, so the run can be looked at while it trains."""

from pathlib import Path

import torch

from ..checkpoint import atomic_write
from ..learner import Callback
from .progress import ProgressCB


def image_grid(rows: list[torch.Tensor], pad: int = 2) -> torch.Tensor:
    """Tensors (N, C, H, W) in 0..1, side by side per image: a uint8 (H', W', 3) grid."""
    per_image = torch.stack(rows, 1).flatten(0, 1)  # row i: rows[0][i], rows[1][i], ...
    return tile_grid(per_image, nrow=len(rows), pad=pad)


def save_png(path: Path, pixels: torch.Tensor) -> None:
    from PIL import Image
    atomic_write(Path(path), lambda tmp: Image.fromarray(pixels.numpy()).save(tmp, format="PNG"))


def save_image(path: Path, image: torch.Tensor) -> None:
    """One (C, H, W) image in 0..1 as a PNG."""
    pixels = (image.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu()
    save_png(path, pixels[..., 0] if pixels.shape[2] == 1 else pixels)


class SamplesCB(Callback):
    order = ProgressCB.order + 1  # after the metrics and the progress line, before the checkpoint

    def __init__(self, path: Path, n: int = 6):
        self.path, self.n = Path(path), n

    @torch.no_grad()
    def after_epoch(self, learn) -> None:
        xb, yb = next(iter(learn.valid_dl))
        xb, yb = xb[: self.n], yb[: self.n]
        was = learn.model.training
        learn.model.eval()
        with learn.autocast:
            pred = learn.model(xb).float()
        learn.model.train(was)
        save_png(self.path, image_grid([xb, pred, yb]))


class NoiseSamplesCB(Callback):
    """samples.png of a generator from noise: an 8x8 grid of the first validation batch's images,
    whose noise is the same every epoch, so the grids show the generator's progress."""

    order = SamplesCB.order

    def __init__(self, path: Path, n: int = 64):
        self.path, self.n = Path(path), n

    @torch.no_grad()
    def after_epoch(self, learn) -> None:
        z, _ = next(iter(learn.valid_dl))
        was = learn.model.training
        learn.model.eval()
        with learn.autocast:
            images = learn.model(z[: self.n]).float()
        learn.model.train(was)
        save_png(self.path, tile_grid(images))


def tile_grid(images: torch.Tensor, nrow: int = 8, pad: int = 2) -> torch.Tensor:
    """Images (N, C, H, W) in 0..1 as a uint8 (H', W', 3) grid of nrow columns on white."""
    from torchvision.utils import make_grid
    images = images.float().clamp(0, 1)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    grid = make_grid(images, nrow=nrow, padding=pad, pad_value=1.0)
    return (grid * 255).round().to(torch.uint8).permute(1, 2, 0).cpu()

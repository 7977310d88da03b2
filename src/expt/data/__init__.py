"""Datasets (one module each) and the loaders that batch them."""

from dataclasses import dataclass

import torch


@dataclass
class ImageData:
    """A classification dataset held as uint8 tensors of shape (N, C, H, W) with int64 labels."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    valid_x: torch.Tensor
    valid_y: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]  # per channel, on the 0..1 pixel scale, from the training images
    std: tuple[float, ...]

    @property
    def n_channels(self) -> int:
        return self.train_x.shape[1]

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def channel_stats(x: torch.Tensor, chunk: int = 8192) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images (N, C, H, W) on the 0..1 scale, in float64 chunks."""
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    for i in range(0, len(x), chunk):
        part = x[i : i + chunk].to(torch.float64).div_(255)
        total += part.sum(dim=(0, 2, 3))
        total_sq += part.square().sum(dim=(0, 2, 3))
    n = x.numel() / x.shape[1]
    mean = total / n
    std = (total_sq / n - mean.square()).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def first(x: torch.Tensor, n: int | None) -> torch.Tensor:
    """The first n items of x (all of them when n is None)."""
    return x if n is None else x[:n]

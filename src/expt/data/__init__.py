"""Datasets (one module each) and the loaders that batch them."""

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch


@dataclass
class ImageData:
    """A classification dataset held as uint8 tensors of shape (N, C, H, W) with int64 labels."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    valid_x: torch.Tensor
    valid_y: torch.Tensor
    classes: list[str]  # of the headline target
    mean: tuple[float, ...]  # per channel, on the 0..1 pixel scale, from the training images
    std: tuple[float, ...]
    heads: dict[str, list[str]] = field(default_factory=dict)  # target -> classes, when y is (N, targets)
    skipped: dict[str, str] = field(default_factory=dict)  # unreadable images left out: path -> error

    def __post_init__(self):
        if not self.heads:
            self.heads = {"label": list(self.classes)}

    @property
    def n_channels(self) -> int:
        return self.train_x.shape[1]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def head_sizes(self) -> dict[str, int]:
        return {name: len(classes) for name, classes in self.heads.items()}

    @property
    def n_outputs(self) -> int:
        """The model's outputs: one logit per class of every target, side by side."""
        return sum(self.head_sizes.values())


def channel_stats(x, chunk: int = 8192) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images (N, C, H, W) on the 0..1 scale, in float64 chunks
    (for images streamed from files: of a fixed sample of them)."""
    if not isinstance(x, torch.Tensor):
        x = x.sample()
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


def subset(n_items: int, n: int | None, seed: int = 0) -> torch.Tensor:
    """Indices of a fixed random sample of n items (all, in order, when n is None): a quick run on
    a folder dataset then still sees every class."""
    if n is None or n >= n_items:
        return torch.arange(n_items)
    return torch.randperm(n_items, generator=torch.Generator().manual_seed(seed))[:n].sort().values


def find_root(name: str, root: str | None, required: list[str]) -> tuple[Path | None, list[Path]]:
    """The first of data.root, $EXPT_DATA/<name>, ~/.cache/expt/<name> holding every `required`
    entry, and the places searched."""
    places = [Path(root).expanduser()] if root else []
    if os.environ.get("EXPT_DATA"):
        places.append(Path(os.environ["EXPT_DATA"]).expanduser() / name)
    places.append(Path.home() / ".cache" / "expt" / name)
    found = next((p for p in places if all((p / r).exists() for r in required)), None)
    return found, places


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)

"""Datasets (one module each) and the loaders that batch them."""

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import DataError


@dataclass
class ImageData:
    """A dataset held as uint8 tensors of shape (N, C, H, W): with int64 labels (classification),
    float 0/1 (N, labels) (several labels per image), or uint8 target images of the same size
    (restoration)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    valid_x: torch.Tensor
    valid_y: torch.Tensor
    classes: list[str]  # of the headline target
    mean: tuple[float, ...]  # per channel, on the 0..1 pixel scale, from the training images
    std: tuple[float, ...]
    heads: dict[str, list[str]] = field(default_factory=dict)  # target -> classes, when y is (N, targets)
    skipped: dict[str, str] = field(default_factory=dict)  # unreadable images left out: path -> error
    root: str = ""  # the folder the data was read from (summary.json's data/root)
    task: str = "classify"  # what y holds: "classify" (class indices), "multilabel" (0/1 per label), "restore" (images)
    threshold: float = 0.5  # multilabel: a label is predicted when its probability is above this
    valid_files: list[str] = field(default_factory=list)  # each validation image's file, relative to root (when it has one)
    size_stages: list[tuple[int, int]] = field(default_factory=list)  # progressive resizing: (first epoch, size)
    train_at: Callable | None = None  # size -> the training images at that size (their own cache), with size_stages

    def __post_init__(self):
        if not self.heads and self.task == "classify":
            self.heads = {"label": list(self.classes)}

    @property
    def n_channels(self) -> int:
        return self.train_x.shape[1]

    @property
    def n_classes(self) -> int:
        return len(self.classes)



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


def check_subsets(train_subset: int | None, valid_subset: int | None) -> None:
    for name, n in (("train_subset", train_subset), ("valid_subset", valid_subset)):
        if n is not None and n < 1:
            raise DataError(f"data.{name}={n} must be at least 1 (or null for every image)")


def first(x: torch.Tensor, n: int | None) -> torch.Tensor:
    """The first n items of x (all of them when n is None)."""
    return x if n is None else x[:n]


def subset(n_items: int, n: int | None, seed: int = 0) -> torch.Tensor:
    """Indices of a fixed random sample of n items (all, in order, when n is None): a quick run on
    a folder dataset then still sees every class."""
    if n is None or n >= n_items:
        return torch.arange(n_items)
    return torch.randperm(n_items, generator=torch.Generator().manual_seed(seed))[:n].sort().values


def default_places(name: str, system: Path | None = None) -> list[Path]:
    """Where a dataset is looked for when no data.root is given: $EXPT_DATA/<name>, ~/.cache/expt/<name>,
    then a system-wide copy (Debian's packages)."""
    places = [Path(os.environ["EXPT_DATA"]).expanduser() / name] if os.environ.get("EXPT_DATA") else []
    return places + [Path.home() / ".cache" / "expt" / name] + ([system] if system else [])


def explicit_root(root: str, missing: list[str], hint: str) -> DataError:
    """The refusal of a data.root that does not hold the dataset: an explicit root is used or refused,
    never replaced by another copy."""
    folder = Path(root).expanduser()
    problem = ("does not exist" if not folder.exists() else "is not a folder" if not folder.is_dir()
               else f"lacks {', '.join(missing)}")
    return DataError(f"data.root={root} {problem}; {hint}, or drop data.root to search the usual places")


def find_root(name: str, root: str | None, required: list[str], hint: str) -> tuple[Path | None, list[Path]]:
    """data.root when given (it must hold every `required` entry, else DataError); otherwise the first
    of $EXPT_DATA/<name>, ~/.cache/expt/<name> that does. Returns (folder or None, places searched)."""
    if root:
        folder = Path(root).expanduser()
        missing = [r for r in required if not (folder / r).exists()]
        if missing or not folder.is_dir():
            raise explicit_root(root, missing, hint)
        return folder, [folder]
    places = default_places(name)
    found = next((p for p in places if all((p / r).exists() for r in required)), None)
    return found, places


def within(root: Path, relative: str, source: str) -> Path:
    """`root / relative` for a path read from a data file (`source`, e.g. "train.csv row 3's
    image_id"), refused unless it stays inside `root`: no absolute path, no `..` out of it."""
    root = Path(os.path.normpath(root))
    joined = Path(os.path.normpath(root / relative))
    if Path(relative).is_absolute() or joined == root or not joined.is_relative_to(root):
        raise DataError(f"{source} is {relative!r}, which leads outside {root}; a path in a data file must stay "
                        "inside data.root (fix or remove that row)")
    return joined


def relative_files(files: list[Path], kept: list[int], root: Path) -> list[str]:
    """The kept files' paths relative to `root` (what interpret's tables name), as text."""
    return [os.path.relpath(files[i], root) for i in kept]


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)

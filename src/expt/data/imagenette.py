"""Imagenette (fastai's imagenette2 layout): train/<wnid>/*.JPEG and val/<wnid>/*.JPEG."""

import hashlib

import torch

from ..errors import DataError
from . import ImageData, check_subsets, find_root, image_files
from .images import check_size, from_lists

NAMES = {"n01440764": "tench", "n02102040": "English springer", "n02979186": "cassette player",
         "n03000684": "chain saw", "n03028079": "church", "n03394916": "French horn",
         "n03417042": "garbage truck", "n03425413": "gas pump", "n03445777": "golf ball",
         "n03888257": "parachute"}


def split_files(folder, wnids: list[str]) -> tuple[list, torch.Tensor]:
    files, labels = [], []
    for i, wnid in enumerate(wnids):
        found = image_files(folder / wnid) if (folder / wnid).is_dir() else []
        files += found
        labels += [i] * len(found)
    return files, torch.tensor(labels, dtype=torch.int64)


def load(root: str | None = None, size: int = 128, resize: str = "crop", train_subset: int | None = None,
         valid_subset: int | None = None, strict: bool = False, workers: int | None = None,
         cache: bool = True, sizes: list[int] | None = None, size_epochs: list[int] | None = None) -> ImageData:
    """Imagenette at size x size, decoded once into the image cache; the val folder validates."""
    check_subsets(train_subset, valid_subset)
    check_size(size)
    folder, places = find_root("imagenette", root, ["train", "val"], "point it at the folder with train/ and val/")
    if folder is None:
        raise DataError(f"Imagenette not found (looked in {', '.join(map(str, places))}). Download "
                        "imagenette2-320.tgz from fast.ai's datasets (s3.amazonaws.com/fast-ai-imageclas), "
                        "extract it and pass data.root=FOLDER (or set EXPT_DATA to its parent)")
    wnids = sorted(p.name for p in (folder / "train").iterdir() if p.is_dir())
    if not wnids:
        raise DataError(f"{folder / 'train'} has no class folders (expected train/<wnid>/*.JPEG)")
    tag = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:8]
    splits = {split: split_files(folder / split, wnids) for split in ("train", "val")}
    empty = next((split for split, (files, _) in splits.items() if not files), None)
    if empty:
        raise DataError(f"{folder / empty} has no images in its class folders")
    return from_lists(splits, [NAMES.get(w, w) for w in wnids], folder, f"imagenette-{tag}", size, resize,
                      (train_subset, valid_subset), strict, workers, cache, sizes, size_epochs)

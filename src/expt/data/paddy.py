"""Paddy Doctor (Kaggle paddy-disease-classification): one model, two targets (disease, variety).

Layout: train.csv (image_id, label, variety, age), train_images/<label>/<image_id>,
test_images/<image_id>, sample_submission.csv (image_id, label).
"""

import hashlib
from pathlib import Path

import torch

from ..errors import DataError
from . import ImageData, check_subsets, find_root, image_files, within
from .images import cached_images, check_size, from_lists

REQUIRED_COLUMNS = ("image_id", "label", "variety")


def locate(root: str | None) -> Path:
    folder, places = find_root("paddy", root, ["train.csv", "train_images"],
                               "point it at the folder with train.csv, train_images/ and test_images/")
    if folder is None:
        raise DataError(f"Paddy Doctor not found (looked in {', '.join(map(str, places))}). Download it with "
                        "`kaggle competitions download -c paddy-disease-classification`, unzip it and pass "
                        "data.root=FOLDER (or set EXPT_DATA to the parent of a paddy/ folder)")
    return folder


def read_table(folder: Path, targets: list[str]):
    import pandas as pd
    try:
        df = pd.read_csv(folder / "train.csv", dtype=str)
    except Exception as e:
        raise DataError(f"{folder / 'train.csv'} is not a readable CSV ({e})") from e
    missing = [c for c in (*REQUIRED_COLUMNS, *targets) if c not in df.columns]
    if missing:
        raise DataError(f"{folder / 'train.csv'} lacks column(s) {', '.join(dict.fromkeys(missing))}; "
                        f"it has {', '.join(df.columns)} (expected image_id,label,variety,age)")
    blank = df[[*REQUIRED_COLUMNS, *targets]].isna().any(axis=1)
    if blank.any():
        raise DataError(f"{folder / 'train.csv'} row {int(blank.idxmax()) + 2} has an empty "
                        f"{', '.join(c for c in (*REQUIRED_COLUMNS, *targets) if pd.isna(df.loc[blank.idxmax(), c]))}")
    folders = {p.name for p in (folder / "train_images").iterdir() if p.is_dir()}
    orphans = sorted(set(df["label"]) - folders)
    if orphans:
        raise DataError(f"labels in train.csv with no folder in {folder / 'train_images'}: {', '.join(orphans)}")
    images = folder / "train_images"
    paths = [within(within(images, label, f"train.csv row {i + 2}'s label"), image_id, f"train.csv row {i + 2}'s image_id")
             for i, (label, image_id) in enumerate(zip(df["label"], df["image_id"]))]
    absent = [p for p in paths if not p.is_file()]
    if absent:
        raise DataError(f"{len(absent)} image(s) listed in train.csv are missing, e.g. {absent[0]}")
    return df, paths


def load(root: str | None = None, size: int = 224, resize: str = "squish", targets: list[str] = ("label", "variety"),
         valid_pct: float = 0.2, split_seed: int = 42, train_subset: int | None = None,
         valid_subset: int | None = None, strict: bool = False, workers: int | None = None,
         cache: bool = True, sizes: list[int] | None = None, size_epochs: list[int] | None = None) -> ImageData:
    """The training images at size x size with a seeded `valid_pct` validation split. y is
    (N, len(targets)) class indices; the first target (disease by default) is the headline."""
    targets = list(targets)
    if not targets:
        raise DataError("data.targets is empty; use [label], [variety] or [label, variety]")
    check_subsets(train_subset, valid_subset)
    check_size(size)
    folder = locate(root)
    df, paths = read_table(folder, targets)
    heads = {t: sorted(df[t].unique()) for t in targets}
    y = torch.stack([torch.tensor([heads[t].index(v) for v in df[t]]) for t in targets], dim=1)
    if len(targets) == 1:
        y = y[:, 0]  # one target: plain class indices, like any single-label dataset
    order = torch.randperm(len(df), generator=torch.Generator().manual_seed(split_seed))
    n_valid = round(len(df) * valid_pct)
    splits = {"valid": order[:n_valid].sort().values, "train": order[n_valid:].sort().values}
    tag = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:8]
    lists = {split: ([paths[i] for i in splits[split]], y[splits[split]]) for split in ("train", "valid")}
    return from_lists(lists, heads[targets[0]], folder, f"paddy-{tag}", size, resize, (train_subset, valid_subset),
                      strict, workers, cache, sizes, size_epochs, heads=heads)


def load_test(root: str | None = None, size: int = 224, resize: str = "squish", strict: bool = False,
              workers: int | None = None, **_) -> tuple[torch.Tensor, list[str]]:
    """The test images (uint8) and their image ids, in sample_submission.csv's order when present."""
    check_size(size)
    folder = locate(root)
    files = image_files(folder / "test_images") if (folder / "test_images").is_dir() else []
    if not files:
        raise DataError(f"{folder / 'test_images'} has no images to predict")
    if (folder / "sample_submission.csv").is_file():
        import pandas as pd
        order = list(pd.read_csv(folder / "sample_submission.csv", dtype=str)["image_id"])
        by_name = {f.name: f for f in files}
        missing = [i for i in order if i not in by_name]
        if missing:
            raise DataError(f"{len(missing)} image(s) of sample_submission.csv are not in test_images, e.g. {missing[0]}")
        files = [by_name[i] for i in order]
    tag = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:8]
    x, kept, bad = cached_images(files, size, resize, f"paddy-{tag}-test", strict=True, workers=workers)
    return x, [files[i].name for i in kept]

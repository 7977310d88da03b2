"""Your own images in a folder, as fastai, torchvision and timm read them:

- `DIR/train/<class>/*` with `DIR/valid/<class>/*` (or `val/`): the split as given;
- `DIR/<class>/*`: one tree, split by `valid_pct` (stratified: every class in both splits,
  seeded by `split_seed`);
- `DIR/*` with `label_re`: labels from the file names (fastai's from_name_re: the regex's first
  group, e.g. `^(.+)_\\d+\\.jpg$` for Oxford pets' `Breed_name_12.jpg`), split by `valid_pct`.

Images are decoded once into the image cache at `size` (or streamed, cache=false), gray and RGBA
images made RGB; unreadable files are skipped and counted (strict: an error).
"""

import re
from pathlib import Path

import torch

from ..errors import DataError
from . import IMAGE_SUFFIXES, ImageData, check_subsets, explicit_root, image_files
from .images import check_size, from_lists

HINT = "point data.root at a folder of class folders (DIR/<class>/*, or DIR/train/<class>/* and DIR/valid/<class>/*)"


def class_tree(folder: Path) -> dict[str, list[Path]]:
    """Class name -> its image files, for each class folder of `folder` (sorted); an empty class
    folder is refused (a class that is never shown cannot be learnt or checked)."""
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    tree = {c.name: image_files(c) for c in classes}
    empty = [name for name, files in tree.items() if not files]
    if empty:
        raise DataError(f"class folder {folder / empty[0]} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                        "add images or remove the folder")
    if not tree:
        raise DataError(f"{folder} has no class folders; {HINT}, or name the classes with data.label_re")
    return tree


def named_by_regex(folder: Path, label_re: str) -> dict[str, list[Path]]:
    """Class name -> files, each file's class the first group of `label_re` matched to its name."""
    try:
        pattern = re.compile(label_re)
    except re.error as e:
        raise DataError(f"data.label_re={label_re!r} is not a regular expression ({e})") from None
    if pattern.groups < 1:
        raise DataError(f"data.label_re={label_re!r} has no group; put the label in parentheses, e.g. "
                        r"'^(.+)_\d+\.jpg$'")
    files = image_files(folder)
    if not files:
        raise DataError(f"{folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}) for data.label_re")
    tree: dict[str, list[Path]] = {}
    for file in files:
        match = pattern.search(file.name)
        if match is None or not match.group(1):
            raise DataError(f"{file.name} does not match data.label_re={label_re!r}, so it has no label; fix the "
                            "pattern or move the file out of data.root")
        tree.setdefault(match.group(1), []).append(file)
    return dict(sorted(tree.items()))


def stratified_split(tree: dict[str, list[Path]], valid_pct: float, seed: int) -> tuple[dict, dict]:
    """(train, valid) trees: of each class a seeded random valid_pct of its files (at least one) is
    validation, the rest (at least one) training."""
    if not 0 < valid_pct < 1:
        raise DataError(f"data.valid_pct={valid_pct} must be between 0 and 1 (the share of each class that validates)")
    small = [name for name, files in tree.items() if len(files) < 2]
    if small:
        raise DataError(f"class {small[0]!r} has {len(tree[small[0]])} image; a split by data.valid_pct puts every "
                        "class in both splits, so each needs at least 2 (add images, or give train/ and valid/)")
    generator = torch.Generator().manual_seed(seed)
    train, valid = {}, {}
    for name, files in tree.items():
        order = torch.randperm(len(files), generator=generator).tolist()
        n_valid = min(max(1, round(len(files) * valid_pct)), len(files) - 1)
        valid[name] = sorted(files[i] for i in order[:n_valid])
        train[name] = sorted(files[i] for i in order[n_valid:])
    return train, valid


def trees(folder: Path, valid_pct: float, split_seed: int, label_re: str | None) -> tuple[dict, dict]:
    """The (train, valid) class trees of `folder`, whichever of the three layouts it has."""
    if label_re is not None:
        return stratified_split(named_by_regex(folder, label_re), valid_pct, split_seed)
    valid_dir = next((folder / n for n in ("valid", "val") if (folder / n).is_dir()), None)
    if not (folder / "train").is_dir():
        return stratified_split(class_tree(folder), valid_pct, split_seed)
    train = class_tree(folder / "train")
    if valid_dir is None:
        raise DataError(f"{folder} has train/ but no valid/ (or val/) beside it; add one, or put the class folders "
                        "directly in data.root to split them by data.valid_pct")
    valid = class_tree(valid_dir)
    unknown = sorted(set(valid) - set(train))
    if unknown:
        raise DataError(f"{valid_dir} has class {unknown[0]!r}, which train/ does not; a model cannot predict a class "
                        "it never saw (add it to train/ or remove it)")
    return train, valid


def load(root: str | None = None, size: int = 128, resize: str = "crop", valid_pct: float = 0.2,
         split_seed: int = 42, label_re: str | None = None, train_subset: int | None = None,
         valid_subset: int | None = None, strict: bool = False, workers: int | None = None,
         cache: bool = True, sizes: list[int] | None = None, size_epochs: list[int] | None = None) -> ImageData:
    """A folder of images by class at size x size; class names are the folder names (or label_re's
    groups), sorted, and are stored in the checkpoint."""
    check_subsets(train_subset, valid_subset)
    check_size(size)
    if not root:
        raise DataError(f"data=folder needs data.root=DIR; {HINT}")
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise explicit_root(root, [], HINT)
    train, valid = trees(folder, valid_pct, split_seed, label_re)
    return from_trees(train, valid, folder, "folder", size, resize, (train_subset, valid_subset), strict, workers, cache,
                      sizes, size_epochs)


def from_trees(train: dict[str, list[Path]], valid: dict[str, list[Path]], root: Path, label: str, size: int,
               resize: str, subsets: tuple[int | None, int | None], strict: bool, workers: int | None,
               cache: bool, sizes: list[int] | None = None, size_epochs: list[int] | None = None) -> ImageData:
    """ImageData of (train, valid) class trees: the classes are train's, sorted; each split's images
    decoded into the cache (`label` names its files there), a fixed sample of subsets[i] of them."""
    classes = sorted(train)
    splits = {}
    for split, tree in (("train", train), ("valid", valid)):
        files = [f for name in classes for f in tree.get(name, [])]
        labels = torch.tensor([i for i, name in enumerate(classes) for _ in tree.get(name, [])], dtype=torch.int64)
        splits[split] = (files, labels)
    return from_lists(splits, classes, root, label, size, resize, subsets, strict, workers, cache, sizes, size_epochs)

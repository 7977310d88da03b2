"""Your own images listed in a CSV file (fastai's from_df/from_csv, timm's and Kaggle's way): one row
per image, a file column (a path relative to data.root) and a label column, names settable; a
validation column (`is_valid`: true/false, 1/0) when the table has one, else the seeded stratified
split of data=folder. A path that leads outside data.root, a missing column or an empty cell is one
line naming the row.

With `label_delim` a label cell holds several labels (fastai's label_delim, the Planet workflow:
"clear primary water"): y is (N, labels) of 0/1, the task is multi-label, and an empty cell is an
image with none of them."""

import logging
from pathlib import Path

import pandas as pd
import torch

from ..errors import DataError
from . import ImageData, check_subsets, within
from .folder import from_trees, stratified_split
from .images import check_size, from_lists

log = logging.getLogger(__name__)
TRUE, FALSE = {"true", "1", "yes", "valid", "1.0"}, {"false", "0", "no", "train", "0.0", ""}


def read_table(path: Path, columns: list[str], filled: list[str]) -> pd.DataFrame:
    """The CSV's rows as text, refused when it lacks a named column or a cell of a `filled` one."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise DataError(f"data.csv={path} cannot be read as a CSV table ({e})") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(f"data.csv={path} has no column {missing[0]!r} (its columns: {', '.join(table.columns)}); "
                        f"name yours with data.file_col and data.label_col")
    for column in filled:
        empty = table.index[table[column].str.strip() == ""]
        if len(empty):
            raise DataError(f"{path} row {empty[0] + 2} has an empty {column!r} cell; fill or remove that row")
    if table.empty:
        raise DataError(f"data.csv={path} has no rows")
    return table


def is_valid(table: pd.DataFrame, column: str, path: Path) -> list[bool]:
    values = table[column].str.strip().str.lower()
    odd = values[~values.isin(TRUE | FALSE)]
    if len(odd):
        raise DataError(f"{path} row {odd.index[0] + 2} has {column}={odd.iloc[0]!r}; use true/false or 1/0")
    return values.isin(TRUE).tolist()


def single_label(rows: list[tuple[Path, str, bool]], flagged: bool, split: tuple[float, int], folder: Path,
                 path: Path, options: dict) -> ImageData:
    """ImageData of (file, class, validates) rows; unflagged rows split by (valid_pct, split_seed), stratified."""
    trees: tuple[dict, dict] = ({}, {})
    for file, name, valid in rows:
        trees[valid].setdefault(name, []).append(file)
    train, valid = trees if flagged else stratified_split(dict(sorted(trees[0].items())), *split)
    unknown = sorted(set(valid) - set(train))
    if unknown:
        raise DataError(f"{path}: label {unknown[0]!r} is only in validation rows; a model cannot predict a class it "
                        "never saw (give it training rows)")
    return from_trees(train, valid, folder, "csv", **options)


def multilabel_split(rows: list[tuple[Path, list[str]]], valid_pct: float, seed: int) -> list[bool]:
    """A seeded random valid_pct of the rows validates, except that every label keeps a training
    image: in the seeded order, a row whose label training has not seen yet trains."""
    if not 0 < valid_pct < 1:
        raise DataError(f"data.valid_pct={valid_pct} must be between 0 and 1 (the share of the images that validates)")
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed)).tolist()
    seen: set[str] = set()
    flags = [False] * len(rows)
    n_valid = min(max(1, round(len(rows) * valid_pct)), len(rows) - 1)
    for i in order:
        if n_valid and set(rows[i][1]) <= seen:
            flags[i], n_valid = True, n_valid - 1
        seen |= set(rows[i][1]) if not flags[i] else set()
    return flags


def multilabel(rows: list[tuple[Path, list[str], bool]], folder: Path, path: Path, options: dict) -> ImageData:
    """ImageData of (file, labels, validates) rows: y is (N, labels) of 0/1, over training's labels."""
    classes = sorted({name for _, names, valid in rows if not valid for name in names})
    unknown = sorted({name for _, names, valid in rows if valid for name in names} - set(classes))
    if unknown:
        raise DataError(f"{path}: label {unknown[0]!r} is only in validation rows; a model cannot predict a label it "
                        "never saw (give it training rows)")
    splits = {}
    for split, valid in (("train", False), ("valid", True)):
        chosen = [(file, names) for file, names, v in rows if v == valid]
        y = torch.zeros(len(chosen), len(classes), dtype=torch.float32)
        for i, (_, names) in enumerate(chosen):
            y[i, [classes.index(n) for n in names]] = 1
        splits[split] = ([file for file, _ in chosen], y)
    return from_lists(splits, classes, folder, "csv", **options)


def load(root: str | None = None, csv: str = "labels.csv", file_col: str = "file", label_col: str = "label",
         valid_col: str = "is_valid", label_delim: str | None = None, threshold: float = 0.5, size: int = 128,
         resize: str = "crop", valid_pct: float = 0.2, split_seed: int = 42, train_subset: int | None = None,
         valid_subset: int | None = None, strict: bool = False, workers: int | None = None,
         cache: bool = True, sizes: list[int] | None = None, size_epochs: list[int] | None = None) -> ImageData:
    """The images a CSV table lists, at size x size; csv: the table's path (relative: to data.root).
    label_delim: several labels per cell, split by it (multi-label; a label predicted above threshold)."""
    check_subsets(train_subset, valid_subset)
    check_size(size)
    if not root or not Path(root).expanduser().is_dir():
        raise DataError(f"data=csv needs data.root=DIR, the folder the table's paths start from (got {root!r})")
    folder = Path(root).expanduser()
    path = Path(csv).expanduser() if Path(csv).expanduser().is_absolute() else folder / csv
    if not path.is_file():
        raise DataError(f"data.csv={csv} is not a file (looked at {path}); pass the table of files and labels")
    if label_delim is not None and (label_delim == "" or not 0 < threshold < 1):
        raise DataError(f"data.label_delim={label_delim!r} and data.threshold={threshold}: several labels per cell "
                        "need a non-empty delimiter (e.g. ' ') and a threshold between 0 and 1")
    table = read_table(path, [file_col, label_col], [file_col] if label_delim is not None else [file_col, label_col])
    files = [within(folder, f.strip(), f"{path.name} row {i + 2}'s {file_col}") for i, f in enumerate(table[file_col])]
    labels = table[label_col].str.strip().tolist()
    if label_delim is not None:
        labels = [sorted({n.strip() for n in cell.split(label_delim) if n.strip()}) for cell in labels]
    flags = is_valid(table, valid_col, path) if valid_col in table.columns else None
    missing = {str(f): "listed in the table, and not found" for f in files if not f.is_file()}
    if missing and strict:
        raise DataError(f"{next(iter(missing))} is listed in {path} and does not exist (data.strict=true)")
    for file in missing:
        log.warning("skipping %s: listed in %s, and not found", file, path)
    rows = [(f, name, flags[i] if flags else False) for i, (f, name) in enumerate(zip(files, labels))
            if str(f) not in missing]
    rows.sort()  # the same table in any row order: the same data
    options = dict(size=size, resize=resize, subsets=(train_subset, valid_subset), strict=strict, workers=workers,
                   sizes=sizes, size_epochs=size_epochs,
                   cache=cache)
    if label_delim is None:
        data = single_label(rows, flags is not None, (valid_pct, split_seed), folder, path, options)
    else:
        if flags is None:
            split = multilabel_split([r[:2] for r in rows], valid_pct, split_seed)
            rows = [(f, names, v) for (f, names, _), v in zip(rows, split)]
        data = multilabel(rows, folder, path, options | {"task": "multilabel", "threshold": threshold})
    data.skipped |= missing
    return data

"""Your own images listed in a CSV file (fastai's from_df/from_csv, timm's and Kaggle's way): one row
per image, a file column (a path relative to data.root) and a label column, names settable; a
validation column (`is_valid`: true/false, 1/0) when the table has one, else the seeded stratified
split of data=folder. A path that leads outside data.root, a missing column or an empty cell is one
line naming the row."""

import logging
from pathlib import Path

import pandas as pd

from ..errors import DataError
from . import ImageData, check_subsets, within
from .folder import from_trees, stratified_split
from .images import check_size

log = logging.getLogger(__name__)
TRUE, FALSE = {"true", "1", "yes", "valid", "1.0"}, {"false", "0", "no", "train", "0.0", ""}


def read_table(path: Path, columns: list[str]) -> pd.DataFrame:
    """The CSV's rows as text, refused when it lacks a named column or a cell of the file or label."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as e:
        raise DataError(f"data.csv={path} cannot be read as a CSV table ({e})") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(f"data.csv={path} has no column {missing[0]!r} (its columns: {', '.join(table.columns)}); "
                        f"name yours with data.file_col and data.label_col")
    for column in columns:
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


def load(root: str | None = None, csv: str = "labels.csv", file_col: str = "file", label_col: str = "label",
         valid_col: str = "is_valid", size: int = 128, resize: str = "crop", valid_pct: float = 0.2,
         split_seed: int = 42, train_subset: int | None = None, valid_subset: int | None = None,
         strict: bool = False, workers: int | None = None, cache: bool = True) -> ImageData:
    """The images a CSV table lists, at size x size; csv: the table's path (relative: to data.root)."""
    check_subsets(train_subset, valid_subset)
    check_size(size)
    if not root or not Path(root).expanduser().is_dir():
        raise DataError(f"data=csv needs data.root=DIR, the folder the table's paths start from (got {root!r})")
    folder = Path(root).expanduser()
    path = Path(csv).expanduser() if Path(csv).expanduser().is_absolute() else folder / csv
    if not path.is_file():
        raise DataError(f"data.csv={csv} is not a file (looked at {path}); pass the table of files and labels")
    table = read_table(path, [file_col, label_col])
    files = [within(folder, f.strip(), f"{path.name} row {i + 2}'s {file_col}") for i, f in enumerate(table[file_col])]
    labels = table[label_col].str.strip().tolist()
    flags = is_valid(table, valid_col, path) if valid_col in table.columns else None
    missing = {str(f): "listed in the table, and not found" for f in files if not f.is_file()}
    if missing and strict:
        raise DataError(f"{next(iter(missing))} is listed in {path} and does not exist (data.strict=true)")
    for file in missing:
        log.warning("skipping %s: listed in %s, and not found", file, path)
    rows = [(f, name, flags[i] if flags else False) for i, (f, name) in enumerate(zip(files, labels))
            if str(f) not in missing]
    trees: tuple[dict, dict] = ({}, {})
    for file, name, valid in sorted(rows):  # the same table in any row order: the same data
        trees[valid].setdefault(name, []).append(file)
    train, valid = trees if flags is not None else stratified_split(dict(sorted(trees[0].items())), valid_pct,
                                                                      split_seed)
    unknown = sorted(set(valid) - set(train))
    if unknown:
        raise DataError(f"{path}: label {unknown[0]!r} is only in validation rows; a model cannot predict a class it "
                        "never saw (give it training rows)")
    data = from_trees(train, valid, folder, "csv", size, resize, (train_subset, valid_subset), strict, workers, cache)
    data.skipped |= missing
    return data

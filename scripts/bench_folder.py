"""data=folder and data=csv against data=imagenette on the same images (issue 25's goal: equal): the
image cache's build and reuse, then `expt train` on each for --epochs (the last epoch's seconds and
val/acc), side by side in one run. data=csv reads fastai's noisy_imagenette.csv (path,
noisy_labels_0, is_valid). --epochs 0 measures the caches alone; --train-subset 0 takes every image.

    EXPT_DATA=../shared/data python scripts/bench_folder.py --train-subset 2000 --valid-subset 500

All three read Imagenette's train/<wnid>/ and val/<wnid>/ (data=folder takes val/ as its validation
folder, data=csv the is_valid rows); with the same subsets they pick the same files (each sorts by
class, then by name). Each dataset gets a fresh cache folder, so the first load builds it.
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

MODULES = {"imagenette": "imagenette", "folder": "folder", "csv": "table"}  # data option -> its module
CSV = {"csv": "noisy_imagenette.csv", "file_col": "path", "label_col": "noisy_labels_0"}  # fastai's own table


def load_seconds(option: str, root: Path, args, cache: Path) -> tuple[float, float, int]:
    """Seconds to build the cache, then to load it again, and the number of training images."""
    code = (f"import time, expt.data.{MODULES[option]} as m\n"
            f"kw = dict(root=%r, size=%d, train_subset=%r, valid_subset=%r, **{CSV if option == 'csv' else {}})\n"
            "t = time.perf_counter(); d = m.load(**kw); a = time.perf_counter() - t\n"
            "t = time.perf_counter(); m.load(**kw); b = time.perf_counter() - t\n"
            "print(a, b, len(d.train_x))\n") % (str(root), args.size, args.train_subset, args.valid_subset)
    env = {**os.environ, "EXPT_CACHE": str(cache)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    first, again, n = out.stdout.split()
    return float(first), float(again), int(n)


def epoch_seconds(option: str, root: Path, args, cache: Path, run_dir: Path) -> tuple[float, float]:
    """The last epoch's seconds and val/acc of `expt train` on the dataset (its cache already built)."""
    env = {**os.environ, "EXPT_CACHE": str(cache)}
    subprocess.run([sys.executable, "-m", "expt.cli", "train", f"data={option}", f"data.root={root}",
                    f"data.size={args.size}", f"data.train_subset={args.train_subset or 'null'}",
                    f"data.valid_subset={args.valid_subset or 'null'}", f"bs={args.bs}", f"epochs={args.epochs}", "seed=1",
                    *([f"data.{k}={v}" for k, v in CSV.items()] if option == "csv" else []),
                    f"device={args.device}", f"hydra.run.dir={run_dir}"], env=env, check=True, capture_output=True)
    with open(run_dir / "metrics.csv") as f:
        last = list(csv.DictReader(f))[-1]
    return float(last["seconds"]), float(last["val/acc"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=Path(os.environ.get("EXPT_DATA", Path(__file__).resolve().parents[2]
                                                              / "shared" / "data")) / "imagenette")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--train-subset", type=int, default=2000)
    parser.add_argument("--valid-subset", type=int, default=500)
    parser.add_argument("--bs", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    args.train_subset, args.valid_subset = args.train_subset or None, args.valid_subset or None  # 0: every image
    table = Table(title=f"{args.root}: {args.train_subset or 'all'} train / {args.valid_subset or 'all'} valid images "
                        f"at {args.size} px")
    trains = [f"epoch {args.epochs} (s)", f"val/acc after {args.epochs}"] if args.epochs else []
    for col in ("data", "train images", "cache build (s)", "cache load (s)", *trains):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        for option in MODULES:
            cache = Path(tmp) / f"cache-{option}"
            build, reuse, n = load_seconds(option, Path(args.root), args, cache)
            row = [option, f"{n:,}", f"{build:.1f}", f"{reuse:.2f}"]
            if args.epochs:
                seconds, acc = epoch_seconds(option, Path(args.root), args, cache, Path(tmp) / f"run-{option}")
                row += [f"{seconds:.1f}", f"{acc:.4f}"]
            table.add_row(*row)
    Console().print(table)
    print(f"({time.strftime('%Y-%m-%d')})")


if __name__ == "__main__":
    main()

"""Each training trick alone against the same recipe without it, over seeds, side by side: one
`expt sweep` per trick (its seeds as the sweep's jobs), then one table from the sweeps' sweep.csv.

    python scripts/bench_tricks.py --out outputs/cpu/tricks_cnn5 -- arch=cnn epochs=5 device=cpu
    python scripts/bench_tricks.py --only baseline mixup ema --seeds 1 2 3 -- experiment=fmnist_20ep_aug
    python scripts/bench_tricks.py --table --out outputs/cpu/tricks_cnn5   # the table again, from the folders

A sweep folder that already holds a trick's finished jobs skips them (expt sweep's own rule), so an
interrupted benchmark goes on where it stopped. `fit s` is each job's training loop (summary.json's
`seconds`), mean over the seeds.
"""

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
from rich.table import Table

from expt.commands.runner import output_console
from expt.leaderboard import fmt_stat

TRICKS = {  # name -> the overrides that turn it on (issue 27's list)
    "baseline": [],
    "mixup": ["augment=mixup"],
    "cutmix": ["augment=cutmix"],
    "mixup_cutmix": ["augment=mixup_cutmix"],
    "ema": ["ema.decay=0.999"],
    "clip_grad": ["clip_grad=1.0"],
    "no_decay_norm_bias": ["optimizer.decay_norm_bias=false"],
    "lsuv": ["init=lsuv"],
}


def sweep(out: Path, name: str, seeds: list[int], overrides: list[str]) -> int:
    command = [sys.executable, "-m", "expt", "sweep", f"seed={','.join(map(str, seeds))}", *TRICKS[name], *overrides,
               f"hydra.sweep.dir={out / name}"]
    print("$", " ".join(command[1:]), flush=True)
    return subprocess.run(command).returncode


def table(out: Path, names: list[str]) -> Table:
    t = Table(title=f"tricks, each alone ({out})")
    for column in ("trick", "overrides", "seeds", "val/acc", "vs baseline", "fit s"):
        t.add_column(column, justify="left" if column in ("trick", "overrides") else "right")
    base = None
    for name in names:
        csv = out / name / "sweep.csv"
        if not csv.is_file():
            t.add_row(name, " ".join(TRICKS[name]), "0", "", "", "")
            continue
        rows = pd.read_csv(csv)
        rows = rows[rows["status"].isin(["ok", "early_stopped"])]
        acc = rows["val/acc"].tolist()
        mean = statistics.mean(acc) if acc else float("nan")
        std = statistics.stdev(acc) if len(acc) > 1 else 0.0
        if name == "baseline":
            base = mean
        delta = f"{100 * (mean - base):+.2f}" if base is not None and name != "baseline" else ""
        seeds = ", ".join(f"{100 * a:.2f}" for a in acc)
        t.add_row(name, " ".join(TRICKS[name]), str(len(acc)), f"{fmt_stat(mean, std, len(acc))} ({seeds})", delta,
                  f"{rows['seconds'].mean():.0f}" if len(rows) else "")
    return t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_tricks"))
    parser.add_argument("--only", nargs="+", choices=list(TRICKS), default=list(TRICKS))
    parser.add_argument("--table", action="store_true", help="only print the table of what the folders hold")
    parser.add_argument("overrides", nargs="*", help="expt sweep overrides shared by every trick (after --)")
    args = parser.parse_args()
    names = ["baseline"] + [n for n in args.only if n != "baseline"]
    failed = 0
    if not args.table:
        for name in names:
            failed += sweep(args.out, name, args.seeds, args.overrides) != 0
    output_console().print(table(args.out, names))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

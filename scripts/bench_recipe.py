"""Train one recipe for several seeds and report accuracy (mean ± std) and wall time.

    python scripts/bench_recipe.py                          # the default recipe, seeds 1 2 3
    python scripts/bench_recipe.py --seeds 1 2 3 -- epochs=20 optimizer.lr=2e-2
    python scripts/bench_recipe.py --tta flip flip_shift -- experiment=fmnist_20ep_aug
    python scripts/bench_recipe.py --reuse --tta flip --out outputs/cpu/aug20_init -- experiment=fmnist_20ep_aug

Each seed is a normal `expt train` process (its own run folder under --out); the table reads
their summary.json files. `fit s` is the training loop alone; `process s` includes start-up,
data loading and the first-epoch warm-up. `--tta` runs `expt tta` on each seed's checkpoint
with each named view set (the tta group) and adds a column per set; each result is also kept
as tta_NAME.json beside the checkpoint. `--reuse` skips training where the seed's folder
already holds a finished run (summary.json), and `expt tta` where tta_NAME.json is newer than the
checkpoint: it trusts that the folder holds this recipe.
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.table import Table

from expt.commands.runner import output_console
from expt.leaderboard import fmt_stat

# Training overrides that also apply to `expt tta` (the model and data come from the checkpoint).
TTA_KEYS = ("device", "precision", "channels_last", "data.root")


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return fmt_stat(statistics.mean(values), std, len(values))  # the sweep leaderboard's format


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", default="outputs/bench_recipe")
    parser.add_argument("--tta", nargs="+", default=[], metavar="VIEWS",
                        help="after training, expt tta with each of these view sets (e.g. flip flip_shift)")
    parser.add_argument("--reuse", action="store_true", help="do not retrain seeds whose folder has summary.json")
    parser.add_argument("overrides", nargs="*", help="expt train overrides (after --)")
    args = parser.parse_args()
    tta_overrides = [o for o in args.overrides if o.split("=", 1)[0].lstrip("+") in TTA_KEYS]
    rows = []
    for seed in args.seeds:
        run_dir = Path(args.out) / f"seed{seed}"
        process = None  # not timed when reused
        if not (args.reuse and (run_dir / "summary.json").exists()):
            start = time.perf_counter()
            cmd = [sys.executable, "-m", "expt.cli", "train", f"seed={seed}", f"hydra.run.dir={run_dir}", *args.overrides]
            subprocess.run(cmd, check=True)
            process = time.perf_counter() - start
        summary = json.loads((run_dir / "summary.json").read_text())
        row = {"seed": seed, "acc": summary["val/acc"], "fit": summary["seconds"], "process": process,
               "device": summary["device"], "mem": summary["peak_mem_mb"]}
        ckpt = run_dir / "model.safetensors"
        for views in args.tta:
            kept = run_dir / f"tta_{views}.json"
            if not (args.reuse and kept.exists() and kept.stat().st_mtime > ckpt.stat().st_mtime):
                cmd = [sys.executable, "-m", "expt.cli", "tta", f"ckpt={ckpt}", f"tta={views}", *tta_overrides]
                subprocess.run(cmd, check=True)
                shutil.copyfile(run_dir / "tta.json", kept)
            row[views] = json.loads(kept.read_text())["tta_acc"]
        rows.append(row)

    table = Table(title=f"expt train {' '.join(args.overrides) or '(default recipe)'} on {rows[0]['device']}")
    for col in ("seed", "val/acc", *(f"tta={v}" for v in args.tta), "fit s", "process s", "peak MB"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["seed"]), f"{r['acc']:.4f}", *(f"{r[v]:.4f}" for v in args.tta), f"{r['fit']:.1f}",
                      "reused" if r["process"] is None else f"{r['process']:.1f}", f"{r['mem']:.0f}")
    table.add_row("mean", mean_std([r["acc"] for r in rows]), *(mean_std([r[v] for r in rows]) for v in args.tta),
                  f"{statistics.mean(r['fit'] for r in rows):.1f}", "", "")
    output_console().print(table)


if __name__ == "__main__":
    main()

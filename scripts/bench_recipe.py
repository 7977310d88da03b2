"""Train one recipe for several seeds and report accuracy (mean ± std) and wall time.

    python scripts/bench_recipe.py                          # the default recipe, seeds 1 2 3
    python scripts/bench_recipe.py --seeds 1 2 3 -- epochs=20 optimizer.lr=2e-2

Each seed is a normal `expt train` process (its own run folder under --out); the table reads
their summary.json files. `fit s` is the training loop alone; `process s` includes start-up,
data loading and the first-epoch warm-up.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", default="outputs/bench_recipe")
    parser.add_argument("overrides", nargs="*", help="expt train overrides (after --)")
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        run_dir = Path(args.out) / f"seed{seed}"
        start = time.perf_counter()
        cmd = [sys.executable, "-m", "expt.cli", "train", f"seed={seed}", f"hydra.run.dir={run_dir}", *args.overrides]
        subprocess.run(cmd, check=True)
        summary = json.loads((run_dir / "summary.json").read_text())
        rows.append({"seed": seed, "acc": summary["val/acc"], "fit": summary["seconds"],
                     "process": time.perf_counter() - start, "device": summary["device"],
                     "mem": summary["peak_mem_mb"]})

    table = Table(title=f"expt train {' '.join(args.overrides) or '(default recipe)'} on {rows[0]['device']}")
    for col in ("seed", "val/acc", "fit s", "process s", "peak MB"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["seed"]), f"{r['acc']:.4f}", f"{r['fit']:.1f}", f"{r['process']:.1f}", f"{r['mem']:.0f}")
    accs, fits = [r["acc"] for r in rows], [r["fit"] for r in rows]
    std = statistics.stdev(accs) if len(accs) > 1 else 0.0
    table.add_row("mean", f"{statistics.mean(accs):.4f} ± {std:.4f}", f"{statistics.mean(fits):.1f}", "", "")
    Console().print(table)


if __name__ == "__main__":
    main()

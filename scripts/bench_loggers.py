"""What each logger costs a run: `expt train` in a fresh process with logger=csv, tensorboard,
mlflow (a store made once beforehand, as after a first run) and wandb (offline), the same small
recipe, `--repeats` times each in turn; the process's wall time and the fit's seconds (from start
to the end of the last epoch: the loggers' set-up, logging and closing are inside), mean ± std.

    .venv/bin/python scripts/bench_loggers.py --data-root ../shared/data/fashion_mnist --epochs 5 --repeats 3
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

LOGGERS = {"csv": [], "tensorboard": ["logger=tensorboard"], "mlflow": ["logger=mlflow"], "wandb": ["logger=wandb"],
           "all four": ["logger=[csv,tensorboard,mlflow,wandb]"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_loggers_"))
    uri = f"sqlite:///{work / 'mlflow.db'}"
    common = ["train", "debug=fast", f"data.root={args.data_root}", f"epochs={args.epochs}",
              f"logger.mlflow.tracking_uri={uri}"]
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in LOGGERS}
    warm = subprocess.run([sys.executable, "-m", "expt.cli", *common[:-1], "logger=mlflow", common[-1], "epochs=1",
                           f"hydra.run.dir={work / 'warm'}"], cwd=work, capture_output=True, text=True)
    assert warm.returncode == 0, warm.stderr  # the store exists from here on
    for repeat in range(args.repeats):
        for name, extra in LOGGERS.items():
            run = work / f"{name.replace(' ', '_')}_{repeat}"
            overrides = [o for o in common if "mlflow" not in o or "mlflow" in " ".join(extra) or "four" in name]
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "expt.cli", *overrides, *extra, f"hydra.run.dir={run}"],
                                  cwd=work, capture_output=True, text=True)
            wall = time.perf_counter() - start
            assert done.returncode == 0, done.stderr[-2000:]
            results[name].append((wall, json.loads((run / "summary.json").read_text())["seconds"]))
    table = Table(title=f"expt train debug=fast epochs={args.epochs}, {args.repeats} runs each")
    for col in ("logger", "process wall (s)", "fit (s)", "fit - csv's (s)"):
        table.add_column(col, justify="right")
    base = statistics.mean(f for _, f in results["csv"])

    def ms(values):
        return f"{statistics.mean(values):.2f} ± {statistics.stdev(values) if len(values) > 1 else 0:.2f}"
    for name, rows in results.items():
        table.add_row(name, ms([w for w, _ in rows]), ms([f for _, f in rows]), f"{statistics.mean(f for _, f in rows) - base:+.2f}")
    Console().print(table)
    print(f"({time.strftime('%Y-%m-%d')}; folders in {work})")


if __name__ == "__main__":
    main()

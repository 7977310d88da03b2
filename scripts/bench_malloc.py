"""CPU training with malloc keeping freed memory (expt's default on the CPU) against glibc's default.

    python scripts/bench_malloc.py                           # 1 epoch of the default recipe, 2 rounds
    python scripts/bench_malloc.py --rounds 3 -- experiment=fmnist_20ep_aug epochs=1

Each round runs `expt train device=cpu` once with EXPT_MALLOC=keep and once with
EXPT_MALLOC=system (alternating which goes first), as separate processes on the same seed and
data, and reads fit seconds and val/acc from summary.json and the process's user and system CPU
seconds and peak resident memory from the kernel (os.wait4). The table gives medians over rounds.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

SETTINGS = ("keep", "system")


def run_once(setting: str, run_dir: Path, overrides: list[str]) -> dict:
    cmd = [sys.executable, "-m", "expt.cli", "train", "device=cpu", f"hydra.run.dir={run_dir}", *overrides]
    proc = subprocess.Popen(cmd, env={**os.environ, "EXPT_MALLOC": setting}, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed (EXPT_MALLOC={setting})")
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"fit": summary["seconds"], "acc": summary["val/acc"], "user": usage.ru_utime,
            "sys": usage.ru_stime, "rss": usage.ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default="outputs/bench_malloc")
    parser.add_argument("overrides", nargs="*", help="expt train overrides (after --); default: epochs=1")
    args = parser.parse_args()
    overrides = args.overrides or ["epochs=1"]
    results = {s: [] for s in SETTINGS}
    for r in range(args.rounds):
        for setting in (SETTINGS if r % 2 == 0 else SETTINGS[::-1]):
            results[setting].append(run_once(setting, Path(args.out) / f"{setting}{r}", overrides))
            print(f"round {r} {setting}: {results[setting][-1]}", flush=True)

    med = {s: {k: statistics.median(x[k] for x in results[s]) for k in results[s][0]} for s in SETTINGS}
    table = Table(title=f"expt train device=cpu {' '.join(overrides)}: median of {args.rounds} rounds "
                        f"on {os.cpu_count()} cores")
    for col in ("EXPT_MALLOC", "fit s", "vs system", "user s", "sys s", "peak RSS MB", "val/acc"):
        table.add_column(col, justify="right")
    for s in SETTINGS:
        m = med[s]
        table.add_row(s, f"{m['fit']:.1f}", f"{m['fit'] / med['system']['fit'] - 1:+.1%}", f"{m['user']:.0f}",
                      f"{m['sys']:.0f}", f"{m['rss']:.0f}", f"{m['acc']:.4f}")
    Console().print(table)


if __name__ == "__main__":
    main()

"""One recipe on 1 process and on N processes (torchrun through `expt train dist.nproc=N`), side by
side: fit time, time per epoch, speed-up, and the headline metric, for each seed.

    python scripts/bench_ddp.py --nproc 1 2 --seeds 1 2 3 -- experiment=fmnist_5ep device=cpu
    python scripts/bench_ddp.py --nproc 1 2 4 8 -- experiment=imagenette_5ep      # a machine with 8 GPUs

On the CPU the cores are shared out: each of N processes gets cores/N threads (OMP_NUM_THREADS), so
every row uses the same cores. On CUDA each process has its own GPU (cuda:LOCAL_RANK). `bs` is the
global batch, so every row trains the same recipe. A row whose folder already holds summary.json is
read, not trained again.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--out", default="outputs/bench_ddp")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    rows = []
    for nproc in args.nproc:
        for seed in args.seeds:
            run = Path(args.out) / f"nproc{nproc}_seed{seed}"
            if not (run / "summary.json").exists():
                env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // nproc))}
                subprocess.run([sys.executable, "-m", "expt", "train", f"seed={seed}", f"dist.nproc={nproc}",
                                f"hydra.run.dir={run}", *args.overrides], check=True, env=env)
            summary = json.loads((run / "summary.json").read_text())
            rows.append({"nproc": nproc, "seed": seed, "seconds": summary["seconds"],
                         "per_epoch": summary["seconds_per_epoch"], "headline": summary["headline"],
                         "value": summary[summary["headline"]], "device": summary["device"]})
    base = statistics.mean(r["seconds"] for r in rows if r["nproc"] == args.nproc[0])
    print(f"\n{'nproc':>5} {'fit s':>16} {'s/epoch':>9} {'speed-up':>9}  {rows[0]['headline']} ({rows[0]['device']})")
    for nproc in args.nproc:
        mine = [r for r in rows if r["nproc"] == nproc]
        secs, values = [r["seconds"] for r in mine], [r["value"] for r in mine]
        std = (lambda v: statistics.stdev(v) if len(v) > 1 else 0.0)
        print(f"{nproc:>5} {statistics.mean(secs):>9.1f} ± {std(secs):>4.1f} {statistics.mean(r['per_epoch'] for r in mine):>9.2f} "
              f"{base / statistics.mean(secs):>8.2f}x  {statistics.mean(values):.4f} ± {std(values):.4f}")


if __name__ == "__main__":
    main()

"""experiment=fmnist_gan for several seeds on the full Fashion-MNIST, scored by val/fid in the
features of an expt classifier of the same data (gan.fid_features): FID after every epoch per
seed, whether it fell from the first epoch to the last, and the fit time.

    python scripts/bench_fmnist_gan.py --features RUN/model.safetensors --seeds 1 2 3 -- epochs=3

Overrides after -- apply to every run; a seed whose folder already holds summary.json is not
trained again. Each run's samples.png is the grid of its last epoch.
"""

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", required=True, help="a Fashion-MNIST classifier's model.safetensors")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", default="outputs/bench_fmnist_gan")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        run = Path(args.out) / f"seed{seed}"
        if not (run / "summary.json").exists():
            subprocess.run([sys.executable, "-m", "expt.cli", "train", "experiment=fmnist_gan", f"seed={seed}",
                            f"gan.fid_features={args.features}", f"hydra.run.dir={run}", *args.overrides], check=True)
        fid = pd.read_csv(run / "metrics.csv")["val/fid"].tolist()
        seconds = json.loads((run / "summary.json").read_text())["seconds"]
        rows.append({"seed": seed, "fid": fid, "seconds": seconds})
        print(f"seed {seed}: val/fid by epoch " + ", ".join(f"{v:.2f}" for v in fid)
              + f" ({'falls' if fid[-1] < fid[0] else 'does NOT fall'}), fit {seconds:.0f} s", flush=True)
    first, last = [r["fid"][0] for r in rows], [r["fid"][-1] for r in rows]
    std = statistics.stdev if len(rows) > 1 else (lambda v: 0.0)
    print(f"\nval/fid epoch 1: {statistics.mean(first):.2f} ± {std(first):.2f}; last epoch: "
          f"{statistics.mean(last):.2f} ± {std(last):.2f}; fell in {sum(b < a for a, b in zip(first, last))} "
          f"of {len(rows)} seeds")


if __name__ == "__main__":
    main()

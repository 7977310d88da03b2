"""Per-epoch losses and metrics of four small runs at a fixed seed, to show that a change of
structure changes no behaviour (issue 24): run it before the change, keep the JSON, run it after
with --compare, and see the numbers side by side.

    python scripts/check_behaviour.py --out /tmp/before.json
    python scripts/check_behaviour.py --out /tmp/after.json --compare /tmp/before.json

The runs: the default recipe on a subset, a `data=pets arch=unet` run, a GAN from noise
(`experiment=fmnist_gan` on a subset, a fixed 1:1 switcher), the default recipe as two processes
(`dist.nproc=2`), and lesson 7's super-resolution GAN with the adaptive switcher
(`experiment=pets_gan` from a new generator and critic, at 32 px).
To measure an earlier commit, run this script with that commit's src/ first on PYTHONPATH.
Data comes from EXPT_DATA (default ../shared/data): fashion_mnist/ and pets/. Every column of
metrics.csv but the seconds is compared; exit code 1 when any value differs.
"""

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

SUBSET = ["data.train_subset=2048", "data.valid_subset=512", "bs=256", "epochs=2", "device=cpu", "seed=3"]
RUNS = {
    "default recipe": SUBSET,
    "pets unet": ["data=pets", "arch=unet", "arch.residual=true", "loss=l1", "data.size=64", "bs=16", "epochs=2",
                  "device=cpu", "seed=3"],
    "fmnist_gan": ["experiment=fmnist_gan", "data.train_subset=1024", "data.valid_subset=256", "epochs=2",
                   "device=cpu", "seed=3"],
    "dist.nproc=2": [*SUBSET, "dist.nproc=2"],
    "pets gan (adaptive)": ["experiment=pets_gan", "gan.generator=null", "gan.critic_arch.n_blocks=2", "data.size=32",
                            "epochs=2", "device=cpu", "seed=3"],
}


def run(name: str, args: list[str], data: Path, folder: Path) -> list[dict]:
    root = data / ("pets" if "data=pets" in args or "experiment=pets_gan" in args else "fashion_mnist")
    out = folder / re.sub(r"[^A-Za-z0-9_.]", "", name.replace(" ", "_"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EXPT_CACHE": str(folder / "cache")}
    result = subprocess.run([sys.executable, "-m", "expt.cli", "train", *args, f"data.root={root}",
                             f"hydra.run.dir={out}"], env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{name}: exit {result.returncode}\n{result.stderr[-2000:]}")
    with open(out / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="where to write this checkout's numbers (JSON)")
    parser.add_argument("--compare", help="an earlier --out to compare with")
    parser.add_argument("--data", default=os.environ.get("EXPT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        numbers = {name: run(name, overrides, Path(args.data), Path(tmp)) for name, overrides in RUNS.items()}
    Path(args.out).write_text(json.dumps(numbers, indent=1))
    if not args.compare:
        return
    before, differ = json.loads(Path(args.compare).read_text()), 0
    for name, rows in numbers.items():
        for old, new in zip(before.get(name, []), rows):
            for key in new:
                same = old.get(key) == new[key]
                differ += not same
                print(f"{name:15} epoch {new['epoch']} {key:24} {old.get(key)!s:>22} {new[key]!s:>22} "
                      f"{'same' if same else 'DIFFERS'}")
    print(f"{differ} values differ")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()

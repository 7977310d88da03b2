"""`expt export` on a trained checkpoint, each format side by side: how long the export (with its
check) takes, the file's size, the largest difference from torch and both accuracies on every
validation image (what the check prints), and the CPU inference throughput of torch eager, the
exported file in its own runtime, at a batch of 1 and of 256.

    .venv/bin/python scripts/bench_export.py --ckpt RUN/model.safetensors [--threads 2]
    # a checkpoint to try it on: expt train epochs=1 data.root=../shared/data/fashion_mnist
"""

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from expt.commands.export import SUFFIX, load
from expt.rebuild import model_from_checkpoint


def throughput(fn, x: torch.Tensor, seconds: float = 3.0) -> float:
    """Images per second of fn on x, after a warm-up, over at least `seconds`."""
    with torch.no_grad():
        fn(x)
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            fn(x)
            n += len(x)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, type=Path)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--data-root", default=None, help="data.root, where the data moved")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, meta = model_from_checkpoint(args.ckpt)
    model = model.float().eval()
    shape = tuple(meta["input_shape"])
    table = Table(title=f"expt export of {args.ckpt} ({args.threads} threads)")
    for col in ("format", "export + check (s)", "size (MB)", "largest difference", "accuracy torch / file",
                "images/s, batch 1", "images/s, batch 256"):
        table.add_column(col, justify="right")
    batches = {b: torch.rand(b, *shape, generator=torch.Generator().manual_seed(b)) for b in (1, 256)}
    table.add_row("torch eager", "", "", "", "", *(f"{throughput(model, x):,.0f}" for x in batches.values()))
    for fmt, suffix in SUFFIX.items():
        start = time.perf_counter()
        extra = [f"data.root={args.data_root}"] if args.data_root else []
        done = subprocess.run([sys.executable, "-m", "expt.cli", "export", f"ckpt={args.ckpt}", f"format={fmt}",
                               *extra], capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode:
            table.add_row(fmt, f"failed: {done.stderr.strip()[-200:]}", "", "", "", "", "")
            continue
        found = re.search(r"largest difference (\S+); accuracy torch (\S+), exported (\S+)", done.stdout)
        path = args.ckpt.with_suffix(suffix)
        run = load(path, fmt)
        table.add_row(fmt, f"{seconds:.1f}", f"{path.stat().st_size / 2**20:.1f}", found.group(1),
                      f"{found.group(2)} / {found.group(3)}", *(f"{throughput(run, x):,.0f}" for x in batches.values()))
    Console(width=160).print(table)
    print(f"({time.strftime('%Y-%m-%d')}, torch {torch.__version__}; export + check: a fresh `expt export` process)")


if __name__ == "__main__":
    main()

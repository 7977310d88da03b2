"""Image cache: build speed, and training-loader speed from the cache against decoding every epoch.

    python scripts/bench_cache.py --root ../shared/data/imagenette --size 128

1. Builds the Imagenette training cache at --size from scratch (in a temporary EXPT_CACHE) with
   one decoding process per core, and reports images/s.
2. Reads one epoch of --bs batches two ways on --device: index slices of the cache resident on the
   device (what `expt train` does), and decoding + resizing every JPEG again through a torch
   DataLoader with --workers processes and pinned memory (what a loader without the cache does).
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table


class DecodeEveryEpoch(torch.utils.data.Dataset):
    def __init__(self, files, size):
        self.files, self.size = files, size

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        from expt.data.images import load_image
        return load_image(self.files[i], self.size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenette"))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--bs", type=int, default=256)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    os.environ["EXPT_CACHE"] = tempfile.mkdtemp(prefix="expt-bench-cache-")
    from expt.data import image_files
    from expt.data.images import cached_images
    from expt.data.loaders import DeviceLoader

    train = Path(args.root) / "train"
    files = [f for d in sorted(train.iterdir()) if d.is_dir() for f in image_files(d)]
    start = time.perf_counter()
    x, kept, bad = cached_images(files, args.size, "crop", "bench", workers=args.workers)
    build = time.perf_counter() - start

    device = torch.device(args.device)
    y = torch.zeros(len(x), dtype=torch.long)
    loader = DeviceLoader(x, y, args.bs, shuffle=True, drop_last=True, device=device)
    start = time.perf_counter()
    n = 0
    for xb, _ in loader:
        n += len(xb)
    if device.type == "cuda":
        torch.cuda.synchronize()
    resident = n / (time.perf_counter() - start)

    stream = torch.utils.data.DataLoader(DecodeEveryEpoch(files, args.size), batch_size=args.bs, shuffle=True,
                                         num_workers=args.workers, pin_memory=device.type == "cuda", drop_last=True)
    start = time.perf_counter()
    n = 0
    for xb in stream:
        xb = xb.to(device, non_blocking=True).float().div_(255)
        n += len(xb)
    if device.type == "cuda":
        torch.cuda.synchronize()
    decoding = n / (time.perf_counter() - start)

    table = Table(title=f"Imagenette train ({len(files):,} JPEGs) at {args.size}px, {os.cpu_count()} cores, {device}")
    table.add_column("what")
    table.add_column("images/s", justify="right")
    table.add_column("seconds", justify="right")
    table.add_row(f"build the cache ({args.workers} processes)", f"{len(files) / build:,.0f}", f"{build:.1f}")
    table.add_row("epoch from the device-resident cache", f"{resident:,.0f}", f"{len(files) / resident:.2f}")
    table.add_row(f"epoch decoding every JPEG ({args.workers} workers)", f"{decoding:,.0f}", f"{len(files) / decoding:.1f}")
    Console().print(table)
    print(f"skipped {len(bad)} unreadable images; cache {x.numel() / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()

"""Memory layout (and torch.compile) for the default model: training and inference throughput.

    python scripts/bench_layout.py                          # GPU if present, else CPU
    python scripts/bench_layout.py --device cpu --bs 256 --steps 10
    python scripts/bench_layout.py --compile                # adds the compiled variants

Each variant trains resnet_k5 (behind Normalize, AdamW, the precision `expt train` would pick) for
`--steps` batches of `--bs` random 28x28 images, then runs `--steps` inference batches of 2x`--bs`
(validation's size). Variants alternate over `--repeats` rounds after one warm-up round each (the
warm-up includes compilation); the table gives medians and the change against contiguous.
"""

import argparse
import statistics
import time

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from expt.models.layers import Normalize
from expt.models.resnet import resnet_k5


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Variant:
    def __init__(self, name: str, device: torch.device, channels_last: bool, compile: bool, bs: int):
        self.name, self.device = name, device
        self.fmt = torch.channels_last if channels_last else torch.contiguous_format
        torch.manual_seed(0)
        self.model = nn.Sequential(Normalize((0.286,), (0.353,)), resnet_k5(1, 10)).to(device, memory_format=self.fmt)
        self.net = torch.compile(self.model) if compile else self.model
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3, eps=1e-5)
        self.dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
        g = torch.Generator(device=device).manual_seed(0)
        self.x = torch.rand(bs, 1, 28, 28, device=device, generator=g).contiguous(memory_format=self.fmt)
        self.y = torch.randint(0, 10, (bs,), device=device, generator=g)
        self.xv = torch.rand(2 * bs, 1, 28, 28, device=device, generator=g).contiguous(memory_format=self.fmt)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None)

    def timed(self, step, steps: int) -> float:
        """Seconds for `steps` calls of `step`, synchronised with the device at both ends."""
        sync(self.device)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        sync(self.device)
        return time.perf_counter() - start

    def train_step(self) -> None:
        with self.autocast():
            loss = nn.functional.cross_entropy(self.net(self.x), self.y)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    @torch.no_grad()
    def infer_step(self) -> None:
        with self.autocast():
            self.net(self.xv)

    def train(self, steps: int) -> float:
        self.model.train()
        return self.timed(self.train_step, steps)

    def infer(self, steps: int) -> float:
        self.model.eval()
        return self.timed(self.infer_step, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bs", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd variants")
    args = parser.parse_args()
    device = torch.device(args.device)
    specs = [("contiguous", False, False), ("channels_last", True, False)]
    if args.compile:
        specs += [("contiguous + compile", False, True), ("channels_last + compile", True, True)]
    variants = [Variant(name, device, cl, comp, args.bs) for name, cl, comp in specs]
    for v in variants:  # warm-up (and compilation)
        v.train(2), v.infer(2)
    times = {v.name: ([], []) for v in variants}
    for _ in range(args.repeats):
        for v in variants:
            times[v.name][0].append(v.train(args.steps))
            times[v.name][1].append(v.infer(args.steps))

    base = [statistics.median(t) for t in times["contiguous"]]
    title = (f"resnet_k5 on {device} ({variants[0].dtype or torch.float32}), bs {args.bs}, {args.steps} steps, "
             f"median of {args.repeats}")
    table = Table(title=title)
    for col in ("layout", "train ms/step", "vs contiguous", "train img/s", "infer ms/batch", "vs contiguous"):
        table.add_column(col, justify="right")
    for name, (train, infer) in times.items():
        t, i = statistics.median(train), statistics.median(infer)
        table.add_row(name, f"{1000 * t / args.steps:.2f}", f"{100 * (t / base[0] - 1):+.1f}%",
                      f"{args.bs * args.steps / t:,.0f}", f"{1000 * i / args.steps:.2f}",
                      f"{100 * (i / base[1] - 1):+.1f}%")
    Console(width=140).print(table)


if __name__ == "__main__":
    main()

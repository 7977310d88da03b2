"""Cost of each training augmentation relative to a training step, on the same batches.

    python scripts/bench_augment.py                       # GPU if present, else CPU
    python scripts/bench_augment.py --device cpu --bs 256 --steps 5

Times each augment option's transform over --steps batches of --bs 28x28 images on the device,
and one resnet_k5 training step (forward, backward, AdamW; bf16 autocast on CUDA) on the same
batches; prints milliseconds per batch and the share an epoch would grow by.
"""

import argparse
import time
from collections import OrderedDict

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from expt import augment
from expt.models.layers import Normalize
from expt.models.resnet import resnet_k5

OPTIONS = {
    "crop_flip": lambda: augment.crop_flip(pad=1),
    "random_erase": lambda: augment.random_erase(0.2, 4),
    "random_copy": lambda: augment.random_copy(0.2, 4),
    "crop_flip_erase": lambda: augment.compose([augment.crop_flip(1), augment.random_erase(0.2, 4)]),
    "crop_flip_copy": lambda: augment.compose([augment.crop_flip(1), augment.random_copy(0.2, 4)]),
}


def timed(fn, steps: int, cuda: bool) -> float:
    """Milliseconds per call, after two warm-up calls."""
    for _ in range(2):
        fn()
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    if cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bs", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    x = torch.rand(args.bs, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (args.bs,), device=device)

    model = nn.Sequential(OrderedDict(norm=Normalize((0.286,), (0.353,)), body=resnet_k5(1, 10))).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_func = nn.CrossEntropyLoss()

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = loss_func(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step_ms = timed(step, args.steps, cuda)
    name = torch.cuda.get_device_name(device) if cuda else f"CPU ({torch.get_num_threads()} threads)"
    table = Table(title=f"{name}, bs {args.bs}, 28x28, {args.steps} batches each")
    for col in ("augment", "ms/batch", "vs training step"):
        table.add_column(col, justify="right")
    table.add_row("(training step)", f"{step_ms:.2f}", "")
    for option, build in OPTIONS.items():
        transform = build()
        ms = timed(lambda: transform(x), args.steps, cuda)
        table.add_row(option, f"{ms:.2f}", f"+{ms / step_ms:.1%}")
    Console().print(table)


if __name__ == "__main__":
    main()

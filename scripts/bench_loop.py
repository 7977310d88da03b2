"""expt's Learner against a minimal hand-written PyTorch loop: same model, batches, steps, one process.

    python scripts/bench_loop.py                        # GPU if present, else CPU
    python scripts/bench_loop.py --device cpu --bs 256 --steps 20
    # per-step overhead where the arithmetic is nearly free (what a GPU sees as launch/sync cost):
    python scripts/bench_loop.py --device cpu --threads 1 --nfs 4 8 --bs 32 --steps 500 --valid 64 --no-channels-last
    # the loop's own cost, isolated: a linear model on flattened images (microseconds of arithmetic)
    python scripts/bench_loop.py --device cpu --threads 1 --model linear --bs 32 --steps 2000 --valid 64

Both sides train the default recipe's model (resnet_k5 behind Normalize) with AdamW + one-cycle on
the same device-resident uint8 batches (same permutation seed), then validate, for `--steps`
training batches per epoch. expt runs with the callbacks `expt train` uses (metrics, progress,
schedule, precision); checkpoint writing is left out of both. Runs alternate, after one warm-up
epoch each; the table gives the median seconds per epoch and expt's overhead.
"""

import argparse
import os
import statistics
import time
from collections import OrderedDict
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from expt.callbacks import MetricsCB, PrecisionCB, ProgressCB, ScheduleCB
from expt.data.loaders import DeviceLoader
from expt.learner import Learner
from expt.models.layers import Normalize
from expt.models.resnet import resnet_k5
from expt.schedules import one_cycle
from expt.tasks import Classify


def load_images(n_train: int, n_valid: int) -> tuple[torch.Tensor, ...]:
    """Real Fashion-MNIST when EXPT_DATA (or ../shared/data) has it, else random images of its shape."""
    from expt.data.fashion_mnist import find_files, load
    root = Path(os.environ.get("EXPT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    if find_files(root / "fashion_mnist"):
        data = load(root=str(root / "fashion_mnist"), train_subset=n_train, valid_subset=n_valid, download=False)
        return data.train_x, data.train_y, data.valid_x, data.valid_y, "Fashion-MNIST"
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n_train + n_valid, 1, 28, 28), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n_train + n_valid,), generator=g)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:], "random 28x28"


def make_model(device, channels_last, nfs=(16, 32, 64, 128, 256), kind="resnet_k5"):
    torch.manual_seed(0)
    body = resnet_k5(1, 10, nfs) if kind == "resnet_k5" else nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
    model = nn.Sequential(OrderedDict(norm=Normalize((0.286,), (0.353,)), body=body))
    return model.to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def plain_epoch(model, opt, sched, train_dl, valid_dl, autocast_dtype, device) -> float:
    """The loop a practitioner writes by hand (device-side metrics, one sync at the end)."""
    loss_func = nn.CrossEntropyLoss()
    model.train()
    train_loss = torch.zeros((), device=device)
    for xb, yb in train_dl:
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            loss = loss_func(model(xb), yb)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        train_loss += loss.detach() * len(yb)
    model.eval()
    correct = torch.zeros((), device=device, dtype=torch.long)
    with torch.no_grad():
        for xb, yb in valid_dl:
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                correct += (model(xb).argmax(1) == yb).sum()
    return correct.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--bs", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=58, help="training batches per epoch (58 = 60k/1024)")
    parser.add_argument("--valid", type=int, default=10000, help="validation images per epoch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--nfs", type=int, nargs="+", default=[16, 32, 64, 128, 256], help="resnet_k5's channels")
    parser.add_argument("--model", choices=("resnet_k5", "linear"), default="resnet_k5",
                        help="linear: Flatten + Linear, a step of microseconds, so the loop's own cost shows")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="memory layout (default: on CUDA only)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    layout = cuda if args.channels_last is None else args.channels_last
    dtype = torch.bfloat16 if cuda else None
    if cuda:
        torch.backends.cudnn.benchmark = True
    train_x, train_y, valid_x, valid_y, source = load_images(args.steps * args.bs, args.valid)
    loader = dict(device=device, channels_last=layout, seed=0)

    def fresh():
        model = make_model(device, layout, tuple(args.nfs), args.model)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2, eps=1e-5)
        sched = one_cycle(opt, total_steps=args.steps * (args.repeats + 1))
        train_dl = DeviceLoader(train_x, train_y, args.bs, shuffle=True, drop_last=True, **loader)
        valid_dl = DeviceLoader(valid_x, valid_y, args.bs * 2, shuffle=False, drop_last=False, **loader)
        return model, opt, sched, train_dl, valid_dl

    model, opt, sched, train_dl, valid_dl = fresh()
    callbacks = [MetricsCB(Classify.of(10)), ProgressCB(Console(quiet=True)), ScheduleCB(sched)]
    if cuda:
        callbacks.append(PrecisionCB("bf16", "cuda"))
    learn = Learner(model, train_dl, valid_dl, nn.CrossEntropyLoss(), opt, callbacks)
    plain = fresh()

    def timed(fn) -> float:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    times = {"plain": [], "expt": []}
    for i in range(args.repeats + 1):  # the first round warms up (cuDNN autotuning, allocator)
        t_plain = timed(lambda: plain_epoch(*plain, dtype, device))
        t_expt = timed(lambda: learn.fit(i + 1, start_epoch=i))
        if i:
            times["plain"].append(t_plain)
            times["expt"].append(t_expt)

    name = torch.cuda.get_device_name(device) if cuda else f"CPU ({torch.get_num_threads()} threads)"
    table = Table(title=f"{name}, {source}, {args.model}, bs {args.bs}, {args.steps} steps + {args.valid} valid "
                        f"images/epoch, median of {args.repeats}")
    for col in ("loop", "s/epoch (median)", "min", "max", "train img/s", "us/step (median)"):
        table.add_column(col, justify="right")
    for loop, ts in times.items():
        med = statistics.median(ts)
        table.add_row(loop, f"{med:.3f}", f"{min(ts):.3f}", f"{max(ts):.3f}", f"{args.steps * args.bs / med:,.0f}",
                      f"{med / args.steps * 1e6:,.0f}")  # the epoch's validation included (small with --valid 64)
    overhead = statistics.median(times["expt"]) / statistics.median(times["plain"]) - 1
    Console().print(table)
    Console().print(f"expt overhead vs plain loop: {overhead:+.1%}")


if __name__ == "__main__":
    main()

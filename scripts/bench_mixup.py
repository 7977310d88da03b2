"""expt's per-image mixup/CutMix (augment.Mix) against timm's Mixup in element mode, on one batch:
milliseconds per batch (median of --reps), and whether a re-seeded torch RNG repeats the draw
(what a resumed run needs: expt restores torch's RNG state, not NumPy's).

    python scripts/bench_mixup.py                     # Fashion-MNIST's batch (1024 x 1 x 28 x 28) and 128 px (256 x 3)
    python scripts/bench_mixup.py --device cuda
"""

import argparse
import statistics
import time

import torch
from timm.data import Mixup

from expt.augment import mixup_cutmix


def timed(fn, reps: int, device: torch.device) -> float:
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def repeats(fn) -> bool:
    torch.manual_seed(0)
    a = fn()
    torch.manual_seed(0)
    b = fn()
    return torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| batch | classes | expt Mix ms | timm Mixup (elem) ms | expt repeats after re-seeding torch | timm repeats |")
    print("| --- | --- | --- | --- | --- | --- |")
    for shape, classes in (((1024, 1, 28, 28), 10), ((256, 3, 128, 128), 10)):
        x = torch.rand(shape, device=device)
        y = torch.randint(0, classes, (shape[0],), device=device)
        ours = mixup_cutmix(alpha=0.4, cutmix_alpha=1.0, switch_prob=0.5)
        theirs = Mixup(mixup_alpha=0.4, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode="elem",
                       label_smoothing=0.0, num_classes=classes)

        def run_ours():
            return ours(x, torch.nn.functional.one_hot(y, classes).float())

        def run_theirs():
            return theirs(x.clone(), y)
        print(f"| {'x'.join(map(str, shape))} | {classes} | {timed(run_ours, args.reps, device):.1f} | "
              f"{timed(run_theirs, args.reps, device):.1f} | {repeats(run_ours)} | {repeats(run_theirs)} |")


if __name__ == "__main__":
    main()

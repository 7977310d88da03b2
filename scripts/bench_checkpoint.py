"""Time a checkpoint save as the training loop sees it: the blocking part of CheckpointCB.save
(copying weights, optimizer and RNG state to the CPU) against the whole write (joined at once).

    python scripts/bench_checkpoint.py            # resnet_k5 + AdamW state, GPU if present
"""

import statistics
import tempfile
import time
from pathlib import Path

import torch

from expt.callbacks import CheckpointCB
from expt.models.resnet import resnet_k5


def main(repeats: int = 5) -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = resnet_k5(1, 10).to(device)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.rand(8, 1, 28, 28, device=device)).sum().backward()
    opt.step()
    learn = type("Learn", (), {"opt": opt, "history": [{"epoch": 1}]})()
    meta = {"config": {}, "classes": [], "mean": [0.0], "std": [1.0], "versions": {}}
    cb = CheckpointCB(Path(tempfile.mkdtemp()), model, meta, {})
    blocking, whole = [], []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        cb.save(learn, 1)
        blocking.append(time.perf_counter() - start)
        cb.wait()
        whole.append(time.perf_counter() - start)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{name}: blocking {statistics.median(blocking[1:]) * 1000:.1f} ms, whole write "
          f"{statistics.median(whole[1:]) * 1000:.1f} ms (median of {repeats}, after one warm-up)")


if __name__ == "__main__":
    main()

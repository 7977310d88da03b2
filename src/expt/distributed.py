"""Several processes, one run: torch.distributed under PyTorch's own launcher (torchrun).

expt notices torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK) and joins the process group:
NCCL on CUDA (each rank on cuda:LOCAL_RANK), gloo on the CPU. Rank 0 alone prints and writes; every
rank trains its share of each global batch (`bs` stays the global batch) through
DistributedDataParallel, validates its share of the validation set, and the sums behind every metric
are all-reduced, so the metrics equal a single process's. Without torchrun nothing here does
anything: world() is 1 and every rank helper answers as a single process would.
"""

import logging
import os
import re
import signal
import sys
from contextlib import contextmanager
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .errors import ConfigError, ExptError

TIMEOUT = timedelta(minutes=30)  # a collective waiting longer ends the run (rank 0 may be building a cache)


class RankFailed(ExptError):
    """Another process of a distributed run failed or went away."""

    exit_code = 1
    every_rank = True  # a failure only this rank saw: each rank says its own


def launched() -> bool:
    """Whether torchrun (or another torch.distributed launcher) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_primary() -> bool:
    """Rank 0, or a single process: the one that prints and writes."""
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def join() -> None:
    """Join the process group torchrun set up the environment for (once): gloo for tensors on the
    CPU (and small objects), NCCL for CUDA tensors, each rank on cuda:LOCAL_RANK."""
    if not launched() or dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
    dist.init_process_group("cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo", timeout=TIMEOUT)


def setup(device: torch.device) -> torch.device:
    """This rank's device, after joining the process group when torchrun started several processes:
    a CUDA device becomes cuda:LOCAL_RANK. A single process gets `device` back unchanged."""
    if not launched():
        return device
    join()
    return torch.device("cuda", local_rank()) if device.type == "cuda" else device


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if world() > 1:
        dist.barrier()


@contextmanager
def primary_first():
    """Rank 0 runs the body first (building an image cache, downloading), the others wait for it and
    then run it too (finding the cache made)."""
    if not is_primary():
        barrier()
    try:
        yield
    finally:
        if is_primary():
            barrier()


def broadcast(value):
    """Rank 0's value (any picklable object) on every rank."""
    if world() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def same_weights(model: nn.Module) -> None:
    """Every rank takes rank 0's parameters and buffers (after an init that saw each rank's own data)."""
    if world() > 1:
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)


def all_reduce_sums(sums: dict[str, torch.Tensor], count: float) -> tuple[dict[str, torch.Tensor], float]:
    """Every rank's per-batch sums added up (one collective for all of them), and the image count."""
    if world() == 1:
        return sums, count
    names = sorted(sums)
    device = next(iter(sums.values())).device if sums else torch.device("cpu")
    flat = torch.stack([sums[n].detach().double().reshape(()) for n in names]
                       + [torch.tensor(float(count), dtype=torch.float64, device=device)])
    dist.all_reduce(flat)
    totals = flat.tolist()
    return {n: torch.tensor(v) for n, v in zip(names, totals[:-1])}, totals[-1]


def local_batch(bs: int) -> int:
    """This rank's share of the global batch `bs`; the world size must divide it."""
    n = world()
    if bs % n:
        raise ConfigError(f"bs={bs} is the global batch, and {n} processes cannot share it evenly; use a multiple of "
                          f"{n} (e.g. bs={bs // n * n or n})")
    return bs // n


def shard(n: int) -> slice:
    """This rank's contiguous share of n validation images (no padding: shares differ by at most one)."""
    r, w = rank(), world()
    return slice(r * n // w, (r + 1) * n // w)


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around the model for several processes; the model itself otherwise."""
    if world() == 1:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def convert_sync_bn(model: nn.Module, setting, device: torch.device) -> nn.Module:
    """BatchNorm statistics over the global batch (SyncBatchNorm): `auto` on CUDA with several
    processes; true or false."""
    on = (device.type == "cuda" and world() > 1) if setting == "auto" else bool(setting)
    if on and world() > 1:
        if device.type != "cuda":
            raise ConfigError("dist.sync_bn=true needs CUDA (SyncBatchNorm); on the CPU use dist.sync_bn=false")
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


@contextmanager
def whole_batches(loader):
    """The loader yields whole global batches while the body runs (rank 0's lr finder)."""
    shard_of = loader.rank, loader.world
    loader.rank, loader.world = 0, 1
    try:
        yield loader
    finally:
        loader.rank, loader.world = shard_of


PEER_ERRORS = ("connection closed", "connection reset", "broken pipe", "timed out", "timeout", "nccl",
               "gloo", "socket", "peer")


@contextmanager
def peers_watched(run_dir):
    """A collective that fails because another rank went away becomes one line (RankFailed), not a
    traceback; torchrun ends the remaining ranks, and the run resumes from its last finished epoch."""
    try:
        yield
    except (dist.DistError, RuntimeError) as e:
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if world() == 1 or not (isinstance(e, dist.DistError) or any(p in text.lower() for p in PEER_ERRORS)):
            raise
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # torchrun's SIGTERM to the survivors must not cut this line short
        why = re.sub(r"^\[[^\]]*\.(cc|cpp|h):\d+\]\s*", "", text).split(". ")[0][:120]  # gloo's "[file.cc:545] "
        raise RankFailed(f"rank {rank()}: another process of this run stopped ({why}); resume it with "
                         f"`torchrun --nproc_per_node={world()} -m expt train resume={run_dir}` "
                         f"or `expt train dist.nproc={world()} resume={run_dir}`") from e


def run_alone() -> None:
    """This command runs in one process (rank 0 of a torchrun launch): it does not join a group."""
    for key, value in (("WORLD_SIZE", "1"), ("RANK", "0"), ("LOCAL_RANK", "0")):
        os.environ[key] = value


def launch(nproc: int, args: list[str]) -> int:
    """`expt train ARGS` under torch.distributed's launcher (torchrun --standalone: nproc processes on
    this machine), run in this process; returns the exit code of the first rank that failed (0: all
    finished). The ranks print their own one-line errors, so the launcher's report and traceback of
    a failed worker are left out. Ctrl-C or SIGTERM here makes the launcher stop the ranks with
    SIGTERM, and they save and stop as a single process would."""


    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run
    for name in list(logging.Logger.manager.loggerDict):  # the launcher's loggers, named after their files
        if "distributed" in name and ("elastic" in name or "launcher" in name or name.endswith("run")):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        run(parse_args(["--standalone", f"--nproc_per_node={nproc}", "-m", "expt", "train", *args]))
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        code = failure.exitcode or 1
        if code > 0:
            return code  # the rank said why itself
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else f"signal {-code}"
        run_dir = next((a.split("=", 1)[1] for a in args if a.startswith("hydra.run.dir=")), "RUN")
        print(f"error: rank {rank} of {nproc} was killed by {name}; the run stopped at its last finished epoch: "
              f"resume with `expt train dist.nproc={nproc} resume={run_dir}`", file=sys.stderr, flush=True)
        return 128 - code  # the shell's code for a death by that signal (137: SIGKILL), not -9 as 247
    except SignalException as e:  # the launcher has passed the signal on to the ranks and waited for them
        return 143 if e.sigval == signal.SIGTERM else 130
    return 0

"""One run as several processes: `expt train dist.nproc=N` relaunches itself under torchrun, and
each of torchrun's processes joins the process group and takes rank 0's run folder."""

import os
import time

from . import distributed

RUN_DIR = "outputs/runs/{now}_${{name}}"  # conf/config.yaml's hydra.run.dir, with ${now:...} resolved once


def default_run_dir() -> str:
    return RUN_DIR.format(now=time.strftime("%Y-%m-%d/%H-%M-%S"))


def other_rank_skips(command: str) -> bool:
    """Under torchrun, commands other than train run once, in rank 0: True in the other ranks (which
    then do nothing), and rank 0 goes on alone."""
    if not distributed.launched() or command == "train":
        return False
    if os.environ.get("RANK", "0") != "0":
        return True
    distributed.run_alone()
    return False


def joined_args(args: list[str]) -> list[str]:
    """`expt train` as one of torchrun's processes: join the process group; every rank takes rank 0's
    run folder (Hydra's ${now:...} resolves in each process, a second apart at times), and the
    others leave Hydra's record and log to rank 0."""
    distributed.join()
    if not any(a.startswith("hydra.run.dir=") for a in args):
        args = args + ["hydra.run.dir=" + distributed.broadcast(default_run_dir() if distributed.is_primary() else None)]
    if not distributed.is_primary():
        args = args + ["hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]
    return args


def relaunch(args: list[str], nproc: int) -> int:
    """`expt train dist.nproc=N`: the same command under torch.distributed's launcher (torchrun,
    --standalone: one machine), in one run folder resolved here; returns its exit code."""
    if not any(a.startswith("hydra.run.dir=") for a in args):
        args = args + [f"hydra.run.dir={default_run_dir()}"]
    return distributed.launch(nproc, args)

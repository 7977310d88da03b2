"""After every good epoch (finite loss, finite parameters and statistics): the model (safetensors +
metadata) and the state to resume from.

The state is copied to the CPU at the epoch's end (so training can go on changing the live
tensors), then written by a background thread while the next epoch trains; the next epoch's start
(if the write has ended), the next save, the end of the fit and `wait()` raise what the write
raised. Every file is still written atomically."""

import threading
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from ..checkpoint import atomic_write, save_model, save_state
from ..learner import Callback


def to_cpu(obj):
    """A copy of nested dicts/lists/tuples with every tensor copied to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def all_finite(model: nn.Module) -> bool:
    """Whether every floating-point parameter and buffer (BatchNorm's running statistics too) is
    finite; one host sync."""
    tensors = [t for t in model.state_dict().values() if t.is_floating_point()]
    return bool(torch.stack([t.isfinite().all() for t in tensors]).all()) if tensors else True


class CheckpointCB(Callback):
    """Writes model.safetensors and last.pt (optimizer, schedule, loader and RNG state) into
    `run_dir` after each epoch that MetricsCB let through, and metrics.csv with the learner's
    history. An epoch whose weights or statistics are not finite is dropped from the history. Under
    torchrun every rank checks the epoch (the parameters are the same everywhere, so all ranks stop
    together) and rank 0 alone writes (`write`)."""

    order = 20  # last: it saves what the other callbacks made of the epoch

    def __init__(self, run_dir: Path, model: nn.Module, meta: dict, stateful: dict, extra: dict | None = None,
                 write: bool = True):
        self.run_dir, self.model, self.meta = Path(run_dir), model, meta
        self.stateful = stateful  # name -> object with state_dict()/load_state_dict()
        self.extra = extra or {}  # plain values stored with the state (the run's config)
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.write = write

    def before_epoch(self, learn) -> None:
        if self.thread is not None and not self.thread.is_alive():
            self.wait()  # the last write has ended: a failure stops the run now, not an epoch later

    def after_epoch(self, learn) -> None:
        if not all_finite(self.model):
            # Not a good epoch: keep the last good checkpoint (and metrics.csv) as they are.
            learn.history.pop()
            learn.stop(f"parameters or statistics became non-finite in epoch {learn.epoch + 1}")
        if self.write:
            self.save(learn, epochs_done=learn.epoch + 1)

    def after_fit(self, learn) -> None:
        self.wait()

    def save(self, learn, epochs_done: int) -> None:
        self.wait()
        weights = to_cpu(self.model.state_dict())
        state = {"epochs_done": epochs_done, "history": [dict(r) for r in learn.history], "model": weights,
                 "opt": to_cpu(learn.opt.state_dict()), "torch_rng": torch.get_rng_state(), **self.extra,
                 **{name: to_cpu(obj.state_dict()) for name, obj in self.stateful.items()}}
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        self.thread = threading.Thread(target=self._write, args=(weights, state), name="expt-checkpoint")
        self.thread.start()

    def _write(self, weights: dict, state: dict) -> None:
        try:
            save_model(self.run_dir / "model.safetensors", weights, self.meta)
            save_state(self.run_dir / "last.pt", state)
            rows = pd.DataFrame(state["history"])
            atomic_write(self.run_dir / "metrics.csv", lambda tmp: rows.to_csv(tmp, index=False))
        except BaseException as e:  # reported by wait(), in the training thread
            self.error = e

    def wait(self) -> None:
        """Block until the last checkpoint is on disk; raise what writing it raised."""
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        if self.error is not None:
            error, self.error = self.error, None
            raise error

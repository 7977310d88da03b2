"""After every good epoch (finite loss, finite parameters and statistics): the model (safetensors +
metadata), the best epoch's model by the task's headline metric, and the state to resume from.

The state is copied to the CPU at the epoch's end (so training can go on changing the live
tensors), then written by a background thread while the next epoch trains; the next epoch's start
(if the write has ended), the next save, the end of the fit and `wait()` raise what the write
raised. Every file is still written atomically."""

import math
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


KEEP = ("last", "best", "both")  # checkpoint.keep: model.safetensors, model_best.safetensors, or both
BEST = "model_best.safetensors"


def improves(value, best, higher_is_better: bool, min_delta: float = 0.0) -> bool:
    """Whether a metric's value beats the best so far (None: there is none yet) by more than min_delta;
    a missing or non-finite value never does."""
    if value is None or not math.isfinite(value):
        return False
    return best is None or (value - min_delta > best if higher_is_better else value + min_delta < best)


def best_epoch(history: list[dict], metric: str, higher_is_better: bool, min_delta: float = 0.0) -> tuple:
    """(epoch, value) of the best row of `history` by `metric` (the first of equal ones: a later epoch
    must improve by more than min_delta), or (None, None) when no row has the metric."""
    epoch = value = None
    for row in history:
        if improves(row.get(metric), value, higher_is_better, min_delta):
            epoch, value = row["epoch"], row[metric]
    return epoch, value


def all_finite(model: nn.Module) -> bool:
    """Whether every floating-point parameter and buffer (BatchNorm's running statistics too) is
    finite; one host sync."""
    tensors = [t for t in model.state_dict().values() if t.is_floating_point()]
    return bool(torch.stack([t.isfinite().all() for t in tensors]).all()) if tensors else True


class CheckpointCB(Callback):
    """Writes model.safetensors and last.pt (optimizer, schedule, loader and RNG state) into
    `run_dir` after each epoch that MetricsCB let through, and metrics.csv with the learner's
    history; model_best.safetensors after an epoch whose `metric` beats every earlier one (in its
    direction), its epoch and value in its metadata. `keep`: which of the two models are written
    (last.pt always is). An epoch whose weights or statistics are not finite is dropped from the
    history. Under torchrun every rank checks the epoch (the parameters are the same everywhere, so
    all ranks stop together) and rank 0 alone writes (`write`). `saved`: the model the two model
    files hold when it is not the trained one (ema.decay: the average; last.pt keeps both)."""

    order = 20  # last: it saves what the other callbacks made of the epoch

    def __init__(self, run_dir: Path, model: nn.Module, meta: dict, stateful: dict, extra: dict | None = None,
                 write: bool = True, keep: str = "both", metric: str | None = None, higher_is_better: bool = True,
                 saved: nn.Module | None = None):
        self.run_dir, self.model, self.meta = Path(run_dir), model, meta
        self.saved = saved if saved is not None else model
        self.stateful = stateful  # name -> object with state_dict()/load_state_dict()
        self.extra = extra if extra is not None else {}  # plain values stored with the state (the run's config)
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.write, self.keep = write, keep
        self.metric, self.higher_is_better = metric, higher_is_better

    def before_epoch(self, learn) -> None:
        if self.thread is not None and not self.thread.is_alive():
            self.wait()  # the last write has ended: a failure stops the run now, not an epoch later

    def after_epoch(self, learn) -> None:
        if not all_finite(self.model) or not all_finite(self.saved):
            # Not a good epoch: keep the last good checkpoint (and metrics.csv) as they are.
            learn.history.pop()
            learn.stop(f"parameters or statistics became non-finite in epoch {learn.epoch + 1}")
        if self.write:
            self.save(learn, epochs_done=learn.epoch + 1)

    def after_fit(self, learn) -> None:
        self.wait()

    def is_best(self, history: list[dict]) -> bool:
        """Whether the last row of `history` is the best so far by the headline metric."""
        if not history or self.metric is None:
            return False
        _, before = best_epoch(history[:-1], self.metric, self.higher_is_better)
        return improves(history[-1].get(self.metric), before, self.higher_is_better)

    def save(self, learn, epochs_done: int) -> None:
        self.wait()
        weights = to_cpu(self.model.state_dict())
        saved = weights if self.saved is self.model else to_cpu(self.saved.state_dict())
        best = self.keep != "last" and self.is_best(learn.history)
        state = {"epochs_done": epochs_done, "history": [dict(r) for r in learn.history], "model": weights,
                 "opt": to_cpu(learn.opt.state_dict()), "torch_rng": torch.get_rng_state(), **self.extra,
                 **{name: to_cpu(obj.state_dict()) for name, obj in self.stateful.items()}}
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        self.thread = threading.Thread(target=self._write, args=(saved, state, best), name="expt-checkpoint")
        self.thread.start()

    def _write(self, weights: dict, state: dict, best: bool) -> None:
        # In this order: when last.pt says an epoch is done, the models of that epoch are on disk.
        try:
            meta = self.meta | {"epoch": state["epochs_done"]}
            if self.keep != "best":
                save_model(self.run_dir / "model.safetensors", weights, meta)
            if best:
                save_model(self.run_dir / BEST, weights, meta | {"best": {self.metric: state["history"][-1][self.metric]}})
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

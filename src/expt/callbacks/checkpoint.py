"""After every good epoch: the model (safetensors + metadata) and the state to resume from."""

from pathlib import Path

import torch
from torch import nn

import pandas as pd

from ..checkpoint import atomic_write, save_model, save_state
from ..learner import Callback


class CheckpointCB(Callback):
    """Writes model.safetensors and last.pt (optimizer, schedule, loader and RNG state) into
    `run_dir` after each epoch that MetricsCB let through, and metrics.csv with every row."""

    order = 20

    def __init__(self, run_dir: Path, model: nn.Module, meta: dict, stateful: dict, history: list[dict],
                 extra: dict | None = None):
        self.run_dir, self.model, self.meta = Path(run_dir), model, meta
        self.stateful = stateful  # name -> object with state_dict()/load_state_dict()
        self.history = history    # the rows MetricsCB appends to
        self.extra = extra or {}  # plain values stored with the state (the run's config)

    def after_epoch(self, learn) -> None:
        self.save(learn, epochs_done=learn.epoch + 1)

    def save(self, learn, epochs_done: int) -> None:
        save_model(self.run_dir / "model.safetensors", self.model, self.meta)
        state = {"epochs_done": epochs_done, "history": self.history, "model": self.model.state_dict(),
                 "opt": learn.opt.state_dict(),
                 "torch_rng": torch.get_rng_state(), **self.extra,
                 **{name: obj.state_dict() for name, obj in self.stateful.items()}}
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        save_state(self.run_dir / "last.pt", state)
        atomic_write(self.run_dir / "metrics.csv", lambda tmp: pd.DataFrame(self.history).to_csv(tmp, index=False))

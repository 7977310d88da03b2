"""Loggers: a run's epochs in TensorBoard, MLflow or Weights & Biases, each one callback, each
library an optional extra (`pip install 'expt[tensorboard]'`, ...). metrics.csv is always written
(with the training state, by CheckpointCB), so `logger=csv` adds nothing to it.

Every logger runs after the checkpoint (an epoch it drops is never logged), on the process that
writes (rank 0 under torchrun), and logs each epoch's row with the epoch as its step. A resumed run
goes on where it left off: its TensorBoard folder gets the restored epochs first (one curve from
epoch 1, in the run's own folder); its MLflow and W&B runs are continued, by the ids the training
state (last.pt) keeps under "loggers". A sweep's jobs are grouped: one MLflow experiment and one
W&B group per sweep folder, each job's TensorBoard folder inside the sweep folder.
"""

import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

import yaml

from ..errors import ConfigError
from ..learner import Callback
from .checkpoint import CheckpointCB

ARTIFACTS = ("model.safetensors", "model_best.safetensors", "metrics.csv", "metrics.png", "samples.png", "config.yaml")
MLFLOW_PARAM_LENGTH = 6000  # MLflow refuses a longer parameter value
MLFLOW_BATCH = 100  # parameters per log_batch call, MLflow's limit


@dataclass
class LogRun:
    """What a logger knows of its run. `resumed`: the loggers' entries of the training state the run
    resumes from; `saved`: the dict stored with the training state from now on (a logger writes its
    id there before the first epoch ends). `sweep`: the sweep folder of a sweep's job; `job`: the
    job's own overrides (what the sweep varies)."""

    run_dir: Path
    config: dict
    choices: dict = field(default_factory=dict)  # group -> option (arch -> resnet_k5)
    tags: dict = field(default_factory=dict)  # command, recipe, run folder
    resumed: dict = field(default_factory=dict)
    saved: dict = field(default_factory=dict)
    sweep: str | None = None
    job: list[str] = field(default_factory=list)


def require(library: str, extra: str, name: str) -> None:
    """A logger's library is installed, or one line naming the extra that installs it."""
    try:
        found = find_spec(library) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ConfigError(f"logger={name} needs the {library} package: pip install 'expt[{extra}]'")


def numbers(row: dict) -> dict[str, float]:
    """A metric row's finite numbers, less its epoch (the step they are logged at)."""
    return {k: float(v) for k, v in row.items() if k != "epoch" and isinstance(v, (int, float))
            and not isinstance(v, bool) and math.isfinite(v)}


def flat(config, prefix: str = "") -> dict[str, str]:
    """A nested config as one level of dotted keys (optimizer.lr) with text values."""
    if isinstance(config, dict):
        out = {}
        for k, v in config.items():
            out |= flat(v, f"{prefix}{k}.")
        return out
    return {prefix[:-1]: str(config)}


class Logger(Callback):
    """What every logger shares: its place after the checkpoint, its run, the library it needs (which
    build.check_settings finds installed before anything loads)."""

    order = CheckpointCB.order + 1  # after the checkpoint kept the epoch
    library = extra = name = ""

    def __init__(self, run: LogRun):
        self.run = run


class TensorBoardLogger(Logger):
    """Scalars under RUN/tensorboard (`tensorboard --logdir outputs`), the config as text."""

    library = extra = name = "tensorboard"

    def __init__(self, run: LogRun, flush_secs: int = 30):
        super().__init__(run)
        self.flush_secs, self.writer = flush_secs, None

    def before_fit(self, learn) -> None:
        from torch.utils.tensorboard import SummaryWriter
        # purge_step: a folder that already has later steps (a killed attempt's) drops them
        self.writer = SummaryWriter(str(self.run.run_dir / "tensorboard"), flush_secs=self.flush_secs,
                                    purge_step=len(learn.history) + 1)
        self.writer.add_text("config", "```\n" + yaml.safe_dump(self.run.config, sort_keys=False) + "```", 0)
        for row in learn.history:  # a resumed run's epochs: the whole run in this folder
            self.log(row)

    def log(self, row: dict) -> None:
        for key, value in numbers(row).items():
            self.writer.add_scalar(key, value, row["epoch"])

    def after_epoch(self, learn) -> None:
        self.log(learn.row)
        self.writer.flush()

    def after_fit(self, learn) -> None:
        self.writer.close()


class MLflowLogger(Logger):
    """One MLflow run: the resolved config flattened as params (with the group choices), each
    epoch's metrics at its step, tags for the command and recipe, the checkpoints and pictures as
    artifacts at the end. `tracking_uri` null: MLflow's default (MLFLOW_TRACKING_URI, else
    sqlite:///mlflow.db in the working folder, artifacts in ./mlruns: what `mlflow ui` opens there)."""

    library = extra = name = "mlflow"

    def __init__(self, run: LogRun, tracking_uri: str | None = None, experiment: str | None = None,
                 artifacts: bool = True):
        super().__init__(run)
        from mlflow import MlflowClient
        for name in ("mlflow", "alembic"):  # its database set-up chatter, at INFO (set up by the import)
            logging.getLogger(name).setLevel(logging.WARNING)
        self.client = MlflowClient(tracking_uri)
        self.experiment = experiment or (f"sweep {run.sweep}" if run.sweep else "expt")
        self.artifacts, self.run_id = artifacts, None

    def before_fit(self, learn) -> None:
        before = self.run.resumed.get("mlflow") or {}
        if before.get("tracking_uri") == self.client.tracking_uri and self.exists(before.get("run_id")):
            self.run_id = before["run_id"]  # the same run goes on
            self.client.update_run(self.run_id, status="RUNNING")
            self.client.set_tag(self.run_id, "expt.run_dir", str(self.run.run_dir))
            self.log_missing(learn.history)
        else:
            self.start(learn)
        self.run.saved["mlflow"] = {"run_id": self.run_id, "tracking_uri": self.client.tracking_uri}

    def exists(self, run_id) -> bool:
        from mlflow.exceptions import MlflowException
        if not isinstance(run_id, str):
            return False
        try:
            self.client.get_run(run_id)
        except MlflowException:
            return False
        return True

    def start(self, learn) -> None:
        from mlflow.entities import Param
        found = self.client.get_experiment_by_name(self.experiment)
        experiment_id = found.experiment_id if found else self.client.create_experiment(
            self.experiment, tags={"mlflow.experimentKind": "custom_model_development"})  # the UI's training view
        tags = {f"expt.{k}": str(v) for k, v in self.run.tags.items()}
        if self.run.sweep:
            tags |= {"expt.sweep": self.run.sweep, "expt.job": " ".join(self.run.job)}
        name = " ".join(self.run.job) if self.run.sweep and self.run.job else self.run.run_dir.name  # arch=resnet seed=2
        self.run_id = self.client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
        params = flat(self.run.config) | {k: str(v) for k, v in self.run.choices.items()}
        params |= {o.split("=", 1)[0].lstrip("+~"): o.split("=", 1)[1] for o in self.run.job if "=" in o}
        items = [Param(k, v[:MLFLOW_PARAM_LENGTH]) for k, v in params.items()]
        for i in range(0, len(items), MLFLOW_BATCH):
            self.client.log_batch(self.run_id, params=items[i:i + MLFLOW_BATCH])
        for row in learn.history:  # resumed from a run that had no MLflow run: its epochs first
            self.log(row)

    def log_missing(self, history: list[dict]) -> None:
        """The restored epochs the run lacks (one stopped between its checkpoint and its logging)."""
        key = next(iter(numbers(history[-1])), None) if history else None
        logged = {m.step for m in self.client.get_metric_history(self.run_id, key)} if key else set()
        for row in history:
            if row["epoch"] not in logged:
                self.log(row)

    def log(self, row: dict) -> None:
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, row["epoch"]) for k, v in numbers(row).items()])

    def after_epoch(self, learn) -> None:
        self.log(learn.row)

    def after_fit(self, learn) -> None:
        if self.artifacts:
            for name in ARTIFACTS:
                if (self.run.run_dir / name).is_file():
                    self.client.log_artifact(self.run_id, str(self.run.run_dir / name))
        self.client.set_terminated(self.run_id, status="FAILED" if learn.stop_status == "diverged" else "FINISHED")


class WandbLogger(Logger):
    """A Weights & Biases run in RUN/wandb: offline by default (no network; `wandb sync
    RUN/wandb/offline-run-*` uploads it later), the config, each epoch's metrics at its step."""

    library = extra = name = "wandb"
    MODES = ("offline", "online", "disabled")

    def __init__(self, run: LogRun, project: str = "expt", mode: str = "offline", entity: str | None = None):
        super().__init__(run)
        if mode not in self.MODES:
            raise ConfigError(f"logger.wandb.mode={mode!r} is not one of {', '.join(self.MODES)}")
        self.project, self.mode, self.entity, self.wb = project, mode, entity, None

    def before_fit(self, learn) -> None:
        import wandb
        before = (self.run.resumed.get("wandb") or {}).get("id")
        run_id = before if isinstance(before, str) and before.isalnum() else uuid.uuid4().hex[:8]
        self.wb = wandb.init(project=self.project, entity=self.entity, mode=self.mode, dir=str(self.run.run_dir),
                             id=run_id, resume="allow", name=self.run.run_dir.name, config=self.run.config,
                             group=self.run.sweep, tags=[str(self.run.tags.get("command", "train"))],
                             settings=wandb.Settings(silent=True, console="off"))
        self.run.saved["wandb"] = {"id": run_id}
        if not before:
            for row in learn.history:
                self.log(row)

    def log(self, row: dict) -> None:
        self.wb.log(numbers(row), step=row["epoch"])

    def after_epoch(self, learn) -> None:
        self.log(learn.row)

    def after_fit(self, learn) -> None:
        self.wb.finish(exit_code=1 if learn.stop_status == "diverged" else 0)

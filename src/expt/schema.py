"""Types of the run-level settings of conf/config.yaml (group nodes are checked against their
builders in signature.py), registered with Hydra so a wrong type is an error at composition, and
the settings a composed config has that nothing would read."""

from dataclasses import dataclass, field, fields
from typing import Any, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class LRFindSchema:
    start: float = 1e-7
    end: float = 10.0
    steps: int = 100
    suggestion: str = "valley"


@dataclass
class FinetuneSchema:
    freeze_epochs: int = 0
    body_lr_mult: float = 0.1


@dataclass
class DistSchema:
    nproc: int = 1
    sync_bn: Any = "auto"


@dataclass
class CheckpointSchema:
    keep: str = "both"


@dataclass
class EarlyStopSchema:
    patience: Optional[int] = None
    min_delta: float = 0.0


@dataclass
class EmaSchema:
    decay: Optional[float] = None
    warmup: bool = True


@dataclass
class RunSchema:
    """Types of the run-level settings in conf/config.yaml (group nodes are checked in build.py)."""

    data: Any = None
    arch: Any = None
    optimizer: Any = None
    schedule: Any = None
    loss: Any = None
    augment: Any = None
    name: str = "run"
    epochs: int = 5
    bs: int = 1024
    seed: int = 42
    precision: str = "auto"
    device: str = "auto"
    channels_last: Any = "auto"
    compile: bool = False
    clip_grad: Optional[float] = None
    clip_grad_mode: str = "norm"
    accumulate: int = 1
    init: str = "default"
    resume: Optional[str] = None
    ckpt: Any = None  # expt tta: a model.safetensors, or a list of them
    input: Optional[str] = None  # expt predict: a folder (or one image) to classify or restore
    n: int = 64  # expt sample: how many images; expt show: how many of the batch; expt interpret: top losses shown
    topk: int = 3  # expt predict input=: the k most likely classes of each image
    format: str = "onnx"  # expt export: onnx | torchscript | torch_export
    check: bool = True  # expt export: the exported file run against torch
    tta: Any = None
    gan: Any = None
    logger: Any = None
    lr_find: LRFindSchema = field(default_factory=LRFindSchema)
    finetune: FinetuneSchema = field(default_factory=FinetuneSchema)
    dist: DistSchema = field(default_factory=DistSchema)
    checkpoint: CheckpointSchema = field(default_factory=CheckpointSchema)
    early_stop: EarlyStopSchema = field(default_factory=EarlyStopSchema)
    ema: EmaSchema = field(default_factory=EmaSchema)


NESTED = {"lr_find": LRFindSchema, "finetune": FinetuneSchema, "dist": DistSchema,
          "checkpoint": CheckpointSchema, "early_stop": EarlyStopSchema, "ema": EmaSchema}


def register_schema() -> None:
    ConfigStore.instance().store(name="run_schema", node=RunSchema)


def unknown_settings(cfg) -> list[str]:
    """Run settings the schema does not have (a `+foo=1` that Hydra adds silently and nothing reads)."""
    known = {f.name for f in fields(RunSchema)}
    extra = [key for key in cfg if key not in known]
    for key, schema in NESTED.items():
        extra += [f"{key}.{sub}" for sub in cfg.get(key) or {} if sub not in {f.name for f in fields(schema)}]
    return extra

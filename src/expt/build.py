"""The one place that turns a composed config into objects (with cli.py, the only omegaconf user).

Each group node names a builder in `_target_`; its other keys are checked against the builder's
signature before anything is built, so a wrong key or type is one clear line, not a traceback.
"""

import functools
import inspect
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from .checkpoint import read_checkpoint
from .data import ImageData
from .data.loaders import DeviceLoader, StreamLoader
from .errors import CheckpointError, ConfigError, ExptError
from .hostmem import keep_freed_memory
from .models.layers import Normalize
from .signature import GROUPS, check_node
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
LR_SUGGESTIONS = ("valley", "steep", "minimum/10")
LR_PLACEHOLDER = 1e-3  # the optimizer's lr until the finder has chosen one (optimizer.lr=auto)


def group_node(cfg: DictConfig, group: str) -> DictConfig:
    """A group's node, with optimizer.lr=auto replaced by a placeholder number."""
    node = cfg[group]
    if group == "optimizer" and node.get("lr") == "auto":
        node = OmegaConf.merge(node, {"lr": LR_PLACEHOLDER})
    return node


def check_groups(cfg: DictConfig) -> None:
    """Check every group node against its builder before anything slow (data loading) starts."""
    for group in GROUPS:
        check_node(group, OmegaConf.to_container(group_node(cfg, group), resolve=True))


def make(group: str, node: DictConfig) -> Any:
    """Instantiate a group node with plain Python containers as arguments, after checking it against
    its builder: whatever the node's source (conf/, the command line, a checkpoint), only expt's
    builders are ever imported or called."""
    check_node(group, OmegaConf.to_container(node, resolve=True))
    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as e:
        if isinstance(e.__cause__, ExptError):
            raise e.__cause__ from None
        raise ConfigError(f"{group}: {e}".replace("\n", " ")) from e


def check_lr_find(node: DictConfig) -> None:
    if node.suggestion not in LR_SUGGESTIONS:
        raise ConfigError(f"lr_find.suggestion={node.suggestion!r} is not one of {', '.join(LR_SUGGESTIONS)}")
    if not 0 < node.start < node.end:
        raise ConfigError(f"lr_find needs 0 < start < end (got start={node.start}, end={node.end})")
    if node.steps < 3:
        raise ConfigError(f"lr_find.steps={node.steps} must be at least 3")


def resolve_device(name: str) -> torch.device:
    """The device a command computes on; for the CPU, malloc is also set to reuse freed memory
    (hostmem.py: 35% less time per CPU epoch)."""
    if name == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(name)
        except RuntimeError as e:
            raise ConfigError(f"device={name!r} is not a device; use auto, cpu, cuda or cuda:N") from e
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device={name} but no CUDA GPU is visible; use device=cpu or device=auto")
    if device.type == "cpu":
        keep_freed_memory()
    return device


def memory_format(setting, device: torch.device) -> torch.memory_format:
    """channels_last: 'auto' (on CUDA and the CPU: 21% faster resnet_k5 training steps on the CPU,
    scripts/bench_layout.py), true or false, as a memory format."""
    on = device.type in ("cuda", "cpu") if setting == "auto" else bool(setting)
    return torch.channels_last if on else torch.contiguous_format


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return precision


@dataclass
class Run:
    """Everything a command needs, built from one config."""

    data: ImageData
    model: nn.Module  # Normalize + body; what checkpoints hold
    net: nn.Module    # what the learner calls: `model`, or its compiled version
    loss: nn.Module
    opt: torch.optim.Optimizer
    augment: nn.Module | None
    train_dl: DeviceLoader | StreamLoader
    valid_dl: DeviceLoader | StreamLoader
    device: torch.device
    precision: str
    schedule: Callable[..., LRScheduler]  # schedule(optimizer, total_steps=...)
    total_steps: int
    lr_auto: bool  # optimizer.lr=auto: find the lr first, then start_schedule(lr)
    input_shape: tuple[int, ...]  # (C, H, W) of one image
    frozen: list[nn.Parameter]  # the body, trained only after freeze_epochs (fine-tuning)
    freeze_epochs: int
    sched: LRScheduler | None = None
    peak_lr: float | None = None

    def start_schedule(self, lr: float | None = None) -> LRScheduler:
        """Build the lr schedule, after making `lr` (when given) the optimizer's peak lr."""
        if lr is not None:
            for group in self.opt.param_groups:
                group["lr"] = lr * group["lr_mult"]
        self.peak_lr = lr if lr is not None else self.opt.defaults["lr"]
        self.sched = self.schedule(self.opt, total_steps=self.total_steps)
        return self.sched

    def step_callbacks(self) -> list:
        """The callbacks that shape every training step of this run: mixed precision, augmentation."""
        from .callbacks import AugmentCB, PrecisionCB
        callbacks = [PrecisionCB(self.precision, self.device.type)] if self.precision != "fp32" else []
        return callbacks + ([AugmentCB(self.augment)] if self.augment is not None else [])

    def fit_callbacks(self) -> list:
        """step_callbacks plus those that change what is trained over the epochs (fine-tuning)."""
        from .callbacks import FreezeCB
        freeze = [FreezeCB(self.frozen, self.freeze_epochs)] if self.freeze_epochs > 0 else []
        return self.step_callbacks() + freeze


def build_model(arch: DictConfig, mean: Sequence[float], std: Sequence[float], n_out: int,
                input_shape: Sequence[int] | None = None) -> nn.Module:
    """The arch's body for len(mean) input channels and n_out classes, behind the normalisation:
    the data's mean/std, or the body's own `input_norm` (a pretrained model's)."""
    builder = make("arch", arch)
    extra = {}
    if input_shape is not None and "input_shape" in inspect.signature(builder).parameters:
        extra["input_shape"] = tuple(input_shape)  # builders that care about the image size ask for it
    body = builder(n_in=len(mean), n_out=n_out, **extra)
    if input_shape is not None:
        check_input_size(body, input_shape)
    mean, std = getattr(body, "input_norm", (mean, std))
    return nn.Sequential(OrderedDict(norm=Normalize(mean, std), body=body))


def check_input_size(body: nn.Module, input_shape: Sequence[int]) -> None:
    """Refuse images the arch cannot take (its `input_sizes`, pixels a side, where it declares them)."""
    low, high = getattr(body, "input_sizes", (1, None))
    h, w = input_shape[-2:]
    if min(h, w) < low or (high is not None and max(h, w) > high):
        takes = f"{low} to {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"the arch takes images of {takes} pixels a side, and the data's are {h}x{w}; "
                          "change data.size (or the arch: resnet_k5 takes any size from 9)")


def check_data(data: ImageData, bs: int) -> None:
    """Refuse data that cannot train: fewer images than one batch, or a single class."""
    if len(data.train_x) < bs:
        raise ConfigError(f"the data has {len(data.train_x)} training images, fewer than one batch (bs={bs}); "
                          "lower bs or use more images")
    labels = data.train_y if data.train_y.ndim == 1 else data.train_y[:, 0]
    if len(data.classes) < 2 or len(labels.unique()) < 2:
        raise ConfigError(f"the training images all have one class ({data.classes[int(labels[0])]}); a classifier "
                          "needs at least two (check the data, or data.train_subset)")


def check_optimizer(node: DictConfig) -> None:
    for key in ("lr", "weight_decay", "momentum"):
        value = node.get(key)
        if isinstance(value, (int, float)) and value < 0:
            raise ConfigError(f"optimizer.{key}={value} must not be negative")


def model_from_checkpoint(path) -> tuple[nn.Module, dict]:
    """Rebuild a trained model from its checkpoint alone (weights + stored config); no pickle, and
    nothing of the stored config is imported or called unless all of it names expt's builders."""
    weights, meta = read_checkpoint(path)
    for group in ("arch", "data"):
        try:
            check_node(group, meta["config"][group])
        except ConfigError as e:
            raise CheckpointError(f"checkpoint {path} is refused: its stored {e}") from None
    arch = OmegaConf.create(meta["config"]["arch"])
    for key, value in (("pretrained", False), ("weights", None)):  # the checkpoint has the weights
        if key in arch:
            arch[key] = value
    n_out = sum(len(c) for c in meta["heads"].values()) if "heads" in meta else len(meta["classes"])
    model = build_model(arch, meta["mean"], meta["std"], n_out, meta.get("input_shape"))
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {path}: weights do not fit its stored arch "
                              f"({str(e).splitlines()[0]})") from e
    return model.eval(), meta


def build_loss(node: DictConfig, heads: dict[str, int]) -> nn.Module:
    """The loss; a partial one (multi_task) is finished with the data's heads."""
    loss = make("loss", node)
    if isinstance(loss, functools.partial):
        loss = loss(heads=heads)
    if len(heads) > 1 and not hasattr(loss, "components"):
        raise ConfigError(f"the data has {len(heads)} targets ({', '.join(heads)}): use loss=multi_task, "
                          "or data.targets=[label] for one")
    return loss


def param_groups(model: nn.Module, freeze_epochs: int, body_lr_mult: float) -> tuple[list[dict], list]:
    """Optimizer groups, each with an `lr_mult`. Fine-tuning (freeze_epochs > 0) splits the model
    into its classifier head (lr x1) and the body (lr x body_lr_mult, frozen at first)."""
    if freeze_epochs < 0 or body_lr_mult <= 0:
        raise ConfigError("finetune needs freeze_epochs >= 0 and body_lr_mult > 0")
    if freeze_epochs == 0:
        return [{"params": list(model.parameters()), "lr_mult": 1.0}], []
    get_classifier = getattr(model.body, "get_classifier", None)
    if get_classifier is None:
        raise ConfigError("finetune.freeze_epochs needs a model with a classifier head to train first "
                          "(arch=timm); set finetune.freeze_epochs=0")
    head = {id(p) for p in get_classifier().parameters()}
    body = [p for p in model.parameters() if id(p) not in head]
    return [{"params": body, "lr_mult": body_lr_mult},
            {"params": [p for p in model.parameters() if id(p) in head], "lr_mult": 1.0}], body


def loader_for(images) -> type:
    """Batches from a resident uint8 tensor, or decoded from files every epoch (data.cache=false)."""
    return DeviceLoader if isinstance(images, torch.Tensor) else StreamLoader


def build_run(cfg: DictConfig) -> Run:
    for key in ("epochs", "bs"):
        if cfg[key] < 1:
            raise ConfigError(f"{key}={cfg[key]} must be at least 1")
    check_groups(cfg)
    check_optimizer(group_node(cfg, "optimizer"))
    check_lr_find(cfg.lr_find)
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    layout = memory_format(cfg.channels_last, device)
    torch.manual_seed(cfg.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed batch shapes: let cuDNN pick the fastest kernels

    data = make("data", cfg.data)
    check_data(data, cfg.bs)
    input_shape = tuple(data.train_x.shape[1:])
    model = build_model(cfg.arch, data.mean, data.std, data.n_outputs, input_shape)
    model = model.to(device, memory_format=layout)
    loader = dict(device=device, channels_last=layout == torch.channels_last, seed=cfg.seed)
    Loader = loader_for(data.train_x)
    train_dl = Loader(data.train_x, data.train_y, cfg.bs, shuffle=True, drop_last=True, **loader)
    valid_dl = Loader(data.valid_x, data.valid_y, cfg.bs * 2, shuffle=False, drop_last=False, **loader)
    groups, frozen = param_groups(model, cfg.finetune.freeze_epochs, cfg.finetune.body_lr_mult)
    opt = make("optimizer", group_node(cfg, "optimizer"))(groups)
    for group in opt.param_groups:
        group["lr"] *= group["lr_mult"]
    run = Run(data=data, model=model, net=torch.compile(model) if cfg.compile else model,
              loss=build_loss(cfg.loss, data.head_sizes).to(device), opt=opt, augment=make("augment", cfg.augment),
              train_dl=train_dl, valid_dl=valid_dl, device=device, precision=precision,
              schedule=make("schedule", cfg.schedule), total_steps=cfg.epochs * len(train_dl),
              lr_auto=cfg.optimizer.get("lr") == "auto", input_shape=input_shape,
              frozen=frozen, freeze_epochs=cfg.finetune.freeze_epochs)
    if not run.lr_auto:
        run.start_schedule()
    return run


def resolved(cfg: DictConfig) -> dict:
    """The config as plain, fully resolved Python containers."""
    return OmegaConf.to_container(cfg, resolve=True)


@dataclass
class EvalRun:
    """What `expt tta` needs: trained models, the validation split they were trained with, views."""

    paths: list[str]
    models: list[nn.Module]
    data: ImageData
    valid_dl: DeviceLoader | StreamLoader
    tta: Any  # expt.tta.TTA
    device: torch.device
    precision: str


def stored_data(meta: dict, cfg: DictConfig) -> DictConfig:
    """The data node a checkpoint was trained with; data.root from the command line still applies
    (the data may have moved)."""
    node = OmegaConf.create(meta["config"]["data"])
    if cfg.data.get("root"):
        node.root = cfg.data.root
    return node


def build_eval(cfg: DictConfig, explicit_data: bool) -> EvalRun:
    """Load the checkpoints in `ckpt` (one path or a list) and the data their stored config names.

    `data.root` from the command line still applies (the data may have moved); a `data=` option
    given explicitly must match what the checkpoints were trained on.
    """
    paths = cfg.ckpt if isinstance(cfg.ckpt, (list, tuple)) or OmegaConf.is_list(cfg.ckpt) else [cfg.ckpt]
    paths = [str(p) for p in paths if p is not None]
    if not paths:
        raise ConfigError("expt tta needs ckpt=PATH/model.safetensors (or ckpt=[A,B] for an ensemble)")
    tta, device = make("tta", cfg.tta), resolve_device(cfg.device)
    loaded = [model_from_checkpoint(p) for p in paths]
    first = loaded[0][1]
    for path, (_, meta) in zip(paths[1:], loaded[1:]):
        if meta["classes"] != first["classes"] or meta["config"]["data"]["_target_"] != first["config"]["data"]["_target_"]:
            raise CheckpointError(f"{path} was trained on other data than {paths[0]}; ensemble models of one dataset")
    stored = stored_data(first, cfg)
    if explicit_data and cfg.data._target_ != stored._target_:
        raise CheckpointError(f"{paths[0]} was trained with data {stored._target_}, not {cfg.data._target_}; "
                              "drop the data= option or pass a checkpoint trained on that data")
    data = make("data", stored)
    if (data.classes != first["classes"] or data.heads != first.get("heads", data.heads)
            or data.n_channels != len(first["mean"])):
        raise CheckpointError(f"{paths[0]} does not fit this data ({len(first['classes'])} classes, "
                              f"{len(first['mean'])} channels); pass a checkpoint trained on it")
    layout = memory_format(cfg.channels_last, device)
    valid_dl = loader_for(data.valid_x)(data.valid_x, data.valid_y, cfg.bs * 2, shuffle=False, drop_last=False,
                                        device=device, channels_last=layout == torch.channels_last)
    return EvalRun(paths=paths, models=[m.to(device, memory_format=layout) for m, _ in loaded], data=data,
                   valid_dl=valid_dl, tta=tta, device=device, precision=resolve_precision(cfg.precision, device))


@dataclass
class TestRun:
    """What `expt predict` needs: one trained model and its dataset's test images."""

    path: str
    model: nn.Module
    heads: dict[str, list[str]]
    x: torch.Tensor  # uint8 test images
    ids: list[str]
    tta: Any
    device: torch.device
    precision: str
    layout: torch.memory_format


def build_test(cfg: DictConfig) -> TestRun:
    """The checkpoint in `ckpt` and the test split of the data it was trained on (its `load_test`)."""
    if cfg.ckpt is None or OmegaConf.is_list(cfg.ckpt):
        raise ConfigError("expt predict needs one checkpoint: ckpt=PATH/model.safetensors")
    tta = make("tta", cfg.tta)
    model, meta = model_from_checkpoint(cfg.ckpt)
    data = stored_data(meta, cfg)
    options = OmegaConf.to_container(data, resolve=True)
    check_node("data", options)  # an expt data builder, so its module is one of expt's
    module, _, _ = data._target_.rpartition(".")
    try:
        load_test = get_object(f"{module}.load_test")
    except Exception:
        raise ConfigError(f"{cfg.ckpt} was trained on {module.rsplit('.', 1)[-1]}, which has no test split "
                          "to predict (data=paddy has one)") from None
    x, ids = load_test(**{k: v for k, v in options.items() if k != "_target_"})
    device = resolve_device(cfg.device)
    layout = memory_format(cfg.channels_last, device)
    heads = meta.get("heads") or {"label": meta["classes"]}
    return TestRun(path=str(cfg.ckpt), model=model.to(device, memory_format=layout), heads=heads, x=x, ids=ids,
                   tta=tta, device=device, precision=resolve_precision(cfg.precision, device), layout=layout)

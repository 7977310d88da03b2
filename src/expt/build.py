"""Building a run: a composed config turned into data, model, loss, optimizer, schedule, the
training step and the callbacks (`callbacks_for` is the one place a run's callbacks are assembled).
builders.py turns each config node into its object; rebuild.py turns a checkpoint back into a model;
runtime.py resolves the device, precision and memory layout.

Each group node names a builder in `_target_`; its other keys are checked against the builder's
signature before anything is built, so a wrong key or type is one clear line, not a traceback.
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from . import distributed
from .augment import Mix, split_mix
from .builders import build_model, check_groups, check_input_size, group_node, listed, make, model_from_checkpoint
from .callbacks import AugmentCB, CheckpointCB, FreezeCB, MetricsCB, PrecisionCB, ProgressCB, ScheduleCB
from .callbacks.checkpoint import KEEP
from .callbacks.curves import CurvesCB
from .callbacks.distributed import DistributedCB
from .callbacks.loggers import LogRun, require
from .callbacks.training import EarlyStopCB, EmaCB, GradClipCB, MixCB, ResizeCB
from .data import ImageData
from .data.loaders import DeviceLoader, NoiseLoader, StreamLoader, loader_for
from .ema import WeightAverage
from .errors import CheckpointError, ConfigError
from .fid import FidCB, Features
from .gan import GanLogCB, GanStep
from .init import lsuv
from .losses import MultiTask
from .models import timm as timm_models
from .models.unet import EXPT_ENCODERS, DynamicUnet
from .rebuild import load_features
from .runtime import Runtime, resolve
from .signature import check_node
from .tasks import Generate, Restore, Task, task_for

__all__ = ["Run", "build_run", "callbacks_for", "make", "build_model", "check_settings", "for_resume"]
LR_SUGGESTIONS = ("valley", "steep", "minimum/10")


def check_lr_find(node: DictConfig) -> None:
    if node.suggestion not in LR_SUGGESTIONS:
        raise ConfigError(f"lr_find.suggestion={node.suggestion!r} is not one of {', '.join(LR_SUGGESTIONS)}")
    if not 0 < node.start < node.end:
        raise ConfigError(f"lr_find needs 0 < start < end (got start={node.start}, end={node.end})")
    if node.steps < 3:
        raise ConfigError(f"lr_find.steps={node.steps} must be at least 3")


@dataclass
class Run:
    """Everything a command needs, built from one config."""

    data: ImageData
    task: Task        # what the targets mean: output size, metrics, headline, checkpoint metadata
    model: nn.Module  # Normalize + body; what checkpoints hold
    net: nn.Module    # what the learner calls: `model`, or its compiled version
    loss: nn.Module
    opt: torch.optim.Optimizer
    augment: nn.Module | None  # what changes the images (mixup and CutMix are `mix`)
    train_dl: DeviceLoader | StreamLoader
    valid_dl: DeviceLoader | StreamLoader
    runtime: Runtime  # device, precision, memory layout
    schedule: Callable[..., LRScheduler]  # schedule(optimizer, total_steps=...)
    total_steps: int
    lr_auto: bool  # optimizer.lr=auto: find the lr first, then start_schedule(lr)
    input_shape: tuple[int, ...]  # (C, H, W) of one image
    frozen: list[nn.Parameter]  # the body, trained only after freeze_epochs (fine-tuning)
    freeze_epochs: int
    seed: int
    clip_grad: float | None = None  # each step's gradients clipped to this (clip_grad_mode: norm or value)
    clip_grad_mode: str = "norm"
    mix: Mix | None = None  # mixup / CutMix: images and targets mixed (augment=mixup, cutmix, mixup_cutmix)
    accumulate: int = 1  # batches of gradients per optimizer step
    ema: WeightAverage | None = None  # ema.decay: the average of the weights that validates and is saved
    init_report: list[dict] = field(default_factory=list)  # init=lsuv: each layer's statistics before and after
    sched: LRScheduler | None = None
    peak_lr: float | None = None
    gan: GanStep | None = None  # the training step of a GAN run (gan=superres, dcgan), else None: the learner's
    fid_features: Features | None = None  # a GAN's val/fid network (gan.fid_features)

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def precision(self) -> str:
        return self.runtime.precision

    def start_schedule(self, lr: float | None = None) -> LRScheduler:
        """Build the lr schedule, after making `lr` (when given) the optimizer's peak lr."""
        if lr is not None:
            for group in self.opt.param_groups:
                group["lr"] = lr * group["lr_mult"]
        self.peak_lr = lr if lr is not None else self.opt.defaults["lr"]
        self.sched = self.schedule(self.opt, total_steps=self.total_steps)
        return self.sched

    @property
    def saved_model(self) -> nn.Module:
        """What model.safetensors holds: the weights' average with ema.decay, else the model."""
        return self.ema.module if self.ema is not None else self.model

    def stateful(self) -> dict:
        """What a training state saves and restores besides the model and optimizer."""
        return ({"sched": self.sched, "train_dl": self.train_dl} | ({"gan": self.gan} if self.gan is not None else {})
                | ({"ema": self.ema} if self.ema is not None else {}))


def check_output_kind(arch: DictConfig, body: nn.Module, task) -> None:
    """Refuse an arch whose output is not what the task compares with its targets: images (a U-Net,
    a generator: `image_output` on the model) for image targets, class scores for classes."""
    makes_images = getattr(body, "image_output", False)
    if makes_images == task.image_output:
        return
    name = str(arch.get("_target_", "")).rsplit(".", 1)[-1]
    if makes_images:
        raise ConfigError(f"arch={name} outputs images, and this data's targets are classes: pick a classifier "
                          "(arch=resnet_k5, resnet or timm)" + (", or train it as a GAN from noise "
                                                                "(experiment=fmnist_gan)" if name == "dcgan" else ""))
    if isinstance(task, Generate):
        raise ConfigError(f"gan.from_noise=true needs a generator from noise: arch=dcgan (arch={name} outputs "
                          "class scores)")
    raise ConfigError(f"arch={name} outputs class scores, and this data's targets are images: use arch=unet "
                      "(or arch=dcgan with gan=dcgan, for images from noise)")


def check_data(data: ImageData, task, bs: int) -> None:
    """Refuse data that cannot train: fewer images than one batch, or what the task refuses (a
    classifier's single class)."""
    if len(data.train_x) < bs:
        raise ConfigError(f"the data has {len(data.train_x)} training images, fewer than one batch (bs={bs}); "
                          "lower bs or use more images")
    task.check_data(data)


def check_optimizer(node: DictConfig) -> None:
    for key in ("lr", "weight_decay", "momentum"):
        value = node.get(key)
        if isinstance(value, (int, float)) and value < 0:
            raise ConfigError(f"optimizer.{key}={value} must not be negative")


def build_loss(node: DictConfig, task: Task) -> nn.Module:
    """The loss; a partial one (auto, multi_task) is finished with the task."""
    loss = make("loss", node)
    if isinstance(loss, functools.partial):
        loss = loss(task=task)
    task.check_loss(loss)
    return loss


def check_mix(mix: Mix | None, task: Task, loss: nn.Module) -> None:
    """mixup and CutMix mix one target's classes or labels: refused for image targets and for
    several heads (multi_task's cross entropies take class indices)."""
    if mix is None:
        return
    if not hasattr(task, "mix_targets"):
        raise ConfigError("augment: mixup and CutMix mix class labels, and this data's targets are images; pick an "
                          "augment without them (crop_flip, none)")
    if isinstance(loss, MultiTask):
        raise ConfigError("augment: mixup and CutMix mix one target's classes, and this run has several "
                          "(loss=multi_task); train one target (data.targets=[label]) or drop the mixing")


def without_decay(groups: list[dict]) -> list[dict]:
    """Each group split in two: its parameters of one dimension (norm layers' weights, biases) in a
    group of its own with weight_decay 0 (lesson 11: decay has no regularising effect through a
    norm layer), the others as they were."""
    out = []
    for group in groups:
        flat = [p for p in group["params"] if p.ndim <= 1]
        out += [{**group, "params": [p for p in group["params"] if p.ndim > 1]}]
        out += [{**group, "params": flat, "weight_decay": 0.0}] if flat else []
    return [g for g in out if g["params"]]


def param_groups(model: nn.Module, freeze_epochs: int, body_lr_mult: float,
                 decay_norm_bias: bool = True) -> tuple[list[dict], list]:
    """Optimizer groups, each with an `lr_mult`. Fine-tuning (freeze_epochs > 0) splits the model
    into its new part (lr x1: a classifier's head, a U-Net's decoder) and its pretrained body (lr x
    body_lr_mult, frozen at first: a classifier's body, a U-Net's encoder). decay_norm_bias=False:
    norm layers' weights and biases in groups without weight decay."""
    if freeze_epochs < 0 or body_lr_mult <= 0:
        raise ConfigError("finetune needs freeze_epochs >= 0 and body_lr_mult > 0")
    if freeze_epochs == 0:
        groups = [{"params": list(model.parameters()), "lr_mult": 1.0}]
        return (groups if decay_norm_bias else without_decay(groups)), []
    get_classifier = getattr(model.body, "get_classifier", None)
    if isinstance(model.body, DynamicUnet):
        pretrained = {id(p) for p in model.body.encoder.parameters()}
    elif get_classifier is not None:
        head = {id(p) for p in get_classifier().parameters()}
        pretrained = {id(p) for p in model.parameters() if id(p) not in head}
    else:
        raise ConfigError("finetune.freeze_epochs needs a model with a pretrained body to freeze (arch=timm: all "
                          "but the classifier head; arch=unet: the encoder); set finetune.freeze_epochs=0")
    body = [p for p in model.parameters() if id(p) in pretrained]
    groups = [{"params": body, "lr_mult": body_lr_mult},
              {"params": [p for p in model.parameters() if id(p) not in pretrained], "lr_mult": 1.0}]
    return (groups if decay_norm_bias else without_decay(groups)), body


INITS = ("default", "lsuv")


def check_step(cfg: DictConfig) -> None:
    """What shapes a training step: clip_grad, accumulate, ema, init (a GAN's turns allow none but
    clipping)."""
    if cfg.clip_grad is not None and not cfg.clip_grad > 0:
        raise ConfigError(f"clip_grad={cfg.clip_grad} must be above 0 (or null: no clipping)")
    if cfg.clip_grad_mode not in GradClipCB.MODES:
        raise ConfigError(f"clip_grad_mode={cfg.clip_grad_mode!r} is not one of {', '.join(GradClipCB.MODES)}")
    if cfg.accumulate < 1:
        raise ConfigError(f"accumulate={cfg.accumulate} must be at least 1 (batches per optimizer step)")
    decay = cfg.ema.decay
    if decay is not None and not 0 < decay < 1:
        raise ConfigError(f"ema.decay={decay} must be between 0 and 1, e.g. 0.999 (or null: no average)")
    if cfg.init not in INITS:
        raise ConfigError(f"init={cfg.init!r} is not one of {', '.join(INITS)}")
    if cfg.init == "lsuv" and (cfg.arch.get("pretrained") or cfg.arch.get("weights")):
        raise ConfigError("init=lsuv re-initialises every layer, and this arch starts from trained weights "
                          "(arch.pretrained or arch.weights); drop one of them")
    if cfg.gan.get("_target_") not in (None, "expt.gan.none"):
        for on, setting in ((cfg.accumulate > 1, "accumulate"), (decay is not None, "ema.decay"),
                            (cfg.init != "default", "init")):
            if on:
                raise ConfigError(f"{setting} is for one model's training; a GAN run trains two in turns: drop it")


def check_keeping(cfg: DictConfig) -> None:
    """checkpoint.keep, early_stop's values, and each logger's library installed."""
    if cfg.checkpoint.keep not in KEEP:
        raise ConfigError(f"checkpoint.keep={cfg.checkpoint.keep!r} is not one of {', '.join(KEEP)}")
    patience, min_delta = cfg.early_stop.patience, cfg.early_stop.min_delta
    if patience is not None and patience < 1:
        raise ConfigError(f"early_stop.patience={patience} must be at least 1 (or null: never stop early)")
    if min_delta < 0:
        raise ConfigError(f"early_stop.min_delta={min_delta} must be 0 or more")
    for node in listed(cfg, "logger").values():
        logger = get_object(node["_target_"])  # one of expt's loggers (check_groups allowed no other)
        require(logger.library, logger.extra, logger.name)


def check_headline(cfg: DictConfig, task: Task) -> None:
    """A run that keeps its best model only, or stops early, has the headline metric to judge by."""
    if isinstance(task, Generate) and cfg.gan.get("fid_features") is None:
        for wants, setting in ((cfg.checkpoint.keep == "best", "checkpoint.keep=best"),
                               (cfg.early_stop.patience is not None, "early_stop.patience")):
            if wants:
                raise ConfigError(f"{setting} judges a generator by val/fid, which needs gan.fid_features=PATH "
                                  "(a classifier's checkpoint)")


def check_settings(cfg: DictConfig) -> None:
    """What can be checked of a run before any data or model exists (a sweep checks every job's
    combination this way before the first starts): run settings, every group against its builder,
    the optimizer's values, the lr finder's, and the timm model named."""
    for key in ("epochs", "bs"):
        if cfg[key] < 1:
            raise ConfigError(f"{key}={cfg[key]} must be at least 1")
    check_groups(cfg)
    check_optimizer(group_node(cfg, "optimizer"))
    if not isinstance(cfg.optimizer.get("decay_norm_bias", True), bool):
        raise ConfigError(f"optimizer.decay_norm_bias={cfg.optimizer.decay_norm_bias!r} must be true or false")
    check_lr_find(cfg.lr_find)
    check_step(cfg)
    check_keeping(cfg)
    arch = cfg.arch
    if arch.get("_target_") == "expt.models.timm.timm_model":
        timm_models.check_name(arch.name)
    elif arch.get("_target_") == "expt.models.unet.unet" and arch.get("encoder") not in EXPT_ENCODERS:
        timm_models.check_name(arch.encoder, "arch.encoder")


def for_resume(cfg: DictConfig) -> DictConfig:
    """The config a resumed run is built from: the starting weights files (arch.weights, gan.generator,
    gan.critic) are not read, since the training state restores every weight; so a resume works
    after they moved; nor is init=lsuv run. (The recipe check compares the config as given.)"""
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    cfg.init = "default"
    for key, value in (("pretrained", False), ("weights", None)):
        if key in cfg.arch:
            cfg.arch[key] = value
    for key in ("generator", "critic"):
        if cfg.get("gan") and key in cfg.gan:
            cfg.gan[key] = None
    return cfg


def build_run(cfg: DictConfig, critic_arch: dict | None = None) -> Run:
    """The run's objects. critic_arch: a resumed GAN's critic, as its training state records it."""
    check_settings(cfg)
    gan = make("gan", cfg.gan)  # its checkpoints are checked before the model is built from them
    runtime = resolve(cfg.device, cfg.precision, cfg.channels_last, distributed.setup)  # under torchrun: this rank's
    if distributed.world() > 1 and gan is not None:
        raise ConfigError("a GAN run trains its two models on one device for now: run it without torchrun and "
                          "with dist.nproc=1")
    distributed.local_batch(cfg.bs)  # the world size must divide the global batch
    torch.manual_seed(cfg.seed)
    if runtime.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed batch shapes: let cuDNN pick the fastest kernels
    with distributed.primary_first():  # rank 0 builds an image cache; the others then read it
        data = make("data", cfg.data)
    task = Generate.from_data(data) if gan is not None and gan.from_noise else task_for(data)
    check_data(data, task, cfg.bs)
    check_headline(cfg, task)
    input_shape = tuple(data.train_x.shape[1:])
    model = build_model(cfg.arch, data.mean, data.std, task.n_outputs, input_shape)
    check_output_kind(cfg.arch, model.body, task)
    for _, size in data.size_stages:  # progressive resizing's training sizes
        check_input_size(model.body, (input_shape[0], size, size), "data.sizes")
    model = runtime.place(distributed.convert_sync_bn(model, (cfg.get("dist") or {}).get("sync_bn", "auto"),
                                                      runtime.device))
    train_dl, valid_dl = build_loaders(data, runtime, cfg.bs, cfg.seed)
    init_report = initialise(model, train_dl) if cfg.init == "lsuv" else []
    augment, mix = split_mix(make("augment", cfg.augment))
    if isinstance(task, Generate):
        train_dl, valid_dl = noise_loaders(train_dl, valid_dl, model, augment or mix, cfg.seed)
    groups, frozen = param_groups(model, cfg.finetune.freeze_epochs, cfg.finetune.body_lr_mult,
                                  cfg.optimizer.get("decay_norm_bias", True))
    opt = make("optimizer", group_node(cfg, "optimizer"))(groups)
    for group in opt.param_groups:
        group["lr"] *= group["lr_mult"]
    loss = build_loss(cfg.loss, task).to(runtime.device)
    check_mix(mix, task, loss)
    run = Run(data=data, task=task, model=model, net=torch.compile(model) if cfg.compile else model,
              loss=loss, opt=opt, augment=augment, mix=mix,
              train_dl=train_dl, valid_dl=valid_dl, runtime=runtime, schedule=make("schedule", cfg.schedule),
              total_steps=cfg.epochs * -(-len(train_dl) // cfg.accumulate), lr_auto=cfg.optimizer.get("lr") == "auto",
              input_shape=input_shape, frozen=frozen, freeze_epochs=cfg.finetune.freeze_epochs, seed=cfg.seed,
              clip_grad=cfg.clip_grad, clip_grad_mode=cfg.clip_grad_mode, accumulate=cfg.accumulate,
              ema=WeightAverage(model, cfg.ema.decay, cfg.ema.warmup) if cfg.ema.decay is not None else None,
              init_report=init_report)
    if gan is not None:
        run.gan, run.fid_features = build_gan(gan, run, group_node(cfg, "optimizer"), critic_arch)
    if not run.lr_auto:
        run.start_schedule()
    return run


def initialise(model: nn.Module, train_dl) -> list[dict]:
    """init=lsuv on the first training batch (the loader's state put back, so the epochs draw what
    they would); under torchrun every rank then takes rank 0's weights."""
    state = train_dl.state_dict()
    xb, _ = next(iter(train_dl))
    train_dl.load_state_dict(state)
    report = lsuv(model, xb)
    distributed.same_weights(model)
    return report


def build_loaders(data: ImageData, runtime: Runtime, bs: int, seed: int):
    """The training and validation batches: under torchrun each rank's share of every training
    batch, and its own share of the validation images."""
    world, rank = distributed.world(), distributed.rank()
    loader = dict(device=runtime.device, channels_last=runtime.channels_last, seed=seed)
    Loader = loader_for(data.train_x)
    train_dl = Loader(data.train_x, data.train_y, bs, shuffle=True, drop_last=True, rank=rank, world=world, **loader)
    valid_x, valid_y = data.valid_x, data.valid_y
    if world > 1:  # each rank validates its own share (no padding); MetricsCB adds the sums up
        if len(valid_x) < world:
            raise ConfigError(f"{world} processes need at least {world} validation images (there are {len(valid_x)})")
        share = distributed.shard(len(valid_x))
        valid_y = valid_y[share]
        valid_x = (valid_x[share] if isinstance(valid_x, torch.Tensor)
                   else torch.utils.data.Subset(valid_x, range(share.start, share.stop)))
    return train_dl, Loader(valid_x, valid_y, max(1, bs * 2 // world), shuffle=False, drop_last=False, **loader)


def noise_loaders(train_dl, valid_dl, model: nn.Module, augment, seed: int) -> tuple[NoiseLoader, NoiseLoader]:
    """A generator from noise trains on batches of (noise, real images); validation's noise is fixed."""
    nz = getattr(model.body, "nz", None)
    if nz is None:
        raise ConfigError("gan.from_noise=true needs a generator from noise: arch=dcgan")
    if augment is not None:
        raise ConfigError("a generator from noise has noise for inputs, which augmentation would change: "
                          "use augment=none")
    return NoiseLoader(train_dl, nz, seed), NoiseLoader(valid_dl, nz, seed + 1, fixed=True)


def build_gan(spec, run: Run, opt_node: DictConfig, critic_arch: dict | None = None
              ) -> tuple[GanStep, Features | None]:
    """A GAN run's step, and the feature network of val/fid when gan.fid_features names one."""
    if run.lr_auto:
        raise ConfigError("optimizer.lr=auto finds one model's lr; a GAN run needs optimizer.lr set")
    step = build_gan_step(spec, run, opt_node, run.runtime.layout, critic_arch)
    features = None
    if spec.fid_features is not None:
        features = load_features(spec.fid_features, run.input_shape, run.device)
    return step, features


def build_gan_step(spec, run: Run, opt_node: DictConfig, layout: torch.memory_format,
                   critic_arch: dict | None = None) -> GanStep:
    """A GAN's critic (pretrained, new from spec.critic_arch, or a resumed run's of `critic_arch`, its
    arch node as the training state recorded it), its optimizer (the run's, at critic_lr_mult times
    the lr) and the step that trains it and the run's model in turns."""
    if not isinstance(run.task, (Restore, Generate)):
        raise ConfigError("a GAN run needs data whose targets are images (data=pets arch=unet, "
                          "experiment=pets_gan), or gan.from_noise=true (experiment=fmnist_gan); this data's "
                          "targets are class labels")
    # what the generator makes and the critic judges: the targets, or (from noise) the data's images
    shape = tuple((run.data.train_x if isinstance(run.task, Generate) else run.data.train_y).shape[1:])
    if critic_arch is not None:  # resumed: the weights (and their normalisation) come from last.pt
        check_node("arch", critic_arch)  # a training state is data: only expt's builders
        node = OmegaConf.create(critic_arch)
        critic = build_model(node, run.data.mean, run.data.std, 1, shape)
    elif spec.critic is not None:
        critic, meta = model_from_checkpoint(spec.critic)
        if tuple(meta.get("input_shape") or ()) != shape:
            raise CheckpointError(f"gan.critic={spec.critic} judges images of {meta.get('input_shape')} (C, H, W), and "
                                  f"this run's are {list(shape)}; pretrain a critic at this size "
                                  "(experiment=pets_critic with this run's generator) or drop gan.critic")
        node = OmegaConf.create(meta["config"]["arch"])
    else:
        node = OmegaConf.create({"_target_": "expt.models.critic.critic", "_partial_": True, **spec.critic_arch})
        critic = build_model(node, run.data.mean, run.data.std, 1, shape)
    critic = critic.to(run.device, memory_format=layout).train()
    critic_opt = make("optimizer", opt_node)([{"params": list(critic.parameters()), "lr_mult": spec.critic_lr_mult}])
    for group in critic_opt.param_groups:
        group["lr"] *= group["lr_mult"]
    return GanStep(run.model, critic, critic_opt, spec, run.precision, run.device,
                   critic_arch=OmegaConf.to_container(node, resolve=True))


@dataclass
class FitRecord:
    """Where a fit reports and what it saves: train's run folder and console, the checkpoint's
    metadata and the training state's extra values; `primary`: this process prints and writes."""

    run_dir: Path
    console: Console
    meta: dict
    extra: dict
    primary: bool = True
    keep: str = "both"  # checkpoint.keep
    early_stop: dict | None = None  # patience and min_delta, or None
    loggers: dict = field(default_factory=dict)  # option name -> its node (logger=[...])
    log_run: LogRun | None = None


def callbacks_for(run: Run, fit: FitRecord | None = None) -> list:
    """Every callback of a run, assembled here alone. Any use of the run's training step (the lr
    finder's too) gets those that shape each step: mixed precision, progressive resizing,
    augmentation (mixup and CutMix too), gradient clipping.
    A fit adds the metrics, the schedule, the checkpoint, fine-tuning's freeze, early stopping, a
    GAN's checks and val/fid, on the process that prints the progress table, metrics.png, the task's
    pictures and the loggers, the weights' average (ema.decay), and under torchrun DDP."""
    callbacks = [PrecisionCB(run.precision, run.device.type)] if run.precision != "fp32" else []
    data = run.data
    callbacks += [ResizeCB(data.size_stages, data.train_at, run.train_dl)] if data.size_stages else []
    callbacks += [AugmentCB(run.augment, run.task.paired)] if run.augment is not None else []
    callbacks += [MixCB(run.mix, run.task.mix_targets)] if run.mix is not None else []
    callbacks += [GradClipCB(run.clip_grad, run.clip_grad_mode)] if run.clip_grad is not None else []
    if fit is None:
        return callbacks
    metrics = MetricsCB(run.task, GanStep.PARTS if run.gan is not None else ())
    task = run.task
    checkpoint = CheckpointCB(fit.run_dir, run.model, fit.meta, run.stateful(), extra=fit.extra, write=fit.primary,
                              keep=fit.keep, metric=task.headline, higher_is_better=task.higher_is_better,
                              saved=run.saved_model)
    callbacks = [metrics, ScheduleCB(run.sched), checkpoint, *callbacks]
    callbacks += [EmaCB(run.ema, run.model)] if run.ema is not None else []
    if fit.early_stop:
        callbacks.append(EarlyStopCB(task.headline, task.higher_is_better, **fit.early_stop))
    callbacks += [FreezeCB(run.frozen, run.freeze_epochs)] if run.freeze_epochs > 0 else []
    if run.gan is not None:
        callbacks += [GanLogCB(run.gan, metrics)] + ([FidCB(run.fid_features)] if run.fid_features is not None else [])
    if fit.primary:
        callbacks += [ProgressCB(fit.console), CurvesCB(fit.run_dir / "metrics.png", run.task.headline),
                      *run.task.callbacks(fit.run_dir)]
        callbacks += [make(f"logger.{name}", OmegaConf.create(node))(fit.log_run) for name, node in fit.loggers.items()]
    if distributed.world() > 1:
        callbacks.append(DistributedCB(run.net, run.device, run.seed))
    return callbacks


def resolved(cfg: DictConfig) -> dict:
    """The config as plain, fully resolved Python containers."""
    return OmegaConf.to_container(cfg, resolve=True)

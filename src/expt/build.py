"""Building a run: a composed config turned into data, model, loss, optimizer, schedule and
callbacks (omegaconf stays in cli.py, here and rebuild.py; rebuild.py turns a checkpoint back into
a model, runtime.py holds the device and precision policy).

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
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from . import distributed
from .data import ImageData
from .data.loaders import DeviceLoader, NoiseLoader, StreamLoader
from .errors import ConfigError, ExptError
from .models.layers import Normalize
from .runtime import memory_format, resolve_device, resolve_precision
from .signature import GROUPS, check_node
from .tasks import Generate, Task, task_for
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


@dataclass
class Run:
    """Everything a command needs, built from one config."""

    data: ImageData
    task: Task        # what the targets mean: output size, metrics, headline, checkpoint metadata
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
    gan: Any = None  # expt.gan.GanStep: the training step of a GAN run (gan=superres), else None
    gan_callbacks: list | None = None  # its log columns (and val/fid)

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
        return callbacks + ([AugmentCB(self.augment, self.task.paired)] if self.augment is not None else [])

    def fit_callbacks(self) -> list:
        """step_callbacks plus those that change what is trained over the epochs (fine-tuning)."""
        from .callbacks import FreezeCB
        freeze = [FreezeCB(self.frozen, self.freeze_epochs)] if self.freeze_epochs > 0 else []
        return self.step_callbacks() + freeze + (self.gan_callbacks or [])


def build_model(arch: DictConfig, mean: Sequence[float], std: Sequence[float], n_out: int,
                input_shape: Sequence[int] | None = None) -> nn.Module:
    """The arch's body for len(mean) input channels and n_out classes, behind the normalisation:
    the data's mean/std, or the body's own `input_norm` (a pretrained model's)."""
    builder = make("arch", arch)
    extra = {}
    params = inspect.signature(builder).parameters
    if input_shape is not None and "input_shape" in params:
        extra["input_shape"] = tuple(input_shape)  # builders that care about the image size ask for it
    if "input_stats" in params:
        extra["input_stats"] = (tuple(mean), tuple(std))  # the normalisation in front (a U-Net's residual)
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
    """The loss; a partial one (multi_task) is finished with the task's heads."""
    loss = make("loss", node)
    if isinstance(loss, functools.partial):
        loss = loss(heads=task.sizes)
    task.check_loss(loss)
    return loss


def param_groups(model: nn.Module, freeze_epochs: int, body_lr_mult: float) -> tuple[list[dict], list]:
    """Optimizer groups, each with an `lr_mult`. Fine-tuning (freeze_epochs > 0) splits the model
    into its new part (lr x1: a classifier's head, a U-Net's decoder) and its pretrained body (lr x
    body_lr_mult, frozen at first: a classifier's body, a U-Net's encoder)."""
    if freeze_epochs < 0 or body_lr_mult <= 0:
        raise ConfigError("finetune needs freeze_epochs >= 0 and body_lr_mult > 0")
    if freeze_epochs == 0:
        return [{"params": list(model.parameters()), "lr_mult": 1.0}], []
    from .models.unet import DynamicUnet
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
    return [{"params": body, "lr_mult": body_lr_mult},
            {"params": [p for p in model.parameters() if id(p) not in pretrained], "lr_mult": 1.0}], body


def loader_for(images) -> type:
    """Batches from a resident uint8 tensor, or decoded from files every epoch (data.cache=false)."""
    return DeviceLoader if isinstance(images, torch.Tensor) else StreamLoader


def check_settings(cfg: DictConfig) -> None:
    """What can be checked of a run before any data or model exists (a sweep checks every job's
    combination this way before the first starts): run settings, every group against its builder,
    the optimizer's values, the lr finder's, and the timm model named."""
    for key in ("epochs", "bs"):
        if cfg[key] < 1:
            raise ConfigError(f"{key}={cfg[key]} must be at least 1")
    check_groups(cfg)
    check_optimizer(group_node(cfg, "optimizer"))
    check_lr_find(cfg.lr_find)
    from .models import timm as timm_models
    from .models.unet import EXPT_ENCODERS
    arch = cfg.arch
    if arch.get("_target_") == "expt.models.timm.timm_model":
        timm_models.check_name(arch.name)
    elif arch.get("_target_") == "expt.models.unet.unet" and arch.get("encoder") not in EXPT_ENCODERS:
        timm_models.check_name(arch.encoder, "arch.encoder")


def for_resume(cfg: DictConfig) -> DictConfig:
    """The config a resumed run is built from: the starting weights files (arch.weights, gan.generator,
    gan.critic) are not read, since the training state restores every weight; so a resume works
    after they moved. (The recipe check compares the config as given.)"""
    cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
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
    device = distributed.setup(resolve_device(cfg.device))  # under torchrun: this rank's device
    world, rank = distributed.world(), distributed.rank()
    if world > 1 and gan is not None:
        raise ConfigError("a GAN run trains its two models on one device for now: run it without torchrun and "
                          "with dist.nproc=1")
    distributed.local_batch(cfg.bs)  # the world size must divide the global batch
    precision = resolve_precision(cfg.precision, device)
    layout = memory_format(cfg.channels_last, device)
    torch.manual_seed(cfg.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed batch shapes: let cuDNN pick the fastest kernels

    with distributed.primary_first():  # rank 0 builds an image cache; the others then read it
        data = make("data", cfg.data)
    task = Generate.from_data(data) if gan is not None and gan.from_noise else task_for(data)
    check_data(data, task, cfg.bs)
    input_shape = tuple(data.train_x.shape[1:])
    model = build_model(cfg.arch, data.mean, data.std, task.n_outputs, input_shape)
    check_output_kind(cfg.arch, model.body, task)
    model = distributed.convert_sync_bn(model, (cfg.get("dist") or {}).get("sync_bn", "auto"), device)
    model = model.to(device, memory_format=layout)
    loader = dict(device=device, channels_last=layout == torch.channels_last, seed=cfg.seed)
    Loader = loader_for(data.train_x)
    train_dl = Loader(data.train_x, data.train_y, cfg.bs, shuffle=True, drop_last=True, rank=rank, world=world,
                      **loader)
    valid_x, valid_y = data.valid_x, data.valid_y
    if world > 1:  # each rank validates its own share (no padding); MetricsCB adds the sums up
        if len(valid_x) < world:
            raise ConfigError(f"{world} processes need at least {world} validation images (there are {len(valid_x)})")
        share = distributed.shard(len(valid_x))
        valid_y = valid_y[share]
        valid_x = (valid_x[share] if isinstance(valid_x, torch.Tensor)
                   else torch.utils.data.Subset(valid_x, range(share.start, share.stop)))
    valid_dl = Loader(valid_x, valid_y, max(1, cfg.bs * 2 // world), shuffle=False, drop_last=False, **loader)
    augment = make("augment", cfg.augment)
    if isinstance(task, Generate):  # batches of (noise, real images)
        nz = getattr(model.body, "nz", None)
        if nz is None:
            raise ConfigError("gan.from_noise=true needs a generator from noise: arch=dcgan")
        if augment is not None:
            raise ConfigError("a generator from noise has noise for inputs, which augmentation would change: "
                              "use augment=none")
        train_dl, valid_dl = NoiseLoader(train_dl, nz, cfg.seed), NoiseLoader(valid_dl, nz, cfg.seed + 1, fixed=True)
    groups, frozen = param_groups(model, cfg.finetune.freeze_epochs, cfg.finetune.body_lr_mult)
    opt = make("optimizer", group_node(cfg, "optimizer"))(groups)
    for group in opt.param_groups:
        group["lr"] *= group["lr_mult"]
    run = Run(data=data, task=task, model=model, net=torch.compile(model) if cfg.compile else model,
              loss=build_loss(cfg.loss, task).to(device), opt=opt, augment=augment,
              train_dl=train_dl, valid_dl=valid_dl, device=device, precision=precision,
              schedule=make("schedule", cfg.schedule), total_steps=cfg.epochs * len(train_dl),
              lr_auto=cfg.optimizer.get("lr") == "auto", input_shape=input_shape,
              frozen=frozen, freeze_epochs=cfg.finetune.freeze_epochs)
    if gan is not None:
        run.gan, run.gan_callbacks = build_gan(gan, run, group_node(cfg, "optimizer"), layout, critic_arch)
    if not run.lr_auto:
        run.start_schedule()
    return run


def build_gan(spec, run: Run, opt_node: DictConfig, layout: torch.memory_format,
              critic_arch: dict | None = None) -> tuple[Any, list]:
    """A GAN run's step and its callbacks (the log columns, and val/fid with gan.fid_features)."""
    if run.lr_auto:
        raise ConfigError("optimizer.lr=auto finds one model's lr; a GAN run needs optimizer.lr set")
    step = build_gan_step(spec, run, opt_node, layout, critic_arch)
    features = None
    if spec.fid_features is not None:
        from .fid import load_features
        features = load_features(spec.fid_features, run.input_shape, run.device)
    return step, step.callbacks(features)


def build_gan_step(spec, run: Run, opt_node: DictConfig, layout: torch.memory_format,
                   critic_arch: dict | None = None):
    """A GAN's critic (pretrained, new from spec.critic_arch, or a resumed run's of `critic_arch`, its
    arch node as the training state recorded it), its optimizer (the run's, at critic_lr_mult times
    the lr) and the step that trains it and the run's model in turns."""
    from .errors import CheckpointError
    from .gan import GanStep
    from .rebuild import model_from_checkpoint
    from .tasks import Restore
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


def resolved(cfg: DictConfig) -> dict:
    """The config as plain, fully resolved Python containers."""
    return OmegaConf.to_container(cfg, resolve=True)

"""Checkpoint -> model and the data it was trained on, for `expt tta`, `expt predict`, `expt sample`
and a GAN's FID features; `model_from_checkpoint` (builders.py) is here too for users' scripts:
`from expt.rebuild import model_from_checkpoint`. A checkpoint is data: its stored config is checked
(only expt's builders, every key against its builder's signature) before anything of it is
imported or called."""

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from .builders import make, model_from_checkpoint
from .data import ImageData
from .data.loaders import DeviceLoader, StreamLoader, loader_for
from .errors import CheckpointError, ConfigError
from .fid import Features
from .runtime import Runtime, resolve
from .signature import check_node
from .tasks import Task, task_from_meta

__all__ = ["model_from_checkpoint", "load_features", "build_eval", "build_test", "stored_data"]


def load_features(path: str, image_shape: tuple[int, ...], device: torch.device) -> Features:
    """The feature network of gan.fid_features: an expt classifier checkpoint for images of this shape."""
    model, meta = model_from_checkpoint(Path(path).expanduser())
    if meta.get("task", "classify") != "classify":
        raise CheckpointError(f"gan.fid_features={path} is a {meta['task']} checkpoint; pass a classifier's "
                              "model.safetensors (expt train on the same data)")
    if tuple(meta.get("input_shape") or ()) != tuple(image_shape):
        raise CheckpointError(f"gan.fid_features={path} classifies images of {meta.get('input_shape')} (C, H, W), and "
                              f"this run makes {list(image_shape)}; pass a classifier trained on this data")
    return Features(model.to(device))


@dataclass
class EvalRun:
    """What `expt tta` needs: trained models, the validation split they were trained with, views."""

    paths: list[str]
    models: list[nn.Module]
    task: Task
    data: ImageData
    valid_dl: DeviceLoader | StreamLoader
    tta: Any  # expt.tta.TTA
    runtime: Runtime


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
    tta, runtime = make("tta", cfg.tta), resolve(cfg.device, cfg.precision, cfg.channels_last)
    loaded = [model_from_checkpoint(p) for p in paths]
    first = loaded[0][1]
    if any(meta.get("task") == "generate" for _, meta in loaded):
        raise CheckpointError(f"{paths[0]} is a generator from noise, with nothing to compare its images with; "
                              "expt tta evaluates classifiers and restoration models (see its images: expt sample)")
    for path, (_, meta) in zip(paths[1:], loaded[1:]):
        if (meta.get("classes") != first.get("classes")
                or meta["config"]["data"]["_target_"] != first["config"]["data"]["_target_"]):
            raise CheckpointError(f"{path} was trained on other data than {paths[0]}; ensemble models of one dataset")
    stored = stored_data(first, cfg)
    if explicit_data and cfg.data._target_ != stored._target_:
        raise CheckpointError(f"{paths[0]} was trained with data {stored._target_}, not {cfg.data._target_}; "
                              "drop the data= option or pass a checkpoint trained on that data")
    data = make("data", stored)
    if (data.classes != first.get("classes", data.classes) or data.heads != first.get("heads", data.heads)
            or data.n_channels != len(first["mean"])):
        raise CheckpointError(f"{paths[0]} does not fit this data ({len(first.get('classes', []))} classes, "
                              f"{len(first['mean'])} channels); pass a checkpoint trained on it")
    valid_dl = loader_for(data.valid_x)(data.valid_x, data.valid_y, cfg.bs * 2, shuffle=False, drop_last=False,
                                        device=runtime.device, channels_last=runtime.channels_last)
    return EvalRun(paths=paths, models=[runtime.place(m) for m, _ in loaded], task=task_from_meta(first), data=data,
                   valid_dl=valid_dl, tta=tta, runtime=runtime)


@dataclass
class TestRun:
    """What `expt predict` needs: one trained model and its dataset's test images."""

    path: str
    model: nn.Module
    task: Task
    x: torch.Tensor  # uint8 test images
    ids: list[str]
    tta: Any
    runtime: Runtime


def build_test(cfg: DictConfig) -> TestRun:
    """The checkpoint in `ckpt` and the test split of the data it was trained on (its `load_test`)."""
    if cfg.ckpt is None or OmegaConf.is_list(cfg.ckpt):
        raise ConfigError("expt predict needs one checkpoint: ckpt=PATH/model.safetensors")
    tta = make("tta", cfg.tta)
    model, meta = model_from_checkpoint(cfg.ckpt)
    if meta.get("task", "classify") == "restore":
        raise ConfigError(f"{cfg.ckpt} restores images: pass input=DIR, a folder of images to restore")
    data = stored_data(meta, cfg)
    options = OmegaConf.to_container(data, resolve=True)
    check_node("data", options)  # an expt data builder, so its module is one of expt's
    module, _, _ = data._target_.rpartition(".")
    load_test = getattr(importlib.import_module(module), "load_test", None)  # an expt module (checked above)
    if meta.get("task", "classify") != "classify" or load_test is None:
        raise ConfigError(f"{cfg.ckpt} is a {meta.get('task', 'classify')} checkpoint trained on "
                          f"{module.rsplit('.', 1)[-1]}, which has no test split to predict (a data=paddy "
                          "classifier has one; any classifier predicts input=DIR_OR_FILE)")
    x, ids = load_test(**{k: v for k, v in options.items() if k != "_target_"})
    runtime = resolve(cfg.device, cfg.precision, cfg.channels_last)
    return TestRun(path=str(cfg.ckpt), model=runtime.place(model), task=task_from_meta(meta), x=x, ids=ids, tta=tta,
                   runtime=runtime)

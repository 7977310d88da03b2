"""A config node becomes an object: checked against its builder's signature (signature.py), then
instantiated, so only expt's builders are ever imported or called, whatever the node's source
(conf/, the command line, a checkpoint). Below build.py (a run's objects) and rebuild.py (a
checkpoint's model), which both make their objects here."""

import inspect
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from .data.loaders import DeviceLoader, StreamLoader
from .errors import ConfigError, ExptError
from .models.layers import Normalize
from .signature import GROUPS, check_node

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
    its builder."""
    check_node(group, OmegaConf.to_container(node, resolve=True))
    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as e:
        if isinstance(e.__cause__, ExptError):
            raise e.__cause__ from None
        raise ConfigError(f"{group}: {e}".replace("\n", " ")) from e


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


def loader_for(images) -> type:
    """Batches from a resident uint8 tensor, or decoded from files every epoch (data.cache=false)."""
    return DeviceLoader if isinstance(images, torch.Tensor) else StreamLoader

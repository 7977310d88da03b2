"""A config node becomes an object, and a checkpoint a model: a node is checked against its
builder's signature (signature.py), then instantiated, so only expt's builders are ever imported or
called, whatever the node's source (conf/, the command line, a checkpoint). Below build.py (a run's
objects), rebuild.py (a checkpoint's model and data) and data=critic (a dataset made by a
generator checkpoint), which all make their objects here."""

import inspect
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from .checkpoint import read_checkpoint
from .errors import CheckpointError, ConfigError, ExptError
from .models.layers import Normalize
from .signature import GROUPS, LISTED, check_node
from .tasks import task_from_meta

LR_PLACEHOLDER = 1e-3  # the optimizer's lr until the finder has chosen one (optimizer.lr=auto)


NOT_THE_BUILDERS = {"optimizer": ("decay_norm_bias",)}  # keys expt reads itself (param_groups), not the builder


def group_node(cfg: DictConfig, group: str) -> DictConfig:
    """A group's node as its builder takes it: optimizer.lr=auto replaced by a placeholder number,
    the keys expt reads itself (optimizer.decay_norm_bias) left out."""
    node = cfg[group]
    if group == "optimizer" and node.get("lr") == "auto":
        node = OmegaConf.merge(node, {"lr": LR_PLACEHOLDER})
    own = [k for k in NOT_THE_BUILDERS.get(group, ()) if k in node]
    if own:
        node = OmegaConf.create({k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k not in own})
    return node


def check_groups(cfg: DictConfig) -> None:
    """Check every group node against its builder before anything slow (data loading) starts."""
    for group in GROUPS:
        check_node(group, OmegaConf.to_container(group_node(cfg, group), resolve=True))
    for group in LISTED:
        for name, node in listed(cfg, group).items():
            check_node(f"{group}.{name}", node)


def listed(cfg: DictConfig, group: str) -> dict[str, dict]:
    """A listed group's nodes by option name (`logger=[csv,tensorboard]`: {"tensorboard": {...}}),
    as plain containers; an entry that is not a node is one line."""
    nodes = OmegaConf.to_container(cfg.get(group) or OmegaConf.create({}), resolve=True)
    for name, node in nodes.items():
        if not isinstance(node, dict) or "_target_" not in node:
            raise ConfigError(f"{group}.{name} is not a {group}; choose them by name: {group}=[a,b] "
                              f"(`expt train --help` lists them)")
    return nodes


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


def check_input_size(body: nn.Module, input_shape: Sequence[int], setting: str = "data.size") -> None:
    """Refuse images the arch cannot take (its `input_sizes`, pixels a side, where it declares them)."""
    low, high = getattr(body, "input_sizes", (1, None))
    h, w = input_shape[-2:]
    if min(h, w) < low or (high is not None and max(h, w) > high):
        takes = f"{low} to {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"the arch takes images of {takes} pixels a side, and the data's are {h}x{w}; "
                          f"change {setting} (or the arch: resnet_k5 takes any size from 9)")


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
    args = (arch, meta["mean"], meta["std"], task_from_meta(meta).n_outputs, meta.get("input_shape"))
    try:
        with torch.device("meta"):  # shapes alone, no memory: sizes in the metadata are checked before anything real
            skeleton = build_model(*args)
    except ConfigError as e:
        raise CheckpointError(f"checkpoint {path} is damaged: its stored arch cannot be built for its metadata "
                              f"({e})") from None
    problem = weights_problem(skeleton.state_dict(), weights)
    if problem:
        raise CheckpointError(f"checkpoint {path} is damaged: {problem}; use a model.safetensors as expt wrote it")
    model = build_model(*args)
    model.load_state_dict(weights)
    return model.eval(), meta


def weights_problem(expected: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]) -> str | None:
    """What keeps `weights` from being the state of a model whose state dict is `expected` (shapes
    and dtypes, on the meta device): a missing, extra or reshaped tensor, another dtype (bytes
    relabelled as integers read as garbage), or a weight that is not finite. None when they fit."""
    missing, extra = sorted(expected.keys() - weights.keys()), sorted(weights.keys() - expected.keys())
    if missing or extra:
        return (f"weights do not fit its stored arch ({len(missing)} missing, e.g. {missing[:1]}; "
                f"{len(extra)} unexpected, e.g. {extra[:1]})")
    for key, want in expected.items():
        got = weights[key]
        if got.shape != want.shape:
            return (f"weights do not fit its stored arch and sizes: {key} is {list(got.shape)}, where its metadata "
                    f"builds {list(want.shape)}")
        if got.dtype != want.dtype:
            return f"{key} is stored as {got.dtype}, where the model holds {want.dtype}"
        if got.is_floating_point() and not torch.isfinite(got).all():
            return f"{key} holds NaN or infinite values (expt keeps checkpoints of finite epochs only)"
    return None

"""Checking a config node against the signature of the builder its `_target_` names: unknown keys
and values of the wrong type become one clear ConfigError before anything is built.

A config is data, never code: every `_target_` in a node (nested ones too), whether it comes from
conf/, the command line or a checkpoint, must be one of expt's own builders, the `_target_`s that
the options in conf/ name. Anything else is refused before it is imported or called."""

import functools
import inspect
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from hydra.utils import get_object

from .errors import ConfigError

SPECIAL_KEYS = {"_target_", "_partial_", "_args_", "_recursive_", "_convert_"}
GROUPS = ("data", "arch", "optimizer", "schedule", "loss", "augment", "tta", "gan")  # the groups that build objects
LISTED = ("logger",)  # groups chosen as a list (logger=[tensorboard,mlflow]): one node per option, by its name


def _targets_in(node: Any) -> list[Any]:
    """Every `_target_` value in a nested config node, at any depth (Hydra instantiates them all)."""
    if isinstance(node, dict):
        found = [node["_target_"]] if "_target_" in node else []
        return found + [t for value in node.values() for t in _targets_in(value)]
    if isinstance(node, (list, tuple)):
        return [t for value in node for t in _targets_in(value)]
    return []


@functools.cache
def builders() -> frozenset[str]:
    """expt's builders: the `_target_`s named by the options of conf/'s groups, nested ones included."""
    conf = Path(__file__).parent / "conf"
    return frozenset(t for group in GROUPS + LISTED for path in sorted((conf / group).glob("*.yaml"))
                     for t in _targets_in(yaml.safe_load(path.read_text())))


def check_targets(group: str, node: Any) -> None:
    """Refuse a node naming any callable that is not one of expt's builders (nothing is imported)."""
    for target in _targets_in(node):
        if target not in builders():
            raise ConfigError(f"{group}: _target_ {target!r} is not one of expt's builders; a config (or a "
                              "checkpoint's stored config) may only name the builders of conf/'s options, "
                              f"e.g. {group} options with `expt train --help`")


def _fits(value: Any, hint: Any) -> bool:
    """Whether a config value can be passed where `hint` is expected (unknown hints pass)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is inspect.Parameter.empty or isinstance(hint, (str, typing.TypeVar)):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is torch.Tensor:
        return False  # a config value is never a tensor
    if origin in (list, tuple, Sequence, typing.Sequence) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_fits(v, a) for v, a in zip(value, args))
        return all(_fits(v, args[0]) for v in value) if args else True
    return True


def _hint_name(hint: Any) -> str:
    """'float', 'int or None', 'a list of 2 float', ... (tensors left out: configs never hold them)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_hint_name(a) for a in args if a is not torch.Tensor)
    if origin is tuple and args and args[-1] is not Ellipsis:
        return f"a list of {len(args)} {_hint_name(args[0])}"
    if origin in (list, tuple, Sequence, typing.Sequence):
        return f"a list of {_hint_name(args[0])}" if args else "a list"
    return "None" if hint is type(None) else getattr(hint, "__name__", str(hint))


def check_node(group: str, node: dict) -> None:
    """Raise ConfigError when `node` names a callable that is not an expt builder, has a key its
    builder does not take, or a value of the wrong type."""
    check_targets(group, node)
    try:
        target = get_object(node["_target_"])
    except Exception as e:
        raise ConfigError(f"{group}: cannot import _target_ {node.get('_target_')!r} ({e})") from e
    params = inspect.signature(target).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    try:
        hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target)
    except Exception:  # unresolvable forward references: check names only
        hints = {}
    for key, value in node.items():
        if key in SPECIAL_KEYS:
            continue
        if key not in params and not takes_any:
            options = ", ".join(k for k in params if k not in ("self", "params", "optimizer", "total_steps"))
            raise ConfigError(f"{group} has no option {key!r}; its options are: {options}")
        if key in hints and not _fits(value, hints[key]):
            raise ConfigError(f"{group}.{key}={value!r} has the wrong type: expected {_hint_name(hints[key])}")
        for i, item in enumerate(value if isinstance(value, list) else [value]):  # nested builders
            if isinstance(item, dict) and "_target_" in item:
                check_node(f"{group}.{key}" + (f"[{i}]" if isinstance(value, list) else ""), item)

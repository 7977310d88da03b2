"""Batch-level augmentations that run on the device, during training only."""

from torch import nn


def none() -> nn.Module | None:
    """No training augmentation."""
    return None

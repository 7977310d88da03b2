"""Building blocks in the fast.ai 2022 course style (lessons 14-18)."""

from collections.abc import Sequence

import torch
from torch import nn
import torch.nn.functional as F


class GeneralRelu(nn.Module):
    """Leaky ReLU shifted down by `sub` (so activations centre near zero), optionally capped."""

    def __init__(self, leak: float = 0.1, sub: float = 0.4, maxv: float | None = None):
        super().__init__()
        self.leak, self.sub, self.maxv = leak, sub, maxv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(x, self.leak) if self.leak else F.relu(x)
        x = x - self.sub
        return x.clamp_max(self.maxv) if self.maxv is not None else x


class Normalize(nn.Module):
    """(x - mean) / std per channel, at the front of a model, saved with its weights."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def conv(ni: int, nf: int, ks: int = 3, stride: int = 2, act: bool = True, norm: bool = True) -> nn.Sequential:
    """Conv (bias only without BatchNorm), then BatchNorm and GeneralRelu as asked."""
    layers: list[nn.Module] = [nn.Conv2d(ni, nf, ks, stride=stride, padding=ks // 2, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(nf))
    if act:
        layers.append(GeneralRelu())
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    """Two convs (the second strided, without activation) plus an identity path.

    When the shape changes, the identity path average-pools (stride 2) and/or uses a 1x1 conv.
    """

    def __init__(self, ni: int, nf: int, stride: int = 1, ks: int = 3):
        super().__init__()
        self.convs = nn.Sequential(conv(ni, nf, ks, stride=1), conv(nf, nf, ks, stride=stride, act=False))
        self.pool = nn.AvgPool2d(2, ceil_mode=True) if stride != 1 else nn.Identity()
        self.idconv = conv(ni, nf, ks=1, stride=1, act=False, norm=False) if ni != nf else nn.Identity()
        self.act = GeneralRelu()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convs(x) + self.idconv(self.pool(x)))


def init_weights(model: nn.Module, leak: float = 0.1, zero_init_residual: bool = False) -> nn.Module:
    """Kaiming-normal convs and linears (for GeneralRelu's leak), as in the course.

    `zero_init_residual` zeroes the last BatchNorm of each ResBlock so every block starts as its
    identity path (Goyal et al. 2017). Off by default: with AdamW's small early steps the residual
    branches then stay nearly shut for the first epoch, and the 5-epoch recipe fell short of the
    course (docs/BENCHMARKS.md)."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, a=leak)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        if zero_init_residual and isinstance(m, ResBlock):
            nn.init.zeros_(m.convs[-1][1].weight)
    return model

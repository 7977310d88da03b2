"""A DCGAN generator (Radford et al. 2016) for small images: noise (N, nz, 1, 1) in, images in 0..1
out, through transposed convolutions with BatchNorm and ReLU that double the side twice."""

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ConfigError


class DCGenerator(nn.Sequential):
    def __init__(self, nz: int, n_out: int, side: int, nf: int):
        start = side // 4
        super().__init__(
            nn.ConvTranspose2d(nz, nf * 2, start, 1, 0, bias=False), nn.BatchNorm2d(nf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(nf * 2, nf, 4, 2, 1, bias=False), nn.BatchNorm2d(nf), nn.ReLU(True),
            nn.ConvTranspose2d(nf, n_out, 4, 2, 1), nn.Sigmoid())
        self.nz = nz
        self.input_norm = ((0.0,) * nz, (1.0,) * nz)  # the input is noise: nothing to normalise
        for m in self.modules():  # DCGAN's init
            if isinstance(m, (nn.ConvTranspose2d,)):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)


def dcgan(n_in: int, n_out: int, nz: int = 64, nf: int = 64, input_shape: Sequence[int] | None = None) -> DCGenerator:
    """A generator of n_out-channel images from nz-dimensional Gaussian noise.

    n_in: the data's channels (unused: the input is noise); nz: the noise's size; nf: channels of the
    last hidden layer (twice that before it). input_shape (C, H, W), filled in by the build, sets
    the side, which must be a multiple of 4 (28 for Fashion-MNIST)."""
    side = input_shape[-1] if input_shape is not None else 28
    if input_shape is not None and (input_shape[-1] != input_shape[-2] or side % 4 or side < 8):
        raise ConfigError(f"arch=dcgan makes square images whose side is a multiple of 4 (at least 8); the data's are "
                          f"{input_shape[-2]}x{input_shape[-1]}")
    if nz < 1 or nf < 1:
        raise ConfigError(f"arch=dcgan needs nz >= 1 and nf >= 1 (got {nz} and {nf})")
    return DCGenerator(nz, n_out, side, nf)


def noise(n: int, nz: int, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gaussian noise for n images, (n, nz, 1, 1)."""
    return torch.randn(n, nz, 1, 1, device=device, generator=generator)

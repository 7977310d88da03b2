"""A DCGAN generator (Radford et al. 2016) for small images: noise (N, nz, 1, 1) in, images in 0..1
out, through layers with BatchNorm and ReLU that double the side twice: transposed convolutions
(DCGAN's), or nearest-neighbour upsampling then a 3x3 conv, which cannot make the checkerboard
artefacts of overlapping transposed-conv strides (Odena et al. 2016, "Deconvolution and
checkerboard artifacts")."""

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import ConfigError


def up(ni: int, nf: int, upsample: str, bias: bool) -> list[nn.Module]:
    """Double the side: a 4x4 transposed conv (stride 2), or nearest upsampling and a 3x3 conv."""
    if upsample == "transpose":
        return [nn.ConvTranspose2d(ni, nf, 4, 2, 1, bias=bias)]
    return [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ni, nf, 3, 1, 1, bias=bias)]


class DCGenerator(nn.Sequential):
    image_output = True  # build.check_output_kind: it outputs images, not class scores

    def __init__(self, nz: int, n_out: int, side: int, nf: int, upsample: str = "transpose"):
        start = side // 4
        super().__init__(
            nn.ConvTranspose2d(nz, nf * 2, start, 1, 0, bias=False), nn.BatchNorm2d(nf * 2), nn.ReLU(True),
            *up(nf * 2, nf, upsample, bias=False), nn.BatchNorm2d(nf), nn.ReLU(True),
            *up(nf, n_out, upsample, bias=True), nn.Sigmoid())
        self.nz = nz
        self.input_norm = ((0.0,) * nz, (1.0,) * nz)  # the input is noise: nothing to normalise
        for m in self.modules():  # DCGAN's init
            if isinstance(m, (nn.ConvTranspose2d, nn.Conv2d)):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)


def dcgan(n_in: int, n_out: int, nz: int = 64, nf: int = 64, upsample: str = "nearest",
          input_shape: Sequence[int] | None = None) -> DCGenerator:
    """A generator of n_out-channel images from nz-dimensional Gaussian noise.

    n_in: the data's channels (unused: the input is noise); nz: the noise's size; nf: channels of the
    last hidden layer (twice that before it); upsample: transpose | nearest (see the module's doc).
    input_shape (C, H, W), filled in by the build, sets the side, which must be a multiple of 4
    (28 for Fashion-MNIST)."""
    side = input_shape[-1] if input_shape is not None else 28
    if input_shape is not None and (input_shape[-1] != input_shape[-2] or side % 4 or side < 8):
        raise ConfigError(f"arch=dcgan makes square images whose side is a multiple of 4 (at least 8); the data's are "
                          f"{input_shape[-2]}x{input_shape[-1]}")
    if nz < 1 or nf < 1:
        raise ConfigError(f"arch=dcgan needs nz >= 1 and nf >= 1 (got {nz} and {nf})")
    if upsample not in ("transpose", "nearest"):
        raise ConfigError(f"arch.upsample is transpose or nearest, not {upsample!r}")
    return DCGenerator(nz, n_out, side, nf, upsample)


def noise(n: int, nz: int, device: torch.device, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gaussian noise for n images, (n, nz, 1, 1)."""
    return torch.randn(n, nz, 1, 1, device=device, generator=generator)

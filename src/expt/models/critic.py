"""A GAN critic in the shape of fastai's gan_critic (lesson 7's super-resolution GAN): convs with
spectral normalisation and LeakyReLU(0.2), Dropout2d, a self-attention block after the first
downsampling block, and a last 4x4 conv that scores every patch. The output is that map of logits
("real" when high), flattened to (N, positions); losses expand each image's target over it."""

from collections.abc import Sequence
from functools import partial

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ..errors import ConfigError
from .unet import SelfAttention


def sn_conv(ni: int, nf: int, ks: int, stride: int, act: bool = True, bias: bool = True,
            padding: int | None = None, spectral: bool = True) -> list[nn.Module]:
    """A conv (kaiming-normal for LeakyReLU(0.2), as fastai's ConvLayer), spectral-normalised when
    `spectral`, then LeakyReLU(0.2) when `act`."""
    layer = nn.Conv2d(ni, nf, ks, stride=stride, padding=(ks - 1) // 2 if padding is None else padding, bias=bias)
    nn.init.kaiming_normal_(layer.weight, a=0.2)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    layer = spectral_norm(layer) if spectral else layer
    return [layer, nn.LeakyReLU(0.2)] if act else [layer]


class Critic(nn.Sequential):
    def __init__(self, n_in: int, nf: int = 128, n_blocks: int = 3, p: float = 0.15, spectral: bool = True,
                 attention: bool = True, head_ks: int = 4):
        conv = partial(sn_conv, spectral=spectral)
        layers = [*conv(n_in, nf, 4, 2), nn.Dropout2d(p / 2)]
        for i in range(n_blocks):
            layers += [*conv(nf, nf, 3, 1), nn.Dropout2d(p), *conv(nf, nf * 2, 4, 2)]
            if i == 0 and attention:
                layers.append(SelfAttention(nf * 2))
            nf *= 2
        layers += [*conv(nf, 1, head_ks, 1, act=False, bias=False, padding=0), nn.Flatten()]
        super().__init__(*layers)


def features_side(side: int, n_blocks: int) -> int:
    """The side of the feature map before the critic's last conv: n_blocks + 1 halvings (4x4, stride 2)."""
    for _ in range(n_blocks + 1):
        side = (side + 2 - 4) // 2 + 1
    return side


def score_map_side(side: int, n_blocks: int) -> int:
    """Scores a side of `side` pixels gets with the patch head: the last conv is 4x4."""
    return features_side(side, n_blocks) - 3


def critic(n_in: int, n_out: int = 1, nf: int = 128, n_blocks: int = 3, p: float = 0.15, spectral: bool = True,
           attention: bool = True, head: str = "patch", input_shape: Sequence[int] | None = None) -> Critic:
    """A critic for images of n_in channels: one logit per patch (or per image), (N, positions).

    nf: channels after the first conv (doubled by each of the n_blocks downsampling blocks);
    p: dropout; spectral: spectral normalisation of every conv (fastai's: it keeps a GAN's critic
    Lipschitz, and also slows its learning of subtle differences, docs/BENCHMARKS.md);
    attention: a self-attention block after the first downsampling block;
    head: `patch` (a last 4x4 conv: a map of patch scores) or `image` (a last conv over the whole
    remaining map: one score per image, DCGAN's discriminator; needs square images).
    input_shape (C, H, W), filled in by the build, is checked: the image must still be 4x4 after
    n_blocks + 1 halvings (64 px for the default 3 blocks).
    """
    if n_out != 1:
        raise ConfigError(f"arch=critic scores real against generated images: one output, not {n_out}")
    if n_blocks < 0 or nf < 1 or not 0 <= p < 1:
        raise ConfigError(f"arch=critic needs n_blocks >= 0, nf >= 1 and 0 <= p < 1 (got {n_blocks}, {nf}, {p})")
    if head not in ("patch", "image"):
        raise ConfigError(f"arch=critic's head is patch (a map of patch scores) or image (one score an image), not {head!r}")
    if head == "image" and (input_shape is None or input_shape[-1] != input_shape[-2]):
        raise ConfigError("arch.head=image scores each image with one conv over the whole map: it needs square images "
                          f"(got {'no shape' if input_shape is None else 'x'.join(map(str, input_shape[-2:]))}); "
                          "use arch.head=patch")
    if input_shape is not None:
        h, w = input_shape[-2:]
        if min(score_map_side(h, n_blocks), score_map_side(w, n_blocks)) < 1:
            need = 4 * 2 ** (n_blocks + 1)
            fits = max((b for b in range(n_blocks) if min(score_map_side(h, b), score_map_side(w, b)) >= 1),
                       default=None)
            hint = f"arch.n_blocks={fits}" if fits is not None else "larger images"
            raise ConfigError(f"arch=critic with n_blocks={n_blocks} needs images of at least {need} px a side, and "
                              f"these are {h}x{w}; use {hint}")
    head_ks = features_side(input_shape[-1], n_blocks) if head == "image" else 4
    return Critic(n_in, nf, n_blocks, p, spectral, attention, head_ks)


def expand_targets(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each image's target (N,) as a float map of the critic's output shape (N, positions)."""
    return y.to(logits.dtype).view(-1, *([1] * (logits.ndim - 1))).expand_as(logits)

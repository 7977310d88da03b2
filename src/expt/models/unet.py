"""A dynamic U-Net (as fastai's DynamicUnet) over any encoder: a timm model through `features_only`
(channels and reductions from its feature_info), or expt's own ResNets through hooks on a dummy
forward pass (the output of each block before the size changes). The decoder upsamples with
PixelShuffle (ICNR-initialised, optionally blurred), joins each skip connection, optionally
self-attends, concatenates the input before a last residual block, and ends in a sigmoid range."""

import copy
import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import is_checkpoint, read_meta
from ..errors import ConfigError, first_line
from . import resnet
from .layers import ResBlock, conv, init_weights
from .timm import channel_norm, check_name, check_weights, load_pretrained, load_weights, quiet_hub, weights_norm

EXPT_ENCODERS = ("resnet_k5", "resnet")


def icnr_(weight: torch.Tensor, scale: int = 2) -> torch.Tensor:
    """ICNR (Aitken et al. 2017): each group of scale**2 output channels starts as copies of one
    kernel, so that PixelShuffle's output at init is a nearest-neighbour upsampling (no checkerboard)."""
    out_c, in_c, h, w = weight.shape
    sub = torch.empty(out_c // scale**2, in_c, h, w)
    nn.init.kaiming_normal_(sub)
    with torch.no_grad():
        weight.copy_(sub.repeat_interleave(scale**2, dim=0))
    return weight


class PixelShuffleICNR(nn.Sequential):
    """Upsample by `scale`: 1x1 conv to nf * scale**2 channels (ICNR), ReLU, PixelShuffle, and
    optionally a blur (replication pad + 2x2 average) against checkerboard artefacts."""

    def __init__(self, ni: int, nf: int, scale: int = 2, blur: bool = False):
        layers = [nn.Conv2d(ni, nf * scale**2, 1), nn.ReLU(), nn.PixelShuffle(scale)]
        if blur:
            layers += [nn.ReplicationPad2d((1, 0, 1, 0)), nn.AvgPool2d(2, stride=1)]
        super().__init__(*layers)
        icnr_(self[0].weight, scale)
        nn.init.zeros_(self[0].bias)


class SelfAttention(nn.Module):
    """SAGAN's self-attention over positions; gamma starts at 0, so the block starts as identity."""

    def __init__(self, n: int):
        super().__init__()
        self.query, self.key = nn.Conv1d(n, max(n // 8, 1), 1), nn.Conv1d(n, max(n // 8, 1), 1)
        self.value = nn.Conv1d(n, n, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)
        attn = torch.bmm(self.query(flat).transpose(1, 2), self.key(flat)).softmax(dim=1)
        return (self.gamma * torch.bmm(self.value(flat), attn) + flat).view_as(x)


class UnetBlock(nn.Module):
    """Upsample the deeper map, join the (batch-normed) skip connection, two convs."""

    def __init__(self, up_c: int, skip_c: int, out_c: int, blur: bool, self_attention: bool):
        super().__init__()
        self.shuf = PixelShuffleICNR(up_c, up_c // 2, blur=blur)
        self.bn = nn.BatchNorm2d(skip_c)
        self.convs = nn.Sequential(conv(up_c // 2 + skip_c, out_c, stride=1), conv(out_c, out_c, stride=1))
        self.attn = SelfAttention(out_c) if self_attention else nn.Identity()

    def forward(self, up: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.shuf(up)
        if up.shape[-2:] != skip.shape[-2:]:  # odd sizes: ceil-halved on the way down
            up = F.interpolate(up, skip.shape[-2:], mode="nearest")
        return self.attn(self.convs(F.relu(torch.cat([up, self.bn(skip)], 1))))


class TimmEncoder(nn.Module):
    """A timm model's feature maps (features_only), channels first. `norm` is the (mean, std) its
    weights expect (None from scratch)."""

    def __init__(self, name: str, n_in: int, pretrained: bool, weights: str | None, input_shape: Sequence[int]):
        super().__init__()
        check_name(name, "arch.encoder")
        if weights is not None:
            check_weights(weights, name, "arch.weights")
        import timm
        kwargs = dict(features_only=True, in_chans=n_in, pretrained=pretrained and weights is None)
        quiet_hub()
        cfg = timm.get_pretrained_cfg(name)
        if cfg is not None and cfg.fixed_input_size:  # Swin and the like are built for the data's size
            kwargs["img_size"] = tuple(input_shape[-2:])
        try:
            self.body = timm.create_model(name, **kwargs)
        except (RuntimeError, ValueError, TypeError, OSError, AssertionError) as e:
            first = first_line(e)
            if kwargs["pretrained"] and isinstance(e, OSError):
                raise ConfigError(f"cannot load pretrained {name} from timm's hub ({first}); pass arch.weights=PATH "
                                  "to a local file, or arch.pretrained=false") from e
            raise ConfigError(f"arch.encoder={name} cannot be a U-Net encoder ({first}); pick a convolutional "
                              "timm model (resnet34, efficientnet_b0, convnext_atto)") from e
        if weights is not None:
            load_pretrained(self.body, weights, n_in, name)
        self.channels = list(self.body.feature_info.channels())
        self.reductions = list(self.body.feature_info.reduction())
        self.channels_last_maps = getattr(self.body, "output_fmt", "NCHW") == "NHWC"  # timm's Swin
        self.norm = None
        if pretrained or weights is not None:
            mean, std = (weights is not None and weights_norm(weights)) or (self.body.pretrained_cfg["mean"],
                                                                            self.body.pretrained_cfg["std"])
            self.norm = (channel_norm(mean, n_in), channel_norm(std, n_in))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.body(x)
        return [f.permute(0, 3, 1, 2) for f in feats] if self.channels_last_maps else list(feats)


class HookedEncoder(nn.Module):
    """expt's ResNet without its head; the output of each block whose next block changes the size."""

    def __init__(self, body: nn.Sequential, n_in: int, input_shape: Sequence[int]):
        super().__init__()
        blocks = []
        for layer in body:
            if not isinstance(layer, ResBlock):
                break  # pooling, flatten and the classifier head
            blocks.append(layer)
        self.blocks = nn.Sequential(*blocks)
        with torch.no_grad():  # shapes only, on the meta device: no memory, whatever the image size
            x, sizes = torch.zeros(1, n_in, *input_shape[-2:], device="meta"), []
            for block in copy.deepcopy(self.blocks).eval().to("meta"):
                x = block(x)
                sizes.append((x.shape[1], x.shape[-1]))
        width = input_shape[-1]
        self.keep = [i for i in range(len(sizes)) if i == len(sizes) - 1 or sizes[i + 1][1] != sizes[i][1]]
        self.channels = [sizes[i][0] for i in self.keep]
        self.reductions = [round(width / sizes[i][1]) for i in self.keep]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.keep:
                feats.append(x)
        return feats


class DynamicUnet(nn.Module):
    image_output = True  # build.check_output_kind: it outputs images, not class scores

    def __init__(self, encoder: nn.Module, n_in: int, n_out: int, blur: bool = False, self_attention: bool = False,
                 y_range: Sequence[float] | None = (0.0, 1.0), residual_stats: tuple | None = None):
        super().__init__()
        if residual_stats is not None:  # predict a residual over the input, which the body sees normalised
            mean, std = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in residual_stats)
            self.register_buffer("in_mean", mean)
            self.register_buffer("in_std", std)
        self.residual = residual_stats is not None
        chs, reds = encoder.channels, encoder.reductions
        if len(set(reds)) < 2:
            raise ConfigError(f"the encoder never reduces its input (feature maps at 1/{reds[0]} only, like a ViT's); "
                              "a U-Net needs a pyramid: pick a convolutional encoder")
        self.encoder, self.y_range = encoder, tuple(y_range) if y_range is not None else None
        middle = chs[-1]
        self.middle = nn.Sequential(conv(middle, middle * 2, stride=1), conv(middle * 2, middle, stride=1))
        blocks, up_c = [], middle
        for i, skip_c in enumerate(reversed(chs[:-1])):
            out_c = max(skip_c, 16)
            attend = self_attention and i == max(len(chs) - 4, 0)  # the third-last block, as fastai
            blocks.append(UnetBlock(up_c, skip_c, out_c, blur, attend))
            up_c = out_c
        self.blocks = nn.ModuleList(blocks)
        first = reds[0]  # e.g. 4 for ConvNeXt's stem, 1 for expt's ResNets
        self.up = PixelShuffleICNR(up_c, up_c, scale=first, blur=blur) if first > 1 else nn.Identity()
        if first > 1 and 2 ** round(math.log2(first)) != first:
            raise ConfigError(f"the encoder's first reduction is {first}; a U-Net needs a power of 2")
        self.final = nn.Sequential(ResBlock(up_c + n_in, up_c + n_in), nn.Conv2d(up_c + n_in, n_out, 1))
        init_weights(self.middle)
        init_weights(self.blocks)
        if self.residual:  # starts as the identity: the output is the input until training moves it
            nn.init.zeros_(self.final[-1].weight)
            nn.init.zeros_(self.final[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)
        up = self.middle(feats[-1])
        for block, skip in zip(self.blocks, reversed(feats[:-1])):
            up = block(up, skip)
        up = self.up(up)
        if up.shape[-2:] != x.shape[-2:]:
            up = F.interpolate(up, x.shape[-2:], mode="nearest")
        out = self.final(torch.cat([up, x], 1))
        low, high = self.y_range if self.y_range is not None else (None, None)
        if self.residual:
            image = x * self.in_std + self.in_mean  # the input as it came, 0..1
            if self.y_range is None:
                return image + out
            # the residual is added in logit space, so the output stays in y_range
            share = ((image - low) / (high - low)).clamp(1e-3, 1 - 1e-3)
            out = out + torch.logit(share)
        if self.y_range is None:
            return out
        return torch.sigmoid(out) * (high - low) + low


def unet(n_in: int, n_out: int, encoder: str = "resnet_k5", pretrained: bool = False, weights: str | None = None,
         blur: bool = False, self_attention: bool = False, y_range: Sequence[float] | None = (0.0, 1.0),
         residual: bool = False, input_shape: Sequence[int] | None = None,
         input_stats: tuple | None = None) -> DynamicUnet:
    """A U-Net from images of n_in channels to images of n_out channels of the same size.

    encoder: expt's `resnet_k5` or `resnet` (hooks), or any timm model name (features_only);
    pretrained: timm's ImageNet weights (needs the network); weights: a local weights file for the
    encoder (a timm/torch state dict, an expt classifier's checkpoint, or packaged weights such as
    efficientnet-lite0), or an expt U-Net checkpoint to start the whole U-Net from (at any image
    size). With weights, the model carries the normalisation they expect (`input_norm`).
    y_range: the output's sigmoid range (null: no squashing). residual: predict a change of the input (it starts as the identity; needs
    n_in == n_out). input_shape: (C, H, W) and input_stats: the normalisation (mean, std) in front
    of the model, both filled in by the build.
    """
    if residual and (n_in != n_out or input_stats is None):
        raise ConfigError(f"arch.residual=true predicts a change of the input: it needs as many channels out "
                          f"as in (here {n_in} in, {n_out} out) and the data's normalisation")
    shape = tuple(input_shape or (n_in, 64, 64))
    start = unet_checkpoint(weights, encoder)
    if encoder in EXPT_ENCODERS:
        if pretrained or (weights is not None and start is None):
            raise ConfigError(f"arch.encoder={encoder} is expt's own ResNet: it has no pretrained weights; "
                              "pick a timm encoder for arch.pretrained or arch.weights (or pass a U-Net "
                              "checkpoint of this encoder to arch.weights)")
        body = getattr(resnet, encoder)(n_in, 2)
        enc: nn.Module = HookedEncoder(body, n_in, shape)
    else:
        enc = TimmEncoder(encoder, n_in, pretrained and start is None, None if start else weights, shape)
    norm = start or getattr(enc, "norm", None)  # what the weights expect, else the data's
    model = DynamicUnet(enc, n_in, n_out, blur, self_attention, y_range, (norm or input_stats) if residual else None)
    if start is not None:
        load_weights(model, weights, f"arch.weights (a U-Net over {encoder})", exact=True)
    if norm is not None:
        model.input_norm = norm
    return model


def unet_checkpoint(weights: str | None, encoder: str) -> tuple | None:
    """For arch.weights that are an expt U-Net checkpoint (a run to continue at another size, say):
    the normalisation it was trained with; None for any other weights (an encoder's)."""
    if weights is None or not is_checkpoint(Path(weights).expanduser()):
        return None
    meta = read_meta(Path(weights).expanduser())
    arch = meta["config"].get("arch", {})
    if not str(arch.get("_target_", "")).endswith(".unet"):
        return None  # a classifier's checkpoint: its body is the encoder
    if arch.get("encoder") != encoder:
        raise ConfigError(f"arch.weights={weights} is a U-Net over {arch.get('encoder')}, not {encoder}; "
                          f"set arch.encoder={arch.get('encoder')}")
    return tuple(meta["mean"]), tuple(meta["std"])

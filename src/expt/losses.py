"""Losses beyond torch's: the task's own loss (loss=auto, the default), one cross-entropy per target
head, combined with weights (classes), binary cross-entropy per label (several labels per image), a
critic's patch-wise binary cross-entropy, and lesson 7's feature (perceptual) loss (images)."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError, first_line
from .models.critic import expand_targets
from .models.timm import channel_norm, check_name, check_weights, load_pretrained, quiet_hub, weights_norm


class MultiTask(nn.Module):
    """Sum of weight x cross-entropy over heads whose logits sit side by side in the output.

    y is (N, heads) class indices (or (N,) for one head). After each call, `components` holds each
    head's loss (detached), for the metrics."""

    def __init__(self, heads: dict[str, int], weights: dict[str, float] | None = None, label_smoothing: float = 0.0):
        super().__init__()
        unknown = set(weights or {}) - set(heads)
        if unknown:
            raise ConfigError(f"loss.weights names {', '.join(sorted(unknown))}, but the targets are "
                              f"{', '.join(heads)}")
        self.names, self.sizes = list(heads), list(heads.values())
        self.weights = [float((weights or {}).get(name, 1.0)) for name in self.names]
        self.label_smoothing = label_smoothing
        self.components: dict[str, torch.Tensor] = {}

    def forward(self, preds: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        y = y.view(len(y), -1)
        total = 0.0
        for i, (name, logits, w) in enumerate(zip(self.names, preds.split(self.sizes, dim=1), self.weights)):
            loss = F.cross_entropy(logits, y[:, i], label_smoothing=self.label_smoothing)
            self.components[name] = loss.detach()
            total = total + w * loss
        return total


def multi_task(task, weights: dict[str, float] | None = None, label_smoothing: float = 0.0) -> MultiTask:
    """The loss group's builder, finished with the task (its heads: target -> classes, from the data)."""
    return MultiTask(task.sizes, weights, label_smoothing)


def auto(task) -> nn.Module:
    """The loss group's default, finished with the task: the task's own loss (class labels: cross
    entropy; several heads: multi_task; several labels: BCE; images: L1; a critic: patch_bce; a
    generator from noise: none)."""
    return task.default_loss()


class MultiLabelBCE(nn.Module):
    """Binary cross-entropy with logits of every label of (N, labels) outputs against 0/1 targets
    (several labels per image), in float32 whatever the precision."""

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits.float(), y.float())


def bce() -> MultiLabelBCE:
    """The loss group's builder for several labels per image (data.label_delim)."""
    return MultiLabelBCE()


class PatchBCE(nn.Module):
    """Binary cross-entropy of a critic's patch logits (N, positions) against each image's target
    (N,), 1 real and 0 generated, expanded over the patches (fastai's AdaptiveLoss)."""

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits.float(), expand_targets(logits.float(), y))


class NoPixelLoss(nn.Module):
    """No loss against a target: an unconditional GAN's generator learns from its critic alone
    (its batches have no target image). Zero, so val/loss reads 0."""

    def forward(self, preds: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return preds.new_zeros(())


def no_pixel_loss() -> NoPixelLoss:
    """The loss group's builder for a generator from noise (experiment=fmnist_gan)."""
    return NoPixelLoss()


def patch_bce() -> PatchBCE:
    """The loss group's builder for a critic (arch=critic)."""
    return PatchBCE()


def gram_matrix(x: torch.Tensor) -> torch.Tensor:
    """(N, C, C) channel correlations of (N, C, H, W) maps, over C*H*W (float32 whatever the precision)."""
    n, c, h, w = x.shape
    flat = x.float().reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


class FeatureLoss(nn.Module):
    """Lesson 7's perceptual loss for image outputs: a pixel loss, plus the L1 between a frozen
    pretrained network's activations of prediction and target at a few depths (one weight each),
    plus the L1 between their gram matrices (x weight**2 x gram_weight).

    After each call, `components` holds the three parts as they enter the total (pixel, feature,
    gram; detached), for the metrics."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float], layer_weights: Sequence[float],
                 gram_weight: float, pixel: str):
        super().__init__()
        self.net = net.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.layer_weights, self.gram_weight = [float(w) for w in layer_weights], float(gram_weight)
        self.pixel = F.l1_loss if pixel == "l1" else F.mse_loss
        self.components: dict[str, torch.Tensor] = {}

    def train(self, mode: bool = True) -> "FeatureLoss":
        super().train(mode)
        self.net.eval()  # the feature network's batch norm keeps its statistics
        return self

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        if images.shape[1] == 1:  # gray images, as three equal channels
            images = images.expand(-1, 3, -1, -1)
        return self.net((images - self.mean) / self.std)

    def forward(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pixel = self.pixel(preds, target)
        with torch.no_grad():
            wanted = self.features(target)
        feature = gram = 0.0
        for got, want, w in zip(self.features(preds), wanted, self.layer_weights):
            feature = feature + w * F.l1_loss(got, want)
            gram = gram + w**2 * self.gram_weight * F.l1_loss(gram_matrix(got), gram_matrix(want))
        self.components = {"pixel": pixel.detach(), "feature": feature.detach(), "gram": gram.detach()}
        return pixel + feature + gram


def feature_loss(net: str = "vgg16_bn", pretrained: bool = True, weights: str | None = None,
                 layers: Sequence[int] = (4, 8, 16), layer_weights: Sequence[float] = (5.0, 15.0, 2.0),
                 gram_weight: float = 5e3, pixel: str = "l1") -> FeatureLoss:
    """The loss group's builder for FeatureLoss over timm's `net` (lesson 7: VGG16-BN).

    pretrained: its ImageNet weights from timm's hub (needs the network); weights: a local file
    instead (a timm/torch state dict, an expt checkpoint of a timm classifier, or packaged weights
    such as efficientnet-lite0). A network with random weights is refused: its features measure
    nothing. layers: the depths compared, as reductions of the image size (1/4, 1/8, 1/16: the
    lesson's VGG layers before its 2nd, 3rd and 4th max-pool), one layer_weight each.
    """
    import timm

    check_name(net, "loss.net")
    if pixel not in ("l1", "mse"):
        raise ConfigError(f"loss.pixel={pixel!r} is not one of l1, mse")
    if len(layers) != len(layer_weights) or not layers:
        raise ConfigError(f"loss.layers has {len(layers)} depths and loss.layer_weights {len(layer_weights)} "
                          "weights; give one weight per depth")
    if weights is None and not pretrained:
        raise ConfigError(f"loss=feature compares the activations of a pretrained network; {net} with random "
                          "weights measures nothing: set loss.weights=PATH (a local weights file or an expt "
                          "checkpoint; efficientnet-lite0 with loss.net=tf_efficientnet_lite0) or loss.pretrained=true")
    if weights is not None:
        check_weights(weights, net, "loss.weights")
    hub = pretrained and weights is None
    quiet_hub()
    try:
        probe = timm.create_model(net, features_only=True)
        reductions = list(probe.feature_info.reduction())
        missing = [r for r in layers if r not in reductions]
        if missing:
            raise ConfigError(f"loss.layers={list(layers)}: {net} has feature maps at 1/{', 1/'.join(map(str, reductions))}"
                              f" of the image size, not at 1/{missing[0]}")
        model = timm.create_model(net, features_only=True, pretrained=hub,
                                  out_indices=[reductions.index(r) for r in layers])
    except (OSError, RuntimeError) as e:
        first = first_line(e)
        raise ConfigError(f"cannot load pretrained {net} for loss=feature from timm's hub ({first}); pass "
                          "loss.weights=PATH to a local file (or loss.net=tf_efficientnet_lite0 "
                          "loss.weights=efficientnet-lite0 with expt[lite0])") from e
    if weights is not None:
        load_pretrained(model, weights, 3, net, "loss.weights")
    mean, std = (weights is not None and weights_norm(weights)) or (model.pretrained_cfg["mean"],
                                                                    model.pretrained_cfg["std"])
    return FeatureLoss(model, channel_norm(mean, 3), channel_norm(std, 3), layer_weights, gram_weight, pixel)

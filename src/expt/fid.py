"""Frechet distance between real and generated images in a classifier's feature space (FID, Heusel
et al. 2017, with an expt classifier in place of Inception, whose weights need the network): the
distance between Gaussians fitted to the two sets of features,
|mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)), in float64."""

import torch
from torch import nn

from .callbacks.metrics import MetricsCB
from .errors import CheckpointError
from .learner import Callback


def gaussian_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance (unbiased) of features (N, D), in float64."""
    f = features.double()
    return f.mean(0), torch.cov(f.T)


def _sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix."""
    values, vectors = torch.linalg.eigh(m)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> float:
    """The Frechet distance between N(mu1, cov1) and N(mu2, cov2). Tr((cov1 cov2)^(1/2)) is taken as
    the sum of the square roots of the eigenvalues of cov1^(1/2) cov2 cov1^(1/2), which are those of
    cov1 cov2 and, that matrix being symmetric, real and non-negative (up to rounding)."""
    root = _sqrt_psd(cov1)
    cross = torch.linalg.eigvalsh(root @ cov2 @ root).clamp_min(0).sqrt().sum()
    return float((mu1 - mu2).square().sum() + cov1.trace() + cov2.trace() - 2 * cross)


class Features(nn.Module):
    """A classifier's penultimate features: the input of its last Linear layer (a resnet_k5's
    pooled 256 channels, a timm model's pre-logits)."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        linears = [m for m in classifier.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise CheckpointError("gan.fid_features needs a classifier that ends in a Linear layer (arch=resnet_k5, timm)")
        self.classifier = classifier.eval().requires_grad_(False)
        self.captured: torch.Tensor | None = None
        linears[-1].register_forward_hook(self._capture)

    def _capture(self, module, inputs, output) -> None:
        self.captured = inputs[0].flatten(1)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.classifier(images.float())
        return self.captured.float()


class FidCB(Callback):
    """val/fid after each epoch: features of every validation image and of as many generated ones
    (the learner's validation predictions, from fixed noise). The real images' statistics are
    taken once."""

    order = MetricsCB.order + 1  # after MetricsCB built the row, before it is printed and saved

    def __init__(self, features: Features):
        self.features = features
        self.real_stats: tuple[torch.Tensor, torch.Tensor] | None = None

    def before_validate(self, learn) -> None:
        self.fake, self.real = [], []

    def after_loss(self, learn) -> None:
        if learn.training:
            return
        self.fake.append(self.features(learn.preds).cpu())
        if self.real_stats is None:
            self.real.append(self.features(learn.yb).cpu())

    def after_validate(self, learn) -> None:
        if self.real_stats is None:
            self.real_stats = gaussian_stats(torch.cat(self.real))
        self.fid = frechet_distance(*self.real_stats, *gaussian_stats(torch.cat(self.fake)))

    def after_epoch(self, learn) -> None:
        learn.row["val/fid"] = self.fid

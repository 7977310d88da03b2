"""Image-quality metrics on 0..1 images, per image: PSNR, and SSIM through pytorch-msssim (its
Gaussian window: 11 pixels, sigma 1.5, as in Wang et al. 2004)."""

import torch


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of each image of a batch (N, C, H, W); pred is clamped to
    0..1 first, and a perfect match is capped at 100 dB."""
    mse = (pred.float().clamp(0, 1) - target.float()).square().flatten(1).mean(1)
    return 10 * torch.log10(1 / mse.clamp_min(1e-10))


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Structural similarity of each image of a batch (N, C, H, W), images at least 11 pixels a side."""
    from pytorch_msssim import ssim as ssim_
    return ssim_(pred.float().clamp(0, 1), target.float(), data_range=1.0, size_average=False)

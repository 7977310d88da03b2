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


SSIM_MIN_SIZE = 11  # pytorch-msssim's window


def image_sums(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """PSNR and (for images of at least 11 pixels a side) SSIM summed over a batch, on its device."""
    sums = {"psnr": psnr(pred, target).sum()}
    if min(target.shape[-2:]) >= SSIM_MIN_SIZE:
        sums["ssim"] = ssim(pred, target).sum()
    return sums


@torch.no_grad()
def mean_scores(pred: torch.Tensor, target: torch.Tensor, chunk: int = 64) -> dict[str, float]:
    """Mean PSNR and SSIM of images `pred` (0..1 floats, or uint8) against uint8 images `target`,
    converted a chunk at a time."""
    def as_float(images: torch.Tensor) -> torch.Tensor:
        return images.float() / 255 if images.dtype == torch.uint8 else images.float()
    total: dict[str, float] = {}
    for i in range(0, len(target), chunk):
        for k, v in image_sums(as_float(pred[i: i + chunk]), as_float(target[i: i + chunk])).items():
            total[k] = total.get(k, 0.0) + v.item()
    return {k: v / max(len(target), 1) for k, v in total.items()}


def laplacian_variance(images: torch.Tensor) -> torch.Tensor:
    """Sharpness of each image of a batch (N, C, H, W) in 0..1: the variance of the 3x3 Laplacian of
    its grey levels (mean of the channels), over the interior pixels. Blur lowers it."""
    grey = images.float().mean(1, keepdim=True)
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], device=grey.device).view(1, 1, 3, 3)
    return torch.nn.functional.conv2d(grey, kernel).flatten(1).var(1)

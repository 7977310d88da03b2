"""Batch-level augmentations that run on the device, during training only (see AugmentCB).

Each transform takes a float batch (B, C, H, W) and draws its randomness per image, with tensor
operations over the whole batch: no Python loop over images. A generator can be passed for
reproducible tests; by default the global RNG of the batch's device is used.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError


def none() -> nn.Module | None:
    """No training augmentation."""
    return None


def _uniform_int(low: torch.Tensor | int, high: torch.Tensor | int, shape, device, gen) -> torch.Tensor:
    """Integers in [low, high] (inclusive; tensors broadcast), one per element of `shape`."""
    u = torch.rand(shape, device=device, generator=gen)
    return (low + (u * (torch.as_tensor(high, device=device) - low + 1)).floor()).long()


class Flip(nn.Module):
    """Mirror each image left-right with probability p."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None):
        super().__init__()
        self.p, self.generator = p, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flip = torch.rand(len(x), device=x.device, generator=self.generator) < self.p
        return torch.where(flip[:, None, None, None], x.flip(3), x)


class PadCrop(nn.Module):
    """Zero-pad by `pad` pixels and crop back to the original size at a random offset per image:
    content moves by at most `pad` pixels in each direction."""

    def __init__(self, pad: int = 1, generator: torch.Generator | None = None):
        super().__init__()
        self.pad, self.generator = pad, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        offsets = _uniform_int(0, 2 * self.pad, (2, b), x.device, self.generator)
        padded = F.pad(x, (self.pad,) * 4)
        rows = (offsets[0, :, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (offsets[1, :, None] + torch.arange(w, device=x.device))[:, None, None, :]
        batch = torch.arange(b, device=x.device)[:, None, None, None]
        chans = torch.arange(c, device=x.device)[None, :, None, None]
        return padded[batch, chans, rows, cols]


def _patches(x: torch.Tensor, max_num: int, pct: float, gen) -> tuple[torch.Tensor, ...]:
    """Per image, 1..max_num rectangles up to pct of the height and width: (top, left, height,
    width, active), each (B, max_num)."""
    b, _, h, w = x.shape
    shape, dev = (b, max_num), x.device
    ph = _uniform_int(1, max(1, int(h * pct)), shape, dev, gen)
    pw = _uniform_int(1, max(1, int(w * pct)), shape, dev, gen)
    top = _uniform_int(0, h - ph, shape, dev, gen)
    left = _uniform_int(0, w - pw, shape, dev, gen)
    count = _uniform_int(1, max_num, (b, 1), dev, gen)
    active = torch.arange(max_num, device=dev) < count
    return top, left, ph, pw, active


def _mask(top, left, ph, pw, h: int, w: int) -> torch.Tensor:
    """(B, P, H, W) booleans: inside each rectangle."""
    rows = torch.arange(h, device=top.device)[:, None]
    cols = torch.arange(w, device=top.device)[None, :]
    t, l, hh, ww = (v[..., None, None] for v in (top, left, ph, pw))
    return (rows >= t) & (rows < t + hh) & (cols >= l) & (cols < l + ww)


class RandomErase(nn.Module):
    """Replace 1..max_num patches per image (each up to pct of height and width) with noise of the
    batch's mean and std, clamped to the batch's min and max so the pixel range does not change."""

    def __init__(self, pct: float = 0.2, max_num: int = 4, generator: torch.Generator | None = None):
        super().__init__()
        self.pct, self.max_num, self.generator = pct, max_num, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, left, ph, pw, active = _patches(x, self.max_num, self.pct, self.generator)
        mask = (_mask(top, left, ph, pw, x.shape[2], x.shape[3]) & active[..., None, None]).any(1, keepdim=True)
        noise = torch.randn(x.shape, device=x.device, generator=self.generator, dtype=x.dtype)
        noise = (noise * x.std() + x.mean()).clamp(x.min(), x.max())
        return torch.where(mask, noise, x)


class RandomCopy(nn.Module):
    """Copy 1..max_num patches per image (each up to pct of height and width) from another random
    place in the same image. Only pixels of the same image move; nothing new is invented."""

    def __init__(self, pct: float = 0.2, max_num: int = 4, generator: torch.Generator | None = None):
        super().__init__()
        self.pct, self.max_num, self.generator = pct, max_num, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        top, left, ph, pw, active = _patches(x, self.max_num, self.pct, self.generator)
        src_top = _uniform_int(0, h - ph, top.shape, x.device, self.generator)
        src_left = _uniform_int(0, w - pw, top.shape, x.device, self.generator)
        rows = torch.arange(h, device=x.device).expand(b, h)
        cols = torch.arange(w, device=x.device).expand(b, w)
        batch = torch.arange(b, device=x.device)[:, None, None, None]
        chans = torch.arange(c, device=x.device)[None, :, None, None]
        for p in range(self.max_num):  # a few patches, each over the whole batch at once
            inside = _mask(top[:, p], left[:, p], ph[:, p], pw[:, p], h, w) & active[:, p, None, None]
            src_r = rows - top[:, p, None] + src_top[:, p, None]
            src_c = cols - left[:, p, None] + src_left[:, p, None]
            r = torch.where(inside, src_r[:, :, None], rows[:, :, None])[:, None]
            cc = torch.where(inside, src_c[:, None, :], cols[:, None, :])[:, None]
            x = x[batch, chans, r.clamp(0, h - 1), cc.clamp(0, w - 1)]
        return x


class RandomResizedCrop(nn.Module):
    """Per image: a crop of `scale` of the area (fractions) and aspect `ratio` (w/h) at a random
    place, resized back to the full size (bilinear, one grid_sample for the batch), flipped
    left-right with probability p_flip."""

    def __init__(self, scale: Sequence[float] = (0.35, 1.0), ratio: Sequence[float] = (3 / 4, 4 / 3),
                 p_flip: float = 0.5, generator: torch.Generator | None = None):
        super().__init__()
        self.scale, self.ratio, self.p_flip, self.generator = tuple(scale), tuple(ratio), p_flip, generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, dev, g = len(x), x.device, self.generator
        area = torch.empty(b, device=dev).uniform_(*self.scale, generator=g)
        log_ratio = torch.empty(b, device=dev).uniform_(*(float(torch.tensor(r).log()) for r in self.ratio),
                                                         generator=g)
        w = (area * log_ratio.exp()).sqrt().clamp(max=1.0)  # crop width and height as fractions
        h = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
        cx = (torch.rand(b, device=dev, generator=g) * 2 - 1) * (1 - w)  # centre, in -1..1 coordinates
        cy = (torch.rand(b, device=dev, generator=g) * 2 - 1) * (1 - h)
        flip = torch.where(torch.rand(b, device=dev, generator=g) < self.p_flip, -1.0, 1.0)
        theta = torch.zeros(b, 2, 3, device=dev)
        theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w * flip, cx, h, cy
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="reflection", align_corners=False)


def random_resized_crop(scale: Sequence[float] = (0.35, 1.0), ratio: Sequence[float] = (0.75, 1.3333),
                        p_flip: float = 0.5) -> nn.Module:
    """Random resized crop and flip, per image on the device (for photo datasets)."""
    return RandomResizedCrop(scale, ratio, p_flip)


def crop_flip(pad: int = 1, p_flip: float = 0.5) -> nn.Module:
    """Random crop after zero padding, then random horizontal flip (the course's batch_tfms)."""
    return nn.Sequential(PadCrop(pad), Flip(p_flip))


def random_erase(pct: float = 0.2, max_num: int = 4) -> nn.Module:
    return RandomErase(pct, max_num)


def random_copy(pct: float = 0.2, max_num: int = 4) -> nn.Module:
    return RandomCopy(pct, max_num)


def compose(transforms: Sequence[nn.Module | None]) -> nn.Module | None:
    """Apply several augmentations in order (a list of builder nodes in the config)."""
    kept = [t for t in transforms if t is not None]
    return nn.Sequential(*kept) if kept else None


class Mix(nn.Module):
    """mixup and CutMix per image, on the device: each image of the batch is mixed with a random
    partner (a permutation of the batch) by its own weight lam, and its targets (float, (B, K):
    one-hot classes or 0/1 labels) by the same weight. An image is mixed with probability `prob`;
    a mixed image is CutMix's with probability `switch_prob` (a box of area 1 - lam pasted from the
    partner, lam then recomputed from the box as clipped to the image), else mixup's (the pixels
    blended). lam ~ Beta(alpha, alpha) for mixup, Beta(cutmix_alpha, cutmix_alpha) for CutMix; an
    alpha of 0 turns that kind off. Training epochs from `off_epoch` on (0-based) are not mixed
    (the callback asks `active(epoch)`).

    One pixel weight map per image w (1 inside the own image, 0 where the partner shows; lam
    everywhere for mixup) gives both: x' = w x + (1 - w) x[partner], y' = mean(w) y + (1 - mean(w))
    y[partner] (CutMix's mean(w) from the box's sides, not summed over the pixels).

    Not timm's Mixup: in element mode it loops over the batch in Python and draws from NumPy's
    global RNG, which a resumed run does not restore; this one draws from torch's, as the other
    transforms do, and measured 1.7x (28 px, bs 1024) to 5.9x (128 px, bs 256) faster on the CPU
    (scripts/bench_mixup.py, docs/BENCHMARKS.md)."""

    def __init__(self, alpha: float = 0.4, cutmix_alpha: float = 0.0, prob: float = 1.0, switch_prob: float = 0.0,
                 off_epoch: int | None = None):
        super().__init__()
        self.alpha, self.cutmix_alpha, self.prob, self.switch_prob = alpha, cutmix_alpha, prob, switch_prob
        self.off_epoch = off_epoch

    def active(self, epoch: int) -> bool:
        return self.off_epoch is None or epoch < self.off_epoch

    @staticmethod
    def _beta(alpha: float, n: int, device) -> torch.Tensor:
        if alpha <= 0:
            return torch.ones(n, device=device)
        concentration = torch.full((n,), float(alpha), device=device)
        return torch.distributions.Beta(concentration, concentration).sample()

    def weights(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, H, W) pixel weights of each image's own content, and (B,) their means (the targets' lam)."""
        b, _, h, w = x.shape
        dev = x.device
        if self.cutmix_alpha <= 0 or self.alpha <= 0:  # one kind only
            cut = torch.full((b,), self.cutmix_alpha > 0, device=dev)
        else:
            cut = torch.rand(b, device=dev) < self.switch_prob
        lam = torch.where(cut, self._beta(self.cutmix_alpha, b, dev), self._beta(self.alpha, b, dev))
        mixed = torch.rand(b, device=dev) < self.prob
        lam = torch.where(mixed, lam, torch.ones_like(lam))
        cut = cut & mixed
        # CutMix's box: sides sqrt(1 - lam) of the image's, centred anywhere, clipped to the image
        side = (1 - lam).sqrt()
        cy, cx = torch.rand(b, device=dev) * h, torch.rand(b, device=dev) * w
        top, bottom = (cy - side * h / 2).round().clamp(0, h), (cy + side * h / 2).round().clamp(0, h)
        left, right = (cx - side * w / 2).round().clamp(0, w), (cx + side * w / 2).round().clamp(0, w)
        rows, cols = torch.arange(h, device=dev), torch.arange(w, device=dev)
        in_rows = ((rows >= top[:, None]) & (rows < bottom[:, None])).to(x.dtype)  # (B, H)
        in_cols = ((cols >= left[:, None]) & (cols < right[:, None])).to(x.dtype)  # (B, W)
        box = in_rows[:, :, None] * in_cols[:, None, :]  # one (B, H, W) product, not four comparisons
        own = torch.where(cut[:, None, None], 1 - box, lam[:, None, None].to(x.dtype))
        box_share = in_rows.sum(1) * in_cols.sum(1) / (h * w)
        return own[:, None], torch.where(cut, 1 - box_share.float(), lam.float())

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        partner = torch.randperm(len(x), device=x.device)
        w, lam = self.weights(x)
        lam = lam[:, None].to(y.dtype)
        return torch.lerp(x[partner], x, w), torch.lerp(y[partner], y, lam)


def mixup(alpha: float = 0.4, prob: float = 1.0, off_epoch: int | None = None) -> Mix:
    """mixup (Zhang et al. 2018): each image blended with a partner, lam ~ Beta(alpha, alpha)."""
    return Mix(alpha=alpha, prob=prob, off_epoch=off_epoch)


def cutmix(alpha: float = 1.0, prob: float = 1.0, off_epoch: int | None = None) -> Mix:
    """CutMix (Yun et al. 2019): a box of each image replaced by its partner's, area ~ 1 - Beta(alpha, alpha)."""
    return Mix(alpha=0.0, cutmix_alpha=alpha, prob=prob, switch_prob=1.0, off_epoch=off_epoch)


def mixup_cutmix(alpha: float = 0.4, cutmix_alpha: float = 1.0, prob: float = 1.0, switch_prob: float = 0.5,
                 off_epoch: int | None = None) -> Mix:
    """Per image, CutMix with probability switch_prob, else mixup (timm's Mixup in element mode)."""
    return Mix(alpha=alpha, cutmix_alpha=cutmix_alpha, prob=prob, switch_prob=switch_prob, off_epoch=off_epoch)


def split_mix(transform: nn.Module | None) -> tuple[nn.Module | None, Mix | None]:
    """An augmentation as (what changes the images alone, the Mix that also mixes targets): a Mix
    is an option of its own or the last of a compose's transforms."""
    if isinstance(transform, Mix):
        return None, transform
    if not isinstance(transform, nn.Sequential):
        return transform, None
    parts = list(transform)
    mixes = [i for i, t in enumerate(parts) if isinstance(t, Mix)]
    if not mixes:
        return transform, None
    if mixes != [len(parts) - 1]:
        raise ConfigError("augment: mixup or cutmix comes once, last in compose's transforms (it mixes the images "
                          "the others made, and their targets)")
    rest = parts[:-1]
    return (nn.Sequential(*rest) if rest else None), parts[-1]

"""`expt show [overrides]`: batch.png in the run folder, the first training batch of exactly the run
`expt train` would build, after its augmentation: each image with its label (several heads: each
head's), or for image targets input | target side by side."""

import math
from pathlib import Path

import torch
from rich.console import Console

from ..build import build_run
from ..callbacks.samples import image_grid, save_png
from ..callbacks.training import augmented
from ..errors import ConfigError
from ..plots import png

MAX_IMAGES = 64  # one readable grid, 8 a row


def run(cfg, run_dir: Path, console: Console) -> dict:
    built = build_run(cfg)
    xb, yb = next(iter(built.train_dl))
    if built.augment is not None:
        xb, yb = augmented(built.augment, xb, yb, built.task.paired)
    n = min(cfg.n, len(xb), MAX_IMAGES)
    if n < 1:
        raise ConfigError(f"n={cfg.n} must be at least 1 (the images of the batch to show)")
    out = Path(run_dir) / "batch.png"
    if built.task.image_output:
        grid = image_grid([xb[:n].float(), yb[:n].float()]) if built.task.paired else image_grid([xb[:n].float()])
        save_png(out, enlarged(grid))
        what = "input | target" if built.task.paired else "images"
    else:
        draw_labelled(out, xb[:n].float(), labels(built.data, yb[:n]))
        what = "images with their labels"
    console.print(f"[bold]expt show[/] {n} of {len(xb)} images of the first training batch ({what}), augment "
                  f"{'on' if built.augment is not None else 'off'}: wrote {out}")
    return {"status": "ok", "images": n}


def labels(data, y: torch.Tensor) -> list[str]:
    """Each image's class name; with several heads, each head's, joined by ' / '."""
    heads = list(data.heads.values())
    rows = y.view(len(y), -1).tolist()
    return [" / ".join(heads[i][c] for i, c in enumerate(row)) for row in rows]


def draw_labelled(path: Path, images: torch.Tensor, names: list[str], cols: int = 8) -> None:
    """Images (N, C, H, W) in 0..1, each over its label, `cols` a row."""
    rows = math.ceil(len(images) / cols)
    with png(path, figsize=(1.6 * cols, 1.8 * rows), ncols=cols, nrows=rows) as cells:
        for cell, image, name in zip(cells, images, names):
            pixels = image.clamp(0, 1).permute(1, 2, 0).cpu().numpy()
            cell.imshow(pixels[..., 0] if pixels.shape[2] == 1 else pixels, cmap="gray", vmin=0, vmax=1)
            cell.set_title(name, fontsize=8)
        for cell in cells:
            cell.axis("off")


def enlarged(grid: torch.Tensor, width: int = 400) -> torch.Tensor:
    """A uint8 (H, W, 3) grid with each pixel repeated, to at least `width` px wide (at most 4x)."""
    scale = min(4, max(1, -(-width // grid.shape[1])))
    return grid.repeat_interleave(scale, 0).repeat_interleave(scale, 1)

"""`expt show [overrides]`: batch.png in the run folder, the first training batch of exactly the run
`expt train` would build, after its augmentation: each image with its label (several heads: each
head's), or for image targets input | target side by side."""

from pathlib import Path

import torch
from rich.console import Console

from ..build import build_run
from ..callbacks.samples import image_grid, save_png
from ..callbacks.training import augmented
from ..errors import ConfigError
from ..plots import labelled_images

MAX_IMAGES = 64  # one readable grid, 8 a row


def run(cfg, run_dir: Path, console: Console) -> dict:
    built = build_run(cfg)
    xb, yb = next(iter(built.train_dl))
    if built.augment is not None:
        xb, yb = augmented(built.augment, xb, yb, built.task.paired)
    if built.mix is not None and built.mix.active(0):
        xb, yb = built.mix(xb, built.task.mix_targets(yb))
    n = min(cfg.n, len(xb), MAX_IMAGES)
    if n < 1:
        raise ConfigError(f"n={cfg.n} must be at least 1 (the images of the batch to show)")
    out = Path(run_dir) / "batch.png"
    if built.task.image_output:
        grid = image_grid([xb[:n].float(), yb[:n].float()]) if built.task.paired else image_grid([xb[:n].float()])
        save_png(out, enlarged(grid))
        what = "input | target" if built.task.paired else "images"
    else:
        names = mixed_names(built.task, yb[:n]) if yb.is_floating_point() else built.task.names(yb[:n])
        labelled_images(out, xb[:n].float(), names)
        what = "images with their labels"
    console.print(f"[bold]expt show[/] {n} of {len(xb)} images of the first training batch ({what}), augment "
                  f"{'on' if built.augment is not None or built.mix is not None else 'off'}: wrote {out}")
    return {"status": "ok", "images": n}


def mixed_names(task, y: torch.Tensor) -> list[str]:
    """Mixed targets as labels: each image's two largest classes (or labels) with their shares."""
    classes = next(iter(task.heads.values()))
    out = []
    for row in y.tolist():
        top = sorted(range(len(row)), key=row.__getitem__, reverse=True)[:2]
        out.append("\n".join(f"{classes[i]} {row[i]:.2f}" for i in top if row[i] >= 0.005))  # one a line: they fit
    return out


def enlarged(grid: torch.Tensor, width: int = 400) -> torch.Tensor:
    """A uint8 (H, W, 3) grid with each pixel repeated, to at least `width` px wide (at most 4x)."""
    scale = min(4, max(1, -(-width // grid.shape[1])))
    return grid.repeat_interleave(scale, 0).repeat_interleave(scale, 1)

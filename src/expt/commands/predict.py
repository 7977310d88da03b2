"""`expt predict ckpt=PATH`: a classifier's predictions for its dataset's test images, as a Kaggle
submission file (image_id,<headline target>); a restoration model's outputs for every image of a
folder (`input=DIR`), each at its own size (enlarged first by the scale it was trained for), as PNGs."""

import logging
from pathlib import Path

import pandas as pd
import torch
from PIL import Image

from ..callbacks.samples import save_image
from ..checkpoint import atomic_write
from ..data import image_files
from ..data.loaders import DeviceLoader
from ..errors import ConfigError, DataError
from ..rebuild import build_test, model_from_checkpoint
from ..runtime import resolve
from ..tta import predict


def run(cfg, run_dir: Path, console) -> dict:
    if cfg.input is not None:
        return restore_folder(cfg, console)
    test = build_test(cfg)
    loader = DeviceLoader(test.x, torch.zeros(len(test.x), dtype=torch.long), cfg.bs * 2, shuffle=False,
                          drop_last=False, device=test.runtime.device, channels_last=test.runtime.channels_last)
    _, probs = predict(test.model, loader, test.tta, test.runtime.autocast(), test.task)
    target, labels = test.task.labels(probs)  # the headline target, as Kaggle scores it
    out = Path(test.path).parent / "submission.csv"
    frame = pd.DataFrame({"image_id": test.ids, target: labels})
    atomic_write(out, lambda tmp: frame.to_csv(tmp, index=False))
    console.print(f"[bold]expt predict[/] {len(labels):,} test images, views {', '.join(test.tta.names)}: wrote {out}")
    return {"status": "ok", "rows": len(labels), "outputs": str(out.parent)}


@torch.no_grad()
def restore_folder(cfg, console) -> dict:
    """Every image of `input` through a restoration checkpoint, into <checkpoint folder>/restored/."""
    folder = Path(cfg.input).expanduser()
    if cfg.ckpt is None or not isinstance(cfg.ckpt, str):
        raise ConfigError("expt predict input=DIR needs one checkpoint: ckpt=PATH/model.safetensors")
    model, meta = model_from_checkpoint(cfg.ckpt)
    if meta.get("task") != "restore":
        raise ConfigError(f"{cfg.ckpt} is a classifier; input=DIR restores images with a restoration checkpoint "
                          "(data=pets arch=unet)")
    if not folder.is_dir():
        raise DataError(f"input={cfg.input} is not a folder; pass a folder of images to restore")
    files = image_files(folder)
    if not files:
        raise DataError(f"input={cfg.input} holds no images (.jpg, .jpeg, .png, .bmp, .webp)")
    runtime = resolve(cfg.device, cfg.precision, cfg.channels_last)
    model, autocast = runtime.place(model), runtime.autocast()
    scale = int(meta["config"]["data"].get("scale", 1))
    out_dir, done, skipped = new_folder(Path(cfg.ckpt).parent / "restored"), 0, []

    def restore(tile: torch.Tensor) -> torch.Tensor:
        with autocast:
            return model(tile.to(runtime.device).contiguous(memory_format=runtime.layout)).float().cpu()
    for file in files:
        try:
            with Image.open(file) as im:
                im = im.convert("RGB")
                im = im.resize((im.width * scale, im.height * scale), Image.Resampling.BICUBIC) if scale > 1 else im
                x = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(im.height, im.width, 3)
        except Exception as e:  # PIL raises many types for truncated or foreign files
            logging.getLogger(__name__).warning("skipping unreadable image %s (%s)", file, e)
            skipped.append(str(file))
            continue
        xb = x.permute(2, 0, 1)[None].float().div(255)
        save_image(out_dir / f"{file.name}.png", tiled(restore, xb)[0])  # the suffix kept: a.jpg and a.png stay two
        done += 1
    if not done:
        out_dir.rmdir()  # made by this command, and nothing in it
    console.print(f"[bold]expt predict[/] restored {done} of {len(files)} images (x{scale}) into {out_dir}"
                  + (f"; {len(skipped)} unreadable, skipped" if skipped else ""))
    outputs = out_dir if done else out_dir.parent
    return {"status": "ok", "restored": done, "skipped": len(skipped), "outputs": str(outputs)}


def new_folder(path: Path) -> Path:
    """A folder made now, never one that exists: `restored`, else `restored-2`, `restored-3`, ...
    (an earlier prediction's outputs are never overwritten)."""
    for i in range(1, 10_000):
        candidate = path if i == 1 else path.with_name(f"{path.name}-{i}")
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"{path}-9999 exists; move earlier predictions away")


TILE, OVERLAP = 512, 32  # pixels: a larger image is restored in overlapping tiles, so memory stays bounded


def tiled(fn, x: torch.Tensor, tile: int = TILE, overlap: int = OVERLAP) -> torch.Tensor:
    """fn (an image-to-image model of the same size) over x (1, C, H, W) in tiles of at most
    tile x tile pixels (at the edges shifted inwards, never smaller) that overlap by at least
    `overlap` on each side; each tile keeps only its centre, so a model whose receptive field reaches
    less than `overlap` pixels gives exactly its untiled output."""
    _, _, h, w = x.shape
    if h <= tile and w <= tile:
        return fn(x)
    step, out = tile - 2 * overlap, None
    for top in range(0, h, step):
        for left in range(0, w, step):
            y0, x0 = max(min(top - overlap, h - tile), 0), max(min(left - overlap, w - tile), 0)  # full-size tiles
            part = fn(x[..., y0:y0 + tile, x0:x0 + tile])
            out = out if out is not None else torch.empty(1, part.shape[1], h, w)
            keep = part[..., top - y0:top - y0 + step, left - x0:left - x0 + step]
            out[..., top:top + keep.shape[2], left:left + keep.shape[3]] = keep
    return out

"""`expt predict ckpt=PATH`: a classifier's predictions for its dataset's test images, as a Kaggle
submission file (image_id,<headline target>); with `input=DIR_OR_FILE`, a classifier's predictions
for every image there (read the way its training data was: size, resize, gray or colour) into
predictions.csv, or a restoration model's outputs, each at its own size (enlarged first by the scale
it was trained for), as PNGs."""

import logging
import os
from pathlib import Path

import pandas as pd
import torch
from PIL import Image
from rich.table import Table

from ..builders import make
from ..callbacks.samples import save_image
from ..checkpoint import atomic_write
from ..data import IMAGE_SUFFIXES, image_files
from ..data.images import load_image
from ..data.loaders import DeviceLoader
from ..errors import ConfigError, DataError
from ..rebuild import build_test, model_from_checkpoint
from ..runtime import resolve
from ..tasks import task_from_meta
from ..tta import predict
from .runner import plain_views


CHUNK = 512  # images decoded and predicted at a time (memory stays bounded on any folder)


def run(cfg, run_dir: Path, console) -> dict:
    if cfg.input is not None:
        if cfg.ckpt is None or not isinstance(cfg.ckpt, str):
            raise ConfigError("expt predict input=... needs one checkpoint: ckpt=PATH/model.safetensors")
        model, meta = model_from_checkpoint(cfg.ckpt)
        if meta.get("task") == "restore":
            return restore_folder(cfg, model, meta, console)
        return classify_files(cfg, model, meta, console)
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


def input_files(given: str) -> tuple[Path, list[Path]]:
    """input=: one image file, or every image in a folder and its subfolders; (their root, the files)."""
    path = Path(given).expanduser()
    if path.is_file():
        return path.parent, [path]
    if not path.is_dir():
        raise DataError(f"input={given} does not exist; pass a folder of images or one image file")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"input={given} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return path, files


def topk_columns(classes: list[str], probs: torch.Tensor, k: int) -> dict[str, list]:
    """label and probability of the most likely class, then label_i, probability_i of the k most likely."""
    top, where = probs.topk(min(k, len(classes)), dim=1)
    columns = {"label": [classes[i] for i in where[:, 0].tolist()], "probability": top[:, 0].tolist()}
    for j in range(top.shape[1]):
        columns |= {f"label_{j + 1}": [classes[i] for i in where[:, j].tolist()], f"probability_{j + 1}": top[:, j].tolist()}
    return columns


def columns_of(task, probs: torch.Tensor, k: int) -> dict[str, list]:
    """predictions.csv's columns after `file`: the headline's top k (several heads: each other head's
    label and probability); several labels per image: the labels above the threshold, then each
    label's probability."""
    if task.meta()["task"] == "multilabel":
        return {"labels": task.labels(probs)[1], **{name: probs[:, i].tolist() for i, name in enumerate(task.classes)}}
    parts = probs.split(list(task.sizes.values()), 1)
    columns = topk_columns(task.heads[next(iter(task.heads))], parts[0], k)
    for (head, classes), p in list(zip(task.heads.items(), parts))[1:]:
        best = p.max(1)
        columns |= {head: [classes[i] for i in best.indices.tolist()], f"{head}_probability": best.values.tolist()}
    return columns


def classify_files(cfg, model, meta: dict, console) -> dict:
    """Every image of `input` through a classifier (with the tta views when tta= is given), into
    <checkpoint folder>/predictions.csv; unreadable files skipped and counted."""
    task = task_from_meta(meta)
    if meta.get("task") == "generate":
        raise ConfigError(f"{cfg.ckpt} is a generator from noise; it makes images (expt sample) instead of "
                          "reading them")
    if cfg.topk < 1:
        raise ConfigError(f"topk={cfg.topk} must be at least 1")
    root, files = input_files(cfg.input)
    tta = make("tta", plain_views(cfg).tta)
    runtime = resolve(cfg.device, cfg.precision, cfg.channels_last)
    model = runtime.place(model)
    shape, resize = meta.get("input_shape"), meta["config"]["data"].get("resize", "squish")
    if not shape or shape[1] != shape[2]:
        raise ConfigError(f"{cfg.ckpt} does not record a square input size (input_shape {shape}); retrain it with "
                          "this expt to predict new images")
    names, chunks, skipped = [], [], {}
    for start in range(0, len(files), CHUNK):
        images, kept = [], []
        for file in files[start: start + CHUNK]:
            try:
                images.append(read_image(file, shape, resize))
                kept.append(file)
            except Exception as e:  # PIL raises many types for truncated or foreign files
                logging.getLogger(__name__).warning("skipping unreadable image %s (%s)", file, e)
                skipped[str(file)] = str(e)
        if not images:
            continue
        loader = DeviceLoader(torch.stack(images), torch.zeros(len(images), dtype=torch.long), cfg.bs * 2,
                              shuffle=False, drop_last=False, device=runtime.device, channels_last=runtime.channels_last)
        chunks.append(predict(model, loader, tta, runtime.autocast(), task)[1].cpu())
        names += [os.path.relpath(f, root) for f in kept]
    if not chunks:
        raise DataError(f"none of the {len(files)} images of input={cfg.input} could be read "
                        f"(first: {next(iter(skipped.items()))})")
    frame = pd.DataFrame({"file": names, **columns_of(task, torch.cat(chunks), cfg.topk)})
    out = Path(cfg.ckpt).parent / "predictions.csv"
    atomic_write(out, lambda tmp: frame.to_csv(tmp, index=False, float_format="%.6f"))
    console.print(prediction_table(frame.head(10), len(frame)))
    console.print(f"[bold]expt predict[/] {len(frame):,} images, views {', '.join(tta.names)}: wrote {out}"
                  + (f"; {len(skipped)} unreadable, skipped" if skipped else ""))
    return {"status": "ok", "rows": len(frame), "skipped": len(skipped), "outputs": str(out.parent)}


def read_image(path: Path, shape: list[int], resize: str) -> torch.Tensor:
    """One image as the model's data held it: uint8 (C, H, W) at its size, decoded and resized as the
    image cache does (gray through PIL's luma for a 1-channel model)."""
    channels, size = shape[0], shape[1]
    x = load_image(path, size, resize)
    if channels == 1:
        gray = Image.fromarray(x.permute(1, 2, 0).numpy()).convert("L")
        x = torch.frombuffer(bytearray(gray.tobytes()), dtype=torch.uint8).view(1, size, size)
    return x


def prediction_table(frame: pd.DataFrame, total: int) -> Table:
    t = Table(title=f"the first {len(frame)} of {total:,} predictions" if total > len(frame) else "predictions")
    columns = list(frame.columns)[:3]
    for col in columns:
        t.add_column(col, justify="right" if col == "probability" else "left")
    for row in frame[columns].itertuples(index=False):
        t.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    return t


@torch.no_grad()
def restore_folder(cfg, model, meta: dict, console) -> dict:
    """Every image of `input` through a restoration checkpoint, into <checkpoint folder>/restored/."""
    folder = Path(cfg.input).expanduser()
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

"""`expt sample ckpt=PATH n=64`: a grid of a generator's images, written next to its checkpoint as
samples_n<N>_seed<S>.png. A generator from noise (experiment=fmnist_gan) draws n images from
seeded noise; a restoration model (a super-resolution U-Net, the generator of experiment=pets_gan)
restores the first n validation images of its data, each row input | output | target."""

import math
from pathlib import Path

import torch

from ..builders import make
from ..callbacks.samples import image_grid, save_png, tile_grid
from ..errors import ConfigError
from ..models.dcgan import noise
from ..rebuild import model_from_checkpoint, stored_data
from ..runtime import resolve

MAX_IMAGES = 1024  # one grid: 32x32 images, already 900 px a side at 28 px an image


@torch.no_grad()
def run(cfg, run_dir: Path, console) -> dict:
    if cfg.ckpt is None or not isinstance(cfg.ckpt, str):
        raise ConfigError("expt sample needs one generator checkpoint: ckpt=RUN/model.safetensors")
    if not 1 <= cfg.n <= MAX_IMAGES:
        raise ConfigError(f"n={cfg.n} must be from 1 to {MAX_IMAGES:,} (one grid of images; for many images "
                          "run expt sample with several seeds)")
    model, meta = model_from_checkpoint(cfg.ckpt)
    task = meta.get("task", "classify")
    if task not in ("generate", "restore"):
        raise ConfigError(f"{cfg.ckpt} is a {task} checkpoint; expt sample needs a generator's (experiment=fmnist_gan, "
                          "or a restoration run such as experiment=pets_gan)")
    runtime = resolve(cfg.device, cfg.precision, channels_last=False)  # as it always ran: no channels_last here
    device, autocast, model = runtime.device, runtime.autocast(), runtime.place(model)
    if task == "generate":
        gen = torch.Generator(device=device).manual_seed(cfg.seed)
        images = []
        for start in range(0, cfg.n, cfg.bs):
            with autocast:
                images.append(model(noise(min(cfg.bs, cfg.n - start), model.body.nz, device, gen)).float())
        grid = tile_grid(torch.cat(images), nrow=math.ceil(math.sqrt(cfg.n)))
        what = f"{cfg.n} images from noise (seed {cfg.seed})"
    else:
        data = make("data", stored_data(meta, cfg))
        x, y = (t[: cfg.n].to(device).float().div(255) for t in (data.valid_x, data.valid_y))
        with autocast:
            out = torch.cat([model(x[i: i + cfg.bs]).float() for i in range(0, len(x), cfg.bs)])
        grid = image_grid([x, out, y])
        what = f"{len(x)} validation images restored (input | output | target)"
    out_path = Path(cfg.ckpt).parent / f"samples_n{cfg.n}_seed{cfg.seed}.png"
    save_png(out_path, grid)
    console.print(f"[bold]expt sample[/] {what}: wrote {out_path}")
    return {"status": "ok", "outputs": str(out_path.parent)}

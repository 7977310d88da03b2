"""Real images against a generator's outputs, to pretrain a GAN critic (lesson 7): the targets of a
restoration run's data are "real" (y = 1), the run's outputs for their inputs "generated" (y = 0),
in both splits. The outputs are made once by the generator checkpoint and cached with the images
(keyed by the checkpoint's bytes and its data settings)."""

import hashlib
import json
import logging
from pathlib import Path

import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file

from ..builders import make, model_from_checkpoint
from ..checkpoint import atomic_write, read_meta
from ..errors import DataError
from ..runtime import resolve_device
from . import ImageData, channel_stats
from .images import cache_root


def generate(model: torch.nn.Module, images: torch.Tensor, bs: int, device: torch.device) -> torch.Tensor:
    """The model's outputs for uint8 images, as uint8 images."""
    out = []
    with torch.no_grad():
        for i in range(0, len(images), bs):
            x = images[i: i + bs].to(device).float().div_(255)
            out.append(model(x).float().clamp_(0, 1).mul_(255).round_().to(torch.uint8).cpu())
    return torch.cat(out) if out else images[:0].clone()


def load(generator: str | None = None, root: str | None = None, bs: int = 32) -> ImageData:
    """Real targets and the generator's outputs of the generator's own data (train and valid).

    generator: a restoration run's model.safetensors (a U-Net of data=pets, for instance);
    root: where that data lives now (null: where the generator was trained); bs: generation batch.
    """
    if not generator:
        raise DataError("data=critic needs data.generator=RUN/model.safetensors: a restoration run's checkpoint "
                        "(expt train experiment=pets_superres_cpu), whose outputs are the generated images")
    if bs < 1:
        raise DataError(f"data.bs={bs} must be at least 1")
    path = Path(generator).expanduser()
    meta = read_meta(path)
    if meta.get("task") != "restore":
        raise DataError(f"data.generator={generator} is a {meta.get('task', 'classify')} checkpoint, not a generator; "
                        "pass the model.safetensors of a restoration run (data=pets arch=unet)")
    node = dict(meta["config"]["data"]) | ({"root": root} if root else {})
    data = make("data", OmegaConf.create(node))  # checked against expt's data builders first
    key = hashlib.sha1(path.read_bytes() + json.dumps(node, sort_keys=True).encode()
                       + json.dumps([list(data.train_x.shape), list(data.valid_x.shape)]).encode()).hexdigest()[:16]
    cache = cache_root() / f"critic-{key}.safetensors"
    fakes = None
    if cache.is_file():
        try:
            fakes = load_file(str(cache))
        except Exception:  # a damaged cache is made again, never trusted
            fakes = None
    if fakes is None:
        device = resolve_device("auto")
        model, _ = model_from_checkpoint(path)
        model = model.to(device)
        fakes = {split: generate(model, x, bs, device) for split, x in (("train", data.train_x), ("valid", data.valid_x))}
        try:
            atomic_write(cache, lambda tmp: save_file(fakes, str(tmp)))
        except OSError as e:  # a full or read-only cache disk costs the next run a generation, not this run
            logging.getLogger(__name__).warning("could not cache the generated images in %s (%s)", cache, e)
    out = {}
    for split, real in (("train", data.train_y), ("valid", data.valid_y)):
        fake = fakes[split]
        out[split] = (torch.cat([real, fake]), torch.cat([torch.ones(len(real), dtype=torch.long),
                                                          torch.zeros(len(fake), dtype=torch.long)]))
    mean, std = channel_stats(out["train"][0])
    return ImageData(*out["train"], *out["valid"], classes=["generated", "real"], mean=mean, std=std,
                     skipped=data.skipped, root=data.root, task="critic")

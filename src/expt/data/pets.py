"""Oxford-IIIT Pet for super-resolution (lesson 7's "crappified" pets): every photo of `images/`
is a target at `size`; its input is the same picture shrunk by `scale` (bilinear), stamped with
its JPEG quality number, saved at that quality and resized back to `size` (bicubic, so the input
itself is the bicubic baseline). Inputs and targets are made
once, together, into the image cache; a fixed fifth of the files (every fifth by sorted name)
validates, whatever the seed."""

import hashlib
import io
import random
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from . import ImageData, channel_stats, check_subsets, find_root, image_files, subset
from .images import cached_images, check_size, decode

VALID_EVERY = 5  # every fifth image, by sorted file name, validates


@dataclass(frozen=True)
class Crappify:
    """The lesson's degradation, deterministic per image and `seed` (picklable: worker processes run it)."""

    scale: int = 2
    quality: tuple[int, int] = (10, 70)  # JPEG quality drawn from this range (equal ends: fixed)
    text: bool = True                    # write the quality number at a random spot, as the lesson does
    seed: int = 0

    @property
    def key(self) -> str:
        """Names the settings in the image cache's fingerprint."""
        return f"crappify-v1-s{self.scale}-q{self.quality[0]}-{self.quality[1]}-t{int(self.text)}-r{self.seed}"

    def degrade(self, target, name: str):
        """The input for a target PIL image of file `name`."""
        from PIL import Image, ImageDraw
        rng = random.Random(int(hashlib.sha1(f"{self.seed}/{name}".encode()).hexdigest()[:12], 16))
        size = target.size
        small = target.resize((max(1, size[0] // self.scale), max(1, size[1] // self.scale)),
                              Image.Resampling.BILINEAR)
        quality = rng.randint(*self.quality)
        if self.text:
            w, h = small.size
            ImageDraw.Draw(small).text((rng.randint(0, w // 2), rng.randint(0, h // 2)), str(quality),
                                       fill=(255, 255, 255))
        buffer = io.BytesIO()
        small.save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as jpeg:
            return jpeg.convert("RGB").resize(size, Image.Resampling.BICUBIC)

    def __call__(self, path: Path, size: int) -> bytes:
        """Target and input side by side in the channels: (size, size, 6) bytes, target first."""
        import numpy as np
        from PIL import Image
        target = Image.frombytes("RGB", (size, size), decode(path, size, "crop"))
        pair = np.concatenate([np.asarray(target), np.asarray(self.degrade(target, path.name))], axis=2)
        return pair.tobytes()


def split_by_name(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """(train, valid): every VALID_EVERY-th file by sorted name validates."""
    ordered = sorted(files, key=lambda f: f.name)
    valid = ordered[VALID_EVERY - 1::VALID_EVERY]
    held_out = set(valid)
    return [f for f in ordered if f not in held_out], valid


def load(root: str | None = None, size: int = 128, scale: int = 2, quality: tuple[int, int] = (10, 70),
         text: bool = True, seed: int = 0, train_subset: int | None = None, valid_subset: int | None = None,
         strict: bool = False, workers: int | None = None) -> ImageData:
    """Crappified inputs (x) and original targets (y), uint8 (N, 3, size, size) both."""
    check_subsets(train_subset, valid_subset)
    check_size(size)
    if scale < 1 or not 1 <= quality[0] <= quality[1] <= 95:
        raise DataError(f"data.scale={scale} must be at least 1 and data.quality={list(quality)} a range within 1..95")
    folder, places = find_root("pets", root, ["images"], "point it at the folder with images/*.jpg")
    if folder is None:
        raise DataError(f"Oxford-IIIT Pet not found (looked in {', '.join(map(str, places))}). Download "
                        "images.tar.gz from www.robots.ox.ac.uk/~vgg/data/pets, extract it and pass "
                        "data.root=FOLDER (the one holding images/), or set EXPT_DATA to its parent")
    files = image_files(folder / "images")
    if len(files) < VALID_EVERY:
        raise DataError(f"{folder / 'images'} has {len(files)} images; super-resolution needs at least {VALID_EVERY}")
    crappify = Crappify(scale, tuple(quality), text, seed)
    tag = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:8]
    out, skipped = {}, {}
    for split, chosen, n in zip(("train", "valid"), split_by_name(files), (train_subset, valid_subset)):
        picked = [chosen[i] for i in subset(len(chosen), n)]
        pairs, _, bad = cached_images(picked, size, label=f"pets-{tag}-{split}", strict=strict, workers=workers,
                                      decoder=crappify, channels=6)
        out[split] = (pairs[:, 3:], pairs[:, :3])  # (input, target)
        skipped |= bad
    mean, std = channel_stats(out["train"][0])
    return ImageData(*out["train"], *out["valid"], classes=[], mean=mean, std=std, skipped=skipped,
                     root=str(folder), task="restore")

"""JPEG datasets made fast: each image is decoded and resized once into a uint8 cache at the
training size (built in parallel, atomically, reused until the files or the size change); the
cache then trains like Fashion-MNIST, resident on the device."""

import ctypes
import hashlib
import json
import logging
import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..checkpoint import atomic_write, clean_stale_temps
from ..errors import DataError
from . import ImageData, channel_stats, relative_files, subset

log = logging.getLogger(__name__)
RESIZE_METHODS = ("crop", "squish")
MIN_SIZE = 8  # pixels a side; an arch may need more (build.check_input_size)


def decode(path: Path, size: int, method: str = "crop") -> bytes:
    """One image as size x size RGB bytes (height, width, channel): 'crop' scales the short side to
    `size` and takes the centre; 'squish' scales both sides to `size`. JPEGs decode at a reduced
    scale when that is still at least `size` (PIL's draft mode), much faster for large photos."""
    from PIL import Image
    with Image.open(path) as im:
        im.draft("RGB", (size, size))
        im = im.convert("RGB")
        w, h = im.size
        if method == "squish":
            im = im.resize((size, size), Image.Resampling.BILINEAR)
        else:
            scale = size / min(w, h)
            nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
            im = im.resize((nw, nh), Image.Resampling.BILINEAR)
            left, top = (nw - size) // 2, (nh - size) // 2
            im = im.crop((left, top, left + size, top + size))
        return im.tobytes()


def to_tensor(raw: bytes, size: int) -> torch.Tensor:
    """HWC bytes (3 channels, or 6 for an input-target pair) as a uint8 (C, size, size) tensor."""
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(size, size, -1).permute(2, 0, 1)


def load_image(path: Path, size: int, method: str = "crop") -> torch.Tensor:
    """One image as uint8 (3, size, size), exactly as the cache stores it."""
    return to_tensor(decode(path, size, method), size)


class FileImages(torch.utils.data.Dataset):
    """Images decoded from their files on every access (the streaming path, `data.cache=false`),
    shaped like a cache tensor. An image that cannot be read is logged and comes out black, so an
    epoch never stops half-way."""

    def __init__(self, files: Sequence[Path], size: int, method: str = "crop"):
        self.files, self.size, self.method = list(files), size, method

    def __len__(self) -> int:
        return len(self.files)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.files), 3, self.size, self.size)

    def __getitem__(self, i: int) -> torch.Tensor:
        try:
            return load_image(self.files[i], self.size, self.method)
        except Exception as e:  # PIL raises many types for truncated or foreign files
            log.warning("unreadable image %s (%s): using a black image", self.files[i], e)
            return torch.zeros(3, self.size, self.size, dtype=torch.uint8)

    def sample(self, n: int = 512) -> torch.Tensor:
        """A fixed sample of up to n decoded images (for the normalisation statistics)."""
        step = max(1, len(self) // n)
        return torch.stack([self[i] for i in range(0, len(self), step)][:n])


def images_for(files: Sequence[Path], size: int, method: str, label: str, strict: bool, workers: int | None,
               cache: bool) -> tuple["torch.Tensor | FileImages", list[int], dict]:
    """The cache (`cached_images`), or with cache=False the files themselves, decoded as batches are drawn."""
    if cache:
        return cached_images(files, size, method, label, strict, workers)
    check_method(method)
    return FileImages(files, size, method), list(range(len(files))), {}


def _load_chunk(args: tuple[list[str], int, str, Callable | None]) -> list[bytes | str]:
    """Worker: raw pixels of each image (bytes travel between processes far faster than tensors),
    or the error text for an image that cannot be read. `decoder(path, size)` replaces `decode`
    (the pets' crappifier returns an input-target pair)."""
    paths, size, method, decoder = args
    out: list[bytes | str] = []
    for p in paths:
        try:
            out.append(decoder(Path(p), size) if decoder is not None else decode(Path(p), size, method))
        except Exception as e:  # PIL raises many types for truncated or foreign files
            out.append(f"{type(e).__name__}: {e}")
    return out


def die_with_parent(parent: int) -> None:
    """Worker initializer: the kernel kills this worker when its parent dies (PR_SET_PDEATHSIG), so a
    SIGKILLed build leaves no decoders running; where prctl is missing (not Linux), workers finish
    their chunk and exit as the pool's pipe closes."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def fingerprint(files: Sequence[Path], size: int, method: str) -> str:
    """Changes when any file is added, removed or modified, or the size or method changes."""
    h = hashlib.sha1(f"v1 {size} {method}".encode())
    for f in files:
        st = f.stat()
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def cache_root() -> Path:
    """$EXPT_CACHE, or ~/.cache/expt/images when it is unset or empty (an empty one is not the
    working directory)."""
    return Path(os.environ.get("EXPT_CACHE", "").strip() or Path.home() / ".cache" / "expt" / "images")


def decode_all(files: Sequence[Path], size: int, method: str, workers: int, label: str,
               decoder: Callable | None = None, channels: int = 3):
    """(uint8 tensor (N, channels, size, size) of the readable images, their indices, {path: error})."""
    from rich.progress import Progress
    chunk = 64
    jobs = [([str(f) for f in files[i: i + chunk]], size, method, decoder) for i in range(0, len(files), chunk)]
    images, kept, bad = [], [], {}

    def collect(results) -> None:
        for j, result in enumerate(results):
            for k, item in enumerate(result):
                i = j * chunk + k
                if isinstance(item, str):
                    bad[str(files[i])] = item
                else:
                    images.append(to_tensor(item, size))
                    kept.append(i)
            bar.advance(task, len(result))

    with Progress(transient=True) as bar:
        task = bar.add_task(f"caching {label} at {size}px", total=len(files))
        if workers <= 1:
            collect(map(_load_chunk, jobs))
        else:
            with ProcessPoolExecutor(workers, initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
                collect(pool.map(_load_chunk, jobs))
    # One stack at the end: measured faster here than copying each image into a preallocated
    # tensor while the decoding processes still need the cores (peak memory is twice the cache).
    x = torch.stack(images) if images else torch.empty(0, channels, size, size, dtype=torch.uint8)
    return x, kept, bad


def check_size(size: int) -> None:
    if size < MIN_SIZE:
        raise DataError(f"data.size={size} is too small: images need at least {MIN_SIZE} pixels a side "
                        "(the arch may need more)")


def check_method(method: str) -> None:
    if method not in RESIZE_METHODS:
        raise DataError(f"data.resize={method!r} is not one of {', '.join(RESIZE_METHODS)}")


def unreadable(path: str, error: str) -> DataError:
    return DataError(f"unreadable image {path} ({error}); fix or remove it, or set data.strict=false to skip it")


def cached_images(files: Sequence[Path], size: int, method: str = "crop", label: str = "images",
                  strict: bool = False, workers: int | None = None, decoder: Callable | None = None,
                  channels: int = 3) -> tuple[torch.Tensor, list[int], dict]:
    """The images of `files` at `size`, from the cache when it is current, else decoded now.

    Returns (uint8 (N, channels, size, size), indices into `files` of the images kept, {path: error}
    of those skipped because they could not be read). strict: an unreadable image is an error.
    A `decoder(path, size)` (picklable, with a `key` naming its settings) replaces the plain decode.
    """

    if decoder is None:
        check_method(method)
    key = fingerprint(files, size, decoder.key if decoder is not None else method)
    path = cache_root() / f"{label}-{size}-{key}.safetensors"
    if path.is_file():
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads(f.metadata()["meta"])
            tensors = load_file(str(path))
            bad = meta["skipped"]
            if strict and bad:
                raise unreadable(*next(iter(bad.items())))
            return tensors["x"], tensors["kept"].tolist(), bad
        except DataError:
            raise
        except Exception as e:  # a damaged cache is rebuilt, never trusted
            log.warning("rebuilding damaged image cache %s (%s)", path, e)
    if path.parent.is_dir():
        clean_stale_temps(path.parent)  # a killed cache write's temporary file (tens of MB) goes
    x, kept, bad = decode_all(files, size, method, workers if workers is not None else os.cpu_count() or 1, label,
                              decoder, channels)
    for p, err in bad.items():
        if strict:
            raise unreadable(p, err)
        log.warning("skipping unreadable image %s (%s)", p, err)
    if not kept:
        raise DataError(f"none of the {len(files)} {label} images could be read (first: {next(iter(bad.items()))})")
    tensors = {"x": x.contiguous(), "kept": torch.tensor(kept, dtype=torch.int64)}
    meta = json.dumps({"skipped": bad, "size": size, "method": method, "files": len(files)})
    try:
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"meta": meta}))
    except Exception as e:  # a full or read-only cache disk costs the next run a decode, not this run
        log.warning("could not write the image cache %s (%s); the images will be decoded again next time", path, e)
        return x, kept, bad
    for stale in path.parent.glob(f"{label}-{size}-*.safetensors"):  # older versions at this size
        if stale != path:
            stale.unlink(missing_ok=True)
    return x, kept, bad


def size_stages(sizes: Sequence[int] | None, size_epochs: Sequence[int] | None) -> list[tuple[int, int]]:
    """Progressive resizing's (first epoch, training size) stages from data.sizes and
    data.size_epochs (0-based epochs, the first 0, rising); [] when sizes is null. Validation
    stays at data.size."""
    if sizes is None and size_epochs is None:
        return []
    if sizes is None or size_epochs is None or len(sizes) != len(size_epochs) or not sizes:
        raise DataError("progressive resizing needs data.sizes and data.size_epochs of the same length, e.g. "
                        "data.sizes=[96,128] data.size_epochs=[0,3]")
    epochs = list(size_epochs)
    if epochs[0] != 0 or any(b <= a for a, b in zip(epochs, epochs[1:])):
        raise DataError(f"data.size_epochs={epochs} must start at 0 and rise (each size's first epoch, 0-based)")
    for s in sizes:
        check_size(s)
    return list(zip(epochs, sizes))


def from_lists(splits: dict[str, tuple[list[Path], torch.Tensor]], classes: list[str], root: Path, label: str,
               size: int, resize: str, subsets: tuple[int | None, int | None], strict: bool, workers: int | None,
               cache: bool, sizes: Sequence[int] | None = None, size_epochs: Sequence[int] | None = None,
               **fields) -> ImageData:
    """ImageData of two splits' (files, targets), training first: each split's images decoded into
    the cache (`label`-<split> names its files there), a fixed sample of subsets[i] of them, their
    paths relative to `root` kept; `fields` go to ImageData (heads, task, threshold). Every JPEG
    dataset (imagenette, paddy, folder, csv) is built here. sizes / size_epochs: progressive
    resizing, the training images at each other size from a cache of their own, built the first
    time that size is needed (`ImageData.train_at`)."""
    stages = size_stages(sizes, size_epochs)
    out, skipped = {}, {}
    for (split, (files, y)), n in zip(splits.items(), subsets):
        if not files:
            raise DataError(f"the {split} split of {root} holds no images; give it some (data.valid_pct, or the "
                            "validation column)")
        pick = subset(len(files), n)
        picked = [files[i] for i in pick]
        x, kept, bad = images_for(picked, size, resize, f"{label}-{split}", strict, workers, cache)
        out[split] = (x, y[pick][kept], relative_files(picked, kept, root))
        skipped |= bad
        if split == next(iter(splits)):
            train_files, train_kept = picked, kept
    train, valid = out.values()
    mean, std = channel_stats(train[0])

    def train_at(s: int):
        """The training images at s pixels a side (the same images, in the same order)."""
        if s == size:
            return train[0]
        x, kept, _ = images_for(train_files, s, resize, f"{label}-{next(iter(splits))}", strict, workers, cache)
        if kept != train_kept:
            raise DataError(f"the training images read at {s} px are not those read at {size} px (an image became "
                            "unreadable); fix or remove it, or train at one size")
        return x
    return ImageData(*train[:2], *valid[:2], classes=classes, mean=mean, std=std, skipped=skipped, root=str(root),
                     valid_files=valid[2], size_stages=stages, train_at=train_at if stages else None, **fields)

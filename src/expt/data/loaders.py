"""Batching: device-resident for datasets that fit in memory, streamed from files for those that do not."""

import math
import os

import torch
from ..models.dcgan import noise


def is_image(y: torch.Tensor) -> bool:
    """Targets that are images (restoration) rather than class indices: uint8 (N, C, H, W)."""
    return y.dtype == torch.uint8 and y.ndim == 4


def as_float(images: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
    """uint8 images as float32 in 0..1."""
    return images.to(torch.float32, memory_format=memory_format).div_(255)


class DeviceLoader:
    """Batches by index slicing of one uint8 tensor that lives on the device.

    Each epoch draws a fresh permutation on the device when `shuffle`; images (inputs, and targets
    that are images) come out as float32 in 0..1 (normalisation belongs to the model). With `drop_last`, a final partial
    batch is dropped, unless it is the only one.

    Several processes (`world` > 1, training): `bs` is the global batch; every rank draws the same
    permutation (same seed) and yields its `rank`-th slice of each global batch, so all ranks have
    the same number of batches and together see what one process would.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, bs: int, *, shuffle: bool, drop_last: bool,
                 device: torch.device, channels_last: bool = False, seed: int = 0, rank: int = 0, world: int = 1):
        if world > 1 and (not drop_last or bs % world):
            raise ValueError("a sharded loader needs drop_last and a global batch that the world size divides")
        self.x = x.to(device)
        self.y = y.to(device)
        self.bs, self.shuffle, self.drop_last = bs, shuffle, drop_last
        self.rank, self.world = rank, world
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.x)
        return max(1, n // self.bs) if self.drop_last else math.ceil(n / self.bs)

    def __iter__(self):
        n, bs = len(self.x), self.bs
        order = torch.randperm(n, device=self.device, generator=self.generator) if self.shuffle else None
        local = bs // self.world  # this rank's share of a global batch
        for i in range(len(self)):
            start = i * bs + self.rank * local
            rows = slice(start, start + local)
            if order is None:
                xb, yb = self.x[rows], self.y[rows]
            else:
                idx = order[rows]
                xb, yb = self.x[idx], self.y[idx]
            yield as_float(xb, self.memory_format), as_float(yb, self.memory_format) if is_image(yb) else yb

    def replace_images(self, x: torch.Tensor) -> None:
        """The same images at another size (progressive resizing): same order, same RNG."""
        if len(x) != len(self.x):
            raise ValueError("replacement images must be the same images")
        self.x = x.to(self.device)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


class StreamLoader:
    """Batches decoded from image files on every epoch by worker processes into pinned memory,
    then copied to the device without blocking: for image sets too big to hold (data.cache=false).
    Same interface as DeviceLoader."""

    def __init__(self, images: torch.utils.data.Dataset, y: torch.Tensor, bs: int, *, shuffle: bool,
                 drop_last: bool, device: torch.device, channels_last: bool = False, seed: int = 0,
                 workers: int | None = None, rank: int = 0, world: int = 1):
        if world > 1 and (not drop_last or bs % world or len(images) < bs):
            raise ValueError("a sharded loader needs drop_last, at least one global batch, and a global batch "
                             "that the world size divides")
        self.images, self.y, self.bs, self.shuffle = images, y, bs, shuffle
        self.drop_last = drop_last and len(images) >= bs
        self.rank, self.world = rank, world
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.generator = torch.Generator().manual_seed(seed)
        self.workers = (os.cpu_count() or 1) if workers is None else workers

    def __len__(self) -> int:
        n = len(self.images)
        return n // self.bs if self.drop_last else math.ceil(n / self.bs)

    def __iter__(self):
        order = torch.randperm(len(self.images), generator=self.generator) if self.shuffle else None
        order = order if order is not None else torch.arange(len(self.images))
        bs = self.bs
        if self.world > 1:  # this rank's slice of every global batch, in order
            bs = self.bs // self.world
            order = order[: len(self) * self.bs].view(len(self), self.world, bs)[:, self.rank].reshape(-1)
        batches = torch.utils.data.DataLoader(
            torch.utils.data.Subset(self.images, order.tolist()), batch_size=bs, drop_last=self.drop_last,
            num_workers=self.workers, pin_memory=self.device.type == "cuda", persistent_workers=False)
        labels = self.y[order]
        for i, xb in enumerate(batches):
            yb = labels[i * bs: i * bs + len(xb)]
            xb = xb.to(self.device, non_blocking=True)
            yb = yb.to(self.device, non_blocking=True)
            yield as_float(xb, self.memory_format), as_float(yb, self.memory_format) if is_image(yb) else yb

    def replace_images(self, images: torch.utils.data.Dataset) -> None:
        if len(images) != len(self.images):
            raise ValueError("replacement images must be the same images")
        self.images = images

    state_dict = DeviceLoader.state_dict
    load_state_dict = DeviceLoader.load_state_dict


class NoiseLoader:
    """An unconditional generator's batches: (noise, real images) from a loader of (images, labels).
    Training noise is fresh every batch (its generator's state is saved with the loader's); with
    `fixed`, every epoch draws the same noise (validation, so that its scores compare over epochs)."""

    def __init__(self, loader: DeviceLoader | StreamLoader, nz: int, seed: int = 0, fixed: bool = False):
        self.loader, self.nz, self.seed, self.fixed = loader, nz, seed, fixed
        self.device = loader.device
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        if self.fixed:
            self.generator.manual_seed(self.seed)
        for xb, _ in self.loader:
            yield noise(len(xb), self.nz, self.device, self.generator), xb

    def state_dict(self) -> dict:
        return {"loader": self.loader.state_dict(), "noise": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.loader.load_state_dict(state["loader"])
        self.generator.set_state(state["noise"])


def loader_for(images) -> type:
    """Batches from a resident uint8 tensor, or decoded from files every epoch (data.cache=false)."""
    return DeviceLoader if isinstance(images, torch.Tensor) else StreamLoader

"""Device-resident batching for datasets that fit in memory."""

import math

import torch


class DeviceLoader:
    """Batches by index slicing of one uint8 tensor that lives on the device.

    Each epoch draws a fresh permutation on the device when `shuffle`; images come out as
    float32 in 0..1 (normalisation belongs to the model). With `drop_last`, a final partial
    batch is dropped, unless it is the only one.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, bs: int, *, shuffle: bool, drop_last: bool,
                 device: torch.device, channels_last: bool = False, seed: int = 0):
        self.x = x.to(device)
        self.y = y.to(device)
        self.bs, self.shuffle, self.drop_last = bs, shuffle, drop_last
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.x)
        return max(1, n // self.bs) if self.drop_last else math.ceil(n / self.bs)

    def __iter__(self):
        n, bs = len(self.x), self.bs
        order = torch.randperm(n, device=self.device, generator=self.generator) if self.shuffle else None
        for i in range(len(self)):
            rows = slice(i * bs, (i + 1) * bs)
            if order is None:
                xb, yb = self.x[rows], self.y[rows]
            else:
                idx = order[rows]
                xb, yb = self.x[idx], self.y[idx]
            yield xb.to(torch.float32, memory_format=self.memory_format).div_(255), yb

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

"""Mixed precision: autocast for the forward pass, a gradient scaler for fp16."""

import torch

from ..learner import Callback


class PrecisionCB(Callback):
    """precision: 'bf16' or 'fp16' autocast on the run's device ('fp32' needs no callback)."""

    def __init__(self, precision: str, device_type: str):
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        self.device_type = device_type

    def before_fit(self, learn) -> None:
        learn.autocast = torch.autocast(device_type=self.device_type, dtype=self.dtype)
        if self.dtype is torch.float16:  # bf16 has fp32's range and needs no loss scaling
            learn.scaler = torch.amp.GradScaler(self.device_type)

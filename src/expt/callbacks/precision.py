"""Mixed precision: autocast for the forward pass, a gradient scaler for fp16."""

import torch

from ..learner import Callback
from ..runtime import autocast_for


class PrecisionCB(Callback):
    """precision: 'bf16' or 'fp16' autocast on the run's device ('fp32' needs no callback)."""

    def __init__(self, precision: str, device_type: str):
        self.precision, self.device_type = precision, device_type

    def before_fit(self, learn) -> None:
        learn.autocast = autocast_for(self.precision, self.device_type)
        if self.precision == "fp16":  # bf16 has fp32's range and needs no loss scaling
            learn.scaler = torch.amp.GradScaler(self.device_type)

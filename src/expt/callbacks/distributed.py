"""DistributedDataParallel for the learner, when torchrun started several processes."""

import torch
import torch.distributed as dist
from torch import nn

from .. import distributed
from ..learner import Callback
from .training import AugmentCB


class DistributedCB(Callback):
    """Trains through DistributedDataParallel and validates the plain model (each rank its own
    share of the validation set: uneven shares cannot hang a collective that is not there).

    - The wrapper is rebuilt when the set of trainable parameters changes (fine-tuning's unfreeze:
      DDP registers the parameters that need gradients when it is made).
    - Augmentation and dropout draw different numbers on every rank: each epoch seeds the RNG from
      (seed, epoch, rank), so a resumed run draws what the uninterrupted one would.
    - Before validation, every rank takes rank 0's buffers (BatchNorm statistics), so all ranks
      validate the model rank 0 saves.
    """

    order = AugmentCB.order - 10  # before augmentation draws from the RNG

    def __init__(self, net: nn.Module, device: torch.device, seed: int):
        self.net, self.device, self.seed = net, device, seed
        self.ddp: nn.Module | None = None
        self.trainable: tuple[bool, ...] = ()

    def before_train(self, learn) -> None:
        torch.manual_seed((self.seed * 1_000_003 + learn.epoch) * 1009 + distributed.rank())
        trainable = tuple(p.requires_grad for p in self.net.parameters())
        if self.ddp is None or trainable != self.trainable:
            self.ddp, self.trainable = distributed.wrap(self.net, self.device), trainable
        learn.model = self.ddp.train()

    def before_validate(self, learn) -> None:
        learn.model = self.net.eval()
        for buffer in self.net.buffers():
            dist.broadcast(buffer, src=0)

    def after_fit(self, learn) -> None:
        learn.model = self.net

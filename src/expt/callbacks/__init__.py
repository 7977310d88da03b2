"""Callbacks: each adds one behaviour to the Learner through its before_*/after_* events."""

from .checkpoint import CheckpointCB
from .metrics import MetricsCB
from .precision import PrecisionCB
from .progress import ProgressCB
from .samples import SamplesCB
from .training import AugmentCB, FreezeCB, ScheduleCB

__all__ = ["AugmentCB", "CheckpointCB", "FreezeCB", "MetricsCB", "PrecisionCB", "ProgressCB", "SamplesCB", "ScheduleCB"]

"""Tasks: what differs between kinds of work, so that the learner, the loaders and the commands never
ask "is this classification?". A task owns the targets' meaning: the model's output size, the loss
check, the metrics of a batch and of an epoch, the headline metric and its direction (for "best"
and sweeps), how TTA averages views, what a checkpoint stores to rebuild it and what predict
writes. Classification (one or several heads) is `Classify`; a new kind of work is a new module.
"""

from .classify import Classify

__all__ = ["Classify", "task_for", "task_from_meta"]


def task_for(data) -> Classify:
    """The task of a dataset (every dataset so far holds class indices)."""
    return Classify(data.heads)


def task_from_meta(meta: dict) -> Classify:
    """The task a checkpoint was trained for, from its metadata."""
    return Classify.from_meta(meta)

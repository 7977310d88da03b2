"""Tasks: what differs between kinds of work, so that the learner, the loaders and the commands never
ask "is this classification?". A task owns the targets' meaning: the model's output size, the loss
check, the metrics of a batch and of an epoch, the headline metric and its direction (for "best"
and sweeps), how TTA averages views, what a checkpoint stores to rebuild it and what predict
writes. Classification (one or several heads) is `Classify`; a new kind of work is a new module.
"""

from .classify import Classify
from .critique import Critique
from .generate import Generate
from .multilabel import MultiLabel
from .restore import Restore

__all__ = ["Classify", "Critique", "Generate", "MultiLabel", "Restore", "Task", "task_for", "task_from_meta"]
TASKS = {"classify": Classify, "restore": Restore, "critic": Critique, "generate": Generate, "multilabel": MultiLabel}
Task = Classify | Restore | Critique | Generate | MultiLabel


def task_for(data) -> Task:
    """The task a dataset declares (`ImageData.task`): class indices, labels per image, or target images."""
    return TASKS[data.task].from_data(data)


def task_from_meta(meta: dict) -> Task:
    """The task a checkpoint was trained for, from its metadata (checkpoints before tasks: classify)."""
    return TASKS[meta.get("task", "classify")].from_meta(meta)

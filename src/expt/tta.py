"""Test-time augmentation and ensembles: outputs averaged over views and checkpoints, in the task's
space (class probabilities; restored images, each brought back through its view's inverse).

A view is a small function of a float batch: `identity`, `hflip`, `shift:DX:DY` (content moves DX
pixels right and DY down, zeros come in, as in training's padded crops), or several joined by `+`,
applied left to right (`hflip+shift:1:0`).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError

View = Callable[[torch.Tensor], torch.Tensor]


def shift(dx: int, dy: int) -> View:
    def view(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        p = max(abs(dx), abs(dy))
        return F.pad(x, (p,) * 4)[..., p - dy: p - dy + h, p - dx: p - dx + w]
    return view


def make_view(name: str) -> View:
    if "+" in name:
        parts = [make_view(part) for part in name.split("+")]

        def composed(x: torch.Tensor) -> torch.Tensor:
            for part in parts:
                x = part(x)
            return x
        return composed
    if name == "identity":
        return lambda x: x
    if name == "hflip":
        return lambda x: x.flip(3)
    parts = name.split(":")
    if parts[0] == "shift" and len(parts) == 3:
        try:
            return shift(int(parts[1]), int(parts[2]))
        except ValueError:
            pass
    raise ConfigError(f"unknown tta view {name!r}; views are identity, hflip and shift:DX:DY (e.g. shift:1:0), "
                      "or several joined by + (hflip+shift:1:0)")


def inverse_view(name: str) -> View:
    """The view that undoes `name` on an image output (a shift's lost border stays zero)."""
    if "+" in name:
        return make_view("+".join(inverse_name(part) for part in reversed(name.split("+"))))
    return make_view(inverse_name(name))


def inverse_name(name: str) -> str:
    if name.startswith("shift:"):
        make_view(name)  # the one-line error for a malformed shift
        _, dx, dy = name.split(":")
        return f"shift:{-int(dx)}:{-int(dy)}"
    return name  # identity and hflip undo themselves


@dataclass
class TTA:
    names: list[str]
    views: list[View]
    average: str  # "prob": mean of softmaxes; "logit": softmax of the mean logit

    @property
    def inverses(self) -> list[View]:
        return [inverse_view(n) for n in self.names]


def views(names: Sequence[str] = ("identity", "hflip"), average: str = "prob") -> TTA:
    """The tta group's builder."""
    if average not in ("prob", "logit"):
        raise ConfigError(f"tta.average={average!r} must be prob or logit")
    if not names:
        raise ConfigError("tta.names is empty; list at least one view, e.g. [identity, hflip]")
    return TTA(list(names), [make_view(n) for n in names], average)


@torch.no_grad()
def predict(model: nn.Module, batches, tta: TTA, autocast, task) -> tuple[torch.Tensor, torch.Tensor]:
    """(plain, tta) outputs in the task's averaging space (classification: class probabilities per
    head) for every image of `batches`, on the model's device. tta.average=logit averages the raw
    outputs first."""
    plain, averaged = [], []
    undo = tta.inverses if task.image_output else [lambda out: out] * len(tta.views)
    for xb, *_ in batches:
        with autocast:
            outputs = torch.stack([inverse(model(view(xb)).float()) for view, inverse in zip(tta.views, undo)])
            identity = outputs[tta.names.index("identity")] if "identity" in tta.names else model(xb).float()
        plain.append(task.average_space(identity))
        mean = (task.average_space(outputs).mean(0) if tta.average == "prob"
                else task.average_space(outputs.mean(0)))
        averaged.append(mean)
    return torch.cat(plain), torch.cat(averaged)


def accuracy(probs: torch.Tensor, targets: torch.Tensor) -> float:
    return (probs.argmax(-1) == targets).float().mean().item()


def per_class_accuracy(probs: torch.Tensor, targets: torch.Tensor, n_classes: int) -> list[float | None]:
    correct = probs.argmax(-1) == targets
    hits = torch.zeros(n_classes, device=targets.device).index_add_(0, targets, correct.float())
    counts = torch.bincount(targets, minlength=n_classes).float()
    return [(h / c).item() if c else None for h, c in zip(hits, counts)]

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


def autocast_for(precision: str, device: torch.device):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def evaluate(ev) -> dict:
    """Each checkpoint of an EvalRun without and with TTA, their average, each head, each class."""
    sizes = list(ev.task.sizes.values())
    y = ev.valid_dl.y.view(len(ev.valid_dl.y), -1)
    targets, head = y[:, 0], sizes[0]  # the headline target and its logits
    autocast = autocast_for(ev.precision, ev.device)
    plain_sum = tta_sum = 0
    models = []
    for path, model in zip(ev.paths, ev.models):
        plain, averaged = predict(model, ev.valid_dl, ev.tta, autocast, ev.task)
        plain_sum, tta_sum = plain_sum + plain, tta_sum + averaged
        models.append({"ckpt": path, "acc": accuracy(plain[:, :head], targets),
                       "tta_acc": accuracy(averaged[:, :head], targets)})
    plain, averaged = plain_sum / len(ev.models), tta_sum / len(ev.models)
    heads = {name: {"acc": accuracy(p, y[:, i]), "tta_acc": accuracy(a, y[:, i])}
             for i, (name, p, a) in enumerate(zip(ev.task.heads, plain.split(sizes, -1), averaged.split(sizes, -1)))}
    plain, averaged = plain[:, :head], averaged[:, :head]
    n = len(ev.data.classes)
    per_class = {name: {"acc": a, "tta_acc": b} for name, a, b in zip(
        ev.data.classes, per_class_accuracy(plain, targets, n), per_class_accuracy(averaged, targets, n))}
    return {"checkpoints": ev.paths, "views": ev.tta.names, "average": ev.tta.average, "images": len(targets),
            "models": models, "acc": accuracy(plain, targets), "tta_acc": accuracy(averaged, targets),
            "heads": heads, "per_class": per_class}


def evaluate_images(ev) -> dict:
    """PSNR and SSIM of each checkpoint of an EvalRun without and with TTA, and of their average."""
    from .metrics import mean_scores
    y = ev.valid_dl.y
    autocast = autocast_for(ev.precision, ev.device)

    def scores(images: torch.Tensor, prefix: str) -> dict[str, float]:
        return {f"{prefix}{k}": v for k, v in mean_scores(images, y).items()}
    plain_sum = tta_sum = 0
    models = []
    for path, model in zip(ev.paths, ev.models):
        plain, averaged = predict(model, ev.valid_dl, ev.tta, autocast, ev.task)
        plain_sum, tta_sum = plain_sum + plain, tta_sum + averaged
        models.append({"ckpt": path, **scores(plain, ""), **scores(averaged, "tta_")})
    n = len(ev.models)
    return {"checkpoints": ev.paths, "views": ev.tta.names, "average": ev.tta.average, "images": len(y),
            "models": models, **scores(plain_sum / n, ""), **scores(tta_sum / n, "tta_")}


def image_table(result: dict, task):
    """PSNR and SSIM per checkpoint (for an ensemble) and of all: plain, tta and the change."""
    from pathlib import Path

    from rich.table import Table
    t = Table(title="PSNR (dB) and SSIM without and with test-time augmentation")
    for col, justify in (("", "left"), ("plain", "right"), ("tta", "right"), ("change", "right")):
        t.add_column(col, justify=justify)
    rows = [(Path(m["ckpt"]).parent.name or m["ckpt"], m) for m in result["models"]] if len(result["models"]) > 1 else []
    for label, scores in rows + [("[bold]ensemble" if rows else "[bold]all", result)]:
        for metric in [m for m in ("psnr", "ssim") if m in scores]:  # no SSIM below 11 pixels a side
            a, b = scores[metric], scores[f"tta_{metric}"]
            t.add_row(f"{label} {metric}", f"{a:.4f}", f"{b:.4f}", f"{b - a:+.4f}")
    return t


def table(result: dict, task):
    """Per class, per checkpoint (for an ensemble) and per head: plain, tta and the change."""
    from pathlib import Path

    from rich.table import Table
    t = Table(title=f"{next(iter(task.heads))} accuracy without and with test-time augmentation")
    for col, justify in (("", "left"), ("plain", "right"), ("tta", "right"), ("change", "right")):
        t.add_column(col, justify=justify)

    def row(label, a, b):
        t.add_row(label, "-" if a is None else f"{a:.4f}", "-" if b is None else f"{b:.4f}",
                  "" if a is None or b is None else f"{b - a:+.4f}")
    for name, acc in result["per_class"].items():
        row(name, acc["acc"], acc["tta_acc"])
    t.add_section()
    if len(result["models"]) > 1:
        for m in result["models"]:
            row(Path(m["ckpt"]).parent.name or m["ckpt"], m["acc"], m["tta_acc"])
        row("[bold]ensemble", result["acc"], result["tta_acc"])
    else:
        row("[bold]all", result["acc"], result["tta_acc"])
    if len(result["heads"]) > 1:
        t.add_section()
        for name, acc in result["heads"].items():
            row(f"target {name}", acc["acc"], acc["tta_acc"])
    return t


def run_tta(cfg, run_dir, console, explicit_data: bool) -> dict:
    """The `expt tta` command; tta.json goes next to a single checkpoint, or into the run folder."""
    from pathlib import Path

    from .checkpoint import write_json
    from .rebuild import build_eval
    ev = build_eval(cfg, explicit_data)
    console.print(f"[bold]expt tta[/] {len(ev.models)} checkpoint(s), views {', '.join(ev.tta.names)} "
                  f"({ev.tta.average} average), {len(ev.valid_dl.y):,} validation images, {ev.device} {ev.precision}")
    evaluate_, table_ = REPORTS[ev.task.meta()["task"]]
    result = evaluate_(ev)
    console.print(table_(result, ev.task))
    out = (Path(ev.paths[0]).parent if len(ev.paths) == 1 else Path(run_dir)) / "tta.json"
    write_json(out, result)
    console.print(f"wrote {out}")
    return {"status": "ok", **{k: v for k, v in result.items() if isinstance(v, float)}, "outputs": str(out.parent)}


REPORTS = {"classify": (evaluate, table), "restore": (evaluate_images, image_table),  # per task: scores, table
           "critic": (evaluate, table)}  # a critic reads as a two-class classifier (generated, real)

"""`expt tta`: checkpoint(s) evaluated on their validation split without and with test-time
augmentation (expt/tta.py's views), and an ensemble's average: per class, per checkpoint and per
head for classifiers, PSNR and SSIM for restoration models; printed and written to tta.json."""

from collections.abc import Callable
from pathlib import Path

import torch
from rich.table import Table

from ..checkpoint import write_json
from ..metrics import mean_scores
from ..rebuild import build_eval
from ..tasks.multilabel import fbeta_per_sample
from ..tta import accuracy, per_class_accuracy, predict
from .runner import given


def each_and_average(ev, scores: Callable[[torch.Tensor, str], dict]) -> tuple[list[dict], torch.Tensor, torch.Tensor]:
    """Each checkpoint's scores without and with TTA (`scores(outputs, "")`, `scores(outputs, "tta_")`),
    and the outputs of both averaged over the checkpoints (an ensemble)."""
    plain_sum = tta_sum = 0
    models = []
    for path, model in zip(ev.paths, ev.models):
        plain, averaged = predict(model, ev.valid_dl, ev.tta, ev.runtime.autocast(), ev.task)
        plain_sum, tta_sum = plain_sum + plain, tta_sum + averaged
        models.append({"ckpt": path, **scores(plain, ""), **scores(averaged, "tta_")})
    return models, plain_sum / len(ev.models), tta_sum / len(ev.models)


def evaluate(ev) -> dict:
    """Each checkpoint of an EvalRun without and with TTA, their average, each head, each class."""
    sizes = list(ev.task.sizes.values())
    y = ev.valid_dl.y.view(len(ev.valid_dl.y), -1)
    targets, head = y[:, 0], sizes[0]  # the headline target and its logits
    models, plain, averaged = each_and_average(ev, lambda p, prefix: {f"{prefix}acc": accuracy(p[:, :head], targets)})
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
    y = ev.valid_dl.y

    def scores(images: torch.Tensor, prefix: str) -> dict[str, float]:
        return {f"{prefix}{k}": v for k, v in mean_scores(images, y).items()}
    models, plain, averaged = each_and_average(ev, scores)
    return {"checkpoints": ev.paths, "views": ev.tta.names, "average": ev.tta.average, "images": len(y),
            "models": models, **scores(plain, ""), **scores(averaged, "tta_")}


def evaluate_labels(ev) -> dict:
    """Several labels per image: each checkpoint's per-sample F1 and F2 and share of labels right,
    without and with TTA (probabilities averaged), of their average, and each label's F1."""
    actual = ev.valid_dl.y > 0.5

    def scores(probs: torch.Tensor, prefix: str) -> dict[str, float]:
        predicted = probs > ev.task.threshold
        return {f"{prefix}f1": fbeta_per_sample(predicted, actual, 1.0).mean().item(),
                f"{prefix}f2": fbeta_per_sample(predicted, actual, 2.0).mean().item(),
                f"{prefix}acc_multi": (predicted == actual).float().mean().item()}
    models, plain, averaged = each_and_average(ev, scores)
    per_label = {name: {"f1": a, "tta_f1": b} for name, a, b in zip(
        ev.task.classes, label_f1(plain > ev.task.threshold, actual), label_f1(averaged > ev.task.threshold, actual))}
    return {"checkpoints": ev.paths, "views": ev.tta.names, "average": ev.tta.average, "images": len(actual),
            "threshold": ev.task.threshold, "models": models, **scores(plain, ""), **scores(averaged, "tta_"),
            "per_label": per_label}


def label_f1(predicted: torch.Tensor, actual: torch.Tensor) -> list[float]:
    """Each label's F1 over the images (its column of (N, labels) bool); 1 for a label never there nor predicted."""
    return fbeta_per_sample(predicted.T, actual.T, 1.0).tolist()


def label_table(result: dict, task):
    """Per label F1, then per checkpoint (for an ensemble) and of all: F1, F2, acc_multi."""
    t = Table(title=f"F1 without and with test-time augmentation (labels above {result['threshold']})")
    for col, justify in (("", "left"), ("plain", "right"), ("tta", "right"), ("change", "right")):
        t.add_column(col, justify=justify)
    for name, f1 in result["per_label"].items():
        t.add_row(f"{name} f1", f"{f1['f1']:.4f}", f"{f1['tta_f1']:.4f}", f"{f1['tta_f1'] - f1['f1']:+.4f}")
    t.add_section()
    rows = [(Path(m["ckpt"]).parent.name or m["ckpt"], m) for m in result["models"]] if len(result["models"]) > 1 else []
    for label, scores in rows + [("[bold]ensemble" if rows else "[bold]all", result)]:
        for metric in ("f1", "f2", "acc_multi"):
            a, b = scores[metric], scores[f"tta_{metric}"]
            t.add_row(f"{label} {metric}", f"{a:.4f}", f"{b:.4f}", f"{b - a:+.4f}")
    return t


def image_table(result: dict, task):
    """PSNR and SSIM per checkpoint (for an ensemble) and of all: plain, tta and the change."""
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


def run(cfg, run_dir, console) -> dict:
    """The `expt tta` command; tta.json goes next to a single checkpoint, or into the run folder."""
    ev = build_eval(cfg, given("data"))
    console.print(f"[bold]expt tta[/] {len(ev.models)} checkpoint(s), views {', '.join(ev.tta.names)} "
                  f"({ev.tta.average} average), {len(ev.valid_dl.y):,} validation images, {ev.runtime.device} "
                  f"{ev.runtime.precision}")
    evaluate_, table_ = REPORTS[ev.task.meta()["task"]]
    result = evaluate_(ev)
    console.print(table_(result, ev.task))
    out = (Path(ev.paths[0]).parent if len(ev.paths) == 1 else Path(run_dir)) / "tta.json"
    write_json(out, result)
    console.print(f"wrote {out}")
    return {"status": "ok", **{k: v for k, v in result.items() if isinstance(v, float)}, "outputs": str(out.parent)}


REPORTS = {"classify": (evaluate, table), "restore": (evaluate_images, image_table),  # per task: scores, table
           "critic": (evaluate, table), "multilabel": (evaluate_labels, label_table)}  # a critic reads as a two-class classifier (generated, real)

"""`expt interpret ckpt=RUN/model.safetensors`: what a classifier gets wrong on the validation split
its run used, written next to the checkpoint: confusion.png and confusion.csv (rows actual, columns
predicted), report.csv (per class precision, recall, F1, support, with the macro and weighted
averages), top_losses.png and top_losses.csv (every image, largest loss first, named by its file
where the data has files); the report and the most confused pairs are printed. Several heads: the
headline's files as named, each other head's with a `_<head>` suffix. Several labels per image:
per label. `tta=...` averages its views first (by default the images are taken as they are)."""

import csv
from pathlib import Path

import torch
from omegaconf import OmegaConf
from rich.table import Table

from ..checkpoint import atomic_write
from ..errors import ConfigError
from ..interpret import (class_losses, class_report, confusion_matrix, draw_confusion, draw_label_counts,
                         label_counts, label_losses, most_confused, report_rows)
from ..plots import labelled_images
from ..rebuild import build_eval
from ..tta import predict
from .runner import given, plain_views

TOP_IMAGES = 64  # at most, in top_losses.png (n= chooses fewer)


def write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            out = csv.writer(f)
            out.writerow(header)
            out.writerows(rows)
    atomic_write(path, write)


def report_table(rows: list[dict], title: str, accuracy: float | None) -> Table:
    t = Table(title=title)
    for col, justify in (("class", "left"), ("precision", "right"), ("recall", "right"), ("f1", "right"),
                         ("support", "right")):
        t.add_column(col, justify=justify)
    for i, row in enumerate(rows):
        if row["class"].endswith(" avg") and not rows[i - 1]["class"].endswith(" avg"):
            t.add_section()
        t.add_row(row["class"], *(f"{row[k]:.4f}" for k in ("precision", "recall", "f1")), f"{row['support']:,}")
    if accuracy is not None:
        t.caption = f"accuracy {accuracy:.4f}"
    return t


def write_report(path: Path, rows: list[dict]) -> None:
    write_csv(path, ["class", "precision", "recall", "f1", "support"],
              [[r["class"], *(f"{r[k]:.6f}" for k in ("precision", "recall", "f1")), r["support"]] for r in rows])


def short(name: str, width: int = 17) -> str:
    """A caption's label: (none) for an empty label set, cut to `width` characters (with "predicted "
    in front, a line that fits its 1.6 inch cell at 8 points)."""
    return "(none)" if not name else name if len(name) <= width else name[: width - 1] + "…"


def top_losses(out: Path, ev, losses: torch.Tensor, actual: list[str], predicted: list[str],
               probability: list[float] | None, n: int, suffix: str) -> None:
    """top_losses.csv (every image, largest loss first) and the picture of the first n."""
    order = losses.argsort(descending=True, stable=True).tolist()
    files = ev.data.valid_files or [str(i) for i in range(len(losses))]
    header = ["file", "actual", "predicted"] + (["probability"] if probability is not None else []) + ["loss"]
    write_csv(out / f"top_losses{suffix}.csv", header, [
        [files[i], actual[i], predicted[i], *([f"{probability[i]:.6f}"] if probability is not None else []),
         f"{losses[i].item():.6f}"] for i in order])
    shown = order[:n]
    captions = [f"predicted {short(predicted[i])}\nactual {short(actual[i])}\n"
                + (f"p {probability[i]:.2f}, " if probability is not None else "") + f"loss {losses[i].item():.2f}"
                for i in shown]
    images = torch.stack([ev.data.valid_x[i] for i in shown]).float() / 255  # a cache tensor, or files (cache=false)
    labelled_images(out / f"top_losses{suffix}.png", images, captions)


def interpret_classes(ev, probs: torch.Tensor, out: Path, n: int, console) -> dict:
    """Per head: the confusion matrix, the report, the most confused pairs, the top losses."""
    y = ev.valid_dl.y.cpu().view(len(ev.valid_dl.y), -1)
    sizes = list(ev.task.sizes.values())
    result = {}
    for i, ((head, classes), p) in enumerate(zip(ev.task.heads.items(), probs.split(sizes, -1))):
        suffix = "" if i == 0 else f"_{head}"
        actual, predicted = y[:, i], p.argmax(-1)
        confusion = confusion_matrix(actual, predicted, len(classes))
        accuracy = confusion.diag().sum().item() / max(confusion.sum().item(), 1)
        write_csv(out / f"confusion{suffix}.csv", ["actual \\ predicted", *classes],
                  [[name, *row] for name, row in zip(classes, confusion.tolist())])
        draw_confusion(out / f"confusion{suffix}.png", confusion, classes,
                       f"{head}: {len(actual):,} validation images, accuracy {accuracy:.4f}")
        rows = class_report(confusion, classes)
        write_report(out / f"report{suffix}.csv", rows)
        console.print(report_table(rows, f"{head}: per class", accuracy))
        pairs = most_confused(confusion, classes, 5)
        console.print("most confused (actual -> predicted: images): "
                      + (", ".join(f"{a} -> {b}: {c}" for a, b, c in pairs) or "none, every image is right"))
        names = [classes[c] for c in actual.tolist()]
        guesses = [classes[c] for c in predicted.tolist()]
        top_losses(out, ev, class_losses(p, actual), names, guesses, p.max(-1).values.tolist(), n, suffix)
        result[head] = accuracy
    return {"acc": result[next(iter(result))], **({f"{h}_acc": a for h, a in result.items()} if len(result) > 1 else {})}


def interpret_labels(ev, probs: torch.Tensor, out: Path, n: int, console) -> dict:
    """Several labels per image: each label's counts, the report per label, the top losses."""
    actual, predicted = ev.valid_dl.y.cpu() > 0.5, probs > ev.task.threshold
    counts = label_counts(predicted, actual)
    labels = ev.task.classes
    write_csv(out / "confusion.csv", ["label", "tp", "fp", "fn", "tn"], [[l, *c] for l, c in zip(labels, counts.tolist())])
    draw_label_counts(out / "confusion.png", counts, labels)
    rows = report_rows(labels, counts[:, 0], counts[:, 1], counts[:, 2], micro=True)
    write_report(out / "report.csv", rows)
    console.print(report_table(rows, f"per label (predicted above {ev.task.threshold})", None))
    names, guesses = ev.task.names(actual.float()), ev.task.names(predicted.float())
    top_losses(out, ev, label_losses(probs, actual), names, guesses, None, n, "")
    return {"acc_multi": (predicted == actual).float().mean().item()}


def run(cfg, run_dir, console) -> dict:
    cfg = plain_views(cfg)
    if OmegaConf.is_list(cfg.ckpt) and len(cfg.ckpt) != 1:
        raise ConfigError("expt interpret reads one checkpoint: ckpt=RUN/model.safetensors")
    if cfg.n < 1:
        raise ConfigError(f"n={cfg.n} must be at least 1 (the images of top_losses.png)")
    ev = build_eval(cfg, given("data"))
    kind = ev.task.meta()["task"]
    if kind not in REPORTS:
        raise ConfigError(f"{ev.paths[0]} is a {kind} checkpoint; expt interpret reads classifiers (for a "
                          "restoration model's PSNR and SSIM: expt tta)")
    console.print(f"[bold]expt interpret[/] {ev.paths[0]}: {len(ev.valid_dl.y):,} validation images, views "
                  f"{', '.join(ev.tta.names)}, {ev.runtime.device} {ev.runtime.precision}")
    _, probs = predict(ev.models[0], ev.valid_dl, ev.tta, ev.runtime.autocast(), ev.task)
    out = Path(ev.paths[0]).parent
    result = REPORTS[kind](ev, probs.cpu(), out, min(cfg.n, TOP_IMAGES), console)
    console.print(f"wrote confusion.png, confusion.csv, report.csv, top_losses.png and top_losses.csv in {out}")
    return {"status": "ok", **result, "outputs": str(out)}


REPORTS = {"classify": interpret_classes, "critic": interpret_classes, "multilabel": interpret_labels}

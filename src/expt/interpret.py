"""What a classifier got wrong, from its validation predictions (`expt interpret`): the confusion
matrix (rows actual, columns predicted), per-class precision, recall and F1 with their macro and
weighted averages (scikit-learn's classification_report with zero_division=0, tested against it),
the most confused pairs, and the per-image losses that rank the top losses. Several labels per
image: each label's true/false positives and negatives and the same report per label, with micro
averages. Plain tensor operations (a bincount and a few divisions) rather than torchmetrics or
scikit-learn (a dependency each): equal to scikit-learn's to 3e-16 and 60 to 140 times faster on
10,000 to 100,000 images (scripts/bench_interpret.py, docs/BENCHMARKS.md); matplotlib draws the
pictures."""

import math
from pathlib import Path

import torch

from .plots import png

AVERAGES = ("macro avg", "weighted avg")


def confusion_matrix(actual: torch.Tensor, predicted: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(n_classes, n_classes) counts: row = actual class, column = predicted."""
    return torch.bincount(actual.long() * n_classes + predicted.long(), minlength=n_classes**2).view(n_classes, n_classes).cpu()


def ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a / b, 0 where b is 0 (an undefined precision or recall scores 0, as scikit-learn's zero_division=0)."""
    return torch.where(b > 0, a / b.clamp_min(1e-12), torch.zeros_like(a))


def scores(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> tuple[torch.Tensor, ...]:
    precision, recall = ratio(tp, tp + fp), ratio(tp, tp + fn)
    return precision, recall, ratio(2 * precision * recall, precision + recall)


def report_rows(names: list[str], tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor,
                micro: bool = False) -> list[dict]:
    """One row per class (precision, recall, f1, support), then the macro and weighted averages (and
    with `micro`, the micro average: several labels per image)."""
    tp, fp, fn = tp.double(), fp.double(), fn.double()
    support = tp + fn
    precision, recall, f1 = scores(tp, fp, fn)
    rows = [{"class": name, "precision": p, "recall": r, "f1": f, "support": int(s)}
            for name, p, r, f, s in zip(names, precision.tolist(), recall.tolist(), f1.tolist(), support.tolist())]
    total = int(support.sum())
    if micro:
        p, r, f = (v.item() for v in scores(tp.sum(), fp.sum(), fn.sum()))
        rows.append({"class": "micro avg", "precision": p, "recall": r, "f1": f, "support": total})
    weights = support / max(total, 1)
    for name, weigh in zip(AVERAGES, (torch.full_like(support, 1 / len(names)), weights)):
        rows.append({"class": name, **{k: (v * weigh).sum().item() for k, v in
                                       (("precision", precision), ("recall", recall), ("f1", f1))}, "support": total})
    return rows


def class_report(confusion: torch.Tensor, classes: list[str]) -> list[dict]:
    """report_rows of a confusion matrix."""
    tp = confusion.diag()
    return report_rows(classes, tp, confusion.sum(0) - tp, confusion.sum(1) - tp)


def label_counts(predicted: torch.Tensor, actual: torch.Tensor) -> torch.Tensor:
    """(labels, 4) counts of tp, fp, fn, tn per label, from (N, labels) bool predictions and targets."""
    return torch.stack([(predicted & actual).sum(0), (predicted & ~actual).sum(0), (~predicted & actual).sum(0),
                        (~predicted & ~actual).sum(0)], 1).cpu()


def most_confused(confusion: torch.Tensor, classes: list[str], k: int = 10) -> list[tuple[str, str, int]]:
    """The k largest off-diagonal counts as (actual, predicted, count), largest first."""
    off = confusion.clone()
    off.fill_diagonal_(0)
    counts, where = off.flatten().sort(descending=True, stable=True)
    n = len(classes)
    return [(classes[i // n], classes[i % n], c) for c, i in zip(counts.tolist()[:k], where.tolist()[:k]) if c > 0]


def class_losses(probs: torch.Tensor, actual: torch.Tensor) -> torch.Tensor:
    """Each image's cross entropy from its class probabilities: -log p(actual class)."""
    p = probs.float().gather(1, actual.long().view(-1, 1))[:, 0]
    return -p.clamp_min(torch.finfo(torch.float32).tiny).log()


def label_losses(probs: torch.Tensor, actual: torch.Tensor) -> torch.Tensor:
    """Each image's binary cross-entropy, the mean over its labels (as loss=bce averages them)."""
    return torch.nn.functional.binary_cross_entropy(probs.float(), actual.float(), reduction="none").mean(1)


def draw_confusion(path: Path, confusion: torch.Tensor, classes: list[str], title: str) -> None:
    """The matrix as a picture: each cell's count written in it, shaded by its share of the row (the
    actual class), the class names on both axes."""
    n = len(classes)
    side = min(max(4.5, 0.55 * n + 2.5), 24)
    shares = ratio(confusion.double(), confusion.sum(1, keepdim=True).double().expand_as(confusion))
    with png(path, figsize=(side + 1, side)) as ax:
        image = ax.imshow(shares.numpy(), cmap="Blues", vmin=0, vmax=1)
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the actual class")
        ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="actual", title=title)
        font = min(9, max(4, 0.45 * 72 * (side - 2.5) / n))  # points: at most half a cell's height
        ax.set_xticklabels(classes, rotation=45 if n > 3 else 0, ha="right" if n > 3 else "center", fontsize=font)
        ax.set_yticklabels(classes, fontsize=font)
        for i in range(n):
            for j in range(n):
                count = int(confusion[i, j])
                if count:
                    ax.text(j, i, str(count), ha="center", va="center", fontsize=font,
                            color="white" if shares[i, j] > 0.5 else "black")


def draw_label_counts(path: Path, counts: torch.Tensor, labels: list[str]) -> None:
    """Several labels per image: each label's 2x2 matrix (rows actual no/yes, columns predicted no/yes)."""
    cols = min(len(labels), 5)
    rows = math.ceil(len(labels) / cols)
    with png(path, figsize=(2.6 * cols, 2.6 * rows), ncols=cols, nrows=rows) as axes:
        axes = axes if isinstance(axes, tuple) else (axes,)
        for ax, name, (tp, fp, fn, tn) in zip(axes, labels, counts.tolist()):
            cells = torch.tensor([[tn, fp], [fn, tp]], dtype=torch.float64)
            ax.imshow((cells / cells.sum(1, keepdim=True).clamp_min(1)).numpy(), cmap="Blues", vmin=0, vmax=1)
            ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["no", "yes"], yticklabels=["no", "yes"], title=name,
                   xlabel="predicted", ylabel="actual")
            for (i, j), value in zip(((0, 0), (0, 1), (1, 0), (1, 1)), (tn, fp, fn, tp)):
                ax.text(j, i, str(int(value)), ha="center", va="center")
        for ax in axes[len(labels):]:
            ax.axis("off")

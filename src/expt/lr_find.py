"""The learning-rate range test on a built run, its suggestions, table, lr_find.json and lr_find.png:
what `expt lr_find` shows and `expt train optimizer.lr=auto` uses (the callback is LRFinderCB)."""

import math
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .build import LR_SUGGESTIONS as SUGGESTIONS
from .build import Run, callbacks_for
from .callbacks.lr_find import LRFinderCB
from .checkpoint import write_json
from .errors import ExptError
from .learner import Learner
from .plots import png


def valley(losses: list[float], top_share: float = 0.1) -> int:
    """Index in the middle of the steep descent that ends at the minimum.

    The descent starts where the loss last stood within `top_share` of the total drop below its
    highest value (before the minimum): the plateau of tiny lrs, where the loss barely moves, does
    not count, and a bump part-way down does not cut the descent short.
    """
    end = min(range(len(losses)), key=losses.__getitem__)
    top = max(losses[: end + 1])
    threshold = top - top_share * (top - losses[end])
    start = max(i for i in range(end + 1) if losses[i] >= threshold)
    return (start + end) // 2


def steep(lrs: list[float], losses: list[float]) -> int:
    """Index of the steepest fall of the loss against log(lr) before the minimum, measured over a
    window of 5% of the points so that the noisy first batches do not win."""
    end = min(range(len(losses)), key=losses.__getitem__)
    width = max(1, min(len(losses) // 20, end))
    if end == 0:
        return 0
    starts = range(end - width + 1)
    slope = [(losses[i + width] - losses[i]) / math.log(lrs[i + width] / lrs[i]) for i in starts]
    return min(starts, key=slope.__getitem__) + width // 2


def suggest(lrs: list[float], losses: list[float]) -> dict[str, float]:
    minimum = min(range(len(losses)), key=losses.__getitem__)
    return {"valley": lrs[valley(losses)], "steep": lrs[steep(lrs, losses)],
            "minimum/10": lrs[minimum] / 10}


@dataclass
class LRFindResult:
    lrs: list[float]
    losses: list[float]
    suggestions: dict[str, float] = field(default_factory=dict)
    recommended: str = "valley"
    stop_reason: str = ""

    @property
    def lr(self) -> float:
        return self.suggestions[self.recommended]


def find_lr(run: Run, start: float, end: float, steps: int, recommended: str = "valley") -> LRFindResult:
    """Run the range test on `run`'s model, optimizer and batches; they are restored afterwards."""
    finder = LRFinderCB(start=start, end=end, steps=steps, stateful=(run.train_dl,))
    learn = Learner(run.net, run.train_dl, run.valid_dl, run.loss, run.opt, [finder, *callbacks_for(run)])
    learn.fit(math.ceil(steps / len(run.train_dl)))
    if len(finder.losses) < 3:
        raise ExptError(f"the lr finder stopped after {len(finder.losses)} batches ({finder.stop_reason}); "
                        "lower lr_find.start or use more data")
    lrs = finder.lrs[: len(finder.losses)]
    return LRFindResult(lrs, finder.losses, suggest(lrs, finder.losses), recommended, finder.stop_reason)


def report(result: LRFindResult, run_dir: Path, console: Console) -> None:
    """The suggestions table, lr_find.json and lr_find.png."""
    table = Table(title=f"lr finder: {len(result.lrs)} batches, {result.stop_reason}")
    table.add_column("suggestion")
    table.add_column("lr", justify="right")
    for name in [result.recommended] + [n for n in SUGGESTIONS if n != result.recommended]:
        mark = " (recommended)" if name == result.recommended else ""
        table.add_row(f"{name}{mark}", f"{result.suggestions[name]:.2e}")
    console.print(table)
    data = {"lrs": result.lrs, "losses": result.losses, "suggestions": result.suggestions,
            "recommended": result.recommended, "lr": result.lr, "stop_reason": result.stop_reason}
    write_json(run_dir / "lr_find.json", data)
    plot(result, run_dir / "lr_find.png")


def plot(result: LRFindResult, path: Path) -> None:
    with png(path) as ax:
        ax.plot(result.lrs, result.losses)
        ax.set(xscale="log", xlabel="learning rate", ylabel="loss (smoothed)", title="lr finder")
        for (name, lr), marker in zip(result.suggestions.items(), "o^s"):
            nearest = min(range(len(result.lrs)), key=lambda i: abs(math.log(result.lrs[i] / lr)))
            ax.plot([lr], [result.losses[nearest]], marker,
                    label=f"{name}: {lr:.1e}" + (" *" if name == result.recommended else ""))
        ax.legend()

"""A rich progress bar per epoch and one table row per finished epoch."""

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..learner import Callback
from .metrics import MetricsCB

HIDDEN = {"lr", "val/error_rate"}  # in metrics.csv, not in the table


def fmt(name: str, value) -> str:
    if name == "epoch":
        return str(value)
    return f"{value:.1f}" if name == "seconds" else f"{value:.4f}"


class ProgressCB(Callback):
    order = MetricsCB.order + 2  # after MetricsCB built learn.row and the callbacks that add to it

    def __init__(self, console: Console | None = None):
        self.console = console or Console(emoji=False)
        self.rows_printed = 0
        self.bar: Progress | None = None

    def before_fit(self, learn) -> None:
        for row in learn.history:  # a resumed run shows its earlier epochs first
            self.print_row(row)

    def before_epoch(self, learn) -> None:
        self.bar = Progress(TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
                            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=self.console, transient=True,
                            disable=not self.console.is_terminal)  # no bar in logs and pipes
        self.bar.start()

    def before_train(self, learn) -> None:
        self.task = self.bar.add_task("train", total=len(learn.train_dl), epoch=learn.epoch + 1,
                                      epochs=learn.epochs)

    def before_validate(self, learn) -> None:
        self.bar.remove_task(self.task)
        self.task = self.bar.add_task("valid", total=len(learn.valid_dl), epoch=learn.epoch + 1,
                                      epochs=learn.epochs)

    def after_batch(self, learn) -> None:
        self.bar.advance(self.task)

    def after_epoch(self, learn) -> None:
        self.bar.stop()
        self.print_row(learn.row)

    def print_row(self, row: dict) -> None:
        table = Table(box=None, show_header=self.rows_printed == 0, pad_edge=False)
        names = [name for name in row if name not in HIDDEN]
        for name in names:
            table.add_column(name, justify="right", min_width=max(10, len(name)))  # rows line up under the header
        table.add_row(*(fmt(name, row[name]) for name in names))
        self.console.print(table)
        self.rows_printed += 1

    def after_fit(self, learn) -> None:
        if self.bar is not None:  # a cancelled epoch leaves it running
            self.bar.stop()
        if learn.stop_reason:
            self.console.print(f"[bold red]stopped:[/] {learn.stop_reason}")


"""`expt lr_find`: a learning-rate range test on the run `expt train` would build, with suggestions,
a table, lr_find.json and lr_find.png in the run folder."""

from pathlib import Path

from rich.console import Console

from ..build import build_run
from ..lr_find import find_lr, report


def run(cfg, run_dir: Path, console: Console) -> dict:
    built = build_run(cfg)
    console.print(f"[bold]expt lr_find[/] {cfg.name}: lr {cfg.lr_find.start:g} to {cfg.lr_find.end:g} over up to "
                  f"{cfg.lr_find.steps} batches of {cfg.bs}, {built.device} {built.precision}")
    result = find_lr(built, cfg.lr_find.start, cfg.lr_find.end, cfg.lr_find.steps, cfg.lr_find.suggestion)
    report(result, run_dir, console)
    return {"status": "ok", "lr": result.lr}

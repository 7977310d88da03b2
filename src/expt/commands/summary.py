"""`expt summary`: the run's model, one row per leaf module (shapes, parameters, MFLOPs per image),
printed and written to summary.md."""

from pathlib import Path

from rich.console import Console

from ..build import build_run
from ..checkpoint import atomic_write
from ..model_table import example_batch, markdown, summarize_model, table


def run(cfg, run_dir: Path, console: Console) -> dict:
    built = build_run(cfg)
    summary = summarize_model(built.model, example_batch(built))
    title = f"{cfg.name}: {summary.params:,} parameters, {summary.mflops:.2f} MFLOPs per image"
    console.print(table(summary, title))
    atomic_write(Path(run_dir) / "summary.md", lambda tmp: tmp.write_text(markdown(summary, title)))
    return {"status": "ok", "params": summary.params, "mflops": summary.mflops}

"""A sweep folder's results: sweep.csv (one row per job: its overrides, results and costs), the
leaderboard (jobs grouped by what varies but the seed, mean ± std of the headline metric),
leaderboard.md and sweep.png; what `expt sweep` writes after its jobs and `--aggregate` rebuilds."""

import json
import math
from pathlib import Path

import pandas as pd
import yaml
from rich.table import Table

from .checkpoint import atomic_write
from .errors import ExptError
from .plots import png

DEFAULT_HEADLINE = ("val/acc", True)  # for summaries that name none (jobs that failed before training)
COSTS = ["val/loss", "train/loss", "seconds", "peak_mem_mb", "params", "mflops"]
RESULT_COLUMNS = {"job", "status", "error", "headline", "higher_is_better", "best/epoch", *COSTS}
NOT_A_FACTOR = {"seed"}  # jobs that differ only in these form one group of the leaderboard
DONE = ("ok", "early_stopped")  # the statuses of a finished run (every other one failed or stopped short)


def collect(sweep_dir: Path):
    """sweep.csv's table: one row per job folder, its overrides as columns, then its results."""
    rows = []
    for overrides_file in sorted(Path(sweep_dir).glob("*/.hydra/overrides.yaml")):
        job = overrides_file.parent.parent
        row = {"job": job.name}
        for item in yaml.safe_load(overrides_file.read_text()) or []:
            key, _, value = item.partition("=")
            row[key.lstrip("+~")] = value
        summary_file = job / "summary.json"
        summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {"status": "incomplete"}
        name = summary.get("headline", DEFAULT_HEADLINE[0])  # the task's headline metric (val/acc, ...)
        row |= {"headline": summary.get("headline"), "higher_is_better": summary.get("higher_is_better")}
        row |= {m: summary.get(m) for m in (name, f"best/{name}", "best/epoch", *COSTS)}
        row |= {"status": summary.get("status"), "error": summary.get("error", "")}
        rows.append(row)
    return pd.DataFrame(rows)


def headline(table) -> tuple[str, bool]:
    """The metric the jobs rank by and whether higher is better, as their summaries name it (the
    task's: val/acc for classification)."""
    named = table[table["headline"].notna()] if "headline" in table else table.iloc[:0]
    if named.empty:
        return DEFAULT_HEADLINE
    return str(named["headline"].iloc[0]), bool(named["higher_is_better"].iloc[0])


def leaderboard(table):
    """Jobs grouped by the overrides that vary across the sweep, but the seed: n, mean and std of
    the headline metric and the mean cost, sorted best first. Failed jobs count in `failed`, not in
    the statistics. A key that only some jobs set reads as `default` in the others."""
    name, higher_is_better = headline(table)
    columns = [c for c in table.columns if c not in {*RESULT_COLUMNS, name, f"best/{name}", *NOT_A_FACTOR}]
    # a key a job did not set has its default there
    values = table[columns].apply(lambda col: col.map(lambda v: "default" if pd.isna(v) else str(v)))
    factors = [c for c in columns if values[c].nunique() > 1]
    labels = values[factors].apply(lambda r: " ".join(f"{k}={v}" for k, v in r.items()), axis=1)
    table = table.assign(group=labels if factors else "all")
    ok = table[table["status"].isin(DONE)]
    stats = ok.groupby("group").agg(n=(name, "size"), mean=(name, "mean"), std=(name, "std"),
                                    seconds=("seconds", "mean"), peak_mem_mb=("peak_mem_mb", "mean"),
                                    params=("params", "first"))
    failed = table[~table["status"].isin(DONE)].groupby("group").size().rename("failed")
    board = stats.join(failed, how="outer").fillna({"n": 0, "failed": 0})
    board[["n", "failed"]] = board[["n", "failed"]].astype(int)
    return board.sort_values("mean", ascending=not higher_is_better, na_position="last").reset_index()


def missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt_stat(mean, std, n) -> str:
    if missing(mean):
        return "-"
    return f"{mean:.4f} ± {std:.4f}" if n > 1 else f"{mean:.4f}"


def render(board, console, title: str, metric: str = DEFAULT_HEADLINE[0]) -> str:
    """Print the leaderboard as a rich table; return it as markdown."""
    columns = ["group", "n", f"{metric} (mean ± std)", "seconds", "peak MB", "params", "failed"]
    console.print(title, soft_wrap=True)  # a table's title wraps to the table's width; a long path must not split it
    table = Table()
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right")
    lines = [f"# {title}", "", "| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for r in board.itertuples():
        cells = [r.group, str(r.n), fmt_stat(r.mean, r.std, r.n),
                 "-" if missing(r.seconds) else f"{r.seconds:.1f}",
                 "-" if missing(r.peak_mem_mb) else f"{r.peak_mem_mb:.0f}",
                 "-" if missing(r.params) else f"{int(r.params):,}", str(r.failed)]
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    console.print(table)
    return "\n".join(lines) + "\n"


def plot(board, path: Path, metric: str = DEFAULT_HEADLINE[0]) -> None:
    """Headline metric against fit time, marker size by peak memory, one label per group."""
    ok = board.dropna(subset=["mean", "seconds"])
    with png(path, figsize=(7, 5)) as ax:
        if len(ok):
            mem = ok["peak_mem_mb"].fillna(0)
            ax.scatter(ok["seconds"], ok["mean"], s=30 + 300 * mem / max(mem.max(), 1), alpha=0.6)
            for r in ok.itertuples():
                ax.annotate(r.group, (r.seconds, r.mean), fontsize=8, xytext=(4, 4), textcoords="offset points")
        ax.set(xlabel="fit time (s)", ylabel=f"{metric} (mean over seeds)", title="sweep: marker size = peak memory")


def aggregate(sweep_dir: Path, console) -> dict:
    """Write sweep.csv, leaderboard.md and sweep.png for a sweep folder, and print the leaderboard."""
    sweep_dir = Path(sweep_dir)
    table = collect(sweep_dir)
    if table.empty:
        raise ExptError(f"{sweep_dir} holds no sweep jobs (no */.hydra/overrides.yaml); pass a sweep folder")
    atomic_write(sweep_dir / "sweep.csv", lambda tmp: table.to_csv(tmp, index=False))
    board = leaderboard(table)
    ok = int(table["status"].isin(DONE).sum())
    title = f"sweep: {ok} of {len(table)} jobs ok ({sweep_dir})"
    metric = headline(table)[0]
    markdown = render(board, console, title, metric)
    atomic_write(sweep_dir / "leaderboard.md", lambda tmp: tmp.write_text(markdown))
    plot(board, sweep_dir / "sweep.png", metric)
    console.print(f"wrote {sweep_dir / 'sweep.csv'}, leaderboard.md, sweep.png")
    return {"jobs": len(table), "ok": ok}

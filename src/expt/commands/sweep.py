"""`expt sweep`: many runs through Hydra's multirun, then one table, one leaderboard and one plot
(expt/leaderboard.py).

Each job is a normal run folder under the sweep folder. Every job's config is composed and checked
before the first starts. A job that fails (an exception, a NaN, running out of memory) is recorded
with its status and error and the sweep goes on; a job whose folder already holds a finished run of
the same overrides is skipped, so re-running a sweep into its folder completes it.
"""

import itertools
import json
import math
import time
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from ..build import check_settings
from ..checkpoint import write_json
from ..distributed import launch
from ..errors import ExptError, Unfinished
from ..leaderboard import DEFAULT_HEADLINE, DONE, aggregate
from ..overrides import with_override
from ..runfolder import FolderBusy, RunFolder
from . import train
from .runner import output_console


def finished(run_dir: Path, config_text: str) -> dict | None:
    """The summary of a finished run of exactly this resolved config in run_dir, if there is one.
    (Hydra rewrites .hydra/ before a job starts, so the config.yaml that expt writes is compared.)"""
    summary, stored = run_dir / "summary.json", run_dir / "config.yaml"
    if not (summary.is_file() and stored.is_file()) or stored.read_text() != config_text:
        return None
    result = json.loads(summary.read_text())
    return result if result.get("status") in DONE else None


def run(cfg, run_dir: Path, console) -> float:
    """One job of the sweep (in Hydra's multirun): skip it when done, else train; a failure is
    recorded, not raised, so the sweep goes on. Ctrl-C stops the whole sweep. Returns the headline
    metric (for sweepers)."""
    config_text = OmegaConf.to_yaml(cfg, resolve=True)
    done = finished(run_dir, config_text)
    if done is not None:
        console.print(f"[dim]skipping {run_dir.name}: already finished[/]")
        return done.get(done.get("headline", DEFAULT_HEADLINE[0]), math.nan)
    nproc = (cfg.get("dist") or {}).get("nproc", 1)
    try:
        if nproc > 1:  # the job under torchrun (its rank 0 holds the folder and writes config.yaml)
            summary = launch_job(run_dir, nproc)
        else:
            with RunFolder(run_dir, remove_on_failure=False):
                (run_dir / "config.yaml").write_text(config_text)
                summary = train.run(cfg, run_dir, console)
    except FolderBusy as e:  # another process owns the folder: leave it alone
        console.print(f"[bold red]job {run_dir.name} skipped:[/] {e}")
        return math.nan
    except Exception as e:  # any failure of one job is recorded, and the sweep goes on
        first_line = (str(e).strip().splitlines() or [""])[0]
        summary = {"status": "failed", "error": f"{type(e).__name__}: {first_line}"}
        try:
            write_json(run_dir / "summary.json", summary)
        except OSError:
            pass  # the disk itself failed: the job's missing summary marks it incomplete
        console.print(f"[bold red]job {run_dir.name} failed:[/] {summary['error']}")
    if summary.get("status") == "interrupted":
        raise KeyboardInterrupt  # Ctrl-C stopped this job's training: stop the sweep, not just the job
    value = summary.get(summary.get("headline", DEFAULT_HEADLINE[0]))
    return value if summary.get("status") in DONE and value is not None else math.nan


def launch_job(run_dir: Path, nproc: int) -> dict:
    """A job of dist.nproc > 1 processes: `expt train` with the job's overrides under torchrun, into
    the job's folder; returns its summary."""
    overrides = [o for o in HydraConfig.get().overrides.task if not o.lstrip("+~").startswith("hydra")]
    quoted = str(run_dir).replace("\\", "\\\\").replace("'", "\\'")  # job folders hold '=' and ','
    for name in ("summary.json", "last.pt", "model.safetensors", "model_best.safetensors", "metrics.csv"):  # an unfinished attempt's:
        (run_dir / name).unlink(missing_ok=True)  # trained again from the start, as a one-process job is
    code = launch(nproc, [*overrides, f"hydra.run.dir='{quoted}'", "hydra.output_subdir=null"])
    summary = run_dir / "summary.json"
    if summary.is_file():
        return json.loads(summary.read_text())
    raise ExptError(f"its {nproc} processes ended with exit code {code} before a summary (their messages are above)")


def sweep_args(args: list[str]) -> list[str]:
    """The sweep's arguments with --multirun first and, unless one is given, a timestamped
    hydra.sweep.dir among the overrides."""
    args = list(args) if any(a in ("-m", "--multirun") for a in args) else ["--multirun", *args]
    if not any(a.startswith("hydra.sweep.dir=") for a in args):
        args = with_override(args, "hydra.sweep.dir=" + time.strftime("outputs/sweeps/%Y-%m-%d/%H-%M-%S"))
    return args


def sweep_jobs(args: list[str], limit: int = 200) -> list[list[str]] | None:
    """The overrides of each job of a sweep (every combination of a,b,c values, at most `limit`),
    to check their configs before the sweep starts; None where Hydra's parser cannot say (ranges,
    sweeper syntax such as interval())."""
    try:
        parsed = OverridesParser.create().parse_overrides([a for a in args if not a.startswith("-")])
        choices = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override()
                   else [o.input_line] for o in parsed]
    except Exception:
        return None
    return [list(job) for job in itertools.islice(itertools.product(*choices), limit)]


def check_sweep(jobs: list[list[str]], compose) -> None:
    """Every job's config (`compose(overrides)`), checked as far as it can be without data, before the
    first job starts: a bad value in one combination is one line and exit 2, not a failed job an hour in."""
    for job in jobs:
        cfg = compose(job)
        try:
            check_settings(cfg)
        except ExptError as e:
            raise type(e)(f"the job {' '.join(o for o in job if not o.startswith('hydra.'))} would fail: {e}") from None


def aggregate_only(args: list[str], check: bool = True) -> None:
    """`expt sweep --aggregate DIR`: rebuild sweep.csv, the leaderboard and the plot of a sweep folder;
    with `check`, Unfinished (exit 1) when any job did not finish."""
    if len(args) != 1:
        raise ExptError("usage: expt sweep --aggregate SWEEP_DIR")
    counts = aggregate(args[0], output_console())
    if check and counts["ok"] < counts["jobs"]:
        raise Unfinished(f"{counts['jobs'] - counts['ok']} of {counts['jobs']} jobs did not finish; their errors are "
                         f"in {args[0]}/sweep.csv (run the same sweep again to retry them)", 1)

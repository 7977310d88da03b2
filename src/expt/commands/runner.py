"""A command run inside Hydra's job: in its run folder (locked, config.yaml written, removed again
when a failed command leaves it empty), with its console, under torchrun in every rank (rank 0
alone writes), and what an unfinished run says (interrupted or diverged) as an error to report."""

import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import OmegaConf
from rich.console import Console

from .. import distributed, signals
from ..errors import Unfinished
from ..runfolder import RunFolder, remove_if_unused
from . import entry


def given(group: str, keys: bool = False) -> bool:
    """Whether the command line chooses `group`'s option (`data=paddy`), or with `keys` sets any of
    its keys too (`tta.names=[...]`): what a command takes from a checkpoint unless told otherwise."""
    names = [o.lstrip("+~").split("=")[0] for o in HydraConfig.get().overrides.task]
    return any(name == group or (keys and name.split(".")[0] == group) for name in names)


def plain_views(cfg):
    """cfg with the identity view alone, unless the command line sets tta: the images as they are."""
    return cfg if given("tta", keys=True) else OmegaConf.merge(cfg, {"tta": {"names": ["identity"]}})


def job_context() -> dict:
    """What loggers take from Hydra's job: the group choices (arch -> resnet_k5) and, in a sweep, its
    folder and the job's values of the keys the sweep varies (its a,b lists and ranges on the
    command line, and its sweeper's params: Optuna's)."""
    if not HydraConfig.initialized():
        return {}
    hydra = HydraConfig.get()
    context = {"choices": {k: v for k, v in hydra.runtime.choices.items()
                           if v is not None and not k.startswith("hydra") and k != "run_schema"}}
    if hydra.mode == RunMode.MULTIRUN:
        args = [a for a in sys.argv[1:] if "=" in a and not a.startswith("-")]
        try:
            swept = {o.get_key_element().lstrip("+~") for o in OverridesParser.create().parse_overrides(args)
                     if o.is_sweep_override()}
        except Exception:  # Hydra's parser refuses what it did not launch: nothing is known to vary
            swept = set()
        swept |= set(hydra.sweeper.get("params") or {})
        context["sweep"] = str(hydra.sweep.dir)
        context["job"] = [o for o in hydra.overrides.task if o.split("=", 1)[0].lstrip("+~") in swept]
    return context


def output_console() -> Console:
    """The console commands print to: no markup highlighting, no emoji codes (a TTA view named
    shift:-1:0 stays text), and in logs and pipes wide enough for every metric column, with lines
    never wrapped (a long path stays on its line, for a reader and for grep)."""
    console = Console(highlight=False, emoji=False)
    return console if console.is_terminal else Console(highlight=False, emoji=False, width=200, soft_wrap=True)


def quiet_console() -> Console:
    """What ranks other than 0 print to: nothing."""
    return Console(quiet=True)


def run_in_folder(command: str, cfg, run_dir: Path, made: list[Path]) -> None:
    """Run `command` with the composed `cfg` in `run_dir` (of whose parents `made` were made for
    it, so a failure may take them away again); raises Unfinished for an interrupted or diverged run."""
    made = [run_dir if "${" in p.name else p for p in made]  # the default folder's ${name}, resolved
    run = entry(command)
    if not distributed.is_primary():  # another rank of a torchrun launch: trains its share, writes nothing
        with distributed.peers_watched(run_dir):
            summary = run(cfg, run_dir, quiet_console())
        if summary.get("status") == "interrupted":
            raise Unfinished("interrupted", signals.interrupted_code())  # rank 0 says it; the same exit code
        return
    console = output_console()
    with RunFolder(run_dir, made=made), distributed.peers_watched(run_dir):
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        summary = run(cfg, run_dir, console)
    outputs = Path(summary.get("outputs", run_dir))
    if outputs.resolve() != run_dir.resolve():  # wrote next to a checkpoint: no empty run folder left behind
        remove_if_unused(run_dir, made)
    console.print(f"outputs: {outputs}")
    check_finished(summary, run_dir)


def check_finished(summary: dict, run_dir: Path) -> None:
    """Unfinished, saying what was kept and how to go on, for a run that was stopped or diverged."""
    if summary.get("status") == "interrupted":
        n = distributed.world()
        if n > 1:  # torchrun stops every rank with SIGTERM when one fails, or when it is stopped itself
            by = "SIGTERM from the launcher (a rank failed, or the launch was stopped)" if signals.TERMINATED else "Ctrl-C"
            raise Unfinished(f"stopped by {by}; weights saved, resume with `torchrun --nproc_per_node={n} -m expt "
                             f"train resume={run_dir}` or `expt train dist.nproc={n} resume={run_dir}`",
                             signals.interrupted_code())
        raise Unfinished(f"{signals.interrupted_by()}; weights saved, resume with `expt train resume={run_dir}`",
                         signals.interrupted_code())
    if summary.get("status") == "diverged":
        last, best = run_dir / "model.safetensors", run_dir / "model_best.safetensors"  # checkpoint.keep=best: no last
        kept = (f"the last good checkpoint, after epoch {summary['epochs']}, is {last}" if last.is_file()
                else f"the best checkpoint is {best}" if best.is_file()
                else "no checkpoint was saved; lower optimizer.lr (`expt lr_find` suggests one)")
        raise Unfinished(f"training diverged ({summary.get('error')}); {kept}", 1)

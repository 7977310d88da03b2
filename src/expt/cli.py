"""The `expt` command: picks a subcommand, lets Hydra compose conf/, and reports user errors in one
line (exit 2). Heavy imports (torch, timm) happen only inside the subcommand that needs them."""

import sys
from dataclasses import dataclass, field
from typing import Any, Optional

COMMANDS = {
    "train": "train the composed run and save metrics, summary and checkpoint",
    "lr_find": "learning-rate range test on the run train would build; suggestions, table and plot",
    "tta": "evaluate checkpoint(s) with and without test-time augmentation; ckpt=PATH or ckpt=[A,B]",
    "summary": "the run's model, one row per leaf module: shapes, parameters, MFLOPs; writes summary.md",
    "predict": "a checkpoint's predictions: submission.csv (data=paddy), or input=DIR restored into PNGs (data=pets)",
    "sample": "a grid of a generator's images: ckpt=RUN/model.safetensors n=64 (a GAN's, or a restoration run's)",
    "sweep": "train every combination (-m arch=a,b seed=1,2,3), then sweep.csv, a leaderboard and a plot",
    "data": "get a dataset: `expt data fashion_mnist` (a copy found, Debian's package, or the official files)",
}
USAGE = "usage: expt COMMAND [group=option ...] [key=value ...]   (expt COMMAND --help for its options)"
HYDRA_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--resolve", "--package", "-p",
               "--shell-completion", "-sc", "--multirun", "-m", "--version")


def print_usage() -> None:
    lines = [USAGE, "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, text in COMMANDS.items()]
    lines += ["", "examples:", "  expt train", "  expt train arch=resnet epochs=20 optimizer.lr=2e-2",
              "  expt lr_find                    # then: expt train optimizer.lr=<suggestion>",
              "  expt train optimizer.lr=auto    # find the lr first, then train with it",
              "  expt tta ckpt=outputs/runs/DATE/TIME_NAME/model.safetensors tta=flip_shift",
              "  expt summary arch=timm arch.name=convnext_atto",
              "  expt sweep arch=resnet_k5,resnet seed=1,2,3",
              "  expt predict ckpt=RUN/model.safetensors    # a data=paddy run: submission.csv",
              "  expt sample ckpt=RUN/model.safetensors n=64  # a GAN's images",
              "  expt train debug=fast           # a few batches on the CPU", "  expt train --cfg job",
              "  expt data fashion_mnist         # get the default dataset"]
    print("\n".join(lines))


def output_console():
    """The console commands print to: no markup highlighting, no emoji codes (a TTA view named
    shift:-1:0 stays text), and in logs and pipes wide enough for every metric column, with lines
    never wrapped (a long path stays on its line, for a reader and for grep)."""
    from rich.console import Console
    console = Console(highlight=False, emoji=False)
    return console if console.is_terminal else Console(highlight=False, emoji=False, width=200, soft_wrap=True)


def fail(message: str, code: int = 2, every_rank: bool = False) -> None:
    """One line on stderr and exit. Under torchrun, rank 0 alone says it (every rank composes the same
    config and meets the same mistake), unless `every_rank` (a failure only this rank saw)."""
    import os
    if os.environ.get("RANK", "0") == "0" or every_rank:
        from rich.console import Console
        from rich.markup import escape  # a message may quote brackets (a path, a library's "[file:line]")
        Console(stderr=True, highlight=False, emoji=False, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}")
    sys.exit(code)


@dataclass
class LRFindSchema:
    start: float = 1e-7
    end: float = 10.0
    steps: int = 100
    suggestion: str = "valley"


@dataclass
class FinetuneSchema:
    freeze_epochs: int = 0
    body_lr_mult: float = 0.1


@dataclass
class DistSchema:
    nproc: int = 1
    sync_bn: Any = "auto"


@dataclass
class RunSchema:
    """Types of the run-level settings in conf/config.yaml (group nodes are checked in build.py)."""

    data: Any = None
    arch: Any = None
    optimizer: Any = None
    schedule: Any = None
    loss: Any = None
    augment: Any = None
    name: str = "run"
    epochs: int = 5
    bs: int = 1024
    seed: int = 42
    precision: str = "auto"
    device: str = "auto"
    channels_last: Any = "auto"
    compile: bool = False
    resume: Optional[str] = None
    ckpt: Any = None  # expt tta: a model.safetensors, or a list of them
    input: Optional[str] = None  # expt predict: a folder of images to restore (restoration checkpoints)
    n: int = 64  # expt sample: how many images
    tta: Any = None
    gan: Any = None
    lr_find: LRFindSchema = field(default_factory=LRFindSchema)
    finetune: FinetuneSchema = field(default_factory=FinetuneSchema)
    dist: DistSchema = field(default_factory=DistSchema)


def register_schema() -> None:
    from hydra.core.config_store import ConfigStore
    ConfigStore.instance().store(name="run_schema", node=RunSchema)


def one_line(error: Exception) -> str:
    """Hydra/OmegaConf messages span lines; keep what matters on one."""
    from hydra.errors import MissingConfigException
    if isinstance(error, MissingConfigException) and error.options is not None:
        group = (error.missing_cfg_file or "").split("/")[0]
        return (f"unknown option {error.missing_cfg_file!r}; {group} options are: {', '.join(error.options)}")
    if str(error).startswith("Could not override '"):
        key = str(error).split("'")[1]
        return f"unknown key {key!r}: the composed config has no such setting (check the spelling)"
    text = str(error)
    if error.__cause__ is not None:  # "Error merging override epochs=abc" says where; the cause says why
        text += ": " + str(error.__cause__)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(("full_key:", "object_type=", "reference_type="))]
    return " ".join(lines)


def unknown_settings(cfg) -> list[str]:
    """Run settings the schema does not have (a `+foo=1` that Hydra adds silently and nothing reads)."""
    from dataclasses import fields
    nested = {"lr_find": LRFindSchema, "finetune": FinetuneSchema, "dist": DistSchema}
    known = {f.name for f in fields(RunSchema)}
    extra = [key for key in cfg if key not in known]
    for key, schema in nested.items():
        extra += [f"{key}.{sub}" for sub in cfg.get(key) or {} if sub not in {f.name for f in fields(schema)}]
    return extra


def check_overrides(overrides: list[str], command: str = "train"):
    """Compose once without running, so a bad group option, key or type is one line (exit 2); returns
    the composed config."""
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    from .errors import ConfigError
    from .overrides import check_hydra_node
    hint = f"; see `expt {command} --help` for groups and options"
    try:
        with initialize_config_module("expt.conf", version_base="1.3"):
            cfg = compose("config", overrides=overrides, return_hydra_config=True)
        check_hydra_node(OmegaConf.to_container(cfg.hydra, resolve=False))  # before Hydra instantiates any of it
    except (HydraException, OmegaConfBaseException) as e:
        fail(one_line(e) + hint)
    except ConfigError as e:
        fail(str(e))
    with open_dict(cfg):
        del cfg["hydra"]
    extra = unknown_settings(cfg)
    if extra:
        fail(f"unknown setting {extra[0]!r}: expt has no such run setting, so nothing would read it{hint}")
    if cfg.dist.nproc < 1:
        fail(f"dist.nproc={cfg.dist.nproc} must be at least 1 (the number of processes of one run)")
    return cfg


def sweep_jobs(args: list[str], limit: int = 200) -> list[list[str]] | None:
    """The overrides of each job of a sweep (every combination of a,b,c values, at most `limit`),
    to check their configs before the sweep starts; None where Hydra's parser cannot say (ranges,
    sweeper syntax such as interval())."""
    import itertools

    from hydra.core.override_parser.overrides_parser import OverridesParser
    try:
        parsed = OverridesParser.create().parse_overrides([a for a in args if not a.startswith("-")])
        choices = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override()
                   else [o.input_line] for o in parsed]
    except Exception:
        return None
    return [list(job) for job in itertools.islice(itertools.product(*choices), limit)]


def check_sweep(jobs: list[list[str]]) -> None:
    """Every job's config, composed and checked as far as it can be without data, before the first
    job starts: a bad value in one combination is one line and exit 2, not a failed job an hour in."""
    from .build import check_settings
    from .errors import ExptError
    for job in jobs:
        cfg = check_overrides(job, "sweep")
        try:
            check_settings(cfg)
        except ExptError as e:
            fail(f"the job {' '.join(o for o in job if not o.startswith('hydra.'))} would fail: {e}", e.exit_code)


def sweep_args(args: list[str]) -> list[str]:
    """The sweep's arguments with --multirun first and, unless one is given, a timestamped
    hydra.sweep.dir among the overrides."""
    import time
    args = list(args) if any(a in ("-m", "--multirun") for a in args) else ["--multirun", *args]
    if not any(a.startswith("hydra.sweep.dir=") for a in args):
        args = with_override(args, "hydra.sweep.dir=" + time.strftime("outputs/sweeps/%Y-%m-%d/%H-%M-%S"))
    return args


def with_override(args: list[str], override: str) -> list[str]:
    """`override` added to the command's overrides, next to them: Hydra's argparse takes them as one
    run of positional arguments, and one after a flag that follows them is refused."""
    first = next((i for i, a in enumerate(args) if "=" in a and not a.startswith("-")), len(args))
    return [*args[:first], override, *args[first:]]


def resume_defaults(args: list[str]) -> list[str]:
    """`expt train resume=RUN`: the overrides RUN was started with come first, so `resume=RUN` alone
    continues it; the command line's own overrides win, and those that change the recipe are refused
    when the training state is restored (train.restore)."""
    from pathlib import Path

    import yaml

    from . import overrides
    from .errors import ConfigError
    source = next((a.split("=", 1)[1] for a in args if a.startswith("resume=")), None)
    if not source:
        return args
    folder = Path(source).expanduser()
    folder = folder.parent if folder.is_file() else folder
    stored = folder / ".hydra" / "overrides.yaml"
    try:
        before = yaml.safe_load(stored.read_text()) if stored.is_file() else []
    except (OSError, yaml.YAMLError):
        before = []
    if not isinstance(before, list) or not all(isinstance(o, str) for o in before):
        raise ConfigError(f"{stored} is not a list of overrides; resume from a run folder that expt wrote")
    given = {a.split("=", 1)[0].lstrip("+~") for a in args if "=" in a}
    keep = [o for o in before if "=" in o and o.split("=", 1)[0].lstrip("+~") not in given | {"resume"}
            and not o.lstrip("+~").startswith("hydra")]
    overrides.check(keep, source=str(stored))  # a run folder is data: a tampered line is refused, not replayed
    return keep + args


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, a scheduler ending a job): handled as Ctrl-C is (weights saved, the run
    resumable), with exit code 143."""


def interrupted_code(error: BaseException | None = None) -> int:
    return 143 if isinstance(error, Terminated) or TERMINATED else 130


TERMINATED: list[int] = []  # set once SIGTERM arrived


def on_sigterm(signum, frame) -> None:
    TERMINATED.append(signum)
    raise Terminated()


def run_command(command: str, args: list[str]) -> None:
    import os
    from pathlib import Path

    import hydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from . import overrides
    from .errors import ExptError
    from .runfolder import not_there_yet, os_error_line
    register_schema()
    if command == "sweep" and args[:1] == ["--aggregate"]:
        return aggregate_only(args[1:])
    from . import distributed
    if distributed.launched() and command != "train":
        if os.environ.get("RANK", "0") != "0":
            return  # under torchrun, commands other than train run once, in rank 0
        distributed.run_alone()
    try:
        overrides.check(args)
        if command == "train":
            args = resume_defaults(args)
    except ExptError as e:
        fail(str(e), e.exit_code)
    if command in ("tta", "predict", "sample") and not any(a.lstrip("+").startswith("name=") for a in args):
        args = with_override(args, f"name={command}")  # its run folder (an ensemble's), not the default arch's name
    cfg = None
    if command == "sweep":
        args = sweep_args(args)
        if not any(a in ("--help", "-h", "--cfg", "-c", "--info") for a in args):
            check_sweep(sweep_jobs(args) or [])
    elif not any(a.split("=")[0] in HYDRA_FLAGS for a in args):
        cfg = check_overrides(args, command)
    if command == "train" and cfg is not None:
        if distributed.launched():
            args = joined_args(args)
        elif cfg.dist.nproc > 1:
            return relaunch(args, cfg)
    primary = distributed.is_primary()
    if command != "sweep" and not any(a.startswith("hydra.run.dir=") for a in args):
        # the default run folder, resolved now: its parents are known before Hydra makes them (not_there_yet)
        args = with_override(args, f"hydra.run.dir={default_run_dir()}")
    run_dir = next((a.split("=", 1)[1] for a in args if a.startswith("hydra.run.dir=")), None)
    if run_dir and len(run_dir) > 1 and run_dir[0] == run_dir[-1] and run_dir[0] in "'\"":  # a quoted value
        run_dir = run_dir[1:-1].replace("\\'", "'").replace("\\\\", "\\")
    made = not_there_yet(run_dir) if run_dir and primary else []  # what a failed command may take away again
    if run_dir and primary and command != "sweep" and not any(a.split("=")[0] in HYDRA_FLAGS for a in args):
        from .runfolder import check_free
        try:  # before Hydra writes its .hydra/ record into the folder
            check_free(Path(run_dir), train=command == "train")
        except ExptError as e:
            fail(str(e), e.exit_code)
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises what a command raised: handled below, in one line

    @hydra.main(version_base="1.3", config_path="conf", config_name="config")
    def task(cfg):
        from hydra.core.hydra_config import HydraConfig
        from omegaconf import OmegaConf

        from .runfolder import RunFolder, remove_if_unused
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        made_now = [run_dir if "${" in p.name else p for p in made]  # the default folder's ${name}, resolved
        config_text = OmegaConf.to_yaml(cfg, resolve=True)
        console = output_console()
        if command == "sweep":
            from .sweep import run_job
            return run_job(_train, cfg, run_dir, console, config_text)
        try:
            if not primary:  # another rank of a torchrun launch: trains its share, writes nothing
                with distributed.peers_watched(run_dir):
                    summary = COMMAND_FUNCS[command](cfg, run_dir, quiet_console())
                if summary.get("status") == "interrupted":
                    failures.append(KeyboardInterrupt())  # the same exit code as rank 0's, silently
                return
            with RunFolder(run_dir, made=made_now), distributed.peers_watched(run_dir):
                (run_dir / "config.yaml").write_text(config_text)
                summary = COMMAND_FUNCS[command](cfg, run_dir, console)
        except Exception as e:  # raised below, outside Hydra (which would print a line of its own first)
            failures.append(e)
            return
        outputs = Path(summary.get("outputs", run_dir))
        if outputs.resolve() != run_dir.resolve():  # wrote next to a checkpoint: no empty run folder left behind
            remove_if_unused(run_dir, made_now)
        console.print(f"outputs: {outputs}")
        if summary.get("status") == "interrupted":
            n = distributed.world()
            if n > 1:  # torchrun stops every rank with SIGTERM when one fails, or when it is stopped itself
                by = "SIGTERM from the launcher (a rank failed, or the launch was stopped)" if TERMINATED else "Ctrl-C"
                fail(f"stopped by {by}; weights saved, resume with `torchrun --nproc_per_node={n} -m expt train "
                     f"resume={run_dir}` or `expt train dist.nproc={n} resume={run_dir}`", interrupted_code())
            why = "terminated (SIGTERM)" if TERMINATED else "interrupted"
            fail(f"{why}; weights saved, resume with `expt train resume={run_dir}`", interrupted_code())
        if summary.get("status") == "diverged":
            model = run_dir / "model.safetensors"
            kept = (f"the last good checkpoint, after epoch {summary['epochs']}, is {model}" if model.is_file()
                    else "no checkpoint was saved; lower optimizer.lr (`expt lr_find` suggests one)")
            fail(f"training diverged ({summary.get('error')}); {kept}", 1)

    sys.argv = [f"expt {command}", *args]
    sweep_dir = next((a.split("=", 1)[1] for a in args if a.startswith("hydra.sweep.dir=")), None)
    failures: list[Exception] = []
    try:
        task()
        if failures:
            raise failures[0]
    except ExptError as e:
        fail(str(e), e.exit_code, every_rank=isinstance(e, distributed.RankFailed))
    except OSError as e:
        fail(os_error_line(e), 1)
    except (HydraException, OmegaConfBaseException) as e:
        fail(one_line(e))
    except KeyboardInterrupt as e:
        if command == "sweep" and sweep_dir:
            aggregate_only([sweep_dir], check=False)
        fail(("terminated (SIGTERM)" if interrupted_code(e) == 143 else "interrupted")
             + ("; run the same sweep again to finish it (finished jobs are skipped)" if command == "sweep" else ""),
             interrupted_code(e))
    if command == "sweep" and "--help" not in args and "--cfg" not in args:
        aggregate_only([sweep_dir])


def quiet_console():
    """What ranks other than 0 print to: nothing."""
    from rich.console import Console
    return Console(quiet=True)


RUN_DIR = "outputs/runs/{now}_${{name}}"  # conf/config.yaml's hydra.run.dir, with ${now:...} resolved once


def default_run_dir() -> str:
    import time
    return RUN_DIR.format(now=time.strftime("%Y-%m-%d/%H-%M-%S"))


def joined_args(args: list[str]) -> list[str]:
    """`expt train` as one of torchrun's processes: join the process group; every rank takes rank 0's
    run folder (Hydra's ${now:...} resolves in each process, a second apart at times), and the
    others leave Hydra's record and log to rank 0."""
    from . import distributed
    distributed.join()
    if not any(a.startswith("hydra.run.dir=") for a in args):
        args = args + ["hydra.run.dir=" + distributed.broadcast(default_run_dir() if distributed.is_primary() else None)]
    if not distributed.is_primary():
        args = args + ["hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]
    return args


def relaunch(args: list[str], cfg) -> None:
    """`expt train dist.nproc=N`: the same command under torch.distributed's launcher (torchrun,
    --standalone: one machine), in one run folder resolved here."""
    from .distributed import launch
    if not any(a.startswith("hydra.run.dir=") for a in args):
        args = args + [f"hydra.run.dir={default_run_dir()}"]
    code = launch(cfg.dist.nproc, args)
    if code:
        sys.exit(code)  # the ranks have said why


def aggregate_only(args: list[str], check: bool = True) -> None:
    """`expt sweep --aggregate DIR`: rebuild sweep.csv, the leaderboard and the plot of a sweep folder;
    with `check`, exit 1 when any job did not finish."""
    from .errors import ExptError
    from .sweep import aggregate
    if len(args) != 1:
        fail("usage: expt sweep --aggregate SWEEP_DIR")
    try:
        counts = aggregate(args[0], output_console())
    except ExptError as e:
        fail(str(e), e.exit_code)
    if check and counts["ok"] < counts["jobs"]:
        fail(f"{counts['jobs'] - counts['ok']} of {counts['jobs']} jobs did not finish; their errors are in "
             f"{args[0]}/sweep.csv (run the same sweep again to retry them)", 1)


def _train(cfg, run_dir, console):
    from .train import train
    return train(cfg, run_dir, console)


def _lr_find(cfg, run_dir, console):
    from .lr_find import lr_find
    return lr_find(cfg, run_dir, console)


def _tta(cfg, run_dir, console):
    from hydra.core.hydra_config import HydraConfig

    from .tta import run_tta
    explicit_data = any(o.split("=")[0] == "data" for o in HydraConfig.get().overrides.task)
    return run_tta(cfg, run_dir, console, explicit_data)


def _summary(cfg, run_dir, console):
    from .summary import run_summary
    return run_summary(cfg, run_dir, console)


def _predict(cfg, run_dir, console):
    from .predict import run_predict
    return run_predict(cfg, run_dir, console)


def _sample(cfg, run_dir, console):
    from .sample import run_sample
    return run_sample(cfg, run_dir, console)


COMMAND_FUNCS = {"train": _train, "lr_find": _lr_find, "tta": _tta, "summary": _summary, "predict": _predict,
                 "sample": _sample}


def get_data(args: list[str]) -> None:
    """`expt data fashion_mnist`: make sure a copy exists where `expt train` looks."""
    if args != ["fashion_mnist"]:
        fail("usage: expt data fashion_mnist   (Imagenette and Paddy: see the README's Data section)")
    from .data.fashion_mnist import fetch
    from .errors import ExptError
    try:
        fetch()
    except ExptError as e:
        fail(str(e), e.exit_code)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print_usage()
        return
    if argv[0] in ("-V", "--version"):
        from . import __version__
        print(f"expt {__version__}")
        return
    command, args = argv[0], argv[1:]
    if command not in COMMANDS:
        fail(f"unknown command {command!r}; commands are: {', '.join(COMMANDS)} (expt --help)")
    if command == "data":
        return get_data(args)
    if command == "train" and any(a in ("-m", "--multirun") for a in args):
        command = "sweep"  # many trainings: a failing job must not stop the others
    import signal
    before = signal.signal(signal.SIGTERM, on_sigterm)
    TERMINATED.clear()
    try:
        run_command(command, args)
    finally:
        signal.signal(signal.SIGTERM, before)
        if "expt.distributed" in sys.modules:  # leave the process group of a torchrun launch
            sys.modules["expt.distributed"].teardown()


if __name__ == "__main__":
    main()

"""The `expt` command: picks a subcommand, checks its overrides, lets Hydra compose conf/, and reports
user errors in one line (exit 2). What each command does is in commands/; torch (2 s to import) is
imported only once a command runs, so `expt --help` and shell completion stay fast."""

import os
import sys
from pathlib import Path

from . import signals
from .commands import COMMANDS, entry
from .errors import ConfigError, ExptError, Unfinished
from .overrides import check, check_hydra_node, with_override

USAGE = "usage: expt COMMAND [group=option ...] [key=value ...]   (expt COMMAND --help for its options)"
HYDRA_FLAGS = ("--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--resolve", "--package", "-p",
               "--shell-completion", "-sc", "--multirun", "-m", "--version")
EXAMPLES = ["expt train", "expt train arch=resnet epochs=20 optimizer.lr=2e-2",
            "expt lr_find                    # then: expt train optimizer.lr=<suggestion>",
            "expt train optimizer.lr=auto    # find the lr first, then train with it",
            "expt tta ckpt=outputs/runs/DATE/TIME_NAME/model.safetensors tta=flip_shift",
            "expt summary arch=timm arch.name=convnext_atto",
            "expt show augment=crop_flip_erase  # one augmented training batch with its labels: batch.png",
            "expt sweep arch=resnet_k5,resnet seed=1,2,3",
            "expt interpret ckpt=RUN/model.safetensors  # confusion matrix, report, top losses",
            "expt predict ckpt=RUN/model.safetensors input=DIR  # predictions.csv",
            "expt train data=folder data.root=DIR    # your own images: DIR/<class>/*.jpg",
            "expt sample ckpt=RUN/model.safetensors n=64  # a GAN's images",
            "expt export ckpt=RUN/model_best.safetensors format=onnx  # one file, checked against torch",
            "expt train logger=[csv,tensorboard] early_stop.patience=3",
            "expt train debug=fast           # a few batches on the CPU", "expt train --cfg job",
            "expt data fashion_mnist         # get the default dataset"]


def print_usage() -> None:
    lines = [USAGE, "", "commands:", *(f"  {name:<10} {text}" for name, text in COMMANDS.items())]
    print("\n".join(lines + ["", "examples:", *(f"  {example}" for example in EXAMPLES)]))


def fail(message: str, code: int = 2, every_rank: bool = False) -> None:
    """One line on stderr and exit. Under torchrun, rank 0 alone says it (every rank composes the same
    config and meets the same mistake), unless `every_rank` (a failure only this rank saw)."""
    if os.environ.get("RANK", "0") == "0" or every_rank:
        from rich.console import Console
        from rich.markup import escape  # a message may quote brackets (a path, a library's "[file:line]")
        Console(stderr=True, highlight=False, emoji=False, soft_wrap=True).print(f"[bold red]error:[/] {escape(message)}")
    sys.exit(code)


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


def check_overrides(overrides: list[str], command: str = "train"):
    """Compose once without running, so a bad group option, key or type is one line (ConfigError);
    returns the composed config."""
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    from .schema import unknown_settings
    hint = f"; see `expt {command} --help` for groups and options"
    try:
        with initialize_config_module("expt.conf", version_base="1.3"):
            cfg = compose("config", overrides=overrides, return_hydra_config=True)
        check_hydra_node(OmegaConf.to_container(cfg.hydra, resolve=False))  # before Hydra instantiates any of it
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(one_line(e) + hint) from None
    with open_dict(cfg):
        del cfg["hydra"]
    extra = unknown_settings(cfg)
    if extra:
        raise ConfigError(f"unknown setting {extra[0]!r}: expt has no such run setting, so nothing would read it{hint}")
    if cfg.dist.nproc < 1:
        raise ConfigError(f"dist.nproc={cfg.dist.nproc} must be at least 1 (the number of processes of one run)")
    if cfg.dist.nproc > 1 and (cfg.get("gan") or {}).get("_target_", "expt.gan.none") != "expt.gan.none":
        raise ConfigError("a GAN run trains its two models on one device for now: run it with dist.nproc=1")
    return cfg


def flagged(args: list[str], flags=HYDRA_FLAGS) -> bool:
    """Whether Hydra is asked something other than a run (--help, --cfg, ...)."""
    return any(a.split("=")[0] in flags for a in args)


def checked_args(command: str, args: list[str]) -> tuple[list[str], object]:
    """The command's overrides, checked and completed before Hydra runs: `resume=RUN`'s replayed ones
    first, a tta/predict/sample run folder named after the command, a sweep's --multirun and folder
    with every job's config checked; and the composed config (None when Hydra is asked a flag)."""
    from .commands import sweep, train
    check(args)
    if command == "train":
        args = train.resume_defaults(args)
    if command in ("tta", "interpret", "predict", "sample", "export") and not any(a.lstrip("+").startswith("name=") for a in args):
        args = with_override(args, f"name={command}")  # its run folder (an ensemble's), not the arch's name
    if command == "sweep":
        args = sweep.sweep_args(args)
        if not flagged(args, ("--help", "-h", "--cfg", "-c", "--info")):
            sweep.check_sweep(sweep.sweep_jobs(args) or [], lambda job: check_overrides(job, "sweep"))
        return args, None
    return args, None if flagged(args) else check_overrides(args, command)


def with_run_dir(command: str, args: list[str]) -> tuple[list[str], list]:
    """The run folder among the overrides (the default one resolved now, so that its parents are known
    before Hydra makes them) and what of it does not exist yet (what a failed command may take away
    again); a folder that holds another run is refused before Hydra writes its record into it."""
    from . import distributed, launch
    from .runfolder import check_free, not_there_yet
    if command != "sweep" and not any(a.startswith("hydra.run.dir=") for a in args):
        args = with_override(args, f"hydra.run.dir={launch.default_run_dir()}")
    run_dir = next((a.split("=", 1)[1] for a in args if a.startswith("hydra.run.dir=")), None)
    if run_dir and len(run_dir) > 1 and run_dir[0] == run_dir[-1] and run_dir[0] in "'\"":  # a quoted value
        run_dir = run_dir[1:-1].replace("\\'", "'").replace("\\\\", "\\")
    if not run_dir or not distributed.is_primary():
        return args, []
    made = not_there_yet(run_dir)
    if command != "sweep" and not flagged(args):
        check_free(Path(run_dir), train=command == "train")
    return args, made


def run_command(command: str, args: list[str]) -> None:
    from . import distributed, launch
    from .commands import sweep
    from .schema import register_schema
    register_schema()
    if command == "sweep" and args[:1] == ["--aggregate"]:
        return sweep.aggregate_only(args[1:])
    if launch.other_rank_skips(command):
        return
    args, cfg = checked_args(command, args)
    if command == "train" and cfg is not None:
        if distributed.launched():
            args = launch.joined_args(args)
        elif cfg.dist.nproc > 1:
            code = launch.relaunch(args, cfg.dist.nproc)
            if code:
                sys.exit(code)  # the ranks have said why
            return
    args, made = with_run_dir(command, args)
    run_hydra(command, args, made)


def run_hydra(command: str, args: list[str], made: list) -> None:
    """The command as Hydra's job (or a sweep's jobs); what it raised is raised here, outside Hydra
    (which would print a line of its own first)."""
    import hydra
    from hydra.core.hydra_config import HydraConfig

    from .commands import sweep
    from .commands.runner import output_console, run_in_folder
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises what a command raised: reported in one line
    failures: list[Exception] = []

    @hydra.main(version_base="1.3", config_path="conf", config_name="config")
    def hydra_job(cfg):
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        if command == "sweep":
            return entry("sweep")(cfg, run_dir, output_console())
        try:
            run_in_folder(command, cfg, run_dir, made)
        except Exception as e:
            failures.append(e)

    sys.argv = [f"expt {command}", *args]
    sweep_dir = next((a.split("=", 1)[1] for a in args if a.startswith("hydra.sweep.dir=")), None)
    try:
        hydra_job()
        if failures:
            raise failures[0]
    except KeyboardInterrupt as e:
        if command == "sweep" and sweep_dir:
            sweep.aggregate_only([sweep_dir], check=False)
        again = "; run the same sweep again to finish it (finished jobs are skipped)" if command == "sweep" else ""
        code = signals.interrupted_code(e)
        raise Unfinished(("terminated (SIGTERM)" if code == 143 else "interrupted") + again, code) from None
    if command == "sweep" and not flagged(args, ("--help", "--cfg")):
        sweep.aggregate_only([sweep_dir])


def reported(run, *args) -> None:
    """run(*args), with every user error, failed write and Hydra complaint as one line and an exit code."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from .runfolder import os_error_line
    try:
        run(*args)
    except ExptError as e:
        fail(str(e), e.exit_code, every_rank=getattr(e, "every_rank", False))
    except OSError as e:
        fail(os_error_line(e), 1)
    except (HydraException, OmegaConfBaseException) as e:
        fail(one_line(e))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        return print_usage()
    if argv[0] in ("-V", "--version"):
        from . import __version__
        return print(f"expt {__version__}")
    command, args = argv[0], argv[1:]
    if command not in COMMANDS:
        fail(f"unknown command {command!r}; commands are: {', '.join(COMMANDS)} (expt --help)")
    if command == "data":
        from .commands import data
        return reported(data.run, args)
    if command == "train" and any(a in ("-m", "--multirun") for a in args):
        command = "sweep"  # many trainings: a failing job must not stop the others
    try:
        with signals.sigterm_as_interrupt():
            reported(run_command, command, args)
    finally:
        if "expt.distributed" in sys.modules:  # leave the process group of a torchrun launch
            sys.modules["expt.distributed"].teardown()


if __name__ == "__main__":
    main()

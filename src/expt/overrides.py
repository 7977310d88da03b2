"""What an override may say, wherever it comes from (the command line, a run folder's
.hydra/overrides.yaml replayed by `resume=RUN`, a sweep's jobs): checked before Hydra composes
anything, and the composed `hydra` node checked before Hydra runs anything.

Hydra instantiates what its own node names (`hydra.callbacks`, the launcher and sweeper and what
they nest, the logging handlers through logging.config.dictConfig) before expt's builder allowlist
runs, and composes any YAML on the disk that a group option names by a relative path. So:
- a group option is a name from conf/ (or one of Hydra's plugins' groups), never a path;
- of Hydra's own settings, only where outputs go and the launcher's and sweeper's plain settings
  may be set; the config flags that add YAML from elsewhere, or unpickle (`--experimental-rerun`),
  are refused;
- the composed `hydra` node may name only Hydra's plugins, Optuna's samplers and the standard
  logging handlers (conf/'s own choices), and no callbacks.
"""

import re
from pathlib import Path

from .errors import ConfigError

CONF = Path(__file__).parent / "conf"
OPTION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")  # a file name in conf/<group>/, without .yaml
HYDRA_GROUPS = {"hydra/launcher", "hydra/sweeper", "hydra/sweeper/sampler", "hydra/job_logging",
                "hydra/hydra_logging"}  # options from Hydra and its installed plugins (joblib, optuna, submitit)
HYDRA_SETTINGS = {"hydra.run.dir", "hydra.sweep.dir", "hydra.sweep.subdir", "hydra.output_subdir", "hydra.job.chdir",
                  "hydra.verbose"}  # where outputs go
PLUGIN_SETTINGS = ("hydra.launcher.", "hydra.sweeper.")  # the plugins' plain settings (n_jobs, n_trials, ...)
FLAGS_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--info", "-i", "--shell-completion", "-sc"}
REFUSED_FLAGS = {"--config-path": "adds YAML from another folder", "-cp": "adds YAML from another folder",
                 "--config-dir": "adds YAML from another folder", "-cd": "adds YAML from another folder",
                 "--config-name": "composes another primary config", "-cn": "composes another primary config",
                 "--experimental-rerun": "unpickles a file"}
# What the composed hydra node may name: Hydra's plugins (Hydra itself accepts no others) and the
# samplers the Optuna sweeper builds; logging.config.dictConfig calls any `class` or `()` it is given.
PLUGIN_PREFIXES = ("hydra._internal.core_plugins.", "hydra_plugins.")
SAMPLERS = {f"optuna.samplers.{name}" for name in ("TPESampler", "RandomSampler", "CmaEsSampler", "NSGAIISampler",
                                                   "NSGAIIISampler", "MOTPESampler", "GridSampler", "QMCSampler")}
LOGGING_CLASSES = {"logging.StreamHandler", "logging.FileHandler", "logging.NullHandler", "logging.Formatter"}
LOGGING_STREAMS = {"ext://sys.stdout", "ext://sys.stderr"}


def groups() -> set[str]:
    return {p.name for p in CONF.iterdir() if p.is_dir() and not p.name.startswith("_")}


def check(args: list[str], source: str = "the command line") -> None:
    """Refuse (ConfigError, one line) an override or flag that could make Hydra read YAML from
    outside conf/ or call a function of its own choosing."""
    known_groups = groups()
    after_flag = False
    for arg in args:
        if after_flag and not arg.startswith("-") and "=" not in arg:
            after_flag = False  # the value of --cfg job, --package data, ...
            continue
        after_flag = arg in FLAGS_WITH_VALUE
        if arg.startswith("-"):
            flag = arg.split("=", 1)[0]
            if flag in REFUSED_FLAGS:
                raise ConfigError(f"{flag} is refused in {source}: it {REFUSED_FLAGS[flag]} (expt composes conf/ only)")
            continue
        check_one(arg, source, known_groups)


def check_one(arg: str, source: str, known_groups: set[str]) -> None:
    key, has_value, value = arg.partition("=")
    key = key.lstrip("+~")
    if "@" in key:
        raise ConfigError(f"{arg!r} in {source}: package overrides (@) are not supported; choose an option of the "
                          "group as it is (group=option)")
    if "/" in key or key in known_groups:
        if key not in known_groups | HYDRA_GROUPS:
            raise ConfigError(f"{arg!r} in {source}: {key!r} is not a config group; groups are: "
                              f"{', '.join(sorted(known_groups))}")
        options = [o.strip() for o in value.strip("[]").split(",")] if has_value else []
        bad = next((o for o in options if o and o != "null" and not OPTION.fullmatch(o)), None)
        if bad is not None or ".." in value:
            where = "--hydra-help" if key.startswith("hydra/") else "expt train --help"
            raise ConfigError(f"{arg!r} in {source}: {key} takes an option's name ({where} lists them), never a path")
        return
    if (key == "hydra" or key.startswith("hydra.")) and not (key in HYDRA_SETTINGS or key.startswith(PLUGIN_SETTINGS)):
        raise ConfigError(f"{arg!r} in {source}: of Hydra's settings expt takes only hydra.run.dir, hydra.sweep.dir, "
                          "hydra.sweep.subdir, hydra.output_subdir and the launcher's and sweeper's own settings")
    if key.startswith(PLUGIN_SETTINGS) and ("_target_" in key.split(".") or "_target_" in value):
        raise ConfigError(f"{arg!r} in {source}: the launcher and sweeper are chosen by name "
                          "(hydra/launcher=joblib, hydra/sweeper=optuna), not by _target_")


def check_hydra_node(node: dict, source: str = "the composed config") -> None:
    """The composed `hydra` node (plain containers, unresolved) names nothing but Hydra's plugins,
    Optuna's samplers and the standard logging handlers, and no callbacks or search path."""
    if node.get("callbacks"):
        raise ConfigError(f"{source} sets hydra.callbacks ({', '.join(map(str, node['callbacks']))}); expt runs no "
                          "Hydra callbacks, so a config that names one is refused")
    if node.get("searchpath"):
        raise ConfigError(f"{source} sets hydra.searchpath; expt composes conf/ only")
    for name in ("launcher", "sweeper"):
        for where, target in targets(node.get(name) or {}, f"hydra.{name}"):
            top = where == f"hydra.{name}._target_"
            if not (target.startswith(PLUGIN_PREFIXES) if top else target in SAMPLERS):
                raise ConfigError(f"{source}: {where} names {target!r}, which is not one of Hydra's plugins "
                                  "or Optuna's samplers")
    for name in ("job_logging", "hydra_logging"):
        for where, value in leaves(node.get(name) or {}, f"hydra.{name}"):
            last = where.rsplit(".", 1)[-1]
            if last == "()" or (last == "class" and value not in LOGGING_CLASSES) or (
                    isinstance(value, str) and value.startswith(("ext://", "cfg://")) and value not in LOGGING_STREAMS):
                raise ConfigError(f"{source}: {where} = {value!r} would make logging call code; expt's logging "
                                  "uses the standard handlers only")


def leaves(node, where: str):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from leaves(v, f"{where}.{k}") if isinstance(v, (dict, list)) else [(f"{where}.{k}", v)]
            if str(k) == "()":
                yield f"{where}.()", v
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from leaves(v, f"{where}.{i}")


def targets(node, where: str):
    return [(w, str(v)) for w, v in leaves(node, where) if w.endswith("._target_")]


def with_override(args: list[str], override: str) -> list[str]:
    """`override` added to the command's overrides, next to them: Hydra's argparse takes them as one
    run of positional arguments, and one after a flag that follows them is refused."""
    first = next((i for i, a in enumerate(args) if "=" in a and not a.startswith("-")), len(args))
    return [*args[:first], override, *args[first:]]

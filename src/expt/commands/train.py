"""`expt train`: build the run, fit it, write metrics, summary and checkpoints into the run folder;
`resume=RUN` continues an unfinished run where its training state left it."""

import hashlib
import json
import resource
import shutil
import time
from pathlib import Path

import torch
import yaml
from rich.console import Console
from rich.table import Table

from .. import distributed, overrides
from ..build import FitRecord, Run, build_run, callbacks_for, for_resume, resolved
from ..builders import listed
from ..callbacks import CheckpointCB
from ..callbacks.checkpoint import BEST, best_epoch
from ..callbacks.loggers import LogRun
from ..callbacks.training import stale_epochs
from ..checkpoint import atomic_write, clean_stale_temps, load_state, save_model, versions, write_json
from ..errors import CheckpointError, ConfigError
from ..learner import Learner
from ..lr_find import find_lr, report
from ..model_table import ModelSummary, example_batch, summarize_model
from .runner import job_context

MUST_MATCH_ON_RESUME = ("data", "arch", "optimizer", "schedule", "loss", "augment", "gan", "epochs", "bs", "clip_grad",
                        "accumulate", "ema")
WHERE_NOT_WHAT = {"data": ("root", "workers", "download")}  # may change on resume: where data lives, how it is read


AUTO_LOSS = {"_target_": "expt.losses.auto", "_partial_": True}
# Run folders from before loss=auto was the default stored cross entropy, the only default loss that
# trained (one class per image), which is what auto picks there; so the two compare equal.
CROSS_ENTROPY = {"_target_": "torch.nn.CrossEntropyLoss"}


def recipe(config: dict) -> dict:
    """What defines a run's training: MUST_MATCH_ON_RESUME, less the settings of WHERE_NOT_WHAT."""
    out = {k: config.get(k) for k in MUST_MATCH_ON_RESUME}
    if isinstance(out["optimizer"], dict):  # run folders from before optimizer.decay_norm_bias decayed everything
        out["optimizer"] = {"decay_norm_bias": True, **out["optimizer"]}
    if out["clip_grad"] is not None:  # its mode matters only when it clips (older run folders have neither)
        out["clip_grad"] = [out["clip_grad"], config.get("clip_grad_mode", "norm")]
    out["accumulate"] = out["accumulate"] or 1  # older run folders: one batch a step, no average
    ema = out["ema"] or {}
    out["ema"] = ema if ema.get("decay") is not None else None  # ema.warmup matters only with an average
    if out["loss"] == AUTO_LOSS:
        out["loss"] = CROSS_ENTROPY
    for group, keys in WHERE_NOT_WHAT.items():
        if isinstance(out[group], dict):
            out[group] = {k: v for k, v in out[group].items() if k not in keys}
    return out


def recipe_hash(config: dict) -> str:
    """A short name for a recipe (what a resume must keep): runs of the same recipe share it."""
    return hashlib.sha1(json.dumps(recipe(config), sort_keys=True, default=str).encode()).hexdigest()[:12]


def load_resume(source: str, cfg: dict) -> dict:
    """The training state of an unfinished earlier run of the same recipe (checked before anything
    is built); stale temporary files of a killed write are cleared from its folder."""
    folder = Path(source).expanduser()
    clean_stale_temps(folder if folder.is_dir() else folder.parent)
    state = load_state(folder)
    try:
        before, now = recipe(json.loads(state["config"])), recipe(cfg)
    except (TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"cannot resume from {source}: its stored config is damaged ({e})") from e
    changed = [k for k in MUST_MATCH_ON_RESUME if before[k] != now[k]]
    if changed:
        raise CheckpointError(f"cannot resume from {source}: it was trained with other {', '.join(changed)}; "
                              "resume with the same overrides as the original run (resume=RUN alone uses them)")
    if state["epochs_done"] >= cfg["epochs"]:
        raise CheckpointError(f"{source} finished all {state['epochs_done']} epochs already; nothing to resume "
                              f"(its model: {folder if folder.is_dir() else folder.parent}/model.safetensors)")
    stopped = stopped_early(state, cfg)
    if stopped:
        raise CheckpointError(f"{source} stopped early after epoch {state['epochs_done']} ({stopped}); nothing to "
                              "resume (a larger early_stop.patience, or early_stop.patience=null, trains on)")
    return state


def stopped_early(state: dict, cfg: dict) -> str | None:
    """Why a training state's run stopped early under cfg's early_stop, or None: the count a fit
    replays from the history (by the headline metric the state records), so a run that stopped
    stays stopped and one killed before it stopped goes on."""
    early, headline = cfg.get("early_stop") or {}, state.get("headline")
    if early.get("patience") is None or not isinstance(headline, dict):
        return None
    metric, higher = str(headline.get("metric")), bool(headline.get("higher_is_better"))
    stale = stale_epochs(state["history"], metric, higher, early.get("min_delta", 0.0))
    return f"{metric} had not improved for {stale} epochs" if stale >= early["patience"] else None


def restore(run: Run, state: dict) -> tuple[int, list[dict]]:
    """Put a run back where `state` left it; returns (epochs done, metric rows)."""
    run.model.load_state_dict(state["model"])
    run.opt.load_state_dict(state["opt"])
    if run.sched is None:  # optimizer.lr=auto: the lr the first run found
        run.start_schedule(state["lr"])
    run.sched.load_state_dict(state["sched"])
    run.train_dl.load_state_dict(state["train_dl"])
    if run.gan is not None:  # the critic, its optimizer and the switcher's turn
        run.gan.load_state_dict(state["gan"])
    if run.ema is not None:
        run.ema.load_state_dict(state["ema"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and run.device.type == "cuda":
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state["epochs_done"], state["history"]


def peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA memory allocated by tensors, or the process's peak resident memory on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run(cfg, run_dir: Path, console: Console) -> dict:
    """Train the composed run; returns the summary (also written to run_dir/summary.json). Under
    torchrun every rank trains and validates its share; rank 0 alone prints and writes."""
    config = resolved(cfg)
    state = load_resume(cfg.resume, config) if cfg.resume else None
    critic_arch = (state.get("gan") or {}).get("critic_arch") if state else None
    run = build_run(for_resume(cfg), critic_arch) if state else build_run(cfg)
    primary = distributed.is_primary()
    start_epoch, history = restore(run, state) if state else (0, [])
    if state and primary and config["checkpoint"]["keep"] != "last":
        carry_best(Path(cfg.resume), run_dir)
    if run.sched is None:  # optimizer.lr=auto on a fresh run: the finder (rank 0's, on global batches) picks the lr
        run.start_schedule(distributed.broadcast(found_lr(run, cfg, run_dir, console) if primary else None))
    meta = {"config": config, **run.task.meta(), "mean": run.model.norm.mean.flatten().tolist(),
            "std": run.model.norm.std.flatten().tolist(), "input_shape": list(run.input_shape),
            "versions": versions()}
    extra = {"config": json.dumps(config), "lr": run.peak_lr, "loggers": {},
             "headline": {"metric": run.task.headline, "higher_is_better": run.task.higher_is_better}}
    log_run = LogRun(run_dir, config, resumed=(state or {}).get("loggers") or {}, saved=extra["loggers"],
                     tags={"command": "train", "recipe": recipe_hash(config)}, **job_context())
    early = config["early_stop"] if config["early_stop"]["patience"] is not None else None
    record = FitRecord(run_dir, console, meta, extra, primary, keep=config["checkpoint"]["keep"], early_stop=early,
                       loggers=listed(cfg, "logger"), log_run=log_run)
    learn = Learner(run.net, run.train_dl, run.valid_dl, run.loss, run.opt, callbacks_for(run, record), step=run.gan,
                    history=history, accumulate=run.accumulate)
    size = summarize_model(run.model, example_batch(run))
    baseline = announce(cfg, run, size, start_epoch, console)
    status, seconds = fit(learn, run, cfg.epochs, start_epoch, record)
    summary = summarize(learn.history, start_epoch, seconds, status, run, size) | baseline
    if status == "diverged":
        summary["error"] = learn.stop_reason
    if status == "early_stopped":
        summary["stopped_epoch"], summary["stop_reason"] = learn.history[-1]["epoch"], learn.stop_reason
        console.print(f"stopped early after epoch {summary['stopped_epoch']}: {learn.stop_reason}")
    if (run_dir / BEST).is_file():
        summary["best/checkpoint"] = str(run_dir / BEST)
        headline = run.task.headline
        console.print(f"best: epoch {summary['best/epoch']}, {headline} {summary[f'best/{headline}']:.4f} ({BEST})")
    if primary:
        write_json(run_dir / "summary.json", summary)
    return summary


def carry_best(source: Path, run_dir: Path) -> None:
    """A resumed run's best model so far, from the folder it resumes (into its own folder): the next
    epochs replace it only when they beat it."""
    folder = source.expanduser()
    best = (folder if folder.is_dir() else folder.parent) / BEST
    if best.is_file() and best.resolve() != (run_dir / BEST).resolve():
        atomic_write(run_dir / BEST, lambda tmp: shutil.copyfile(best, tmp))


def found_lr(run: Run, cfg, run_dir: Path, console: Console) -> float:
    """optimizer.lr=auto: the lr finder's recommendation, reported like `expt lr_find`'s."""
    with distributed.whole_batches(run.train_dl):
        found = find_lr(run, cfg.lr_find.start, cfg.lr_find.end, cfg.lr_find.steps, cfg.lr_find.suggestion)
    report(found, run_dir, console)
    return found.lr


def announce(cfg, run: Run, size: ModelSummary, start_epoch: int, console: Console) -> dict:
    """The run's header line and, where the task has one, the baseline to beat (returned)."""
    console.print(f"[bold]expt train[/] {cfg.name}: {size.params:,} parameters, {len(run.data.train_x):,} train / "
                  f"{len(run.data.valid_x):,} valid images, {run.device} {run.precision}, "
                  f"epochs {start_epoch + 1}-{cfg.epochs}"
                  + (f", {distributed.world()} processes" if distributed.world() > 1 else ""))
    if run.init_report:
        console.print(lsuv_table(run.init_report))
    baseline = run.task.baseline(run.data)
    if baseline:
        console.print("baseline (the validation inputs as they are): "
                      + ", ".join(f"{k.split('/')[1]} {v:.4f}" for k, v in baseline.items()))
    return baseline


def lsuv_table(report: list[dict]) -> Table:
    """init=lsuv: each layer's output mean and std on the batch, before and after, and the rounds it took."""
    table = Table(title="init=lsuv: each layer's output on one training batch", title_justify="left")
    for column in ("layer", "mean before", "std before", "mean after", "std after", "rounds"):
        table.add_column(column, justify="left" if column == "layer" else "right")
    for row in report:
        table.add_row(row["layer"], *(f"{row[k]:.4f}" for k in ("mean_before", "std_before", "mean", "std")),
                      str(row["rounds"]))
    return table


def fit(learn: Learner, run: Run, epochs: int, start_epoch: int, record: FitRecord) -> tuple[str, float]:
    """Fit; returns the status (ok, diverged, interrupted) and the seconds it took. After Ctrl-C the
    weights are saved as they are; last.pt still holds the last finished epoch to resume from."""
    if run.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(run.device)
    status, start = "ok", time.perf_counter()
    try:
        learn.fit(epochs, start_epoch=start_epoch)
        status = learn.stop_status or "ok"
    except KeyboardInterrupt:
        next(cb for cb in learn.callbacks if isinstance(cb, CheckpointCB)).wait()
        if record.primary and record.keep != "best":
            save_model(record.run_dir / "model.safetensors", run.saved_model, record.meta)
        status = "interrupted"
    return status, time.perf_counter() - start


def summarize(history: list[dict], start_epoch: int, seconds: float, status: str, run: Run,
              size: ModelSummary) -> dict:
    last = history[-1] if history else {}
    epochs_run = len(history) - start_epoch
    best_at, best_value = best_epoch(history, run.task.headline, run.task.higher_is_better)  # a GAN without
    # gan.fid_features has no val/fid
    summary = {
        "status": status,
        **{k: v for k, v in last.items() if k.startswith(("val/", "train/"))},
        "headline": run.task.headline, "higher_is_better": run.task.higher_is_better,
        f"best/{run.task.headline}": best_value, "best/epoch": best_at,
        "epochs": len(history), "seconds": seconds,
        "seconds_per_epoch": seconds / epochs_run if epochs_run > 0 else None,
        "peak_mem_mb": peak_memory_mb(run.device), "params": size.params, "mflops": size.mflops,
        "device": torch.cuda.get_device_name(run.device) if run.device.type == "cuda" else "cpu",
        "precision": run.precision, "lr": run.peak_lr, "lr_auto": run.lr_auto,
        "skipped_images": len(run.data.skipped), "data/root": run.data.root,
    }
    summary.update({f"versions/{k}": v for k, v in versions().items()})
    return summary


def resume_defaults(args: list[str]) -> list[str]:
    """`expt train resume=RUN`: the overrides RUN was started with come first, so `resume=RUN` alone
    continues it; the command line's own overrides win, and those that change the recipe are refused
    when the training state is restored (load_resume)."""
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

"""`expt train`: build the run, fit it, write metrics, summary and checkpoints into the run folder."""

import json
import resource
import time
from pathlib import Path

import torch
from rich.console import Console

from . import distributed
from .build import Run, build_run, for_resume, resolved
from .callbacks import CheckpointCB, MetricsCB, ProgressCB, ScheduleCB
from .callbacks.distributed import DistributedCB
from .checkpoint import clean_stale_temps, load_state, save_model, versions, write_json
from .errors import CheckpointError
from .learner import Learner
from .lr_find import find_lr, report
from .summary import ModelSummary, example_batch, summarize_model

MUST_MATCH_ON_RESUME = ("data", "arch", "optimizer", "schedule", "loss", "augment", "gan", "epochs", "bs")
WHERE_NOT_WHAT = {"data": ("root", "workers", "download")}  # may change on resume: where data lives, how it is read


def recipe(config: dict) -> dict:
    """What defines a run's training: MUST_MATCH_ON_RESUME, less the settings of WHERE_NOT_WHAT."""
    out = {k: config.get(k) for k in MUST_MATCH_ON_RESUME}
    for group, keys in WHERE_NOT_WHAT.items():
        if isinstance(out[group], dict):
            out[group] = {k: v for k, v in out[group].items() if k not in keys}
    return out


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
    return state


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
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and run.device.type == "cuda":
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state["epochs_done"], state["history"]


def peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA memory allocated by tensors, or the process's peak resident memory on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def train(cfg, run_dir: Path, console: Console) -> dict:
    """Train the composed run; returns the summary (also written to run_dir/summary.json). Under
    torchrun every rank trains and validates its share; rank 0 alone prints and writes."""
    config = resolved(cfg)
    state = load_resume(cfg.resume, config) if cfg.resume else None
    critic_arch = (state.get("gan") or {}).get("critic_arch") if state else None
    run = build_run(for_resume(cfg), critic_arch) if state else build_run(cfg)
    primary = distributed.is_primary()
    start_epoch, history = restore(run, state) if state else (0, [])
    if run.sched is None:  # optimizer.lr=auto on a fresh run: the finder (rank 0's, on global batches) picks the lr
        lr = None
        if primary:
            with distributed.whole_batches(run.train_dl):
                found = find_lr(run, cfg.lr_find.start, cfg.lr_find.end, cfg.lr_find.steps, cfg.lr_find.suggestion)
            report(found, run_dir, console)
            lr = found.lr
        run.start_schedule(distributed.broadcast(lr))
    meta = {"config": config, **run.task.meta(), "mean": run.model.norm.mean.flatten().tolist(),
            "std": run.model.norm.std.flatten().tolist(), "input_shape": list(run.input_shape),
            "versions": versions()}
    metrics = MetricsCB(run.task, history)
    stateful = {"sched": run.sched, "train_dl": run.train_dl} | ({"gan": run.gan} if run.gan is not None else {})
    checkpoint = CheckpointCB(run_dir, run.model, meta, stateful, metrics.history, write=primary,
                              extra={"config": json.dumps(config), "lr": run.peak_lr})
    callbacks = [metrics, ScheduleCB(run.sched), checkpoint, *run.fit_callbacks()]
    if primary:
        callbacks += [ProgressCB(console, previous_rows=history), *run.task.callbacks(run_dir)]
    if distributed.world() > 1:
        callbacks.append(DistributedCB(run.net, run.device, cfg.seed))
    learn = Learner(run.net, run.train_dl, run.valid_dl, run.loss, run.opt, callbacks, train_step=run.gan)

    size = summarize_model(run.model, example_batch(run))
    console.print(f"[bold]expt train[/] {cfg.name}: {size.params:,} parameters, {len(run.data.train_x):,} train / "
                  f"{len(run.data.valid_x):,} valid images, {run.device} {run.precision}, "
                  f"epochs {start_epoch + 1}-{cfg.epochs}"
                  + (f", {distributed.world()} processes" if distributed.world() > 1 else ""))
    baseline = run.task.baseline(run.data)
    if baseline:
        console.print("baseline (the validation inputs as they are): "
                      + ", ".join(f"{k.split('/')[1]} {v:.4f}" for k, v in baseline.items()))
    if run.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(run.device)
    status, start = "ok", time.perf_counter()
    try:
        learn.fit(cfg.epochs, start_epoch=start_epoch)
        if learn.stop_reason:
            status = "diverged"
    except KeyboardInterrupt:
        # Keep the weights as they are; last.pt still holds the last finished epoch to resume from.
        checkpoint.wait()
        if primary:
            save_model(run_dir / "model.safetensors", run.model, meta)
        status = "interrupted"
    seconds = time.perf_counter() - start
    summary = summarize(metrics.history, start_epoch, seconds, status, run, size) | baseline
    if status == "diverged":
        summary["error"] = learn.stop_reason
    if primary:
        write_json(run_dir / "summary.json", summary)
    return summary


def best(history: list[dict], metric: str, higher_is_better: bool):
    values = [row[metric] for row in history if metric in row]  # a GAN without gan.fid_features has no val/fid
    return (max if higher_is_better else min)(values) if values else None


def summarize(history: list[dict], start_epoch: int, seconds: float, status: str, run: Run,
              size: ModelSummary) -> dict:
    last = history[-1] if history else {}
    epochs_run = len(history) - start_epoch
    summary = {
        "status": status,
        **{k: v for k, v in last.items() if k.startswith(("val/", "train/"))},
        "headline": run.task.headline, "higher_is_better": run.task.higher_is_better,
        f"best/{run.task.headline}": best(history, run.task.headline, run.task.higher_is_better),
        "epochs": len(history), "seconds": seconds,
        "seconds_per_epoch": seconds / epochs_run if epochs_run > 0 else None,
        "peak_mem_mb": peak_memory_mb(run.device), "params": size.params, "mflops": size.mflops,
        "device": torch.cuda.get_device_name(run.device) if run.device.type == "cuda" else "cpu",
        "precision": run.precision, "lr": run.peak_lr, "lr_auto": run.lr_auto,
        "skipped_images": len(run.data.skipped), "data/root": run.data.root,
    }
    summary.update({f"versions/{k}": v for k, v in versions().items()})
    return summary

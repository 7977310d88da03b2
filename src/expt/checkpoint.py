"""Self-describing checkpoints: safetensors weights plus JSON metadata (config, normalisation,
classes, versions); training state for resuming in a torch file of plain tensors. All writes are
atomic (temporary file, then rename), so a crash never leaves a half-written file."""

import io
import json
import math
import os
import platform
import threading
import warnings
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save
from torch import nn

from . import __version__
from .errors import CheckpointError, first_line

FORMAT = "expt-checkpoint/1"
META_KEYS = ("config", "mean", "std", "versions")  # required; the task's keys and "input_shape" too
MAX_SIDE = 8192  # pixels: no run trains on larger images; a larger input_shape is a damaged file
STATE_KEYS = ("epochs_done", "history", "model", "opt", "torch_rng", "config", "sched", "train_dl")


def _umask() -> int:
    mask = os.umask(0)  # read at import, in the main thread: os.umask can only be read by setting it
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()  # what open() gives every other output


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Write through `write(tmp_path)`, flush it to the disk, give it the permissions of any other
    output, and move it into place in one rename: a crash or a full disk never leaves half a file.
    A temporary file that a kill left behind is cleared by the next command in that folder
    (clean_stale_temps)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        try:
            write(tmp)
        except OSError as e:  # name the file the user knows, not its temporary twin
            raise type(e)(e.errno, e.strerror, str(path)) from e
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, FILE_MODE)  # safetensors writes 0600
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def finite_or_null(value):
    """`value` with every NaN or infinity replaced by None, in nested dicts and lists: JSON has no
    NaN, and a bare `NaN` in a file makes other tools reject it."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(v) for v in value]
    return value


def write_json(path: Path, data) -> Path:
    """`data` as strict JSON (a missing value is null), written atomically."""
    text = json.dumps(finite_or_null(data), indent=2, allow_nan=False)
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def clean_stale_temps(folder: Path) -> list[Path]:
    """Delete the temporary files (`.NAME.PID.THREAD.tmp`, checkpoint.atomic_write's) that a process
    no longer alive left behind; returns them."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        parts = tmp.name.split(".")
        if len(parts) >= 5 and parts[-3].isdigit() and not _alive(int(parts[-3])):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def versions() -> dict[str, str]:

    return {"expt": __version__, "torch": torch.__version__, "timm": version("timm"),
            "python": platform.python_version()}


def save_model(path: Path, model: nn.Module | dict[str, torch.Tensor], meta: dict) -> Path:
    """Weights (a model or its state dict; stored contiguous, on the CPU) to safetensors, `meta` as
    JSON strings in its header."""

    state = model.state_dict() if isinstance(model, nn.Module) else model
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    header = {"format": FORMAT, **{k: json.dumps(v) for k, v in meta.items()}}
    # Serialised in memory, then written by Python: a full disk is then an OSError (ENOSPC) naming
    # the file, where safetensors' and torch's own writers raise their own error types.
    return atomic_write(path, lambda tmp: tmp.write_bytes(save(tensors, metadata=header)))


def read_meta(path: Path) -> dict:
    """The metadata of an expt checkpoint (without its weights), or one clear CheckpointError."""

    path = Path(path)
    if path.is_dir():
        inside = " (it has one)" if (path / "model.safetensors").is_file() else ""
        raise CheckpointError(f"checkpoint {path} is a folder; pass the model.safetensors inside it{inside}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass the model.safetensors of a run folder")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} is not a readable safetensors file ({e})") from e
    if header.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} was not written by expt (format {header.get('format')!r}, "
                              f"expected {FORMAT!r})")
    try:
        meta = {k: json.loads(header[k]) for k in META_KEYS}
        meta |= {k: json.loads(v) for k, v in header.items() if k not in META_KEYS and k != "format"}
    except (KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {path} has damaged metadata ({e})") from e
    problem = meta_problem(meta)
    if problem:
        raise CheckpointError(f"checkpoint {path} has damaged metadata ({problem})")
    return meta


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The weights and metadata of an expt checkpoint, or one clear CheckpointError."""

    meta = read_meta(path)
    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} is not a readable safetensors file ({e})") from e
    return weights, meta


def is_checkpoint(path: Path) -> bool:
    """Whether a file is a safetensors file written by expt (its header says so; nothing is validated)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("format") == FORMAT
    except Exception:  # not safetensors at all: whoever reads it reports what is wrong
        return False


def _is_list_of(value, kind) -> bool:
    return isinstance(value, list) and all(isinstance(v, kind) and not isinstance(v, bool) for v in value)


def _strings(node) -> list[str]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in _strings(k) + _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


def meta_problem(meta: dict) -> str | None:
    """What is wrong with a checkpoint's metadata, or None. Only the shape of the data is checked
    here; the stored config's builders are checked (and only expt's allowed) when it is built."""
    config = meta["config"]
    if not isinstance(config, dict) or not all(isinstance(config.get(g), dict) and isinstance(
            config[g].get("_target_"), str) for g in ("arch", "data")):
        return "its config lacks the arch and data nodes"
    if any("${" in s for s in _strings(config)):
        return "its config holds an interpolation; expt stores resolved configs"
    task = meta.get("task", "classify")  # checkpoints from before tasks are classifiers
    if task in ("classify", "critic", "multilabel") and (not _is_list_of(meta.get("classes"), str) or not meta["classes"]):
        return "classes is not a list of names"
    if task in ("restore", "generate") and meta.get("channels") not in (1, 3):
        return "channels is not 1 or 3"
    if task == "multilabel" and not (isinstance(meta.get("threshold"), float) and 0 < meta["threshold"] < 1):
        return "threshold is not a number between 0 and 1"
    if task not in ("classify", "restore", "critic", "generate", "multilabel"):
        return f"task {task!r} is not one of classify, restore, critic, generate, multilabel"
    if not (_is_list_of(meta["mean"], (int, float)) and _is_list_of(meta["std"], (int, float))
            and 1 <= len(meta["mean"]) == len(meta["std"])):
        return "mean and std are not lists of one number per channel"
    shape = meta.get("input_shape")
    if shape is not None and not (_is_list_of(shape, int) and len(shape) == 3 and min(shape) > 0):
        return "input_shape is not (channels, height, width)"
    if shape is not None and max(shape[1:]) > MAX_SIDE:
        return f"input_shape {shape} is larger than {MAX_SIDE} pixels a side"
    heads = meta.get("heads")
    if heads is not None and not (isinstance(heads, dict) and heads
                                  and all(_is_list_of(v, str) and v for v in heads.values())):
        return "heads is not a mapping of target names to class names"
    return None


def save_state(path: Path, state: dict) -> Path:
    def write(tmp: Path) -> None:
        buffer = io.BytesIO()
        torch.save(state, buffer)
        tmp.write_bytes(buffer.getbuffer())
    return atomic_write(path, write)


def load_plain(path: Path):
    """torch.load of plain tensors and containers only (weights_only: no pickled code). A damaged or
    foreign file raises ValueError with one line, never torch's advice to unpickle it."""
    try:
        with warnings.catch_warnings():  # older files (the Lite0 package's) trigger a protocol notice
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for damaged or foreign files (pickled code too)
        if "weights_only" in str(e) or "Weights only load failed" in str(e):
            raise ValueError("it holds pickled objects, not only tensors, and expt never unpickles code") from e
        raise ValueError(first_line(e)) from e


def load_state(path: Path) -> dict:
    """Training state saved by save_state; plain tensors and containers only (no pickled code)."""
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"nothing to resume at {path}; pass a run folder that has last.pt")
    try:
        state = load_plain(path)
    except ValueError as e:
        raise CheckpointError(f"cannot resume from {path}: not an expt training state ({e})") from e
    missing = [k for k in STATE_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"cannot resume from {path}: not an expt training state (no {', '.join(missing)})")
    return state

"""Self-describing checkpoints: safetensors weights plus JSON metadata (config, normalisation,
classes, versions); training state for resuming in a torch file of plain tensors. All writes are
atomic (temporary file, then rename), so a crash never leaves a half-written file."""

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointError

FORMAT = "expt-checkpoint/1"
META_KEYS = ("config", "classes", "mean", "std", "versions")  # required; "input_shape" is optional


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Write through `write(tmp_path)` and move the result into place in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def versions() -> dict[str, str]:
    import platform
    from importlib.metadata import version

    from . import __version__
    return {"expt": __version__, "torch": torch.__version__, "timm": version("timm"),
            "python": platform.python_version()}


def save_model(path: Path, model: nn.Module | dict[str, torch.Tensor], meta: dict) -> Path:
    """Weights (a model or its state dict; stored contiguous, on the CPU) to safetensors, `meta` as
    JSON strings in its header."""
    from safetensors.torch import save_file

    state = model.state_dict() if isinstance(model, nn.Module) else model
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    header = {"format": FORMAT, **{k: json.dumps(v) for k, v in meta.items()}}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=header))


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The weights and metadata of an expt checkpoint, or one clear CheckpointError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass the model.safetensors of a run folder")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        weights = load_file(str(path))
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
    return weights, meta


def save_state(path: Path, state: dict) -> Path:
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: Path) -> dict:
    """Training state saved by save_state; plain tensors and containers only (no pickled code)."""
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"nothing to resume at {path}; pass a run folder that has last.pt")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for damaged or foreign files
        raise CheckpointError(f"cannot resume from {path}: not an expt training state ({e})") from e

"""`expt export ckpt=RUN/model.safetensors format=onnx|torchscript|torch_export`: the trained model
as one file that runs without expt, written next to the checkpoint (model.onnx, model.torchscript.pt,
model.pt2; model_best.* for model_best.safetensors).

The file takes float32 images in [0, 1], NCHW, at the trained size (the normalisation is inside),
any batch size; it outputs what the model does: class logits (several heads side by side, in the
order of `heads`), one logit per label (sigmoid > threshold), or an image. Its metadata (ONNX
metadata_props; an `expt.json` extra file for the two torch formats) holds the task, class names,
heads, threshold, input shape, mean and std and expt's version. With `check=true` (the default) the
exported file is run on the validation images of the checkpoint's data next to torch: the largest
difference (relative to the value where it is above 1) and both headline metrics are printed, and one
beyond 1e-4 is an error and no file.
"""

import io
import json
import warnings
from pathlib import Path

import torch
from omegaconf import OmegaConf
from rich.console import Console

from .. import __version__
from ..checkpoint import atomic_write
from ..errors import CheckpointError, ConfigError, ExptError
from ..metrics import psnr
from ..rebuild import build_eval, model_from_checkpoint
from ..tasks import Classify, MultiLabel, Restore, task_from_meta
from ..tasks.multilabel import fbeta_per_sample
from ..tta import accuracy

SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "torch_export": ".pt2"}
EXTRAS = {"onnx": "onnx, onnxscript", "torchscript": "", "torch_export": ""}
TOLERANCE = 1e-4  # the largest difference allowed between the exported file's outputs and torch's (relative above 1)
CHECK_BATCH = 64  # validation images per forward in the check
EXAMPLE_BATCH = 2  # the traced batch; the batch dimension stays dynamic


class ExportError(ExptError):
    """A model that cannot be exported to a format, or an export that does not predict what torch does."""


def run(cfg, run_dir: Path, console: Console) -> dict:
    if cfg.ckpt is None or not isinstance(cfg.ckpt, str):
        raise ConfigError("expt export needs one checkpoint: ckpt=RUN/model.safetensors (or model_best.safetensors)")
    if cfg.format not in SUFFIX:
        raise ConfigError(f"format={cfg.format!r} is not one of {', '.join(SUFFIX)}")
    model, meta = model_from_checkpoint(cfg.ckpt)
    task = meta.get("task", "classify")
    if task == "critic":
        raise ExportError(f"{cfg.ckpt} is a GAN critic: it judges images only while its generator trains; export "
                          "the generator (the gan=superres run's model.safetensors) or a classifier")
    if task == "generate":
        raise ExportError(f"{cfg.ckpt} is a generator from noise; expt export takes classifiers and image-to-image "
                          "models (its images: expt sample)")
    model = model.float().eval()
    shape = tuple(meta["input_shape"])
    out = Path(cfg.ckpt).with_suffix(SUFFIX[cfg.format])
    info = metadata(meta)
    example = torch.rand(EXAMPLE_BATCH, *shape)
    check = checker(cfg, console) if cfg.check else None

    def write(tmp: Path) -> None:
        export(model, example, tmp, cfg.format, info, str(cfg.ckpt))
        if check is not None:
            check(model, load(tmp, cfg.format), task_from_meta(meta))
    atomic_write(out, write)
    console.print(f"exported {cfg.ckpt} -> {out} ({cfg.format}, input float32 [0, 1] of (N, {', '.join(map(str, shape))}))")
    return {"status": "ok", "outputs": str(out.parent), "file": str(out)}


def metadata(meta: dict) -> dict[str, str]:
    """What a user of the file needs to feed it and read its outputs, as text values."""
    info = {"task": meta.get("task", "classify"), "input_shape": meta["input_shape"], "input": "float32 NCHW in [0, 1]",
            "mean": meta["mean"], "std": meta["std"], "expt_version": __version__}
    info |= {k: meta[k] for k in ("classes", "heads", "threshold", "channels", "epoch") if k in meta}
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in info.items()}


def export(model: torch.nn.Module, example: torch.Tensor, path: Path, fmt: str, info: dict, name: str) -> None:
    """`model` written to `path` in `fmt` with `info` in its metadata, its batch dimension dynamic."""
    batch = torch.export.Dim("batch")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit's deprecation, the exporters' notices
            if fmt == "onnx":
                program = torch.onnx.export(model, (example,), dynamo=True, input_names=["images"],
                                            output_names=["outputs"], dynamic_shapes=({0: batch},), verbose=False)
                program.save(str(path))
            elif fmt == "torchscript":
                torch.jit.save(torch.jit.trace(model, example), str(path), _extra_files={"expt.json": json.dumps(info)})
            else:
                program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
                buffer = io.BytesIO()  # torch.export names its archive by the file's suffix: the temporary has none
                torch.export.save(program, buffer, extra_files={"expt.json": json.dumps(info)})
                path.write_bytes(buffer.getvalue())
    except ImportError as e:
        raise ExportError(f"format={fmt} needs {e.name or EXTRAS[fmt]}: pip install 'expt[export]'") from None
    except Exception as e:  # an op the format lacks, a shape it cannot keep dynamic
        line = next((s for s in str(e).strip().splitlines() if s.strip()), type(e).__name__)
        raise ExportError(f"{name} cannot be exported to {fmt}: {line[:300]}") from None
    if fmt == "onnx":
        import onnx
        graph = onnx.load(str(path))
        for key, value in info.items():
            graph.metadata_props.add(key=key, value=value)
        onnx.save(graph, str(path))


def load(path: Path, fmt: str):
    """A runner of the exported file: float32 images (N, C, H, W) -> its outputs as a CPU tensor."""
    if fmt == "onnx":
        try:
            import onnxruntime
        except ImportError:
            raise ExportError("check=true runs the ONNX file with onnxruntime: pip install 'expt[export]' "
                              "(or check=false)") from None
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = (torch.jit.load(str(path)) if fmt == "torchscript"
                  else torch.export.load(io.BytesIO(path.read_bytes())).module())
    return lambda x: module(x).detach()


def checker(cfg, console: Console):
    """The check of an exported file against torch on the checkpoint's validation images."""
    ev = build_eval(OmegaConf.merge(cfg, {"device": "cpu", "precision": "fp32", "tta": {"names": ["identity"]}}),
                    explicit_data=False)

    def check(model: torch.nn.Module, exported, task) -> None:
        ours, theirs, targets = [], [], []
        with torch.no_grad():
            for xb, yb in ev.valid_dl:
                for x, y in zip(xb.float().contiguous().split(CHECK_BATCH), yb.split(CHECK_BATCH)):
                    ours.append(model(x))
                    theirs.append(exported(x))
                    targets.append(y)
        ours, theirs, targets = torch.cat(ours), torch.cat(theirs), torch.cat(targets)
        if theirs.shape != ours.shape:
            raise ExportError(f"the exported model outputs {tuple(theirs.shape)} and torch {tuple(ours.shape)}")
        diff = difference(theirs, ours)
        name, a = headline(task, ours, targets)
        _, b = headline(task, theirs, targets)
        console.print(f"check on {len(targets):,} validation images: largest difference {diff:.2e}; "
                      f"{name} torch {a:.4f}, exported {b:.4f}")
        if not diff <= TOLERANCE:
            raise ExportError(f"the exported model differs from torch by {diff:.2e} (more than {TOLERANCE:g}) on the "
                              "validation images; no file written")
    return check


def difference(exported: torch.Tensor, ours: torch.Tensor) -> float:
    """The largest difference of two outputs, relative where torch's value is above 1 in size (float32
    keeps 7 digits: logits in the hundreds differ in their 5th decimal by rounding alone)."""
    return ((exported - ours).abs() / ours.abs().clamp_min(1)).max().item()


def headline(task, outputs: torch.Tensor, targets: torch.Tensor) -> tuple[str, float]:
    """The task's headline metric of a model's outputs: accuracy (the first head's), per-image F1 at
    the threshold, or PSNR."""
    if isinstance(task, Classify):
        first = next(iter(task.sizes.values()))
        truth = targets[:, 0] if task.multi else targets
        return "accuracy", accuracy(outputs[:, :first], truth)
    if isinstance(task, MultiLabel):
        predicted = torch.sigmoid(outputs) > task.threshold
        return "F1", fbeta_per_sample(predicted, targets.bool(), 1.0).mean().item()
    if isinstance(task, Restore):
        return "PSNR", psnr(outputs.clamp(0, 1), targets.float()).mean().item()
    raise CheckpointError(f"no headline metric for a {type(task).__name__} checkpoint")

"""The commands: one module each, each with the same entry, `run(cfg, run_dir, console) -> dict`
(the summary: a `status`, and `outputs` where it wrote elsewhere than run_dir); a sweep's `run` is
one job's and returns its headline metric (what Hydra's sweepers optimise), and `data` takes its
words as they are (`run(args)`: nothing to compose). A command is imported when it is chosen, so
`expt --help` and shell completion need no torch."""

from collections.abc import Callable
from importlib import import_module

COMMANDS = {
    "train": "train the composed run and save metrics, summary and checkpoint",
    "lr_find": "learning-rate range test on the run train would build; suggestions, table and plot",
    "tta": "evaluate checkpoint(s) with and without test-time augmentation; ckpt=PATH or ckpt=[A,B]",
    "interpret": "confusion matrix, per-class report and top losses (with file names) of ckpt=PATH on its validation split",
    "summary": "the run's model, one row per leaf module: shapes, parameters, MFLOPs; writes summary.md",
    "predict": "a checkpoint's predictions: input=DIR_OR_FILE into predictions.csv (restored PNGs for data=pets), or Paddy's submission.csv",
    "export": "the model as one file that runs without expt: format=onnx|torchscript|torch_export, checked against torch",
    "sample": "a grid of a generator's images: ckpt=RUN/model.safetensors n=64 (a GAN's, or a restoration run's)",
    "show": "batch.png: the first training batch of the run train would build, augmented, with its labels",
    "sweep": "train every combination (-m arch=a,b seed=1,2,3), then sweep.csv, a leaderboard and a plot",
    "data": "get a dataset: `expt data fashion_mnist` (a copy found, Debian's package, or the official files)",
}


def entry(command: str) -> Callable:
    """The `run` of a command module (one of COMMANDS)."""
    if command not in COMMANDS:
        raise KeyError(command)
    return import_module(f"{__name__}.{command}").run

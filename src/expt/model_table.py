"""A model's table: one row per leaf module with shapes, parameters and MFLOPs, from forward hooks
on one batch (what `expt summary` prints and `expt train` counts). MFLOPs here count
multiply-accumulates of convolutions and linear layers, per image."""

from dataclasses import dataclass, field

import torch
from rich.table import Table
from torch import nn


@dataclass
class Row:
    name: str
    kind: str
    input_shape: tuple = ()
    output_shape: tuple = ()
    params: int = 0
    macs: float = 0.0  # per image


@dataclass
class ModelSummary:
    rows: list[Row] = field(default_factory=list)
    params: int = 0          # every parameter of the model, counted once
    trainable: int = 0
    mflops: float = 0.0      # multiply-accumulates per image, in millions


def _shape(value) -> tuple:
    if isinstance(value, (tuple, list)) and value:
        value = value[0]
    return tuple(value.shape) if isinstance(value, torch.Tensor) else ()


def macs_of(module: nn.Module, output: torch.Tensor) -> float:
    """Multiply-accumulates of one call, over the whole batch."""
    if isinstance(module, nn.modules.conv._ConvNd):
        per_output = module.in_channels // module.groups * torch.tensor(module.kernel_size).prod().item()
        return output.numel() * per_output
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0.0


@torch.no_grad()
def summarize_model(model: nn.Module, x: torch.Tensor) -> ModelSummary:
    """Run `model` once on the batch `x` (in eval mode) and collect a row per leaf module."""
    rows: dict[str, Row] = {}
    hooks = []

    def hook(name):
        def record(module, inputs, output):
            row = rows.setdefault(name, Row(name, type(module).__name__, _shape(inputs), _shape(output),
                                            sum(p.numel() for p in module.parameters(recurse=False))))
            row.macs += macs_of(module, output[0] if isinstance(output, (tuple, list)) else output) / len(x)
        return record

    for name, module in model.named_modules():
        if not list(module.children()):
            hooks.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    try:
        model.eval()
        model(x)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    params = {id(p): p for p in model.parameters()}
    summary = ModelSummary(list(rows.values()), sum(p.numel() for p in params.values()),
                           sum(p.numel() for p in params.values() if p.requires_grad))
    summary.mflops = sum(r.macs for r in summary.rows) / 1e6
    in_rows = sum(r.params for r in summary.rows)
    if in_rows < summary.params:  # e.g. a ViT's position embedding belongs to no leaf module
        summary.rows.append(Row("(parameters of non-leaf modules)", "", params=summary.params - in_rows))
    return summary


def table(summary: ModelSummary, title: str) -> Table:
    t = Table(title=title)
    for col, justify in (("module", "left"), ("type", "left"), ("input", "right"), ("output", "right"),
                         ("params", "right"), ("MFLOPs", "right")):
        t.add_column(col, justify=justify, overflow="fold")
    for r in summary.rows:
        t.add_row(r.name, r.kind, "x".join(map(str, r.input_shape)), "x".join(map(str, r.output_shape)),
                  f"{r.params:,}", f"{r.macs / 1e6:.2f}")
    t.add_section()
    t.add_row("total", "", "", "", f"{summary.params:,}", f"{summary.mflops:.2f}")
    return t


def markdown(summary: ModelSummary, title: str) -> str:
    lines = [f"# {title}", "", "MFLOPs: multiply-accumulates of convolutions and linear layers, per image.", "",
             "| module | type | input | output | params | MFLOPs |", "| --- | --- | --- | --- | ---: | ---: |"]
    for r in summary.rows:
        lines.append(f"| {r.name} | {r.kind} | {'x'.join(map(str, r.input_shape))} | "
                     f"{'x'.join(map(str, r.output_shape))} | {r.params:,} | {r.macs / 1e6:.2f} |")
    lines.append(f"| **total** | | | | **{summary.params:,}** | **{summary.mflops:.2f}** |")
    return "\n".join(lines) + "\n"


def example_batch(run, n: int = 2) -> torch.Tensor:
    """n validation images as the model sees them (float 0..1, on the run's device)."""
    return next(iter(run.valid_dl))[0][:n]

"""init=lsuv (lesson 11; Mishkin & Matas 2016, "All you need is a good init"): layer-sequential
unit-variance initialisation on one training batch. In order, for every conv and linear layer:
forward the batch, and from the layer's output subtract its mean from the bias and divide the
weights by its std, until the mean is within `tol` of 0 and the std within `tol` of 1 (a layer
without a bias: the std alone), or `rounds` times. The forward stops at the layer being fitted
(the later layers' turn comes after), and BatchNorm's running statistics are put back after."""

import torch
from torch import nn

LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


class _Stop(Exception):
    """Raised by the hook: the rest of the forward is not needed."""


@torch.no_grad()
def lsuv(model: nn.Module, xb: torch.Tensor, tol: float = 1e-3, rounds: int = 10) -> list[dict]:
    """Fit the layers in place; returns each layer's {layer, mean_before, std_before, mean, std, rounds}."""
    buffers = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    was_training = model.training
    model.train()  # the lesson's: BatchNorm normalises with the batch's statistics
    report = []
    try:
        for name, layer in ((n, m) for n, m in model.named_modules() if isinstance(m, LAYERS)):
            stats: dict[str, float] = {}

            def hook(module, args, out):
                out = out.float()
                stats["mean"], stats["std"] = out.mean().item(), out.std().item()
                raise _Stop

            handle = layer.register_forward_hook(hook)
            try:
                row, n = {}, 0
                while True:
                    try:
                        model(xb)
                    except _Stop:
                        pass
                    if n == 0:
                        row = {"layer": name, "mean_before": stats["mean"], "std_before": stats["std"]}
                    done = abs(stats["std"] - 1) < tol and (layer.bias is None or abs(stats["mean"]) < tol)
                    if done or n == rounds or stats["std"] == 0:
                        break
                    if layer.bias is not None:
                        layer.bias -= stats["mean"]
                    layer.weight /= stats["std"]
                    n += 1
            finally:
                handle.remove()
            report.append(row | {"mean": stats["mean"], "std": stats["std"], "rounds": n})
    finally:
        model.load_state_dict(buffers, strict=False)
        model.train(was_training)
    return report

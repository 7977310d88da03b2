"""`expt predict ckpt=PATH`: the checkpoint's predictions for its dataset's test images, as a
Kaggle submission file (image_id,<headline target>)."""

from pathlib import Path

import torch

from .checkpoint import atomic_write
from .data.loaders import DeviceLoader
from .tta import autocast_for, predict


def run_predict(cfg, run_dir: Path, console) -> dict:
    import pandas as pd

    from .rebuild import build_test
    test = build_test(cfg)
    loader = DeviceLoader(test.x, torch.zeros(len(test.x), dtype=torch.long), cfg.bs * 2, shuffle=False,
                          drop_last=False, device=test.device, channels_last=test.layout == torch.channels_last)
    _, probs = predict(test.model, loader, test.tta, autocast_for(test.precision, test.device), test.task)
    target, labels = test.task.labels(probs)  # the headline target, as Kaggle scores it
    out = Path(test.path).parent / "submission.csv"
    frame = pd.DataFrame({"image_id": test.ids, target: labels})
    atomic_write(out, lambda tmp: frame.to_csv(tmp, index=False))
    console.print(f"[bold]expt predict[/] {len(labels):,} test images, views {', '.join(test.tta.names)}: wrote {out}")
    return {"status": "ok", "rows": len(labels), "outputs": str(out.parent)}
